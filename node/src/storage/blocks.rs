//! Read queries: blocks, receipts, transaction locations and logs.

use alloy_consensus::{Header, ReceiptEnvelope, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, Log, B256, U256};
use alloy_rlp::Decodable;
use rusqlite::{params, Connection, OptionalExtension};

use super::receipts::decode_receipts;
use super::writer::{blob_address, blob_b256, blob_u256};
use super::StorageError;
use crate::primitives::{Block, SealedBlock};

/// Where a transaction was included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// Block number.
    pub number: u64,
    /// Index in the block.
    pub index: u64,
}

/// One transaction of a stored block, read from its own row (`block_txs`): everything the RPC
/// transaction and receipt objects need, without decoding the rest of the block.
#[derive(Debug, Clone)]
pub struct StoredTx {
    /// The block's hash.
    pub block_hash: B256,
    /// The block's number.
    pub block_number: u64,
    /// The block's timestamp.
    pub block_timestamp: u64,
    /// Index in the block.
    pub index: u64,
    /// The transaction.
    pub tx: TxEnvelope,
    /// Its sender.
    pub sender: Address,
    /// Its receipt.
    pub receipt: ReceiptEnvelope,
    /// Gas it used (its receipt's cumulative gas less the previous one's).
    pub gas_used: u64,
    /// Block-wide index of its first log.
    pub first_log_index: u64,
}

/// A log with its position in the chain.
#[derive(Debug, Clone)]
pub struct StoredLog {
    /// The log.
    pub log: Log,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Block timestamp.
    pub block_timestamp: u64,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Index of the transaction in the block.
    pub tx_index: u64,
    /// Index of the log in the block.
    pub log_index: u64,
}

/// A log query over a range of canonical blocks.
#[derive(Debug, Clone, Default)]
pub struct LogFilterQuery {
    /// First block (inclusive).
    pub from: u64,
    /// Last block (inclusive).
    pub to: u64,
    /// Emitting contracts (any of them; empty = all).
    pub addresses: Vec<Address>,
    /// Per topic position, the accepted values (empty = any).
    pub topics: [Vec<B256>; 4],
}

impl LogFilterQuery {
    /// Whether `log` passes the address and topic filters.
    pub fn matches(&self, log: &Log) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(&log.address) {
            return false;
        }
        let topics = log.topics();
        for (i, wanted) in self.topics.iter().enumerate() {
            if wanted.is_empty() {
                continue;
            }
            match topics.get(i) {
                Some(t) if wanted.contains(t) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Read-side block queries: the provider RPC, the network and the CLI read blocks through. It
/// is implemented on a SQLite connection (the writer's, inside its batch) and on the
/// [`super::ReadPool`] (each query on one of its connections), so no caller outside `storage`
/// writes SQL or holds a raw connection.
pub trait BlockQuery {
    /// Hash of the canonical block at `number`.
    fn canonical_hash(&self, number: u64) -> Result<Option<B256>, StorageError>;
    /// Header of a block by hash.
    fn header_by_hash(&self, hash: &B256) -> Result<Option<(Header, U256)>, StorageError>;
    /// A full block by hash, with senders and total difficulty.
    fn block_by_hash(&self, hash: &B256) -> Result<Option<(SealedBlock, U256)>, StorageError>;
    /// Receipts of a block by hash.
    fn receipts_by_hash(&self, hash: &B256) -> Result<Option<Vec<ReceiptEnvelope>>, StorageError>;
    /// Where a transaction is.
    fn tx_location(&self, hash: &B256) -> Result<Option<TxLocation>, StorageError>;
    /// Transaction `index` of block `block_hash`, read from its own row: two indexed lookups,
    /// whatever the block's size.
    fn tx_at(&self, block_hash: &B256, index: u64) -> Result<Option<StoredTx>, StorageError>;
    /// Logs matching a filter, in chain order.
    fn logs(&self, q: &LogFilterQuery, limit: usize) -> Result<Vec<StoredLog>, StorageError>;
    /// The canonical `(number, hash)` pairs from `from` to `to`, in order.
    fn canonical_range(&self, from: u64, to: u64) -> Result<Vec<(u64, B256)>, StorageError>;
    /// The number of the highest canonical block (0 with only the genesis).
    fn canonical_head_number(&self) -> Result<u64, StorageError>;

    /// The canonical header at `number`, with its total difficulty.
    fn canonical_header(&self, number: u64) -> Result<Option<(Header, U256)>, StorageError> {
        match self.canonical_hash(number)? {
            Some(hash) => self.header_by_hash(&hash),
            None => Ok(None),
        }
    }

    /// The canonical block at `number`, with its total difficulty.
    fn canonical_block(&self, number: u64) -> Result<Option<(SealedBlock, U256)>, StorageError> {
        match self.canonical_hash(number)? {
            Some(hash) => self.block_by_hash(&hash),
            None => Ok(None),
        }
    }

    /// The canonical block at `number` with its receipts.
    fn canonical_block_with_receipts(
        &self,
        number: u64,
    ) -> Result<Option<(SealedBlock, Vec<ReceiptEnvelope>)>, StorageError> {
        let Some(hash) = self.canonical_hash(number)? else { return Ok(None) };
        let block = self.block_by_hash(&hash)?.map(|(b, _)| b);
        Ok(block.zip(self.receipts_by_hash(&hash)?))
    }

    /// The canonical block that includes transaction `tx_hash`, and the transaction's index.
    /// `None` also if the block found there does not hold it at that index (a reorganisation
    /// between the reads, where they are not in one read transaction).
    fn block_of_tx(&self, tx_hash: &B256) -> Result<Option<(SealedBlock, usize)>, StorageError> {
        let Some(loc) = self.tx_location(tx_hash)? else { return Ok(None) };
        let found = self.canonical_block(loc.number)?.map(|(b, _)| (b, loc.index as usize));
        Ok(found.filter(|(b, i)| b.block.body.transactions.get(*i).map(|t| *t.tx_hash()) == Some(*tx_hash)))
    }

    /// The canonical transaction `tx_hash` from its own row (O(1) in its block's size): its
    /// index entry, the canonical block at that height, the row at that index. The row is
    /// returned only if it holds `tx_hash` (a reorganisation between the reads could otherwise
    /// answer with another transaction at the same place); [`super::ReadPool`] runs the three
    /// reads in one read transaction, so a reorganisation never makes it miss either.
    fn canonical_tx(&self, tx_hash: &B256) -> Result<Option<StoredTx>, StorageError> {
        let Some(loc) = self.tx_location(tx_hash)? else { return Ok(None) };
        let Some(block_hash) = self.canonical_hash(loc.number)? else { return Ok(None) };
        Ok(self.tx_at(&block_hash, loc.index)?.filter(|t| t.tx.tx_hash() == tx_hash))
    }

    /// The canonical headers from `from` to `to`, in order; the answer ends early (stays
    /// contiguous) where a reorganisation between the reads left a gap.
    fn canonical_headers(&self, from: u64, to: u64) -> Result<Vec<Header>, StorageError> {
        let mut out = Vec::new();
        for (expected, (number, hash)) in (from..=to).zip(self.canonical_range(from, to)?) {
            if number != expected {
                break;
            }
            let Some((header, _)) = self.header_by_hash(&hash)? else { break };
            out.push(header);
        }
        Ok(out)
    }
}

impl BlockQuery for Connection {
    fn canonical_hash(&self, number: u64) -> Result<Option<B256>, StorageError> {
        let h: Option<Vec<u8>> = self
            .prepare_cached("SELECT hash FROM canonical WHERE number = ?1")?
            .query_row([number as i64], |r| r.get(0))
            .optional()?;
        h.map(|h| blob_b256(&h)).transpose()
    }

    fn header_by_hash(&self, hash: &B256) -> Result<Option<(Header, U256)>, StorageError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .prepare_cached("SELECT header, td FROM blocks WHERE hash = ?1")?
            .query_row([hash.as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(h, td)| {
            let header = Header::decode(&mut h.as_slice())
                .map_err(|e| StorageError::Corrupt(format!("header: {e}")))?;
            Ok((header, blob_u256(&td)?))
        })
        .transpose()
    }

    fn block_by_hash(&self, hash: &B256) -> Result<Option<(SealedBlock, U256)>, StorageError> {
        Ok(read_block(self, hash)?.map(|(block, td, _)| (block, td)))
    }

    fn receipts_by_hash(&self, hash: &B256) -> Result<Option<Vec<ReceiptEnvelope>>, StorageError> {
        let raw: Option<Vec<u8>> = self
            .prepare_cached("SELECT receipts FROM blocks WHERE hash = ?1")?
            .query_row([hash.as_slice()], |r| r.get(0))
            .optional()?;
        raw.map(|r| decode_receipts(&r)).transpose()
    }

    fn tx_location(&self, hash: &B256) -> Result<Option<TxLocation>, StorageError> {
        let row: Option<(i64, i64)> = self
            .prepare_cached("SELECT number, idx FROM tx_index WHERE hash = ?1")?
            .query_row([hash.as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row.map(|(n, i)| TxLocation { number: n as u64, index: i as u64 }))
    }

    fn tx_at(&self, block_hash: &B256, index: u64) -> Result<Option<StoredTx>, StorageError> {
        type Row = (Vec<u8>, Vec<u8>, Vec<u8>, i64, i64);
        let row: Option<Row> = self
            .prepare_cached(
                "SELECT sender, tx, receipt, gas_used, first_log FROM block_txs WHERE block_hash = ?1 AND idx = ?2",
            )?
            .query_row(params![block_hash.as_slice(), index as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((sender, tx, receipt, gas_used, first_log)) = row else { return Ok(None) };
        // The header alone: `td` sits after the block and receipts blobs in the row, and reading
        // it walks their overflow pages, which grow with the block.
        let header: Option<Vec<u8>> = self
            .prepare_cached("SELECT header FROM blocks WHERE hash = ?1")?
            .query_row([block_hash.as_slice()], |r| r.get(0))
            .optional()?;
        let Some(header) = header else { return Ok(None) };
        let header = Header::decode(&mut header.as_slice())
            .map_err(|e| StorageError::Corrupt(format!("header: {e}")))?;
        let corrupt = |what: &str, e: alloy_eips::eip2718::Eip2718Error| {
            StorageError::Corrupt(format!("{what} {index} of block {block_hash}: {e}"))
        };
        Ok(Some(StoredTx {
            block_hash: *block_hash,
            block_number: header.number,
            block_timestamp: header.timestamp,
            index,
            tx: TxEnvelope::decode_2718(&mut tx.as_slice()).map_err(|e| corrupt("transaction", e))?,
            sender: blob_address(&sender)?,
            receipt: super::receipts::decode_receipt(&receipt)
                .map_err(|e| StorageError::Corrupt(format!("receipt {index} of block {block_hash}: {e}")))?,
            gas_used: gas_used as u64,
            first_log_index: first_log as u64,
        }))
    }

    fn logs(&self, q: &LogFilterQuery, limit: usize) -> Result<Vec<StoredLog>, StorageError> {
        // Find candidate blocks through the log index, then read their receipts.
        let mut sql = String::from("SELECT DISTINCT number FROM logs WHERE number BETWEEN ?1 AND ?2");
        let mut args: Vec<Vec<u8>> = Vec::new();
        if !q.addresses.is_empty() {
            sql.push_str(" AND address IN (");
            for (i, a) in q.addresses.iter().enumerate() {
                sql.push_str(if i == 0 { "?" } else { ",?" });
                args.push(a.to_vec());
            }
            sql.push(')');
        }
        for (pos, wanted) in q.topics.iter().enumerate() {
            if wanted.is_empty() {
                continue;
            }
            sql.push_str(&format!(" AND topic{pos} IN ("));
            for (i, t) in wanted.iter().enumerate() {
                sql.push_str(if i == 0 { "?" } else { ",?" });
                args.push(t.to_vec());
            }
            sql.push(')');
        }
        sql.push_str(" ORDER BY number");
        let mut stmt = self.prepare(&sql)?;
        let mut bind: Vec<&dyn rusqlite::ToSql> = vec![];
        let from = q.from as i64;
        let to = q.to as i64;
        bind.push(&from);
        bind.push(&to);
        for a in &args {
            bind.push(a);
        }
        let numbers: Vec<i64> = stmt.query_map(bind.as_slice(), |r| r.get(0))?.collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for n in numbers {
            let Some(hash) = self.canonical_hash(n as u64)? else { continue };
            let Some((block, _)) = self.block_by_hash(&hash)? else { continue };
            let Some(receipts) = self.receipts_by_hash(&hash)? else { continue };
            let mut log_index = 0u64;
            for (tx_index, (r, tx)) in receipts.iter().zip(&block.block.body.transactions).enumerate() {
                for log in r.logs() {
                    if q.matches(log) {
                        out.push(StoredLog {
                            log: log.clone(),
                            block_number: n as u64,
                            block_hash: hash,
                            block_timestamp: block.header().timestamp,
                            tx_hash: *tx.tx_hash(),
                            tx_index: tx_index as u64,
                            log_index,
                        });
                        if out.len() > limit {
                            return Ok(out);
                        }
                    }
                    log_index += 1;
                }
            }
        }
        Ok(out)
    }

    fn canonical_range(&self, from: u64, to: u64) -> Result<Vec<(u64, B256)>, StorageError> {
        canonical_range(self, from, to)
    }

    fn canonical_head_number(&self) -> Result<u64, StorageError> {
        let n: i64 = self
            .prepare_cached("SELECT COALESCE(MAX(number), 0) FROM canonical")?
            .query_row([], |r| r.get(0))?;
        Ok(n as u64)
    }
}

/// A full block by hash, with its senders, total difficulty and encoded size (for
/// [`super::BlockCache`]'s budget).
pub(crate) fn read_block(
    conn: &Connection,
    hash: &B256,
) -> Result<Option<(SealedBlock, U256, usize)>, StorageError> {
    let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT block, senders, td FROM blocks WHERE hash = ?1")?
        .query_row([hash.as_slice()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    row.map(|(b, s, td)| {
        let block =
            Block::decode(&mut b.as_slice()).map_err(|e| StorageError::Corrupt(format!("block: {e}")))?;
        let senders = s.chunks(20).map(blob_address).collect::<Result<Vec<_>, _>>()?;
        Ok((SealedBlock { hash: *hash, block, senders }, blob_u256(&td)?, b.len()))
    })
    .transpose()
}

impl BlockQuery for super::ReadPool {
    fn canonical_hash(&self, number: u64) -> Result<Option<B256>, StorageError> {
        self.with(|c| c.canonical_hash(number))
    }
    fn header_by_hash(&self, hash: &B256) -> Result<Option<(Header, U256)>, StorageError> {
        self.with(|c| c.header_by_hash(hash))
    }
    fn block_by_hash(&self, hash: &B256) -> Result<Option<(SealedBlock, U256)>, StorageError> {
        self.with(|c| c.block_by_hash(hash))
    }
    fn receipts_by_hash(&self, hash: &B256) -> Result<Option<Vec<ReceiptEnvelope>>, StorageError> {
        self.with(|c| c.receipts_by_hash(hash))
    }
    fn tx_location(&self, hash: &B256) -> Result<Option<TxLocation>, StorageError> {
        self.with(|c| c.tx_location(hash))
    }
    fn tx_at(&self, block_hash: &B256, index: u64) -> Result<Option<StoredTx>, StorageError> {
        self.with(|c| c.tx_at(block_hash, index))
    }
    fn block_of_tx(&self, tx_hash: &B256) -> Result<Option<(SealedBlock, usize)>, StorageError> {
        self.in_read_transaction(|c| c.block_of_tx(tx_hash))
    }
    fn canonical_tx(&self, tx_hash: &B256) -> Result<Option<StoredTx>, StorageError> {
        self.in_read_transaction(|c| c.canonical_tx(tx_hash))
    }
    fn logs(&self, q: &LogFilterQuery, limit: usize) -> Result<Vec<StoredLog>, StorageError> {
        self.with(|c| c.logs(q, limit))
    }
    fn canonical_range(&self, from: u64, to: u64) -> Result<Vec<(u64, B256)>, StorageError> {
        self.with(|c| c.canonical_range(from, to))
    }
    fn canonical_head_number(&self) -> Result<u64, StorageError> {
        self.with(|c| c.canonical_head_number())
    }
}

/// Reads one canonical block's number → hash mapping range (used by re-verification).
pub fn canonical_range(conn: &Connection, from: u64, to: u64) -> Result<Vec<(u64, B256)>, StorageError> {
    let mut st = conn.prepare_cached(
        "SELECT number, hash FROM canonical WHERE number BETWEEN ?1 AND ?2 ORDER BY number",
    )?;
    let rows = st
        .query_map(params![from as i64, to as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (n, h) = row?;
        out.push((n as u64, blob_b256(&h)?));
    }
    Ok(out)
}
