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

use alloy_primitives::B256;
use alloy_signer_local::coins_bip39::English;
use alloy_signer_local::{MnemonicBuilder, MnemonicKey, PrivateKeySigner};
use anyhow::Context;
use p2pe_keystore::Kdf;

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

/// Writes `signer`'s key to the new file `path` as a Web3 Secret Storage (v3) keystore encrypted
/// with `password` (PBKDF2-HMAC-SHA256 with [`KEYSTORE_PBKDF2_ROUNDS`] rounds), mode 0600,
/// atomically, never over an existing file ([`p2pe_keystore::write_keystore`]).
pub fn write_keystore(path: &Path, signer: &PrivateKeySigner, password: &str) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).context("a keystore's file name")?;
    let kdf = Kdf::Pbkdf2 { rounds: KEYSTORE_PBKDF2_ROUNDS };
    let secret = B256::from(signer.to_bytes());
    p2pe_keystore::write_keystore(dir, Some(name), &secret, password, kdf, &mut rand::thread_rng())?;
    Ok(())
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
