//! Persistence in SQLite: blocks, receipts, indexes and state, one transaction per block.
//!
//! - [`schema`]: tables and pragmas (WAL, `synchronous=FULL`);
//! - [`Store`]: the single writer, committing each block atomically;
//! - [`ReadPool`]: read connections for RPC, block queries and historical state;
//! - [`HistoricalState`]: state at an older block, from the change history.
//!
//! History: for every block the previous values of the accounts and slots it changed are kept
//! (`account_history`, `storage_history`). State at block N is the plain state with every change
//! after N undone, which is one indexed lookup per account or slot. History older than the
//! retention window (128 blocks, or all with `--archive`) is pruned.

mod blocks;
mod history;
mod schema;
pub mod trie;
mod writer;

pub use blocks::{canonical_range, BlockQuery, LogFilterQuery, StoredLog, TxLocation};
pub use history::{undo_block, undo_to, undo_to_on, HistoricalState};
pub use writer::{BlockWrite, Store};

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::Connection;

/// Errors from the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Stored bytes did not decode.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// The data directory is not usable.
    #[error("{0}")]
    Invalid(String),
}

/// Default number of recent blocks whose state stays queryable.
pub const DEFAULT_STATE_HISTORY: u64 = 128;

/// A small pool of read-only connections.
#[derive(Clone)]
pub struct ReadPool {
    conns: Arc<Vec<Mutex<Connection>>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
}

impl ReadPool {
    /// Opens `n` read connections to the database at `path`.
    pub fn open(path: &Path, n: usize) -> Result<Self, StorageError> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let conn = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            schema::configure_reader(&conn)?;
            conns.push(Mutex::new(conn));
        }
        Ok(Self { conns: Arc::new(conns), next: Default::default() })
    }

    /// Locks one connection for exclusive use (e.g. a read transaction).
    pub fn lock_one(&self) -> parking_lot::MutexGuard<'_, Connection> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..n {
            if let Some(conn) = self.conns[(start + i) % n].try_lock() {
                return conn;
            }
        }
        self.conns[start % n].lock()
    }

    /// Runs `f` with one of the connections.
    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StorageError>) -> Result<T, StorageError> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..n {
            if let Some(conn) = self.conns[(start + i) % n].try_lock() {
                return f(&conn);
            }
        }
        let conn = self.conns[start % n].lock();
        f(&conn)
    }
}
