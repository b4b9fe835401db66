//! State at an older block, read from the plain state and the change history.

use alloy_primitives::{Address, B256, U256};
use parking_lot::MutexGuard;
use revm::bytecode::Bytecode;
use rusqlite::{Connection, OptionalExtension};

use super::writer::{blob_b256, blob_u256, u256_blob};
use super::{ReadPool, StorageError};
use crate::state::{AccountInfo, StateError, StateReader};

/// An `account_history` row: nonce, balance, code hash (all NULL: the account did not exist).
type HistoryRow = (Option<i64>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The state as of the end of block `number`, read in one consistent SQLite snapshot.
pub struct HistoricalState<'a> {
    conn: MutexGuard<'a, Connection>,
    number: u64,
    /// The canonical head this read transaction sees: the undo rows are those of the blocks
    /// after `number` up to it.
    head: u64,
    /// Whether the history is indexed by key (read once, when a read first needs it).
    indexed: std::cell::OnceCell<bool>,
    /// History rows looked up so far (see [`HistoricalState::lookups`]).
    lookups: std::cell::Cell<u64>,
    codes: &'a super::CodeCache,
}

impl From<StorageError> for StateError {
    fn from(e: StorageError) -> Self {
        StateError::Backend(e.to_string())
    }
}

fn backend(e: rusqlite::Error) -> StateError {
    StateError::Backend(e.to_string())
}

impl<'a> HistoricalState<'a> {
    /// Opens a read snapshot of the state at block `number`.
    pub fn open(pool: &'a ReadPool, number: u64) -> Result<Self, StateError> {
        let conn = pool.lock_one();
        conn.execute_batch("BEGIN").map_err(backend)?;
        let floor: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'history_floor'", [], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        let head: Option<i64> =
            conn.query_row("SELECT MAX(number) FROM canonical", [], |r| r.get(0)).map_err(backend)?;
        let state = Self {
            conn,
            number,
            head: head.unwrap_or(0) as u64,
            indexed: Default::default(),
            lookups: Default::default(),
            codes: pool.codes(),
        };
        if let Some(floor) = floor {
            if number < floor as u64 {
                return Err(StateError::Pruned(number));
            }
        }
        Ok(state)
    }
}

impl HistoricalState<'_> {
    /// The hash of the canonical block this state is at, as this read transaction sees it.
    pub fn block_hash(&self) -> Result<Option<B256>, StateError> {
        let hash: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT hash FROM canonical WHERE number = ?1")
            .map_err(backend)?
            .query_row([self.number as i64], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        Ok(hash.map(|h| blob_b256(&h)).transpose()?)
    }
}

impl Drop for HistoricalState<'_> {
    fn drop(&mut self) {
        if self.lookups.get() > 0 {
            metrics::counter!(crate::metrics::names::STATE_HISTORY_LOOKUPS).increment(self.lookups.get());
        }
        let _ = self.conn.execute_batch("ROLLBACK");
    }
}

impl HistoricalState<'_> {
    /// History lookups (primary-key or index seeks) this read made so far. A read at the head
    /// makes none; at an older block, one per block after it for each account or slot read, or
    /// one when the history is indexed by key (an archive node; see
    /// [`super::schema::INDEX_HISTORY_ABOVE`]).
    pub fn lookups(&self) -> u64 {
        self.lookups.get()
    }

    /// Whether this read goes through the history's indexes by key.
    fn indexed(&self) -> Result<bool, StateError> {
        if let Some(indexed) = self.indexed.get() {
            return Ok(*indexed);
        }
        let indexed = super::schema::history_indexed(&self.conn).map_err(backend)?;
        Ok(*self.indexed.get_or_init(|| indexed))
    }

    /// The account's row in the first block after `number` that changed it, if one did.
    fn account_row(&self, address: &Address) -> Result<Option<HistoryRow>, StateError> {
        self.first_change(&ACCOUNT_CHANGES, &[&address.as_slice()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    }

    /// The slot's value in the first block after `number` that changed it, if one did.
    fn storage_row(&self, address: &Address, slot: &U256) -> Result<Option<Vec<u8>>, StateError> {
        self.first_change(&STORAGE_CHANGES, &[&address.as_slice(), &u256_blob(slot)], |r| r.get(0))
    }

    /// The row of `key` (the key columns' values, in the queries' order) in the first block after
    /// `number` that changed it: one seek in the by-key index when the history has one, else one
    /// lookup per later block up to the head.
    fn first_change<T>(
        &self,
        queries: &ChangeQueries,
        key: &[&dyn rusqlite::ToSql],
        read: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StateError> {
        if self.indexed()? {
            self.lookups.set(self.lookups.get() + 1);
            let (after, head) = (self.number as i64, self.head as i64);
            let params: Vec<&dyn rusqlite::ToSql> =
                key.iter().copied().chain([&after as _, &head as _]).collect();
            let mut st = self.conn.prepare_cached(queries.indexed).map_err(backend)?;
            return st.query_row(params.as_slice(), read).optional().map_err(backend);
        }
        let mut st = self.conn.prepare_cached(queries.at_block).map_err(backend)?;
        for block in self.number + 1..=self.head {
            self.lookups.set(self.lookups.get() + 1);
            let block = block as i64;
            let params: Vec<&dyn rusqlite::ToSql> = key.iter().copied().chain([&block as _]).collect();
            if let Some(row) = st.query_row(params.as_slice(), &read).optional().map_err(backend)? {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }
}

/// The two ways to find a key's first change after a block: with the by-key index (the key's
/// columns, then the block the read is at and the head), and at one block (the key's columns, then
/// the block).
struct ChangeQueries {
    indexed: &'static str,
    at_block: &'static str,
}

const ACCOUNT_CHANGES: ChangeQueries = ChangeQueries {
    indexed: "SELECT nonce, balance, code_hash FROM account_history INDEXED BY account_history_by_key \
              WHERE address = ?1 AND block > ?2 AND block <= ?3 ORDER BY block LIMIT 1",
    at_block: "SELECT nonce, balance, code_hash FROM account_history WHERE address = ?1 AND block = ?2",
};

const STORAGE_CHANGES: ChangeQueries = ChangeQueries {
    indexed: "SELECT value FROM storage_history INDEXED BY storage_history_by_key \
              WHERE address = ?1 AND slot = ?2 AND block > ?3 AND block <= ?4 ORDER BY block LIMIT 1",
    at_block: "SELECT value FROM storage_history WHERE address = ?1 AND slot = ?2 AND block = ?3",
};

impl StateReader for HistoricalState<'_> {
    fn account(&self, address: &Address) -> Result<Option<AccountInfo>, StateError> {
        // The value at `number` is the one the first later block overwrote, if any block did.
        let hist = if self.number < self.head { self.account_row(address)? } else { None };
        let row = match hist {
            Some((None, _, _)) => return Ok(None),
            Some((Some(n), Some(b), Some(c))) => (n, b, c),
            Some(_) => return Err(StateError::Backend("corrupt account history row".into())),
            None => return super::plain::plain_account(&self.conn, address),
        };
        Ok(Some(AccountInfo {
            nonce: row.0 as u64,
            balance: blob_u256(&row.1)?,
            code_hash: blob_b256(&row.2)?,
        }))
    }

    fn storage(&self, address: &Address, slot: &U256) -> Result<U256, StateError> {
        if self.number < self.head {
            if let Some(value) = self.storage_row(address, slot)? {
                return Ok(blob_u256(&value)?);
            }
        }
        super::plain::plain_storage(&self.conn, address, slot)
    }

    fn code(&self, code_hash: &B256) -> Result<Option<Bytecode>, StateError> {
        super::plain::stored_code(&self.conn, self.codes, code_hash)
    }
}

/// The undo record that turns the state after block `head` back into the state after block
/// `number`: for every account and slot changed in between, its value at `number`.
pub fn undo_to(pool: &ReadPool, number: u64, head: u64) -> Result<crate::state::StateUndo, StateError> {
    if number >= head {
        return Ok(Default::default());
    }
    let conn = pool.lock_one();
    conn.execute_batch("BEGIN").map_err(backend)?;
    let result = undo_to_on(&conn, number, head);
    let _ = conn.execute_batch("ROLLBACK");
    result
}

/// [`undo_to`] on one connection, inside the caller's read transaction (so that the head and
/// the history are read from the same snapshot). The blocks' undo rows are read from the head
/// down, so that each account and slot ends with the value the earliest block after `number`
/// overwrote: its value at `number`.
pub fn undo_to_on(conn: &Connection, number: u64, head: u64) -> Result<crate::state::StateUndo, StateError> {
    if number >= head {
        return Ok(Default::default());
    }
    let floor: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'history_floor'", [], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if floor.is_some_and(|f| number < f as u64) {
        return Err(StateError::Pruned(number));
    }
    let mut accounts = std::collections::BTreeMap::new();
    let mut storage = std::collections::BTreeMap::new();
    for block in (number + 1..=head).rev() {
        let undo = block_rows(conn, block)?;
        accounts.extend(undo.accounts);
        storage.extend(undo.storage.into_iter().map(|(a, slot, v)| ((a, slot), v)));
    }
    Ok(crate::state::StateUndo {
        accounts: accounts.into_iter().collect(),
        storage: storage.into_iter().map(|((a, slot), v)| (a, slot, v)).collect(),
    })
}

/// The undo record of exactly block `number`: the values its changes overwrote, one per account
/// and slot (the first a block wrote is kept). `None` if that block's history was pruned. Read on `conn`, which for a
/// revert is the writer's (it must see the writes of an open batch).
pub fn undo_block(conn: &Connection, number: u64) -> Result<Option<crate::state::StateUndo>, StateError> {
    let floor: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'history_floor'", [], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if floor.is_some_and(|f| number <= f as u64) {
        return Ok(None);
    }
    block_rows(conn, number).map(Some)
}

/// The undo rows of block `number`, as stored (none for a block without history).
fn block_rows(conn: &Connection, number: u64) -> Result<crate::state::StateUndo, StateError> {
    let mut undo = crate::state::StateUndo::default();
    let mut st = conn
        .prepare_cached("SELECT address, nonce, balance, code_hash FROM account_history WHERE block = ?1")
        .map_err(backend)?;
    let mut rows = st.query([number as i64]).map_err(backend)?;
    while let Some(r) = rows.next().map_err(backend)? {
        let addr = super::writer::blob_address(&r.get::<_, Vec<u8>>(0).map_err(backend)?)?;
        let nonce: Option<i64> = r.get(1).map_err(backend)?;
        let info = match nonce {
            None => None,
            Some(n) => Some(AccountInfo {
                nonce: n as u64,
                balance: blob_u256(&r.get::<_, Vec<u8>>(2).map_err(backend)?)?,
                code_hash: blob_b256(&r.get::<_, Vec<u8>>(3).map_err(backend)?)?,
            }),
        };
        undo.accounts.push((addr, info));
    }
    let mut st = conn
        .prepare_cached("SELECT address, slot, value FROM storage_history WHERE block = ?1")
        .map_err(backend)?;
    let mut rows = st.query([number as i64]).map_err(backend)?;
    while let Some(r) = rows.next().map_err(backend)? {
        let addr = super::writer::blob_address(&r.get::<_, Vec<u8>>(0).map_err(backend)?)?;
        let slot = blob_u256(&r.get::<_, Vec<u8>>(1).map_err(backend)?)?;
        let value = blob_u256(&r.get::<_, Vec<u8>>(2).map_err(backend)?)?;
        undo.storage.push((addr, slot, value));
    }
    Ok(undo)
}
