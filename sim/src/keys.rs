//! Keys of the simulated community, all derived from the dev mnemonic (BIP-44 path
//! `m/44'/60'/0'/0/<index>`):
//!
//! | index | key |
//! | --- | --- |
//! | 0 | operator (registry admin, token minter; also the keeper that clears and settles) |
//! | 99 | grid operator's account (set up by `p2pe-node dev`) |
//! | 100–109 | meters of the dev accounts 0–9 (set up by `p2pe-node dev`, unused here) |
//! | [`HOUSEHOLD_INDEX_BASE`] + i | household *i*'s trading account (i = 0, 1, …) |
//! | [`METER_INDEX_BASE`] + i | household *i*'s meter key |
//!
//! Meter keys go to the bridge as Web3 Secret Storage keystores. The simulator writes them with a
//! deliberately cheap KDF (PBKDF2-HMAC-SHA256, [`KEYSTORE_PBKDF2_ROUNDS`] rounds): they protect
//! throwaway keys of the public test mnemonic, and hundreds of them must be written and decrypted
//! at every start. Real meters use keystores made with `p2pe-node account new` (scrypt).

use std::path::Path;

use aes::cipher::{KeyIvInit, StreamCipher};
use alloy_primitives::{hex, keccak256};
use alloy_signer_local::coins_bip39::English;
use alloy_signer_local::{MnemonicBuilder, MnemonicKey, PrivateKeySigner};
use rand::RngCore;

/// The well-known development mnemonic (the same as anvil's and `p2pe-node dev`'s).
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
/// Mnemonic index of household *i*'s account: `HOUSEHOLD_INDEX_BASE + i`.
pub const HOUSEHOLD_INDEX_BASE: u32 = 10_000;
/// Mnemonic index of household *i*'s meter: `METER_INDEX_BASE + i`.
pub const METER_INDEX_BASE: u32 = 20_000;
/// Most households (their key indexes must not overlap the meters').
pub const MAX_HOUSEHOLDS: usize = (METER_INDEX_BASE - HOUSEHOLD_INDEX_BASE) as usize;
/// PBKDF2 rounds of the simulator's meter keystores.
pub const KEYSTORE_PBKDF2_ROUNDS: u32 = 1_024;

/// Derives keys of one mnemonic without re-running the seed's PBKDF2 for every key.
pub struct KeyDeriver {
    parent: MnemonicKey,
}

impl KeyDeriver {
    /// The deriver of `mnemonic` at `m/44'/60'/0'/0`.
    pub fn new(mnemonic: &str) -> anyhow::Result<Self> {
        let parent = MnemonicBuilder::<English>::default()
            .phrase(mnemonic)
            .index(0)?
            .build_parent_key()
            .map_err(|e| anyhow::anyhow!("invalid mnemonic: {e}"))?;
        Ok(Self { parent })
    }

    /// The key at `m/44'/60'/0'/0/<index>`.
    pub fn key(&self, index: u32) -> anyhow::Result<PrivateKeySigner> {
        Ok(self.parent.child(index)?.signer())
    }
}

/// Writes `signer`'s key to `path` as a Web3 Secret Storage (v3) keystore encrypted with `password`
/// (PBKDF2-HMAC-SHA256 with [`KEYSTORE_PBKDF2_ROUNDS`] rounds, AES-128-CTR, Keccak-256 MAC), mode
/// 0600, atomically ([`write_private`]).
pub fn write_keystore(path: &Path, signer: &PrivateKeySigner, password: &str) -> std::io::Result<()> {
    let mut rng = rand::thread_rng();
    let mut salt = [0u8; 32];
    let mut iv = [0u8; 16];
    let mut uuid = [0u8; 16];
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut iv);
    rng.fill_bytes(&mut uuid);
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, KEYSTORE_PBKDF2_ROUNDS, &mut key);
    let mut ciphertext = signer.to_bytes().to_vec();
    let mut cipher = ctr::Ctr128BE::<aes::Aes128>::new(key[..16].into(), (&iv).into());
    cipher.apply_keystream(&mut ciphertext);
    let mut mac_input = key[16..32].to_vec();
    mac_input.extend_from_slice(&ciphertext);
    let mac = keccak256(&mac_input);
    let u = hex::encode(uuid);
    let id = format!("{}-{}-{}-{}-{}", &u[0..8], &u[8..12], &u[12..16], &u[16..20], &u[20..32]);
    let json = serde_json::json!({
        "address": hex::encode(signer.address()),
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": hex::encode(iv)},
            "ciphertext": hex::encode(&ciphertext),
            "kdf": "pbkdf2",
            "kdfparams": {"c": KEYSTORE_PBKDF2_ROUNDS, "dklen": 32, "prf": "hmac-sha256", "salt": hex::encode(salt)},
            "mac": hex::encode(mac),
        },
        "id": id,
        "version": 3,
    });
    write_private(path, (serde_json::to_string_pretty(&json).expect("json") + "\n").as_bytes())
}

/// Writes `bytes` to `path` with mode 0600 from the start, atomically: a temporary file in the
/// same directory (created 0600 by `tempfile`) is written, flushed to disk and renamed over `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_matches_the_dev_accounts() {
        let d = KeyDeriver::new(DEV_MNEMONIC).unwrap();
        // Account 0 of the test mnemonic (anvil's first account).
        assert_eq!(
            d.key(0).unwrap().address(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".parse::<alloy_primitives::Address>().unwrap()
        );
        let direct = MnemonicBuilder::<English>::default()
            .phrase(DEV_MNEMONIC)
            .index(10_003)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(d.key(10_003).unwrap().address(), direct.address());
    }

    #[test]
    fn keystores_decrypt_with_alloy() {
        let dir = tempfile::tempdir().unwrap();
        let signer = KeyDeriver::new(DEV_MNEMONIC).unwrap().key(METER_INDEX_BASE + 3).unwrap();
        let path = dir.path().join("k.json");
        write_keystore(&path, &signer, "pw").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let back = PrivateKeySigner::decrypt_keystore(&path, "pw").unwrap();
        assert_eq!(back.address(), signer.address());
        assert!(PrivateKeySigner::decrypt_keystore(&path, "wrong").is_err());
    }
}
