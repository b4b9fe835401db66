//! Deterministic key derivation for the funder and the senders.
//!
//! All keys come from one BIP-39 mnemonic along the standard Ethereum path
//! `m/44'/60'/0'/0/i`. Index 0 is the funder (prefunded on anvil and on the
//! `p2pe-node dev` chain); the senders use indexes starting at
//! [`DEFAULT_SENDER_INDEX_BASE`], so they never collide with the ten dev
//! accounts.

use alloy_signer_local::{coins_bip39::English, MnemonicBuilder, PrivateKeySigner};

use super::LoadgenError;

/// The well-known Foundry/Hardhat test mnemonic; its first ten accounts are
/// prefunded by anvil and by `p2pe-node dev`.
pub const DEFAULT_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// First derivation index used for sender accounts.
pub const DEFAULT_SENDER_INDEX_BASE: u32 = 1000;

/// The funder (index 0) and the senders derived from one mnemonic.
pub struct Keys {
    /// Account that pays for funding and deploys the contract.
    pub funder: PrivateKeySigner,
    /// Accounts that send the measured transactions.
    pub senders: Vec<PrivateKeySigner>,
}

/// Derives the funder (index 0) and `count` senders starting at `base`.
///
/// The error never contains key material.
pub fn derive(mnemonic: &str, base: u32, count: usize) -> Result<Keys, LoadgenError> {
    let parent = MnemonicBuilder::<English>::default()
        .phrase(mnemonic)
        .build_parent_key()
        .map_err(|e| LoadgenError::Keys(format!("bad mnemonic: {e}")))?;
    let funder = parent.child(0).map_err(|e| LoadgenError::Keys(format!("index 0: {e}")))?.signer();
    let count_u32 =
        u32::try_from(count).map_err(|_| LoadgenError::Config(format!("too many senders: {count}")))?;
    if base.checked_add(count_u32).is_none_or(|end| end >= 1 << 31) {
        return Err(LoadgenError::Config(format!(
            "sender indexes {base}..{base}+{count} leave the non-hardened range"
        )));
    }
    let senders = (0..count_u32)
        .map(|i| {
            parent
                .child(base + i)
                .map(|k| k.signer())
                .map_err(|e| LoadgenError::Keys(format!("index {}: {e}", base + i)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Keys { funder, senders })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn funder_is_anvil_account_zero() {
        let keys = derive(DEFAULT_MNEMONIC, DEFAULT_SENDER_INDEX_BASE, 2).expect("derive");
        assert_eq!(keys.funder.address().to_string(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        assert_eq!(keys.senders.len(), 2);
        assert_ne!(keys.senders[0].address(), keys.senders[1].address());
    }
}
