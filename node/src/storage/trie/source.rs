//! The trie tables in SQLite, seen through a block's changes (the overlay).

use std::collections::BTreeMap;

use alloy_primitives::{B256, U256};
use alloy_rlp::Encodable;
use alloy_trie::{BranchNodeCompact, Nibbles, TrieAccount};
use rusqlite::{params, Connection, OptionalExtension};

use super::nodes::{decode_node, key_path, key_range, path_key};
use super::walk::TrieSource;
use crate::storage::writer::{blob_b256, blob_u256, u256_blob};
use crate::storage::StorageError;

/// Leaf changes of one trie: hashed key → new leaf value (RLP), `None` to delete.
pub(crate) type Overlay = BTreeMap<B256, Option<Vec<u8>>>;

/// Which trie of the state.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    /// The account trie.
    Accounts,
    /// The storage trie of the account with this hashed address.
    Storage(B256),
}

/// One trie in the database, with a block's changes on top. With `wiped`, the stored trie is
/// ignored (the account's storage was cleared, or the trie is being built from nothing).
pub(crate) struct DbTrie<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) scope: Scope,
    pub(crate) overlay: &'a Overlay,
    pub(crate) wiped: bool,
}

/// Where a state root's inputs come from: the stored accounts and each trie's stored nodes and
/// leaves. The root's computation ([`super::state_root`]) is the same over the database
/// ([`DbTries`]) and over a copy held in memory ([`super::MemoryState`]).
pub(crate) trait TrieProvider {
    /// One trie as the walk reads it.
    type Trie<'a>: TrieSource
    where
        Self: 'a;
    /// The stored account with this hashed address.
    fn account(&self, hashed: &B256) -> Result<Option<TrieAccount>, StorageError>;
    /// The trie `scope` with `overlay` on top; with `wiped`, its stored nodes and leaves are
    /// ignored.
    fn trie<'a>(&'a self, scope: Scope, overlay: &'a Overlay, wiped: bool) -> Self::Trie<'a>;
}

/// The tries stored in the database, read on one connection.
pub(crate) struct DbTries<'a>(pub(crate) &'a Connection);

impl TrieProvider for DbTries<'_> {
    type Trie<'a>
        = DbTrie<'a>
    where
        Self: 'a;

    fn account(&self, hashed: &B256) -> Result<Option<TrieAccount>, StorageError> {
        stored_account(self.0, hashed)
    }

    fn trie<'a>(&'a self, scope: Scope, overlay: &'a Overlay, wiped: bool) -> DbTrie<'a> {
        DbTrie { conn: self.0, scope, overlay, wiped }
    }
}

/// The RLP of an account leaf.
pub(crate) fn account_leaf(account: &TrieAccount) -> Vec<u8> {
    let mut buf = Vec::with_capacity(110);
    account.encode(&mut buf);
    buf
}

/// The RLP of a storage leaf.
pub(crate) fn storage_leaf(value: &U256) -> Vec<u8> {
    alloy_rlp::encode_fixed_size(value).to_vec()
}

/// Reads a `hashed_accounts` row (columns: nonce, balance, code hash, storage root) from `start`.
pub(crate) fn account_row(r: &rusqlite::Row<'_>, start: usize) -> Result<TrieAccount, StorageError> {
    Ok(TrieAccount {
        nonce: r.get::<_, i64>(start)? as u64,
        balance: blob_u256(&r.get::<_, Vec<u8>>(start + 1)?)?,
        code_hash: blob_b256(&r.get::<_, Vec<u8>>(start + 2)?)?,
        storage_root: blob_b256(&r.get::<_, Vec<u8>>(start + 3)?)?,
    })
}

/// The stored account with this hashed address.
pub(crate) fn stored_account(conn: &Connection, hashed: &B256) -> Result<Option<TrieAccount>, StorageError> {
    let mut st = conn.prepare_cached(
        "SELECT nonce, balance, code_hash, storage_root FROM hashed_accounts WHERE hashed_address = ?1",
    )?;
    let row = st.query_row([hashed.as_slice()], |r| Ok(account_row(r, 0))).optional()?;
    row.transpose()
}

impl DbTrie<'_> {
    fn stored_leaves(&self, prefix: &Nibbles, out: &mut Vec<(B256, Vec<u8>)>) -> Result<(), StorageError> {
        let (lo, hi) = key_range(prefix);
        match self.scope {
            Scope::Accounts => {
                let mut st = self.conn.prepare_cached(
                    "SELECT hashed_address, nonce, balance, code_hash, storage_root FROM hashed_accounts \
                     WHERE hashed_address BETWEEN ?1 AND ?2 ORDER BY hashed_address",
                )?;
                let mut rows = st.query(params![lo.as_slice(), hi.as_slice()])?;
                while let Some(r) = rows.next()? {
                    out.push((blob_b256(&r.get::<_, Vec<u8>>(0)?)?, account_leaf(&account_row(r, 1)?)));
                }
            }
            Scope::Storage(owner) => {
                let mut st = self.conn.prepare_cached(
                    "SELECT hashed_slot, value FROM hashed_storage WHERE hashed_address = ?1 \
                     AND hashed_slot BETWEEN ?2 AND ?3 ORDER BY hashed_slot",
                )?;
                let mut rows = st.query(params![owner.as_slice(), lo.as_slice(), hi.as_slice()])?;
                while let Some(r) = rows.next()? {
                    let value = blob_u256(&r.get::<_, Vec<u8>>(1)?)?;
                    out.push((blob_b256(&r.get::<_, Vec<u8>>(0)?)?, storage_leaf(&value)));
                }
            }
        }
        Ok(())
    }
}

impl TrieSource for DbTrie<'_> {
    fn node_under(&mut self, prefix: &Nibbles) -> Result<Option<(Nibbles, BranchNodeCompact)>, StorageError> {
        if self.wiped {
            return Ok(None);
        }
        let key = path_key(prefix);
        let row: Option<(Vec<u8>, Vec<u8>)> = match self.scope {
            Scope::Accounts => self
                .conn
                .prepare_cached("SELECT path, node FROM account_trie WHERE path >= ?1 ORDER BY path LIMIT 1")?
                .query_row([&key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            Scope::Storage(owner) => self
                .conn
                .prepare_cached(
                    "SELECT path, node FROM storage_trie WHERE hashed_address = ?1 AND path >= ?2 \
                     ORDER BY path LIMIT 1",
                )?
                .query_row(params![owner.as_slice(), &key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
        };
        let Some((path, node)) = row else { return Ok(None) };
        let path = key_path(&path)?;
        if !path.starts_with(prefix) {
            return Ok(None);
        }
        Ok(Some((path, decode_node(&node)?)))
    }

    fn leaves_under(&mut self, prefix: &Nibbles, out: &mut Vec<(B256, Vec<u8>)>) -> Result<(), StorageError> {
        let mut stored = Vec::new();
        if !self.wiped {
            self.stored_leaves(prefix, &mut stored)?;
        }
        merge_leaves(stored, self.overlay, prefix, out);
        Ok(())
    }

    fn changed_under(&self, prefix: &Nibbles, out: &mut Vec<(B256, Vec<u8>)>) {
        changed_leaves(self.overlay, prefix, out);
    }
}

/// Merges the stored leaves under `prefix` (in key order) with the overlay's changes there into
/// `out`: a change replaces or deletes the stored leaf of its key, and added keys go in order.
pub(crate) fn merge_leaves(
    stored: impl IntoIterator<Item = (B256, Vec<u8>)>,
    overlay: &Overlay,
    prefix: &Nibbles,
    out: &mut Vec<(B256, Vec<u8>)>,
) {
    let (lo, hi) = key_range(prefix);
    let mut changes = overlay.range(lo..=hi).peekable();
    for (key, value) in stored {
        while let Some((k, v)) = changes.next_if(|(k, _)| **k < key) {
            if let Some(v) = v {
                out.push((*k, v.clone()));
            }
        }
        match changes.next_if(|(k, _)| **k == key) {
            Some((_, Some(v))) => out.push((key, v.clone())),
            Some((_, None)) => {}
            None => out.push((key, value)),
        }
    }
    out.extend(changes.filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.clone()))));
}

/// The leaves the overlay adds or updates under `prefix`, in key order.
pub(crate) fn changed_leaves(overlay: &Overlay, prefix: &Nibbles, out: &mut Vec<(B256, Vec<u8>)>) {
    let (lo, hi) = key_range(prefix);
    out.extend(overlay.range(lo..=hi).filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.clone()))));
}

/// The removed paths no new node replaces: a walk lists every stored node it enters as removed,
/// and most come back with new hashes, where `INSERT OR REPLACE` is one B-tree write instead of a
/// delete and an insert (`nodes` is sorted by path).
fn gone(updates: &super::TrieUpdates) -> impl Iterator<Item = &Nibbles> {
    updates.removed.iter().filter(|path| updates.nodes.binary_search_by(|(p, _)| p.cmp(path)).is_err())
}

/// Writes one trie's node changes.
pub(crate) fn write_nodes(
    conn: &Connection,
    scope: Scope,
    updates: &super::TrieUpdates,
) -> Result<(), StorageError> {
    match scope {
        Scope::Accounts => {
            let mut del = conn.prepare_cached("DELETE FROM account_trie WHERE path = ?1")?;
            for path in gone(updates) {
                del.execute([path_key(path)])?;
            }
            let mut put =
                conn.prepare_cached("INSERT OR REPLACE INTO account_trie (path, node) VALUES (?1, ?2)")?;
            for (path, node) in &updates.nodes {
                put.execute(params![path_key(path), super::nodes::encode_node(node)])?;
            }
        }
        Scope::Storage(owner) => {
            let mut del =
                conn.prepare_cached("DELETE FROM storage_trie WHERE hashed_address = ?1 AND path = ?2")?;
            for path in gone(updates) {
                del.execute(params![owner.as_slice(), path_key(path)])?;
            }
            let mut put = conn.prepare_cached(
                "INSERT OR REPLACE INTO storage_trie (hashed_address, path, node) VALUES (?1, ?2, ?3)",
            )?;
            for (path, node) in &updates.nodes {
                put.execute(params![owner.as_slice(), path_key(path), super::nodes::encode_node(node)])?;
            }
        }
    }
    Ok(())
}

/// Writes a storage value to the hashed table (zero deletes).
pub(crate) fn write_hashed_slot(
    conn: &Connection,
    owner: &B256,
    slot: &B256,
    value: &U256,
) -> Result<(), StorageError> {
    if value.is_zero() {
        conn.prepare_cached("DELETE FROM hashed_storage WHERE hashed_address = ?1 AND hashed_slot = ?2")?
            .execute(params![owner.as_slice(), slot.as_slice()])?;
    } else {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO hashed_storage (hashed_address, hashed_slot, value) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![owner.as_slice(), slot.as_slice(), u256_blob(value)])?;
    }
    Ok(())
}
