//! Persistence in SQLite: blocks, receipts, indexes and state, one transaction per block.
//!
//! - [`schema`]: tables and pragmas (WAL, `synchronous=FULL`);
//! - [`checkpoint`]: the write-ahead log copied into the database by a background thread, off
//!   the commit path;
//! - [`Store`]: the single writer, committing each block atomically;
//! - [`ReadPool`]: read connections for RPC, block queries and historical state, with a
//!   [`BlockCache`] of recently read blocks;
//! - [`HistoricalState`]: state at any kept block (the head's too), from the plain state and the
//!   change history, in one read transaction;
//! - [`PlainState`]: the head state in the plain tables, which the writer executes on;
//! - [`StateCache`]: head-state reads (the writer's own, and one shared by RPC readers, carried
//!   from block to block), bounded in entries;
//! - [`ExplorerQuery`]: the block explorer's indexes (transactions by address, by sender and
//!   nonce, contract creators).
//!
//! History: for every block the previous values of the accounts and slots it changed are kept
//! (`account_history`, `storage_history`), keyed by block first, so a block appends its rows and
//! the prune deletes a range. State at block N is the plain state with every change after N
//! undone: an account or slot is looked up in the blocks after N up to the head (none for the
//! head's own state), one primary-key lookup each. History older than the retention window (128
//! blocks, or all with `--archive`) is pruned every 32 blocks.

mod block_cache;
mod blocks;
mod cache;
pub mod checkpoint;
mod explorer;
mod history;
mod plain;
mod receipts;
mod schema;
mod snapshots;
pub mod trie;
mod writer;

pub use block_cache::{BlockCache, CachedBlock};
pub use blocks::{canonical_range, BlockQuery, LogFilterQuery, StoredLog, StoredTx, TxLocation};
pub use cache::{CachedState, StateCache, DEFAULT_CACHE_ENTRIES};
pub use explorer::{ExplorerQuery, TxPlace};
pub use history::{undo_block, undo_to, undo_to_on, HistoricalState};
pub use plain::PlainState;
pub use schema::{history_indexed, INDEX_HISTORY_ABOVE};
pub use snapshots::SnapshotQuery;
#[cfg(test)]
pub(crate) use writer::prune_archive_snapshots;
pub use writer::{BlockWrite, Store, SNAPSHOT_WINDOW};

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

/// A small pool of read-only connections, with caches of analysed contract code and of decoded
/// blocks (both immutable by hash, so the caches are never stale).
#[derive(Clone)]
pub struct ReadPool {
    conns: Arc<Vec<Mutex<Connection>>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    codes: Arc<CodeCache>,
    blocks: Arc<BlockCache>,
}

/// Analysed contract code by hash, up to a byte budget (then emptied and refilled: the
/// contracts in use come back on the next calls).
pub struct CodeCache {
    map: Mutex<(std::collections::HashMap<alloy_primitives::B256, revm::bytecode::Bytecode>, usize)>,
    max_bytes: usize,
}

impl CodeCache {
    /// Default budget: 32 MiB of code.
    pub const DEFAULT_BYTES: usize = 32 << 20;

    fn new(max_bytes: usize) -> Self {
        Self { map: Mutex::new(Default::default()), max_bytes }
    }

    /// The code of `hash` if cached.
    pub fn get(&self, hash: &alloy_primitives::B256) -> Option<revm::bytecode::Bytecode> {
        self.map.lock().0.get(hash).cloned()
    }

    /// Caches the code of `hash`.
    pub fn insert(&self, hash: alloy_primitives::B256, code: revm::bytecode::Bytecode) {
        let mut guard = self.map.lock();
        let (map, bytes) = &mut *guard;
        let len = code.len();
        if *bytes + len > self.max_bytes {
            map.clear();
            *bytes = 0;
        }
        if map.insert(hash, code).is_none() {
            *bytes += len;
        }
    }
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
        Ok(Self {
            conns: Arc::new(conns),
            next: Default::default(),
            codes: Arc::new(CodeCache::new(CodeCache::DEFAULT_BYTES)),
            blocks: Arc::new(BlockCache::new(BlockCache::DEFAULT_BYTES)),
        })
    }

    /// A full block by hash, with its total difficulty, shared: served from the pool's
    /// [`BlockCache`] when it was read recently, decoded (and cached) otherwise.
    pub fn block_shared(&self, hash: &alloy_primitives::B256) -> Result<Option<CachedBlock>, StorageError> {
        if let Some(hit) = self.blocks.get(hash) {
            return Ok(Some(hit));
        }
        let Some((block, td, size)) = self.with(|c| blocks::read_block(c, hash))? else { return Ok(None) };
        let shared = (Arc::new(block), td);
        self.blocks.insert(shared.clone(), size);
        Ok(Some(shared))
    }

    /// The cache of analysed code shared by this pool's readers.
    pub fn codes(&self) -> &CodeCache {
        &self.codes
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

    /// Merkle proofs of `address` and its storage `slots` at block `number` (EIP-1186), from the
    /// stored trie with the blocks after `number` undone as an overlay, in one read transaction.
    pub fn prove(
        &self,
        number: u64,
        address: &alloy_primitives::Address,
        slots: &[alloy_primitives::B256],
    ) -> Result<trie::StateProof, crate::state::StateError> {
        let backend = |e: rusqlite::Error| crate::state::StateError::Backend(e.to_string());
        let conn = self.lock_one();
        conn.execute_batch("BEGIN").map_err(backend)?;
        let result = (|| -> Result<trie::StateProof, crate::state::StateError> {
            let head: i64 = conn
                .query_row("SELECT COALESCE(MAX(number), 0) FROM canonical", [], |r| r.get(0))
                .map_err(backend)?;
            let undo = undo_to_on(&conn, number, head as u64)?;
            Ok(trie::prove(&conn, &trie::undo_changes(&undo), *address, slots)?)
        })();
        let _ = conn.execute_batch("ROLLBACK");
        result
    }

    /// Runs `f` with one of the connections inside one read transaction, so that all its reads
    /// see the same committed state (a block committed meanwhile is seen by all or none).
    pub fn in_read_transaction<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let conn = self.lock_one();
        conn.execute_batch("BEGIN")?;
        let result = f(&conn);
        let _ = conn.execute_batch("ROLLBACK");
        result
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
