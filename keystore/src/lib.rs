//! Web3 Secret Storage keystores (version 3) as users already have them: written by geth, by
//! ethers.js (which names the cipher section `"Crypto"`), by web3.py's eth-account, or by
//! `p2pe-node account new`.
//!
//! Decryption is eth-keystore's (through alloy-signer-local's types); this crate only reads the file
//! defensively and puts the document into the form that library reads:
//! - the file is at most [`MAX_KEYSTORE_BYTES`] and a JSON object of version 3;
//! - the cipher section may be named `crypto` or `Crypto` (ethers.js);
//! - the key-derivation parameters are bounded ([`MAX_SCRYPT_N`], [`MAX_PBKDF2_ROUNDS`]), so a
//!   crafted file cannot make the process spend gigabytes or minutes before the MAC check.
//!
//! Writing ([`write_keystore`], [`write_secret_file`]): keystores with geth's scrypt cost or a
//! chosen PBKDF2 cost, and every secret file 0600 from the start, atomically, never replaced.
//!
//! Key material never appears in an error message or a log line.

use std::path::{Path, PathBuf};

mod write;
pub use write::{write_keystore, write_secret_file, Kdf, SecretFileError};

use alloy_signer_local::PrivateKeySigner;
use serde_json::{Map, Value};

/// Largest keystore file read (they are about 500 bytes).
pub const MAX_KEYSTORE_BYTES: u64 = 64 * 1024;
/// Largest scrypt cost parameter accepted (geth's "standard" is 2^18; 2^20 needs 1 GiB).
pub const MAX_SCRYPT_N: u64 = 1 << 20;
/// Most PBKDF2 rounds accepted (the specification's test vector uses 262,144).
pub const MAX_PBKDF2_ROUNDS: u64 = 10_000_000;

/// Why a keystore cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The file cannot be read.
    #[error("cannot read keystore {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than a keystore can be.
    #[error("keystore {} is {size} bytes; a keystore is at most {MAX_KEYSTORE_BYTES}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file is not a version-3 keystore.
    #[error("{} is not a Web3 Secret Storage (version 3) keystore: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The password does not open it (or the file was altered).
    #[error("cannot decrypt keystore {}: wrong password, or the file was altered (MAC mismatch)", path.display())]
    WrongPassword {
        /// The file.
        path: PathBuf,
    },
    /// Decryption failed otherwise.
    #[error("cannot decrypt keystore {}: {reason}", path.display())]
    Decrypt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn format_err(path: &Path, reason: impl Into<String>) -> KeystoreError {
    KeystoreError::Format { path: path.to_path_buf(), reason: reason.into() }
}

/// Reads the keystore at `path` and returns it in the form eth-keystore reads (`crypto` in lower
/// case), after checking its version and bounding its key-derivation cost.
pub fn normalize(path: &Path) -> Result<Value, KeystoreError> {
    let read = |source| KeystoreError::Read { path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_KEYSTORE_BYTES {
        return Err(KeystoreError::TooLarge { path: path.to_path_buf(), size });
    }
    let text = std::fs::read(path).map_err(read)?;
    let Value::Object(mut doc) =
        serde_json::from_slice(&text).map_err(|e| format_err(path, format!("not JSON ({e})")))?
    else {
        return Err(format_err(path, "not a JSON object"));
    };
    if doc.get("version").and_then(Value::as_u64) != Some(3) {
        return Err(format_err(path, "\"version\" is not 3"));
    }
    let crypto = match (doc.remove("crypto"), doc.remove("Crypto")) {
        (Some(c), None) | (None, Some(c)) => c,
        (None, None) => return Err(format_err(path, "no \"crypto\" section")),
        (Some(_), Some(_)) => return Err(format_err(path, "both \"crypto\" and \"Crypto\" sections")),
    };
    let Value::Object(crypto) = crypto else {
        return Err(format_err(path, "\"crypto\" is not an object"));
    };
    check_kdf(path, &crypto)?;
    doc.insert("crypto".into(), Value::Object(crypto));
    Ok(Value::Object(doc))
}

/// Bounds the key-derivation parameters before anything derives a key from them.
fn check_kdf(path: &Path, crypto: &Map<String, Value>) -> Result<(), KeystoreError> {
    let params = crypto.get("kdfparams").and_then(Value::as_object);
    let param = |k: &str| params.and_then(|p| p.get(k)).and_then(Value::as_u64);
    if param("dklen") != Some(32) {
        return Err(format_err(path, "kdfparams.dklen must be 32"));
    }
    match crypto.get("kdf").and_then(Value::as_str) {
        Some("scrypt") => match param("n") {
            Some(n) if n <= MAX_SCRYPT_N => Ok(()),
            Some(n) => Err(format_err(path, format!("scrypt n = {n} is over the limit of {MAX_SCRYPT_N}"))),
            None => Err(format_err(path, "kdfparams.n is missing")),
        },
        Some("pbkdf2") => match param("c") {
            Some(c) if c <= MAX_PBKDF2_ROUNDS => Ok(()),
            Some(c) => {
                Err(format_err(path, format!("pbkdf2 c = {c} is over the limit of {MAX_PBKDF2_ROUNDS}")))
            }
            None => Err(format_err(path, "kdfparams.c is missing")),
        },
        other => Err(format_err(path, format!("unknown kdf {other:?} (scrypt or pbkdf2)"))),
    }
}

/// Decrypts the keystore at `path` with `password`.
pub fn decrypt(path: &Path, password: impl AsRef<[u8]>) -> Result<PrivateKeySigner, KeystoreError> {
    let doc = normalize(path)?;
    // eth-keystore reads from a path: the normalised document (still encrypted) goes to a private
    // temporary file (0600), removed when it is dropped.
    let decrypt_err = |reason: String| KeystoreError::Decrypt { path: path.to_path_buf(), reason };
    let tmp = tempfile::NamedTempFile::new().map_err(|e| decrypt_err(format!("temporary file: {e}")))?;
    std::fs::write(tmp.path(), doc.to_string()).map_err(|e| decrypt_err(format!("temporary file: {e}")))?;
    PrivateKeySigner::decrypt_keystore(tmp.path(), password).map_err(|e| {
        let reason = e.to_string();
        if reason.contains("Mac Mismatch") {
            KeystoreError::WrongPassword { path: path.to_path_buf() }
        } else {
            decrypt_err(reason)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Web3 Secret Storage definition's PBKDF2 test vector (password "testpassword").
    const SPEC_PBKDF2: &str = r#"{"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"6087dab2f9fdbbfaddc31a909735c1e6"},"ciphertext":"5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46","kdf":"pbkdf2","kdfparams":{"c":262144,"dklen":32,"prf":"hmac-sha256","salt":"ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},"mac":"517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"},"id":"3198bc9c-6672-5ab3-d995-4942343ae5b6","version":3}"#;
    const SPEC_KEY: &str = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn key_hex(s: &PrivateKeySigner) -> String {
        s.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_specification_vector_opens_with_either_spelling_of_crypto() {
        let dir = tempfile::tempdir().unwrap();
        let lower = file(&dir, "lower.json", SPEC_PBKDF2);
        assert_eq!(key_hex(&decrypt(&lower, "testpassword").unwrap()), SPEC_KEY);
        let upper = file(&dir, "upper.json", &SPEC_PBKDF2.replace("\"crypto\"", "\"Crypto\""));
        assert_eq!(key_hex(&decrypt(&upper, "testpassword").unwrap()), SPEC_KEY, "ethers.js spelling");
        let e = decrypt(&lower, "wrong").unwrap_err();
        assert!(matches!(e, KeystoreError::WrongPassword { .. }), "{e}");
        assert!(e.to_string().contains("lower.json"));
    }

    #[test]
    fn malformed_files_get_a_reason_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("garbage", "not JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"version":1,"crypto":{}}"#, "version"),
            (r#"{"version":3}"#, "no \"crypto\""),
            (r#"{"version":3,"crypto":{},"Crypto":{}}"#, "both"),
            (r#"{"version":3,"crypto":{"kdf":"md5","kdfparams":{"dklen":32}}}"#, "unknown kdf"),
        ];
        for (i, (text, reason)) in cases.iter().enumerate() {
            let p = file(&dir, &format!("{i}.json"), text);
            let e = decrypt(&p, "x").unwrap_err().to_string();
            assert!(e.contains(reason) && e.contains(&format!("{i}.json")), "{text}: {e}");
        }
        let e = decrypt(&dir.path().join("missing.json"), "x").unwrap_err();
        assert!(matches!(e, KeystoreError::Read { .. }), "{e}");
    }

    #[test]
    fn key_derivation_cost_is_bounded_under_at_and_over() {
        let dir = tempfile::tempdir().unwrap();
        let with_c = |c: u64| SPEC_PBKDF2.replace("\"c\":262144", &format!("\"c\":{c}"));
        // At the limit the file is accepted as far as the cost goes (the MAC then fails: another c).
        let at = file(&dir, "at.json", &with_c(MAX_PBKDF2_ROUNDS));
        assert!(normalize(&at).is_ok());
        let over = file(&dir, "over.json", &with_c(MAX_PBKDF2_ROUNDS + 1));
        assert!(decrypt(&over, "testpassword").unwrap_err().to_string().contains("over the limit"));
        let scrypt = |n: u64| {
            format!(
                r#"{{"version":3,"crypto":{{"kdf":"scrypt","kdfparams":{{"dklen":32,"n":{n},"r":8,"p":1,"salt":"00"}}}}}}"#
            )
        };
        assert!(normalize(&file(&dir, "s-at.json", &scrypt(MAX_SCRYPT_N))).is_ok());
        let e = normalize(&file(&dir, "s-over.json", &scrypt(MAX_SCRYPT_N * 2))).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        let big = file(&dir, "big.json", &" ".repeat(MAX_KEYSTORE_BYTES as usize + 1));
        assert!(matches!(normalize(&big), Err(KeystoreError::TooLarge { .. })));
    }
}
