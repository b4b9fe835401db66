//! Merkle-Patricia roots of the account and storage tries, built with alloy-trie.
//!
//! Storage roots are cached per account and recomputed only for accounts a block touched
//! (see [`super::WorldState::state_root`]); the account trie is rebuilt from the sorted
//! hashed-address index, which costs one RLP encoding and a few hashes per account.

use std::collections::{BTreeMap, HashMap};

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_rlp::Encodable;
use alloy_trie::{HashBuilder, Nibbles, TrieAccount, EMPTY_ROOT_HASH};

use super::world::AccountEntry;

/// Root of one account's storage trie.
pub(crate) fn storage_root(storage: &HashMap<U256, U256>) -> B256 {
    if storage.is_empty() {
        return EMPTY_ROOT_HASH;
    }
    let mut leaves: Vec<(B256, U256)> =
        storage.iter().map(|(k, v)| (keccak256(k.to_be_bytes::<32>()), *v)).collect();
    leaves.sort_unstable_by_key(|(k, _)| *k);
    let mut hb = HashBuilder::default();
    for (key, value) in leaves {
        hb.add_leaf(Nibbles::unpack(key), alloy_rlp::encode_fixed_size(&value).as_ref());
    }
    hb.root()
}

/// Root of the account trie; every entry's storage root must be fresh.
pub(crate) fn account_root(
    hashed: &BTreeMap<B256, Address>,
    accounts: &HashMap<Address, AccountEntry>,
) -> B256 {
    if hashed.is_empty() {
        return EMPTY_ROOT_HASH;
    }
    let mut hb = HashBuilder::default();
    let mut buf = Vec::with_capacity(128);
    for (hashed_addr, addr) in hashed {
        let Some(entry) = accounts.get(addr) else { continue };
        buf.clear();
        trie_account(entry).encode(&mut buf);
        hb.add_leaf(Nibbles::unpack(hashed_addr), &buf);
    }
    hb.root()
}

/// The trie representation of an account entry.
pub(crate) fn trie_account(entry: &AccountEntry) -> TrieAccount {
    TrieAccount {
        nonce: entry.info.nonce,
        balance: entry.info.balance,
        storage_root: entry.storage_root,
        code_hash: entry.info.code_hash,
    }
}
