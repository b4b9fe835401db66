//! The single writer: genesis, block commits, pruning, and loading state at start-up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use alloy_consensus::{Header, ReceiptEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, U256};
use alloy_rlp::{Decodable, Encodable};
use rusqlite::{params, Connection, OptionalExtension};

use super::trie::{self, StateTrieUpdates};
use super::{schema, StorageError};
use crate::chain::ChainSpec;
use crate::consensus::clique::Snapshot;
use crate::primitives::SealedBlock;
use crate::state::{AccountInfo, StateChanges, StateUndo, WorldState};

/// Everything written for one block, in one SQLite transaction.
pub struct BlockWrite<'a> {
    /// The block.
    pub block: &'a SealedBlock,
    /// Its receipts.
    pub receipts: &'a [ReceiptEnvelope],
    /// Total difficulty including this block.
    pub total_difficulty: U256,
    /// State changes of the block.
    pub changes: &'a StateChanges,
    /// The values those changes overwrote.
    pub undo: &'a StateUndo,
    /// The Clique snapshot after this block.
    pub snapshot: &'a Snapshot,
    /// The block's changes to the stored state trie (from [`Store::state_root`]).
    pub trie: &'a StateTrieUpdates,
    /// Per transaction, the accounts its execution loaded (for the explorer's address index; see
    /// [`crate::execution::TxOutcome::accounts`]).
    pub tx_accounts: &'a [Vec<Address>],
    /// Per transaction, the contracts it created ([`crate::execution::TxOutcome::created`]).
    pub tx_created: &'a [Vec<Address>],
}

/// The database writer. There is exactly one per data directory.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Blocks of state history to keep (`None` = archive, keep all).
    history: Option<u64>,
    checkpointer: super::checkpoint::Checkpointer,
}

pub(crate) fn u256_blob(v: &U256) -> [u8; 32] {
    v.to_be_bytes()
}

pub(crate) fn blob_u256(b: &[u8]) -> Result<U256, StorageError> {
    U256::try_from_be_slice(b).ok_or_else(|| StorageError::Corrupt("bad 256-bit value".into()))
}

pub(crate) fn blob_b256(b: &[u8]) -> Result<B256, StorageError> {
    B256::try_from(b).map_err(|_| StorageError::Corrupt("bad 32-byte hash".into()))
}

pub(crate) fn blob_address(b: &[u8]) -> Result<Address, StorageError> {
    Address::try_from(b).map_err(|_| StorageError::Corrupt("bad address".into()))
}

impl Store {
    /// Opens (creating if needed) the database in `datadir`.
    pub fn open(datadir: &Path, history: Option<u64>) -> Result<Self, StorageError> {
        std::fs::create_dir_all(datadir).map_err(|e| {
            StorageError::Invalid(format!("cannot create data directory {}: {e}", datadir.display()))
        })?;
        let path = datadir.join("chain.sqlite");
        let mut conn = Connection::open(&path)?;
        schema::init(&conn)?;
        super::explorer::backfill(&conn)?;
        schema::set_history_indexes(&conn, history)?;
        if history.is_none() {
            prune_archive_snapshots(&conn, SNAPSHOT_PRUNE_BATCH)?;
        }
        let checkpointer = super::checkpoint::Checkpointer::attach(&mut conn, &path, Default::default())?;
        Ok(Self { conn, path, history, checkpointer })
    }

    /// What the write-ahead log's checkpoints did so far (they run off the commit path).
    pub fn wal_status(&self) -> &std::sync::Arc<super::checkpoint::WalStatus> {
        self.checkpointer.status()
    }

    /// Copies the whole write-ahead log into the database file and empties the log, so that
    /// `chain.sqlite` alone holds every committed block (the node calls this when it stops; a
    /// backup of the file alone is then complete). The background checkpoints stop first; a
    /// later commit still works and goes to the log as before. Waits up to the busy timeout for
    /// a reader in the middle of a read.
    pub fn checkpoint_all(&mut self) -> Result<(), StorageError> {
        self.checkpointer.stop();
        let (log, copied) =
            self.conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::TRUNCATE)?;
        if log != 0 || copied != 0 {
            return Err(StorageError::Invalid(format!(
                "the write-ahead log was not emptied ({copied} of {log} pages copied)"
            )));
        }
        Ok(())
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored genesis JSON, if the database was initialised.
    pub fn genesis_json(&self) -> Result<Option<String>, StorageError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'genesis'", [], |r| r.get::<_, String>(0))
            .optional()?)
    }

    /// The head block number and hash.
    pub fn head(&self) -> Result<Option<(u64, B256)>, StorageError> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row("SELECT number, hash FROM canonical ORDER BY number DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        row.map(|(n, h)| Ok((n as u64, blob_b256(&h)?))).transpose()
    }

    /// Writes the genesis block and state. Refuses a database that holds another chain.
    pub fn init_genesis(&mut self, spec: &ChainSpec, genesis_json: &str) -> Result<(), StorageError> {
        if let Some((_, _)) = self.head()? {
            let stored: Option<Vec<u8>> = self
                .conn
                .query_row("SELECT hash FROM canonical WHERE number = 0", [], |r| r.get(0))
                .optional()?;
            if stored.as_deref() == Some(spec.genesis_hash.as_slice()) {
                return Ok(());
            }
            return Err(StorageError::Invalid(format!(
                "data directory {} already holds a different chain (genesis {}); use a new --datadir",
                self.path.display(),
                stored.map(|h| format!("0x{}", alloy_primitives::hex::encode(h))).unwrap_or_default()
            )));
        }
        let state = WorldState::from_alloc(&spec.alloc);
        let tx = self.conn.transaction()?;
        {
            let mut acc = tx.prepare(
                "INSERT INTO accounts (address, nonce, balance, code_hash) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut st = tx.prepare("INSERT INTO storage (address, slot, value) VALUES (?1, ?2, ?3)")?;
            for (addr, entry) in &state.accounts {
                acc.execute(params![
                    addr.as_slice(),
                    entry.info.nonce as i64,
                    u256_blob(&entry.info.balance),
                    entry.info.code_hash.as_slice()
                ])?;
                for (slot, value) in &entry.storage {
                    st.execute(params![addr.as_slice(), u256_blob(slot), u256_blob(value)])?;
                }
            }
            let mut code = tx.prepare("INSERT OR IGNORE INTO code (hash, code) VALUES (?1, ?2)")?;
            for (hash, bytecode) in &state.codes {
                code.execute(params![hash.as_slice(), bytecode.original_byte_slice()])?;
            }
        }
        let block = crate::primitives::Block {
            header: spec.genesis_header.clone(),
            body: alloy_consensus::BlockBody {
                transactions: vec![],
                ommers: vec![],
                withdrawals: Some(Default::default()),
            },
        };
        let sealed = SealedBlock { hash: spec.genesis_hash, block, senders: vec![] };
        let snapshot = Snapshot::new(spec.clique.epoch, 0, spec.genesis_hash, spec.signers.iter().copied());
        write_block_rows(
            &tx,
            &sealed,
            &[],
            super::explorer::TxAddresses::default(),
            spec.genesis_header.difficulty,
        )?;
        write_snapshot(&tx, &snapshot)?;
        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('genesis', ?1)", [genesis_json])?;
        let root = trie::rebuild(&tx)?;
        if root != spec.genesis_header.state_root {
            return Err(StorageError::Corrupt(format!(
                "the stored genesis state has root {root}, the genesis header says {}",
                spec.genesis_header.state_root
            )));
        }
        tx.commit()?;
        Ok(())
    }

    /// Starts a batch: the block commits and reverts that follow become visible to readers
    /// together, at [`Store::end_batch`] (used by reorgs, so that readers see either the old
    /// branch or the new one, never the chain cut back to the fork point in between). Each
    /// block write inside stays atomic on its own (a savepoint), so a failed one is undone
    /// without undoing the batch.
    pub fn begin_batch(&mut self) -> Result<(), StorageError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Commits the batch started by [`Store::begin_batch`]. If the commit fails, the batch is
    /// rolled back.
    pub fn end_batch(&mut self) -> Result<(), StorageError> {
        let timer = crate::metrics::Timer::start(crate::metrics::names::SQLITE_COMMIT);
        let committed = self.conn.execute_batch("COMMIT");
        drop(timer);
        if let Err(e) = committed {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Rolls back the batch started by [`Store::begin_batch`]: nothing of it reaches the disk.
    pub fn rollback_batch(&mut self) -> Result<(), StorageError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    /// The writer connection, for reads that see the writes of an open batch (the writer's
    /// head state, [`super::PlainState`]).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Runs read queries on the writer connection, which sees the writes of an open batch
    /// (the read pool only sees committed ones).
    pub fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E> {
        f(&self.conn)
    }

    /// Runs `f` inside one read transaction on the writer connection (or inside the batch already
    /// open). Outside a transaction each statement begins and ends its own, taking and releasing
    /// a write-ahead-log read lock in shared memory (`fcntl` calls) every time; a block's execution
    /// and state root run thousands of reads, so they run in one.
    pub fn in_read_transaction<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        struct End<'a>(&'a Connection);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                // A read-only transaction wrote nothing: ending it cannot lose data. Left open, it
                // would hold the next block's commit inside it, unsaved.
                if let Err(e) = self.0.execute_batch("COMMIT") {
                    tracing::warn!(error = %e, "ending a read transaction failed; rolling it back");
                    let _ = self.0.execute_batch("ROLLBACK");
                }
            }
        }
        if !self.conn.is_autocommit() {
            return f(&self.conn);
        }
        if let Err(e) = self.conn.execute_batch("BEGIN DEFERRED") {
            tracing::warn!(error = %e, "beginning a read transaction failed; reading without one");
            return f(&self.conn);
        }
        let _end = End(&self.conn);
        f(&self.conn)
    }

    /// The state root after `changes`, computed from the stored tries with the changes as an
    /// overlay (nothing is written), and the trie changes to commit with the block. Read on the
    /// writer connection, which sees the writes of an open batch.
    pub fn state_root(&self, changes: &StateChanges) -> Result<(B256, StateTrieUpdates), StorageError> {
        trie::state_root(&self.conn, changes)
    }

    /// Commits one block atomically: block, receipts, indexes, state, history and snapshot.
    /// (A savepoint: its own transaction, or part of an open batch.)
    pub fn commit_block(&mut self, w: &BlockWrite<'_>) -> Result<(), StorageError> {
        let number = w.block.number();
        let tx = self.conn.savepoint()?;
        let addresses = super::explorer::TxAddresses { loaded: w.tx_accounts, created: w.tx_created };
        write_block_rows(&tx, w.block, w.receipts, addresses, w.total_difficulty)?;
        write_state(&tx, number, w.changes, w.undo)?;
        trie::write_updates(&tx, w.trie)?;
        write_snapshot(&tx, w.snapshot)?;
        // Every 32 blocks (or every `keep`, if smaller): one delete of 32 blocks' undo rows, a
        // range of a table keyed by block (a delete with every block cost more in all, for the
        // same slowest block: BENCHMARKS.md). The Clique snapshots follow the state window, or
        // `SNAPSHOT_WINDOW` on an archive node, whose state history is never pruned.
        let keep = self.history.unwrap_or(SNAPSHOT_WINDOW);
        if number.is_multiple_of(keep.clamp(1, 32)) && number > keep {
            // Snapshots first: before `snapshot_floor` existed, their range started at the
            // previous `history_floor`, which `prune_history` moves.
            prune_snapshots(&tx, number - keep)?;
            if self.history.is_some() {
                prune_history(&tx, number - keep)?;
            }
        }
        commit_timed(tx)?;
        Ok(())
    }

    /// Takes the canonical head block `number` off the chain in one transaction: its state
    /// changes are undone in the plain state (from `undo`, the values it overwrote), its history,
    /// canonical entry, transaction index and log index are removed. The block itself stays
    /// stored as a side block.
    ///
    /// The stored state trie is undone the same way: the undo record is applied to it as
    /// changes, and the resulting root must be `parent_root` (the parent block's state root).
    /// `block` is the block being taken off: its transactions give the index keys to remove.
    pub fn revert_block(
        &mut self,
        number: u64,
        undo: &StateUndo,
        block: &SealedBlock,
        parent_root: B256,
    ) -> Result<(), StorageError> {
        if block.number() != number {
            return Err(StorageError::Invalid(format!(
                "asked to revert block {number} with the body of block {}",
                block.number()
            )));
        }
        let n = number as i64;
        let tx = self.conn.savepoint()?;
        {
            let mut put_acc = tx.prepare_cached(
                "INSERT OR REPLACE INTO accounts (address, nonce, balance, code_hash) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut del_acc = tx.prepare_cached("DELETE FROM accounts WHERE address = ?1")?;
            let mut wipe = tx.prepare_cached("DELETE FROM storage WHERE address = ?1")?;
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO storage (address, slot, value) VALUES (?1, ?2, ?3)",
            )?;
            let mut del = tx.prepare_cached("DELETE FROM storage WHERE address = ?1 AND slot = ?2")?;
            // Same order as the in-memory revert: storage first (reverse), then accounts.
            for (addr, slot, value) in undo.storage.iter().rev() {
                if value.is_zero() {
                    del.execute(params![addr.as_slice(), u256_blob(slot)])?;
                } else {
                    put.execute(params![addr.as_slice(), u256_blob(slot), u256_blob(value)])?;
                }
            }
            for (addr, info) in undo.accounts.iter().rev() {
                match info {
                    Some(i) => {
                        put_acc.execute(params![
                            addr.as_slice(),
                            i.nonce as i64,
                            u256_blob(&i.balance),
                            i.code_hash.as_slice()
                        ])?;
                    }
                    None => {
                        del_acc.execute([addr.as_slice()])?;
                        wipe.execute([addr.as_slice()])?;
                    }
                }
            }
        }
        let (root, updates) = trie::state_root(&tx, &trie::undo_changes(undo))?;
        if root != parent_root {
            return Err(StorageError::Corrupt(format!(
                "undoing block {number} gives state root {root}, but its parent's is {parent_root}"
            )));
        }
        trie::write_updates(&tx, &updates)?;
        tx.execute("DELETE FROM account_history WHERE block = ?1", [n])?;
        tx.execute("DELETE FROM storage_history WHERE block = ?1", [n])?;
        tx.execute("DELETE FROM canonical WHERE number = ?1", [n])?;
        tx.execute("DELETE FROM logs WHERE number = ?1", [n])?;
        super::explorer::remove(&tx, block)?;
        {
            let mut del_tx = tx.prepare_cached("DELETE FROM tx_index WHERE hash = ?1 AND number = ?2")?;
            for t in &block.block.body.transactions {
                del_tx.execute(params![t.tx_hash().as_slice(), n])?;
            }
        }
        commit_timed(tx)?;
        Ok(())
    }

    /// Loads the whole head state into memory (for `p2pe-node check`'s full recomputation of the
    /// root; the node itself never does this).
    pub fn load_state(&self) -> Result<WorldState, StorageError> {
        let mut state = WorldState::default();
        let mut storage: HashMap<Address, HashMap<U256, U256>> = HashMap::new();
        {
            let mut st = self.conn.prepare("SELECT address, slot, value FROM storage")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let addr = blob_address(&r.get::<_, Vec<u8>>(0)?)?;
                let slot = blob_u256(&r.get::<_, Vec<u8>>(1)?)?;
                let value = blob_u256(&r.get::<_, Vec<u8>>(2)?)?;
                storage.entry(addr).or_default().insert(slot, value);
            }
        }
        let mut st = self.conn.prepare("SELECT address, nonce, balance, code_hash FROM accounts")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let addr = blob_address(&r.get::<_, Vec<u8>>(0)?)?;
            let info = AccountInfo {
                nonce: r.get::<_, i64>(1)? as u64,
                balance: blob_u256(&r.get::<_, Vec<u8>>(2)?)?,
                code_hash: blob_b256(&r.get::<_, Vec<u8>>(3)?)?,
            };
            state.insert_loaded(addr, info, storage.remove(&addr).unwrap_or_default());
        }
        let mut st = self.conn.prepare("SELECT hash, code FROM code")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            state.insert_code(blob_b256(&r.get::<_, Vec<u8>>(0)?)?, r.get::<_, Vec<u8>>(1)?.into());
        }
        Ok(state)
    }

    /// The Clique snapshot stored for a block.
    pub fn snapshot(&self, hash: &B256) -> Result<Option<Snapshot>, StorageError> {
        super::SnapshotQuery::stored_snapshot(&self.conn, hash)
    }

    /// Total difficulty of a stored block.
    pub fn total_difficulty(&self, hash: &B256) -> Result<Option<U256>, StorageError> {
        let td: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT td FROM blocks WHERE hash = ?1", [hash.as_slice()], |r| r.get(0))
            .optional()?;
        td.map(|b| blob_u256(&b)).transpose()
    }

    /// The header of a canonical block.
    pub fn header_by_number(&self, number: u64) -> Result<Option<Header>, StorageError> {
        let raw: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT b.header FROM canonical c JOIN blocks b ON b.hash = c.hash WHERE c.number = ?1",
                [number as i64],
                |r| r.get(0),
            )
            .optional()?;
        raw.map(|b| {
            Header::decode(&mut b.as_slice()).map_err(|e| StorageError::Corrupt(format!("header: {e}")))
        })
        .transpose()
    }
}

fn write_block_rows(
    tx: &Connection,
    block: &SealedBlock,
    receipts: &[ReceiptEnvelope],
    addresses: super::explorer::TxAddresses<'_>,
    td: U256,
) -> Result<(), StorageError> {
    let number = block.number() as i64;
    let mut header = Vec::with_capacity(600);
    block.header().encode(&mut header);
    let mut body = Vec::new();
    block.block.encode(&mut body);
    let senders: Vec<u8> = block.senders.iter().flat_map(|a| a.0 .0).collect();
    let rc = super::receipts::encode_receipts(receipts);
    tx.execute(
        "INSERT OR REPLACE INTO blocks (hash, number, header, block, senders, receipts, td) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![block.hash.as_slice(), number, header, body, senders, rc, u256_blob(&td)],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO canonical (number, hash) VALUES (?1, ?2)",
        params![number, block.hash.as_slice()],
    )?;
    let mut txi =
        tx.prepare_cached("INSERT OR REPLACE INTO tx_index (hash, number, idx) VALUES (?1, ?2, ?3)")?;
    for (i, t) in block.block.body.transactions.iter().enumerate() {
        txi.execute(params![t.tx_hash().as_slice(), number, i as i64])?;
    }
    write_tx_rows(tx, block, receipts)?;
    let mut logs = tx.prepare_cached(
        "INSERT OR REPLACE INTO logs (number, log_index, address, topic0, topic1, topic2, topic3) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut log_index = 0i64;
    for r in receipts {
        for log in r.logs() {
            let t = log.topics();
            logs.execute(params![
                number,
                log_index,
                log.address.as_slice(),
                t.first().map(|x| x.as_slice()),
                t.get(1).map(|x| x.as_slice()),
                t.get(2).map(|x| x.as_slice()),
                t.get(3).map(|x| x.as_slice()),
            ])?;
            log_index += 1;
        }
    }
    super::explorer::write(tx, block, receipts, addresses)
}

/// One `block_txs` row per transaction of `block`: its bytes, sender, receipt, gas used and the
/// block-wide index of its first log.
fn write_tx_rows(
    tx: &Connection,
    block: &SealedBlock,
    receipts: &[ReceiptEnvelope],
) -> Result<(), StorageError> {
    if receipts.len() != block.block.body.transactions.len() || block.senders.len() != receipts.len() {
        return Err(StorageError::Invalid(format!(
            "block {} has {} transactions, {} senders and {} receipts",
            block.hash,
            block.block.body.transactions.len(),
            block.senders.len(),
            receipts.len()
        )));
    }
    let mut row = tx.prepare_cached(
        "INSERT OR REPLACE INTO block_txs (block_hash, idx, sender, tx, receipt, gas_used, first_log) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let (mut cumulative, mut first_log) = (0u64, 0i64);
    for (i, ((t, sender), r)) in
        block.block.body.transactions.iter().zip(&block.senders).zip(receipts).enumerate()
    {
        let gas_used = r.cumulative_gas_used().saturating_sub(cumulative);
        cumulative = r.cumulative_gas_used();
        row.execute(params![
            block.hash.as_slice(),
            i as i64,
            sender.as_slice(),
            t.encoded_2718(),
            super::receipts::encode_receipt(r),
            gas_used as i64,
            first_log,
        ])?;
        first_log += r.logs().len() as i64;
    }
    Ok(())
}

/// Writes the `block_txs` rows of every stored block (schema migration to version 3); returns
/// the number of blocks indexed.
pub(crate) fn index_stored_blocks(conn: &Connection) -> Result<u64, StorageError> {
    let hashes: Vec<Vec<u8>> =
        conn.prepare("SELECT hash FROM blocks")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for hash in &hashes {
        let hash = blob_b256(hash)?;
        let (Some((block, _)), Some(receipts)) = (
            super::BlockQuery::block_by_hash(conn, &hash)?,
            super::BlockQuery::receipts_by_hash(conn, &hash)?,
        ) else {
            continue;
        };
        write_tx_rows(conn, &block, &receipts)?;
    }
    Ok(hashes.len() as u64)
}

fn write_state(
    tx: &Connection,
    number: u64,
    changes: &StateChanges,
    undo: &StateUndo,
) -> Result<(), StorageError> {
    let n = number as i64;
    {
        let mut code = tx.prepare_cached("INSERT OR IGNORE INTO code (hash, code) VALUES (?1, ?2)")?;
        for (hash, bytes) in &changes.codes {
            code.execute(params![hash.as_slice(), bytes.as_ref()])?;
        }
    }
    {
        let mut hist = tx.prepare_cached(
            "INSERT OR IGNORE INTO account_history (address, block, nonce, balance, code_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (addr, old) in &undo.accounts {
            match old {
                Some(i) => hist.execute(params![
                    addr.as_slice(),
                    n,
                    i.nonce as i64,
                    u256_blob(&i.balance),
                    i.code_hash.as_slice()
                ])?,
                None => {
                    hist.execute(params![addr.as_slice(), n, None::<i64>, None::<Vec<u8>>, None::<Vec<u8>>])?
                }
            };
        }
        let mut shist = tx.prepare_cached(
            "INSERT OR IGNORE INTO storage_history (address, slot, block, value) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (addr, slot, old) in &undo.storage {
            shist.execute(params![addr.as_slice(), u256_blob(slot), n, u256_blob(old)])?;
        }
    }
    {
        let mut wipe = tx.prepare_cached("DELETE FROM storage WHERE address = ?1")?;
        for addr in &changes.wiped {
            wipe.execute([addr.as_slice()])?;
        }
        let mut put =
            tx.prepare_cached("INSERT OR REPLACE INTO storage (address, slot, value) VALUES (?1, ?2, ?3)")?;
        let mut del = tx.prepare_cached("DELETE FROM storage WHERE address = ?1 AND slot = ?2")?;
        for (addr, slots) in &changes.storage {
            for (slot, value) in slots {
                if value.is_zero() {
                    del.execute(params![addr.as_slice(), u256_blob(slot)])?;
                } else {
                    put.execute(params![addr.as_slice(), u256_blob(slot), u256_blob(value)])?;
                }
            }
        }
        let mut acc = tx.prepare_cached(
            "INSERT OR REPLACE INTO accounts (address, nonce, balance, code_hash) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut del_acc = tx.prepare_cached("DELETE FROM accounts WHERE address = ?1")?;
        for (addr, info) in &changes.accounts {
            match info {
                Some(i) => {
                    acc.execute(params![
                        addr.as_slice(),
                        i.nonce as i64,
                        u256_blob(&i.balance),
                        i.code_hash.as_slice()
                    ])?;
                }
                None => {
                    del_acc.execute([addr.as_slice()])?;
                    wipe.execute([addr.as_slice()])?;
                }
            }
        }
    }
    Ok(())
}

/// Recent blocks whose Clique snapshot an archive node keeps (a node keeping a state window keeps
/// those of its window). Older ones, but every 1024th, are deleted: a snapshot is rebuilt from the
/// nearest kept one below by applying the headers in between (`clique::snapshot_after`).
pub const SNAPSHOT_WINDOW: u64 = super::DEFAULT_STATE_HISTORY;

/// Deletes the undo rows of every block up to `floor`, which a state at block `floor` or later
/// no longer needs (a range at the start of tables keyed by block).
fn prune_history(tx: &Connection, floor: u64) -> Result<(), StorageError> {
    let previous: Option<i64> =
        tx.query_row("SELECT value FROM meta WHERE key = 'history_floor'", [], |r| r.get(0)).optional()?;
    let floor = floor as i64;
    if previous.is_some_and(|p| p >= floor) {
        return Ok(());
    }
    tx.prepare_cached("DELETE FROM account_history WHERE block <= ?1")?.execute([floor])?;
    tx.prepare_cached("DELETE FROM storage_history WHERE block <= ?1")?.execute([floor])?;
    tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('history_floor', ?1)")?
        .execute([floor])?;
    Ok(())
}

/// Deletes the Clique snapshots below block `floor` but every 1024th. The range starts where
/// the previous prune ended (`snapshot_floor`; before it existed, `history_floor`), so the kept
/// ones below are not scanned again (a year of 1 s blocks keeps about 30,000).
fn prune_snapshots(tx: &Connection, floor: u64) -> Result<(), StorageError> {
    let previous = snapshot_floor(tx)?;
    let floor = floor as i64;
    if previous.is_some_and(|p| p >= floor) {
        return Ok(());
    }
    tx.prepare_cached("DELETE FROM snapshots WHERE number >= ?1 AND number < ?2 AND number % 1024 != 0")?
        .execute([previous.unwrap_or(0), floor])?;
    tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('snapshot_floor', ?1)")?
        .execute([floor])?;
    Ok(())
}

/// Where the last prune of the Clique snapshots ended (`snapshot_floor`; before it existed,
/// `history_floor`).
fn snapshot_floor(conn: &Connection) -> Result<Option<i64>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT value FROM meta WHERE key IN ('snapshot_floor', 'history_floor') ORDER BY key = 'history_floor' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// Blocks whose Clique snapshots one transaction of [`prune_archive_snapshots`] deletes (one
/// snapshot a block): a directory a year old holds about 31.5 million, which one transaction would
/// hold in the write-ahead log at once.
pub(crate) const SNAPSHOT_PRUNE_BATCH: u64 = 100_000;

/// On an archive node, the Clique snapshots below the window that nodes before
/// [`SNAPSHOT_WINDOW`] kept (one per block, for ever), deleted when the directory is opened rather
/// than in the next block, `batch` blocks per transaction (an interrupted prune resumes where its
/// last transaction ended); a no-op once pruned.
pub(crate) fn prune_archive_snapshots(conn: &Connection, batch: u64) -> Result<(), StorageError> {
    let head: Option<i64> = conn.query_row("SELECT MAX(number) FROM canonical", [], |r| r.get(0))?;
    let Some(floor) = head.and_then(|h| (h as u64).checked_sub(SNAPSHOT_WINDOW)) else { return Ok(()) };
    let mut done = snapshot_floor(conn)?.unwrap_or(0).max(0) as u64;
    if done < floor && floor - done > batch {
        tracing::info!(blocks = floor - done, "pruning the Clique snapshots older than the archive's window");
    }
    while done < floor {
        let next = floor.min(done.saturating_add(batch.max(1)));
        conn.execute_batch("BEGIN IMMEDIATE")?;
        if let Err(e) = prune_snapshots(conn, next) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        conn.execute_batch("COMMIT")?;
        done = next;
    }
    Ok(())
}

fn write_snapshot(tx: &Connection, snapshot: &Snapshot) -> Result<(), StorageError> {
    let json = serde_json::to_string(snapshot).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    tx.prepare_cached("INSERT OR REPLACE INTO snapshots (hash, number, snapshot) VALUES (?1, ?2, ?3)")?
        .execute(params![snapshot.hash.as_slice(), snapshot.number as i64, json])?;
    Ok(())
}

/// Commits (releases) `tx`, timing it for `p2pe_sqlite_commit_seconds` (outside a batch it is
/// the transaction's commit to disk).
fn commit_timed(tx: rusqlite::Savepoint<'_>) -> Result<(), rusqlite::Error> {
    let _timer = crate::metrics::Timer::start(crate::metrics::names::SQLITE_COMMIT);
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::Store;
    use rusqlite::Connection;

    /// The reads run in one transaction that ends with them, even when they panic (left open, it
    /// would swallow the next block's commit); inside an open batch the batch stays open.
    #[test]
    fn a_read_transaction_ends_with_its_reads_and_leaves_an_open_batch_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), None).unwrap();
        assert!(!store.in_read_transaction(|c| c.is_autocommit()), "the reads run in one transaction");
        assert!(store.connection().is_autocommit(), "which has ended");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.in_read_transaction(|_| -> () { panic!("a failing read") })
        }));
        assert!(panicked.is_err());
        assert!(store.connection().is_autocommit(), "a panic ends it too");
        store.connection().execute("INSERT INTO meta (key, value) VALUES ('after', x'01')", []).unwrap();
        let other = Connection::open(dir.path().join("chain.sqlite")).unwrap();
        let seen: i64 =
            other.query_row("SELECT COUNT(*) FROM meta WHERE key = 'after'", [], |r| r.get(0)).unwrap();
        assert_eq!(seen, 1, "a write after the reads is committed on its own");
        store.begin_batch().unwrap();
        assert!(!store.in_read_transaction(|c| c.is_autocommit()));
        assert!(!store.connection().is_autocommit(), "the batch is still open");
        store.rollback_batch().unwrap();
    }
}
