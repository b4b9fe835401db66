//! Full builds: filling the trie tables from the plain state (new or migrated data
//! directories) and checking the stored tries against a rebuild (`p2pe-node check`).

use std::collections::BTreeMap;

use alloy_primitives::{keccak256, B256};
use alloy_trie::{BranchNodeCompact, HashBuilder, Nibbles};
use rusqlite::{params, Connection};

use super::nodes::{decode_node, key_path};
use super::source::{account_leaf, account_row, storage_leaf, write_nodes, Scope};
use super::walk::TrieUpdates;
use crate::storage::writer::{blob_address, blob_b256, blob_u256, u256_blob};
use crate::storage::StorageError;

/// Root and branch nodes of one trie, built from all its leaves with `HashBuilder` (streamed in
/// key order from the hashed tables; nothing stored is used).
pub(crate) fn full_trie(
    conn: &Connection,
    scope: Scope,
) -> Result<(B256, Vec<(Nibbles, BranchNodeCompact)>), StorageError> {
    let mut hb = HashBuilder::default().with_updates(true);
    match scope {
        Scope::Accounts => {
            let mut st = conn.prepare_cached(
                "SELECT hashed_address, nonce, balance, code_hash, storage_root FROM hashed_accounts ORDER BY hashed_address",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let key = blob_b256(&r.get::<_, Vec<u8>>(0)?)?;
                hb.add_leaf(Nibbles::unpack(key), &account_leaf(&account_row(r, 1)?));
            }
        }
        Scope::Storage(owner) => {
            let mut st = conn.prepare_cached(
                "SELECT hashed_slot, value FROM hashed_storage WHERE hashed_address = ?1 ORDER BY hashed_slot",
            )?;
            let mut rows = st.query([owner.as_slice()])?;
            while let Some(r) = rows.next()? {
                let key = blob_b256(&r.get::<_, Vec<u8>>(0)?)?;
                hb.add_leaf(Nibbles::unpack(key), &storage_leaf(&blob_u256(&r.get::<_, Vec<u8>>(1)?)?));
            }
        }
    }
    let root = hb.root();
    let (_, updated) = hb.split();
    let mut nodes: Vec<_> = updated.into_iter().collect();
    nodes.sort_unstable_by_key(|n| n.0);
    Ok((root, nodes))
}

/// Fills the hashed tables and the stored tries from the plain `accounts` and `storage`
/// tables, replacing whatever they held. Returns the state root.
pub fn rebuild(conn: &Connection) -> Result<B256, StorageError> {
    conn.execute_batch("DELETE FROM hashed_storage;")?;
    {
        let mut put = conn.prepare_cached(
            "INSERT OR REPLACE INTO hashed_storage (hashed_address, hashed_slot, value) \
             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM accounts WHERE address = ?4)",
        )?;
        let mut st = conn.prepare("SELECT address, slot, value FROM storage")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let address = blob_address(&r.get::<_, Vec<u8>>(0)?)?;
            let slot = blob_u256(&r.get::<_, Vec<u8>>(1)?)?;
            let value = blob_u256(&r.get::<_, Vec<u8>>(2)?)?;
            if value.is_zero() {
                continue;
            }
            let hashed_slot = keccak256(slot.to_be_bytes::<32>());
            put.execute(params![
                keccak256(address).as_slice(),
                hashed_slot.as_slice(),
                u256_blob(&value),
                address.as_slice()
            ])?;
        }
    }
    rebuild_tries(conn)
}

/// Rebuilds the hashed accounts and every stored trie from the plain accounts and the hashed
/// storage (which must already match the plain storage). Returns the state root.
pub fn rebuild_tries(conn: &Connection) -> Result<B256, StorageError> {
    conn.execute_batch("DELETE FROM hashed_accounts; DELETE FROM account_trie; DELETE FROM storage_trie;")?;
    let mut accounts = Vec::new();
    {
        let mut st = conn.prepare("SELECT address, nonce, balance, code_hash FROM accounts")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let address = blob_address(&r.get::<_, Vec<u8>>(0)?)?;
            let raw: (i64, Vec<u8>, Vec<u8>) = (r.get(1)?, r.get(2)?, r.get(3)?);
            accounts.push((keccak256(address), raw));
        }
    }
    let mut put = conn.prepare_cached(
        "INSERT INTO hashed_accounts (hashed_address, nonce, balance, code_hash, storage_root) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (hashed, (nonce, balance, code_hash)) in accounts {
        let (storage_root, nodes) = full_trie(conn, Scope::Storage(hashed))?;
        write_nodes(conn, Scope::Storage(hashed), &TrieUpdates { removed: vec![], nodes })?;
        put.execute(params![hashed.as_slice(), nonce, balance, code_hash, storage_root.as_slice()])?;
    }
    let (root, nodes) = full_trie(conn, Scope::Accounts)?;
    write_nodes(conn, Scope::Accounts, &TrieUpdates { removed: vec![], nodes })?;
    Ok(root)
}

/// The stored nodes of one trie, by path.
fn stored_nodes(
    conn: &Connection,
    scope: Scope,
) -> Result<BTreeMap<Nibbles, BranchNodeCompact>, StorageError> {
    let mut out = BTreeMap::new();
    let mut push = |path: Vec<u8>, node: Vec<u8>| -> Result<(), StorageError> {
        out.insert(key_path(&path)?, decode_node(&node)?);
        Ok(())
    };
    match scope {
        Scope::Accounts => {
            let mut st = conn.prepare_cached("SELECT path, node FROM account_trie")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                push(r.get(0)?, r.get(1)?)?;
            }
        }
        Scope::Storage(owner) => {
            let mut st =
                conn.prepare_cached("SELECT path, node FROM storage_trie WHERE hashed_address = ?1")?;
            let mut rows = st.query([owner.as_slice()])?;
            while let Some(r) = rows.next()? {
                push(r.get(0)?, r.get(1)?)?;
            }
        }
    }
    Ok(out)
}

/// Compares one trie's stored nodes with a rebuild's; names the first path that differs.
fn compare_nodes(
    what: &str,
    stored: &BTreeMap<Nibbles, BranchNodeCompact>,
    built: &[(Nibbles, BranchNodeCompact)],
) -> Result<(), StorageError> {
    let built: BTreeMap<_, _> = built.iter().cloned().collect();
    let paths: std::collections::BTreeSet<&Nibbles> = stored.keys().chain(built.keys()).collect();
    for path in paths {
        let (s, b) = (stored.get(path), built.get(path));
        if s != b {
            let show = |n: Option<&BranchNodeCompact>| n.map_or("none".to_string(), |n| format!("{n:?}"));
            let at = if path.is_empty() {
                "the root".to_string()
            } else {
                format!("path {}", path.iter().map(|n| format!("{n:x}")).collect::<String>())
            };
            return Err(StorageError::Corrupt(format!(
                "{what}: the stored trie node at {at} is {}, a rebuild from the leaves gives {}",
                show(s),
                show(b)
            )));
        }
    }
    Ok(())
}

/// Checks the stored tries: the hashed tables against the plain state, every storage root and
/// stored node against a full rebuild from the leaves. Returns the state root, or the first
/// mismatch as an error.
pub fn verify(conn: &Connection) -> Result<B256, StorageError> {
    let plain: i64 = conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
    let hashed: i64 = conn.query_row("SELECT COUNT(*) FROM hashed_accounts", [], |r| r.get(0))?;
    if plain != hashed {
        return Err(StorageError::Corrupt(format!(
            "the plain state holds {plain} accounts but the hashed account table {hashed}"
        )));
    }
    let mut st = conn.prepare("SELECT address, nonce, balance, code_hash FROM accounts")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let address = blob_address(&r.get::<_, Vec<u8>>(0)?)?;
        let hashed = keccak256(address);
        let stored = super::source::stored_account(conn, &hashed)?
            .ok_or_else(|| StorageError::Corrupt(format!("account {address} has no hashed account row")))?;
        let plain = (
            r.get::<_, i64>(1)? as u64,
            blob_u256(&r.get::<_, Vec<u8>>(2)?)?,
            blob_b256(&r.get::<_, Vec<u8>>(3)?)?,
        );
        if plain != (stored.nonce, stored.balance, stored.code_hash) {
            return Err(StorageError::Corrupt(format!(
                "account {address}: the hashed account row differs from the plain state"
            )));
        }
        verify_storage(conn, &address, &hashed, stored.storage_root)?;
    }
    let (root, built) = full_trie(conn, Scope::Accounts)?;
    compare_nodes("account trie", &stored_nodes(conn, Scope::Accounts)?, &built)?;
    Ok(root)
}

/// Checks one account's hashed storage against its plain storage, then its storage root and
/// stored nodes against a rebuild.
fn verify_storage(
    conn: &Connection,
    address: &alloy_primitives::Address,
    hashed: &B256,
    root: B256,
) -> Result<(), StorageError> {
    let mut plain: Vec<(B256, Vec<u8>)> = Vec::new();
    let mut st = conn.prepare_cached("SELECT slot, value FROM storage WHERE address = ?1")?;
    let mut rows = st.query([address.as_slice()])?;
    while let Some(r) = rows.next()? {
        let slot = blob_u256(&r.get::<_, Vec<u8>>(0)?)?;
        plain.push((keccak256(slot.to_be_bytes::<32>()), r.get(1)?));
    }
    plain.sort_unstable();
    let mut hashed_rows: Vec<(B256, Vec<u8>)> = Vec::new();
    let mut st = conn.prepare_cached(
        "SELECT hashed_slot, value FROM hashed_storage WHERE hashed_address = ?1 ORDER BY hashed_slot",
    )?;
    let mut rows = st.query([hashed.as_slice()])?;
    while let Some(r) = rows.next()? {
        hashed_rows.push((blob_b256(&r.get::<_, Vec<u8>>(0)?)?, r.get(1)?));
    }
    if plain != hashed_rows {
        return Err(StorageError::Corrupt(format!(
            "account {address}: the hashed storage differs from the plain storage"
        )));
    }
    let (built_root, built) = full_trie(conn, Scope::Storage(*hashed))?;
    if built_root != root {
        return Err(StorageError::Corrupt(format!(
            "account {address}: the stored storage root {root} differs from a rebuild's {built_root}"
        )));
    }
    compare_nodes(
        &format!("storage trie of {address}"),
        &stored_nodes(conn, Scope::Storage(*hashed))?,
        &built,
    )
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// The stored nodes of one trie, sorted by path.
    pub(crate) fn stored(conn: &Connection, scope: Scope) -> Vec<(Nibbles, BranchNodeCompact)> {
        stored_nodes(conn, scope).unwrap().into_iter().collect()
    }
}
