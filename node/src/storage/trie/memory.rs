//! The state trie copied into memory: every hashed leaf and stored branch node of the tables in
//! ordered maps, under the same walk and the same state-root code as the tables.
//!
//! It separates what the incremental root costs from what reading the tables costs:
//! `p2pe-triebench --in-memory` times [`MemoryState::state_root`] next to the stored tries' root
//! for the same changes and checks that both give the same root (BENCHMARKS.md, "The same walk
//! in memory"). The node never holds its state this way: a copy takes memory in proportion to
//! the whole state (about 150 bytes per storage word), which is what part 1 of issue 15 removed.

use std::collections::{BTreeMap, HashMap};

use alloy_primitives::B256;
use alloy_trie::{BranchNodeCompact, Nibbles, TrieAccount};
use rusqlite::Connection;

use super::nodes::{decode_node, key_path, key_range};
use super::source::TrieProvider;
use super::source::{account_leaf, account_row, changed_leaves, merge_leaves, storage_leaf, Overlay, Scope};
use super::state::{root_from, StateTrieUpdates};
use super::walk::TrieSource;
use crate::state::StateChanges;
use crate::storage::writer::{blob_b256, blob_u256};
use crate::storage::StorageError;

/// One trie in memory: its leaves (hashed key → leaf RLP) and its stored branch nodes by path.
#[derive(Debug, Default)]
struct MemoryTrie {
    leaves: BTreeMap<B256, Vec<u8>>,
    nodes: BTreeMap<Nibbles, BranchNodeCompact>,
}

/// A copy of the stored state trie in memory (see the module's documentation).
#[derive(Debug, Default)]
pub struct MemoryState {
    accounts: HashMap<B256, TrieAccount>,
    account_trie: MemoryTrie,
    storages: HashMap<B256, MemoryTrie>,
}

impl MemoryState {
    /// Copies the hashed accounts and storage and every stored branch node out of the tables.
    pub fn load(conn: &Connection) -> Result<Self, StorageError> {
        let mut state = Self::default();
        let mut st = conn
            .prepare("SELECT hashed_address, nonce, balance, code_hash, storage_root FROM hashed_accounts")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let (hashed, account) = (blob_b256(&r.get::<_, Vec<u8>>(0)?)?, account_row(r, 1)?);
            state.account_trie.leaves.insert(hashed, account_leaf(&account));
            state.accounts.insert(hashed, account);
        }
        let mut st = conn.prepare("SELECT path, node FROM account_trie")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let (path, node) = (key_path(&r.get::<_, Vec<u8>>(0)?)?, decode_node(&r.get::<_, Vec<u8>>(1)?)?);
            state.account_trie.nodes.insert(path, node);
        }
        let mut st = conn.prepare("SELECT hashed_address, hashed_slot, value FROM hashed_storage")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let owner = blob_b256(&r.get::<_, Vec<u8>>(0)?)?;
            let slot = blob_b256(&r.get::<_, Vec<u8>>(1)?)?;
            let leaf = storage_leaf(&blob_u256(&r.get::<_, Vec<u8>>(2)?)?);
            state.storages.entry(owner).or_default().leaves.insert(slot, leaf);
        }
        let mut st = conn.prepare("SELECT hashed_address, path, node FROM storage_trie")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let owner = blob_b256(&r.get::<_, Vec<u8>>(0)?)?;
            let (path, node) = (key_path(&r.get::<_, Vec<u8>>(1)?)?, decode_node(&r.get::<_, Vec<u8>>(2)?)?);
            state.storages.entry(owner).or_default().nodes.insert(path, node);
        }
        Ok(state)
    }

    /// The state root after `changes`, by the same computation as [`super::state_root`] on the
    /// tables (nothing is changed here either).
    pub fn state_root(&self, changes: &StateChanges) -> Result<(B256, StateTrieUpdates), StorageError> {
        root_from(self, changes)
    }

    /// Storage words held, over all accounts.
    pub fn storage_words(&self) -> usize {
        self.storages.values().map(|t| t.leaves.len()).sum()
    }
}

/// One trie of a [`MemoryState`] with a block's changes on top.
pub(crate) struct MemorySource<'a> {
    trie: Option<&'a MemoryTrie>,
    overlay: &'a Overlay,
}

impl TrieProvider for MemoryState {
    type Trie<'a>
        = MemorySource<'a>
    where
        Self: 'a;

    fn account(&self, hashed: &B256) -> Result<Option<TrieAccount>, StorageError> {
        Ok(self.accounts.get(hashed).cloned())
    }

    fn trie<'a>(&'a self, scope: Scope, overlay: &'a Overlay, wiped: bool) -> MemorySource<'a> {
        let trie = match scope {
            Scope::Accounts => Some(&self.account_trie),
            Scope::Storage(owner) => self.storages.get(&owner),
        };
        MemorySource { trie: trie.filter(|_| !wiped), overlay }
    }
}

impl TrieSource for MemorySource<'_> {
    fn node_under(&mut self, prefix: &Nibbles) -> Result<Option<(Nibbles, BranchNodeCompact)>, StorageError> {
        let first = self.trie.and_then(|t| t.nodes.range(*prefix..).next());
        Ok(first.filter(|(path, _)| path.starts_with(prefix)).map(|(path, node)| (*path, node.clone())))
    }

    fn leaves_under(&mut self, prefix: &Nibbles, out: &mut Vec<(B256, Vec<u8>)>) -> Result<(), StorageError> {
        let (lo, hi) = key_range(prefix);
        let stored =
            self.trie.into_iter().flat_map(|t| t.leaves.range(lo..=hi)).map(|(k, v)| (*k, v.clone()));
        merge_leaves(stored, self.overlay, prefix, out);
        Ok(())
    }

    fn changed_under(&self, prefix: &Nibbles, out: &mut Vec<(B256, Vec<u8>)>) {
        changed_leaves(self.overlay, prefix, out);
    }
}
