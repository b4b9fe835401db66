//! The head state as stored: the plain `accounts`, `storage` and `code` tables, read on any
//! connection (the writer's, which sees an open batch, or a reader's).
//!
//! The writer executes blocks over [`PlainState`] with a bounded [`super::StateCache`] in front,
//! so the node's memory does not grow with the state: only the cached entries and analysed code
//! stay in memory, everything else is one indexed SQLite lookup away.

use alloy_primitives::{Address, B256, U256};
use revm::bytecode::Bytecode;
use rusqlite::{params, Connection, OptionalExtension};

use super::writer::{blob_b256, blob_u256, u256_blob};
use super::CodeCache;
use crate::state::{bytecode, AccountInfo, StateError, StateReader};

pub(crate) fn backend(e: rusqlite::Error) -> StateError {
    StateError::Backend(e.to_string())
}

/// The account at `address` in the plain state.
pub(crate) fn plain_account(conn: &Connection, address: &Address) -> Result<Option<AccountInfo>, StateError> {
    let row: Option<(i64, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT nonce, balance, code_hash FROM accounts WHERE address = ?1")
        .map_err(backend)?
        .query_row([address.as_slice()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(backend)?;
    row.map(|(nonce, balance, code_hash)| {
        Ok(AccountInfo {
            nonce: nonce as u64,
            balance: blob_u256(&balance)?,
            code_hash: blob_b256(&code_hash)?,
        })
    })
    .transpose()
}

/// Storage `slot` of `address` in the plain state (zero if unset).
pub(crate) fn plain_storage(conn: &Connection, address: &Address, slot: &U256) -> Result<U256, StateError> {
    let value: Option<Vec<u8>> = conn
        .prepare_cached("SELECT value FROM storage WHERE address = ?1 AND slot = ?2")
        .map_err(backend)?
        .query_row(params![address.as_slice(), u256_blob(slot)], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    Ok(value.map(|v| blob_u256(&v)).transpose()?.unwrap_or_default())
}

/// Every non-zero slot of `address` in the plain state (for undo records of self-destructed or
/// re-created contracts, which are rare: this is the one read proportional to a contract's size).
pub(crate) fn plain_slots(conn: &Connection, address: &Address) -> Result<Vec<(U256, U256)>, StateError> {
    let mut st =
        conn.prepare_cached("SELECT slot, value FROM storage WHERE address = ?1").map_err(backend)?;
    let rows = st
        .query_map([address.as_slice()], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .map_err(backend)?;
    let mut slots = Vec::new();
    for row in rows {
        let (slot, value) = row.map_err(backend)?;
        slots.push((blob_u256(&slot)?, blob_u256(&value)?));
    }
    Ok(slots)
}

/// Contract code by hash, analysed, through `codes` (code never changes under its hash).
pub(crate) fn stored_code(
    conn: &Connection,
    codes: &CodeCache,
    code_hash: &B256,
) -> Result<Option<Bytecode>, StateError> {
    if let Some(code) = codes.get(code_hash) {
        return Ok(Some(code));
    }
    let raw: Option<Vec<u8>> = conn
        .prepare_cached("SELECT code FROM code WHERE hash = ?1")
        .map_err(backend)?
        .query_row([code_hash.as_slice()], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    let code = raw.map(|c| bytecode(c.into()));
    if let Some(code) = &code {
        codes.insert(*code_hash, code.clone());
    }
    Ok(code)
}

/// The plain (head) state on one connection.
pub struct PlainState<'c> {
    conn: &'c Connection,
    codes: &'c CodeCache,
}

impl<'c> PlainState<'c> {
    /// The state in `conn`'s plain tables, with analysed code cached in `codes`.
    pub fn new(conn: &'c Connection, codes: &'c CodeCache) -> Self {
        Self { conn, codes }
    }

    /// Every non-zero storage slot of `address`.
    pub fn slots(&self, address: &Address) -> Result<Vec<(U256, U256)>, StateError> {
        plain_slots(self.conn, address)
    }
}

impl StateReader for PlainState<'_> {
    fn account(&self, address: &Address) -> Result<Option<AccountInfo>, StateError> {
        plain_account(self.conn, address)
    }

    fn storage(&self, address: &Address, slot: &U256) -> Result<U256, StateError> {
        plain_storage(self.conn, address, slot)
    }

    fn code(&self, code_hash: &B256) -> Result<Option<Bytecode>, StateError> {
        stored_code(self.conn, self.codes, code_hash)
    }
}
