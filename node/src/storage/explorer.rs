//! Indexes for the block explorer (the `ots_` namespace Otterscan uses), written with each block
//! in its transaction and removed with it on a reorg:
//!
//! - `address_txs`: the canonical transactions an address appears in: as sender, as recipient, as
//!   the contract a transaction created, as the emitter of one of its logs, or as any account its
//!   execution loaded (called by any kind of call, internal ones included, created from a
//!   contract, or read by `BALANCE`/`EXTCODE*`; the executor records them per transaction at no
//!   extra cost, [`crate::execution::TxOutcome::accounts`]). This is a superset of Erigon's
//!   call-trace index. Blocks indexed by the one-off backfill below (data directories older than
//!   the index) have no executed accounts: for them only senders, recipients, creations and log
//!   emitters are indexed;
//! - `sender_txs`: a sender's transaction by nonce;
//! - `contract_creators`: the transaction that created a contract and its sender, for contracts
//!   created by a transaction (`to` empty);
//! - `internal_creations`: the transaction in which a contract created another one (`CREATE` /
//!   `CREATE2` inside it); the creating contract is read from the transaction's trace when asked
//!   for (`ots_getContractCreator`), so sealing never traces. Contracts in the genesis, and those
//!   created inside blocks indexed by the backfill below, have no entry.
//!
//! A data directory made before these indexes existed is indexed once when it is opened.
//!
//! Taking a block off the chain finds its rows by key, not through an index on the block number
//! (which would cost every row a second B-tree insert when sealing): `explorer_blocks` keeps, per
//! block, the distinct addresses it put in `address_txs` (one row per block), and the block's own
//! transactions give the `sender_txs` keys.

use alloy_consensus::ReceiptEnvelope;
use alloy_primitives::{Address, B256};
use rusqlite::{params, Connection, OptionalExtension};

use super::blocks::BlockQuery;
use super::StorageError;
use crate::primitives::SealedBlock;

/// The tables (created with the rest of the schema).
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS address_txs (address BLOB NOT NULL, number INTEGER NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (address, number, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sender_txs (sender BLOB NOT NULL, nonce INTEGER NOT NULL, hash BLOB NOT NULL, number INTEGER NOT NULL, PRIMARY KEY (sender, nonce)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS explorer_blocks (number INTEGER PRIMARY KEY, addresses BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS contract_creators (address BLOB PRIMARY KEY, hash BLOB NOT NULL, creator BLOB NOT NULL, number INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contract_creators_number ON contract_creators(number);
CREATE TABLE IF NOT EXISTS internal_creations (address BLOB PRIMARY KEY, hash BLOB NOT NULL, number INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS internal_creations_number ON internal_creations(number);
"#;

/// A transaction's place: block number and index in the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxPlace {
    /// Block number.
    pub number: u64,
    /// Index in the block.
    pub index: u32,
}

/// What the executor recorded per transaction for the indexes (empty for blocks indexed by the
/// backfill, which are not executed again).
#[derive(Debug, Clone, Copy, Default)]
pub struct TxAddresses<'a> {
    /// The accounts each transaction's execution loaded.
    pub loaded: &'a [Vec<Address>],
    /// The contracts each transaction created.
    pub created: &'a [Vec<Address>],
}

/// Indexes one block's transactions.
pub(crate) fn write(
    tx: &Connection,
    block: &SealedBlock,
    receipts: &[ReceiptEnvelope],
    addresses: TxAddresses<'_>,
) -> Result<(), StorageError> {
    let number = block.number() as i64;
    let mut addr =
        tx.prepare_cached("INSERT OR IGNORE INTO address_txs (address, number, idx) VALUES (?1, ?2, ?3)")?;
    let mut nonce = tx.prepare_cached(
        "INSERT OR REPLACE INTO sender_txs (sender, nonce, hash, number) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut creator = tx.prepare_cached(
        "INSERT OR REPLACE INTO contract_creators (address, hash, creator, number) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut internal = tx.prepare_cached(
        "INSERT OR REPLACE INTO internal_creations (address, hash, number) VALUES (?1, ?2, ?3)",
    )?;
    // The rows are gathered first and written in key order: consecutive inserts then land on
    // the same B-tree leaf (an address's rows of one block sit together), where transaction
    // order would move between the leaves of every address it touches.
    let txs = &block.block.body.transactions;
    let mut rows: Vec<(Address, i64)> = Vec::with_capacity(txs.len() * 3);
    let mut nonces: Vec<(Address, i64, B256)> = Vec::with_capacity(txs.len());
    let mut seen: Vec<Address> = Vec::new();
    for (i, t) in txs.iter().enumerate() {
        let Some(sender) = block.senders.get(i) else { continue };
        let hash = t.tx_hash();
        seen.clear();
        seen.push(*sender);
        seen.extend(alloy_consensus::Transaction::to(t));
        seen.extend(addresses.loaded.get(i).into_iter().flatten());
        let top = alloy_consensus::Transaction::to(t)
            .is_none()
            .then(|| sender.create(alloy_consensus::Transaction::nonce(t)));
        for c in addresses.created.get(i).into_iter().flatten().filter(|c| Some(**c) != top) {
            seen.push(*c);
            internal.execute(params![c.as_slice(), hash.as_slice(), number])?;
        }
        if let Some(r) = receipts.get(i) {
            seen.extend(r.logs().iter().map(|l| l.address));
            if alloy_consensus::Transaction::to(t).is_none() && r.status() {
                let created = sender.create(alloy_consensus::Transaction::nonce(t));
                seen.push(created);
                creator.execute(params![created.as_slice(), hash.as_slice(), sender.as_slice(), number])?;
            }
        }
        seen.sort_unstable();
        seen.dedup();
        rows.extend(seen.iter().map(|a| (*a, i as i64)));
        nonces.push((*sender, alloy_consensus::Transaction::nonce(t) as i64, *hash));
    }
    rows.sort_unstable();
    nonces.sort_unstable_by_key(|(s, n, _)| (*s, *n));
    for (a, i) in &rows {
        addr.execute(params![a.as_slice(), number, i])?;
    }
    for (sender, n, hash) in &nonces {
        nonce.execute(params![sender.as_slice(), n, hash.as_slice(), number])?;
    }
    let mut indexed: Vec<Address> = rows.into_iter().map(|(a, _)| a).collect();
    indexed.dedup();
    if !indexed.is_empty() {
        let addresses: Vec<u8> = indexed.iter().flat_map(|a| a.0 .0).collect();
        tx.prepare_cached("INSERT OR REPLACE INTO explorer_blocks (number, addresses) VALUES (?1, ?2)")?
            .execute(params![number, addresses])?;
    }
    Ok(())
}

/// Removes the entries of canonical block `block` (taken off the chain).
pub(crate) fn remove(tx: &Connection, block: &SealedBlock) -> Result<(), StorageError> {
    let number = block.number() as i64;
    let addresses: Option<Vec<u8>> = tx
        .query_row("SELECT addresses FROM explorer_blocks WHERE number = ?1", [number], |r| r.get(0))
        .optional()?;
    let addresses = addresses.unwrap_or_default();
    if !addresses.len().is_multiple_of(20) {
        return Err(StorageError::Corrupt(format!(
            "explorer_blocks row of block {number} is {} bytes, not a list of addresses",
            addresses.len()
        )));
    }
    let mut del = tx.prepare_cached("DELETE FROM address_txs WHERE address = ?1 AND number = ?2")?;
    for address in addresses.chunks_exact(20) {
        del.execute(params![address, number])?;
    }
    let mut del =
        tx.prepare_cached("DELETE FROM sender_txs WHERE sender = ?1 AND nonce = ?2 AND number = ?3")?;
    for (t, sender) in block.block.body.transactions.iter().zip(&block.senders) {
        del.execute(params![sender.as_slice(), alloy_consensus::Transaction::nonce(t) as i64, number])?;
    }
    tx.execute("DELETE FROM explorer_blocks WHERE number = ?1", [number])?;
    tx.execute("DELETE FROM contract_creators WHERE number = ?1", [number])?;
    tx.execute("DELETE FROM internal_creations WHERE number = ?1", [number])?;
    Ok(())
}

/// Schema version 6: builds `explorer_blocks` from the address index (through its number index,
/// still there), then drops the two number indexes it replaces. Returns the blocks listed.
pub(crate) fn migrate_block_lists(conn: &Connection) -> Result<u64, StorageError> {
    let mut put =
        conn.prepare("INSERT OR REPLACE INTO explorer_blocks (number, addresses) VALUES (?1, ?2)")?;
    let mut st = conn.prepare("SELECT DISTINCT number, address FROM address_txs ORDER BY number, address")?;
    let mut rows = st.query([])?;
    let (mut current, mut list, mut blocks) = (None::<i64>, Vec::new(), 0u64);
    while let Some(r) = rows.next()? {
        let (number, address): (i64, Vec<u8>) = (r.get(0)?, r.get(1)?);
        if current.is_some_and(|c| c != number) {
            put.execute(params![current, list])?;
            list.clear();
            blocks += 1;
        }
        current = Some(number);
        list.extend_from_slice(&address);
    }
    if current.is_some() {
        put.execute(params![current, list])?;
        blocks += 1;
    }
    conn.execute_batch("DROP INDEX IF EXISTS address_txs_number; DROP INDEX IF EXISTS sender_txs_number;")?;
    Ok(blocks)
}

/// Indexes every canonical block once, for a data directory made before the indexes existed.
pub(crate) fn backfill(conn: &Connection) -> Result<(), StorageError> {
    let done: Option<i64> =
        conn.query_row("SELECT 1 FROM meta WHERE key = 'explorer_index'", [], |r| r.get(0)).optional()?;
    if done.is_some() {
        return Ok(());
    }
    let head: Option<i64> = conn.query_row("SELECT MAX(number) FROM canonical", [], |r| r.get(0))?;
    let tx = conn.unchecked_transaction()?;
    for number in 1..=head.unwrap_or(0) as u64 {
        let Some(hash) = tx.canonical_hash(number)? else { continue };
        let (Some((block, _)), Some(receipts)) = (tx.block_by_hash(&hash)?, tx.receipts_by_hash(&hash)?)
        else {
            continue;
        };
        write(&tx, &block, &receipts, TxAddresses::default())?;
    }
    if head.unwrap_or(0) > 0 {
        tracing::info!(blocks = head.unwrap_or(0), "indexed the chain for the explorer (ots_ methods)");
    }
    tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('explorer_index', 1)", [])?;
    tx.commit()?;
    Ok(())
}

/// Read access to the explorer indexes.
pub trait ExplorerQuery {
    /// Up to `limit` places of transactions `address` appears in, in blocks below `before`
    /// (newest first).
    fn address_txs_before(
        &self,
        address: &Address,
        before: u64,
        limit: usize,
    ) -> Result<Vec<TxPlace>, StorageError>;
    /// Up to `limit` places of transactions `address` appears in, in blocks above `after`
    /// (oldest first).
    fn address_txs_after(
        &self,
        address: &Address,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TxPlace>, StorageError>;
    /// The places of the transactions `address` appears in, in block `number`.
    fn address_txs_in_block(&self, address: &Address, number: u64) -> Result<Vec<TxPlace>, StorageError>;
    /// The hash of `sender`'s canonical transaction with `nonce`.
    fn tx_by_sender_nonce(&self, sender: &Address, nonce: u64) -> Result<Option<B256>, StorageError>;
    /// The creating transaction's hash and sender of contract `address`.
    fn contract_creator(&self, address: &Address) -> Result<Option<(B256, Address)>, StorageError>;

    /// The transaction in which another contract created `address` (its creator is in the
    /// transaction's trace).
    fn internal_creation(&self, address: &Address) -> Result<Option<B256>, StorageError>;

    /// One page of `address`'s transactions for Otterscan's search: up to `size` places in
    /// blocks below `from` (`older`; `from` 0 = from the head) or above it, completed with the
    /// rest of the last block's places (a page ends with a whole block), and whether there is
    /// more beyond that block.
    fn address_txs_page(
        &self,
        address: &Address,
        from: u64,
        size: usize,
        older: bool,
    ) -> Result<(Vec<TxPlace>, bool), StorageError> {
        let fetch = |beyond, limit| match older {
            true => self.address_txs_before(address, beyond, limit),
            false => self.address_txs_after(address, beyond, limit),
        };
        let start = if older && from == 0 { u64::MAX } else { from };
        let mut places = fetch(start, size)?;
        let Some(last) = places.last().copied() else { return Ok((places, false)) };
        for rest in self.address_txs_in_block(address, last.number)? {
            if !places.contains(&rest) {
                places.push(rest);
            }
        }
        let more = !fetch(last.number, 1)?.is_empty();
        Ok((places, more))
    }
}

impl ExplorerQuery for super::ReadPool {
    fn address_txs_before(
        &self,
        address: &Address,
        before: u64,
        limit: usize,
    ) -> Result<Vec<TxPlace>, StorageError> {
        self.with(|c| c.address_txs_before(address, before, limit))
    }
    fn address_txs_after(
        &self,
        address: &Address,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TxPlace>, StorageError> {
        self.with(|c| c.address_txs_after(address, after, limit))
    }
    fn address_txs_in_block(&self, address: &Address, number: u64) -> Result<Vec<TxPlace>, StorageError> {
        self.with(|c| c.address_txs_in_block(address, number))
    }
    fn tx_by_sender_nonce(&self, sender: &Address, nonce: u64) -> Result<Option<B256>, StorageError> {
        self.with(|c| c.tx_by_sender_nonce(sender, nonce))
    }
    fn contract_creator(&self, address: &Address) -> Result<Option<(B256, Address)>, StorageError> {
        self.with(|c| c.contract_creator(address))
    }
    fn internal_creation(&self, address: &Address) -> Result<Option<B256>, StorageError> {
        self.with(|c| c.internal_creation(address))
    }
}

fn places(rows: Vec<(i64, i64)>) -> Vec<TxPlace> {
    rows.into_iter().map(|(n, i)| TxPlace { number: n as u64, index: i as u32 }).collect()
}

impl ExplorerQuery for Connection {
    fn address_txs_before(
        &self,
        address: &Address,
        before: u64,
        limit: usize,
    ) -> Result<Vec<TxPlace>, StorageError> {
        let mut q = self.prepare_cached(
            "SELECT number, idx FROM address_txs WHERE address = ?1 AND number < ?2 ORDER BY number DESC, idx DESC LIMIT ?3",
        )?;
        let rows = q
            .query_map(params![address.as_slice(), before.min(i64::MAX as u64) as i64, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(places(rows))
    }

    fn address_txs_after(
        &self,
        address: &Address,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TxPlace>, StorageError> {
        let mut q = self.prepare_cached(
            "SELECT number, idx FROM address_txs WHERE address = ?1 AND number > ?2 ORDER BY number ASC, idx ASC LIMIT ?3",
        )?;
        let rows = q
            .query_map(params![address.as_slice(), after.min(i64::MAX as u64) as i64, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(places(rows))
    }

    fn address_txs_in_block(&self, address: &Address, number: u64) -> Result<Vec<TxPlace>, StorageError> {
        let mut q = self.prepare_cached(
            "SELECT number, idx FROM address_txs WHERE address = ?1 AND number = ?2 ORDER BY idx",
        )?;
        let rows = q
            .query_map(params![address.as_slice(), number.min(i64::MAX as u64) as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(places(rows))
    }

    fn tx_by_sender_nonce(&self, sender: &Address, nonce: u64) -> Result<Option<B256>, StorageError> {
        let hash: Option<Vec<u8>> = self
            .query_row(
                "SELECT hash FROM sender_txs WHERE sender = ?1 AND nonce = ?2",
                params![sender.as_slice(), nonce.min(i64::MAX as u64) as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(hash.map(|h| B256::from_slice(&h)))
    }

    fn contract_creator(&self, address: &Address) -> Result<Option<(B256, Address)>, StorageError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .query_row(
                "SELECT hash, creator FROM contract_creators WHERE address = ?1",
                [address.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(h, c)| (B256::from_slice(&h), Address::from_slice(&c))))
    }

    fn internal_creation(&self, address: &Address) -> Result<Option<B256>, StorageError> {
        let row: Option<Vec<u8>> = self
            .query_row("SELECT hash FROM internal_creations WHERE address = ?1", [address.as_slice()], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(row.map(|h| B256::from_slice(&h)))
    }
}
