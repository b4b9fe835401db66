//! The state root of a block from the stored tries and the block's changes, and writing the
//! result in the block's transaction.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_trie::{HashBuilder, Nibbles, TrieAccount, EMPTY_ROOT_HASH};
use revm::primitives::KECCAK_EMPTY;
use rusqlite::{params, Connection};

use super::nodes::PrefixSet;
use super::source::{
    account_leaf, storage_leaf, write_hashed_slot, write_nodes, DbTries, Overlay, Scope, TrieProvider,
};
use super::walk::{root_of, TrieUpdates};
use crate::state::StateChanges;
use crate::storage::writer::u256_blob;
use crate::storage::StorageError;

/// What one storage trie gains and loses in a block.
#[derive(Debug, Default, Clone)]
pub struct StorageTrieUpdate {
    /// All stored slots and nodes of the account go first (cleared or deleted account).
    pub wiped: bool,
    /// Hashed slot → new value (zero deletes).
    pub slots: BTreeMap<B256, U256>,
    /// Node changes.
    pub nodes: TrieUpdates,
}

/// Everything a block changes in the stored state trie, computed before the block is committed
/// and written in its transaction by [`write_updates`].
#[derive(Debug, Default, Clone)]
pub struct StateTrieUpdates {
    /// Hashed address → new account leaf (`None` deletes the account).
    pub accounts: BTreeMap<B256, Option<TrieAccount>>,
    /// Node changes of the account trie.
    pub account_nodes: TrieUpdates,
    /// Storage trie changes by hashed address.
    pub storages: BTreeMap<B256, StorageTrieUpdate>,
}

/// The leaf changes of an account's storage.
fn storage_overlay(slots: &BTreeMap<B256, U256>) -> Overlay {
    slots.iter().map(|(k, v)| (*k, (!v.is_zero()).then(|| storage_leaf(v)))).collect()
}

/// Computes the state root after `changes`, from the tries stored on `conn` (which must hold
/// the state the changes apply to) and the changes as an overlay. Nothing is written.
///
/// Semantics follow [`crate::state::WorldState::apply`]: a wipe clears storage before the new
/// slots apply; storage written to an account that does not exist creates it empty; a deleted
/// account loses its storage.
pub fn state_root(
    conn: &Connection,
    changes: &StateChanges,
) -> Result<(B256, StateTrieUpdates), StorageError> {
    root_from(&DbTries(conn), changes)
}

/// [`state_root`] over any [`TrieProvider`]: the database's tables or a copy in memory.
pub(crate) fn root_from(
    provider: &impl TrieProvider,
    changes: &StateChanges,
) -> Result<(B256, StateTrieUpdates), StorageError> {
    let mut updates = StateTrieUpdates::default();
    let addresses: BTreeSet<&Address> =
        changes.accounts.keys().chain(changes.storage.keys()).chain(changes.wiped.iter()).collect();
    for address in addresses {
        let hashed = keccak256(address);
        let stored = provider.account(&hashed)?;
        let info = match changes.accounts.get(address) {
            Some(None) => {
                updates.accounts.insert(hashed, None);
                updates.storages.insert(hashed, StorageTrieUpdate { wiped: true, ..Default::default() });
                continue;
            }
            Some(Some(info)) => (info.nonce, info.balance, info.code_hash),
            None => match &stored {
                Some(a) => (a.nonce, a.balance, a.code_hash),
                None if changes.storage.contains_key(address) => (0, U256::ZERO, KECCAK_EMPTY),
                None => continue,
            },
        };
        let wiped = stored.is_none() || changes.wiped.contains(address);
        let slots: BTreeMap<B256, U256> = changes
            .storage
            .get(address)
            .map(|s| s.iter().map(|(k, v)| (keccak256(k.to_be_bytes::<32>()), *v)).collect())
            .unwrap_or_default();
        let storage_root = if wiped || !slots.is_empty() {
            let overlay = storage_overlay(&slots);
            let changed = PrefixSet::new(slots.keys().map(Nibbles::unpack).collect());
            let mut source = provider.trie(Scope::Storage(hashed), &overlay, wiped);
            let (root, nodes, _) = root_of(&mut source, &changed, HashBuilder::default())?;
            updates.storages.insert(hashed, StorageTrieUpdate { wiped, slots, nodes });
            root
        } else {
            stored.as_ref().map(|a| a.storage_root).unwrap_or(EMPTY_ROOT_HASH)
        };
        let (nonce, balance, code_hash) = info;
        updates.accounts.insert(hashed, Some(TrieAccount { nonce, balance, storage_root, code_hash }));
    }
    let overlay: Overlay = updates.accounts.iter().map(|(k, a)| (*k, a.as_ref().map(account_leaf))).collect();
    let changed = PrefixSet::new(overlay.keys().map(Nibbles::unpack).collect());
    let mut source = provider.trie(Scope::Accounts, &overlay, false);
    let (root, nodes, _) = root_of(&mut source, &changed, HashBuilder::default())?;
    updates.account_nodes = nodes;
    Ok((root, updates))
}

/// Writes a block's trie changes (leaves and nodes) on `conn`, inside the block's transaction.
pub fn write_updates(conn: &Connection, updates: &StateTrieUpdates) -> Result<(), StorageError> {
    for (owner, storage) in &updates.storages {
        if storage.wiped {
            conn.prepare_cached("DELETE FROM hashed_storage WHERE hashed_address = ?1")?
                .execute([owner.as_slice()])?;
            conn.prepare_cached("DELETE FROM storage_trie WHERE hashed_address = ?1")?
                .execute([owner.as_slice()])?;
        }
        for (slot, value) in &storage.slots {
            write_hashed_slot(conn, owner, slot, value)?;
        }
        write_nodes(conn, Scope::Storage(*owner), &storage.nodes)?;
    }
    let mut put = conn.prepare_cached(
        "INSERT OR REPLACE INTO hashed_accounts (hashed_address, nonce, balance, code_hash, storage_root) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut del = conn.prepare_cached("DELETE FROM hashed_accounts WHERE hashed_address = ?1")?;
    for (hashed, account) in &updates.accounts {
        match account {
            Some(a) => put.execute(params![
                hashed.as_slice(),
                a.nonce as i64,
                u256_blob(&a.balance),
                a.code_hash.as_slice(),
                a.storage_root.as_slice()
            ])?,
            None => del.execute([hashed.as_slice()])?,
        };
    }
    write_nodes(conn, Scope::Accounts, &updates.account_nodes)
}

/// The state changes that undo a block, from its undo record: every account and slot goes back
/// to the value it had before the block (the first recorded old value of each).
pub fn undo_changes(undo: &crate::state::StateUndo) -> StateChanges {
    let mut changes = StateChanges::default();
    for (address, old) in undo.accounts.iter().rev() {
        changes.accounts.insert(*address, *old);
    }
    for (address, slot, old) in undo.storage.iter().rev() {
        changes.storage.entry(*address).or_default().insert(*slot, *old);
    }
    changes
}
