//! Writing secrets at rest: Web3 Secret Storage keystores with a chosen key-derivation cost, and
//! the files that hold keys or passwords, each written with mode 0600 and atomically.
//!
//! alloy-signer-local creates keystores through `eth_keystore::encrypt_key`, whose scrypt cost is
//! fixed at n = 2^13 (eth-keystore 0.5 has no way to set it), 32 times cheaper than geth's
//! standard n = 2^18, and which creates the file with the process's default mode in place. So
//! [`write_keystore`] runs the same construction as `encrypt_key` (key derivation, AES-128-CTR,
//! Keccak-256 MAC, serialized with eth-keystore's own [`EthKeystore`] type) with the derivation
//! as a parameter ([`Kdf`]), and writes through [`write_secret_file`]. Keystores are read back
//! with [`crate::decrypt`] (eth-keystore through alloy-signer-local), which takes the cost from
//! the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use aes::cipher::{KeyIvInit, StreamCipher};
use alloy_primitives::{keccak256, B256};
use eth_keystore::{CipherparamsJson, CryptoJson, EthKeystore, KdfType, KdfparamsType};
use rand::{CryptoRng, RngCore};

/// A keystore's key derivation and its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// geth's standard scrypt: n = 2^18, r = 8, p = 1 (256 MiB and about a second per decryption).
    Standard,
    /// geth's `--lightkdf` scrypt: n = 2^12, r = 8, p = 6 (4 MiB), for throwaway keys and tests.
    Light,
    /// PBKDF2-HMAC-SHA256 with this many rounds: for many throwaway keys of a public test
    /// mnemonic that must be written and read at every start (the simulator's meters).
    Pbkdf2 {
        /// Rounds (at most [`crate::MAX_PBKDF2_ROUNDS`] to be readable again).
        rounds: u32,
    },
}

impl Kdf {
    /// Derives the 32-byte key from `password` and `salt`; returns it with the file's
    /// `kdf`/`kdfparams` section.
    fn derive(
        self,
        password: &str,
        salt: Vec<u8>,
    ) -> Result<([u8; 32], KdfType, KdfparamsType), SecretFileError> {
        let mut key = [0u8; 32];
        let (log_n, r, p) = match self {
            Self::Standard => (18, 8, 1),
            Self::Light => (12, 8, 6),
            Self::Pbkdf2 { rounds } => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, rounds, &mut key);
                let params = KdfparamsType::Pbkdf2 { c: rounds, dklen: 32, prf: "hmac-sha256".into(), salt };
                return Ok((key, KdfType::Pbkdf2, params));
            }
        };
        let scrypt_params =
            scrypt::Params::new(log_n, r, p).map_err(|e| SecretFileError::Kdf(e.to_string()))?;
        scrypt::scrypt(password.as_bytes(), &salt, &scrypt_params, &mut key)
            .map_err(|e| SecretFileError::Kdf(e.to_string()))?;
        Ok((key, KdfType::Scrypt, KdfparamsType::Scrypt { dklen: 32, n: 1 << log_n, p, r, salt }))
    }
}

/// Why a secret file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file exists already; secrets are never overwritten.
    #[error("{} exists already; it is not overwritten (choose another name)", .0.display())]
    Exists(PathBuf),
    /// A file-system error.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Invalid key-derivation parameters (a bug).
    #[error("key derivation: {0}")]
    Kdf(String),
    /// The secret is not a valid secp256k1 private key.
    #[error("not a valid private key: {0}")]
    Key(String),
    /// The keystore JSON could not be encoded (a bug).
    #[error("encoding the keystore: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes `bytes` to a new file at `path` that only its owner can read (mode 0600 from the
/// start): a temporary file in the same directory is written, flushed to disk and renamed into
/// place, so the file is either absent or complete, and an existing file is never replaced.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), SecretFileError> {
    let io = |source| SecretFileError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    // tempfile creates the file with mode 0600 (O_EXCL) on Unix.
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            SecretFileError::Exists(path.to_path_buf())
        } else {
            io(e.error)
        }
    })?;
    // The rename itself reaches the disk with the directory.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// Encrypts `secret` (a secp256k1 private key) with `password` into a Web3 Secret Storage v3
/// keystore, written to `dir/name` (default name: the keystore's UUID) with
/// [`write_secret_file`]. Returns the path written.
pub fn write_keystore<R: RngCore + CryptoRng>(
    dir: &Path,
    name: Option<&str>,
    secret: &B256,
    password: &str,
    kdf: Kdf,
    rng: &mut R,
) -> Result<PathBuf, SecretFileError> {
    let mut salt = vec![0u8; 32];
    let mut iv = vec![0u8; 16];
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut iv);
    let (derived, kdf, kdfparams) = kdf.derive(password, salt)?;
    let mut ciphertext = secret.to_vec();
    ctr::Ctr128BE::<aes::Aes128>::new(derived[..16].into(), iv.as_slice().into())
        .apply_keystream(&mut ciphertext);
    let mac = keccak256([&derived[16..32], &ciphertext[..]].concat());
    let id = uuid::Uuid::new_v4();
    let keystore = EthKeystore {
        id,
        version: 3,
        crypto: CryptoJson {
            cipher: "aes-128-ctr".to_string(),
            cipherparams: CipherparamsJson { iv },
            ciphertext,
            kdf,
            kdfparams,
            mac: mac.to_vec(),
        },
    };
    // geth writes the address (lower-case hex, no 0x) next to the cipher section, so that
    // `account list` can name a keystore without its password; eth-keystore's type has no field.
    let mut json = serde_json::to_value(&keystore)?;
    let signer = alloy_signer_local::PrivateKeySigner::from_bytes(secret)
        .map_err(|e| SecretFileError::Key(e.to_string()))?;
    json["address"] = serde_json::Value::String(alloy_primitives::hex::encode(signer.address()));
    let path = dir.join(name.map_or_else(|| id.to_string(), str::to_string));
    write_secret_file(&path, serde_json::to_string(&json)?.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn written(kdf: Kdf) -> (tempfile::TempDir, PathBuf, alloy_signer_local::PrivateKeySigner) {
        let dir = tempfile::tempdir().unwrap();
        let signer = alloy_signer_local::PrivateKeySigner::random();
        let secret = B256::from(signer.to_bytes());
        let path =
            write_keystore(dir.path(), Some("k.json"), &secret, "pw", kdf, &mut rand::thread_rng()).unwrap();
        (dir, path, signer)
    }

    #[test]
    fn light_keystores_decrypt_and_are_private() {
        let (dir, path, signer) = written(Kdf::Light);
        assert_eq!(path, dir.path().join("k.json"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(crate::decrypt(&path, "pw").unwrap().address(), signer.address());
        assert!(matches!(crate::decrypt(&path, "wrong"), Err(crate::KeystoreError::WrongPassword { .. })));
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["crypto"]["kdfparams"]["n"], 4096);
        assert_eq!(json["crypto"]["kdfparams"]["p"], 6);
        assert_eq!(json["address"], alloy_primitives::hex::encode(signer.address()));
        // Never overwritten; no temporary file left behind.
        let secret = B256::from(signer.to_bytes());
        let again =
            write_keystore(dir.path(), Some("k.json"), &secret, "x", Kdf::Light, &mut rand::thread_rng());
        assert!(matches!(again, Err(SecretFileError::Exists(_))), "{again:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(crate::decrypt(&path, "pw").unwrap().address(), signer.address());
    }

    #[test]
    fn pbkdf2_keystores_decrypt_with_their_rounds() {
        let (_dir, path, signer) = written(Kdf::Pbkdf2 { rounds: 1_024 });
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["crypto"]["kdf"], "pbkdf2");
        assert_eq!(json["crypto"]["kdfparams"]["c"], 1_024);
        assert_eq!(json["crypto"]["kdfparams"]["prf"], "hmac-sha256");
        assert_eq!(crate::decrypt(&path, "pw").unwrap().address(), signer.address());
        assert!(crate::decrypt(&path, "wrong").is_err());
    }

    #[test]
    fn secret_files_are_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/password.txt");
        write_secret_file(&path, b"one\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(write_secret_file(&path, b"two\n"), Err(SecretFileError::Exists(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"one\n");
    }
}
