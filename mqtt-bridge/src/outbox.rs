//! The SQLite outbox: every accepted reading, every signed transaction, every dead letter and every
//! counter reset. WAL mode with `synchronous=FULL`, so a committed reading survives `kill -9` and power
//! loss; the MQTT message is acknowledged only after the commit.
//!
//! Reading states: `0` pending (not in any transaction), `1` in flight (in a signed transaction without a
//! receipt), `2` confirmed, `3` dead (refused by the contract, also in `dead_letters`).
//! Transaction states: `0` sent (no receipt yet; resent verbatim), `1` mined with success, `2` reverted,
//! `3` dropped (its nonce was used by another transaction; its readings went back to pending).

use std::path::Path;

use alloy_primitives::{Address, B256};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::config::DecreasePolicy;
use crate::config::Limits;
use crate::decode::{Rejection, Sample};
use crate::ingest::{judge, MeterState, Reset, Verdict};

/// An outbox error (SQLite).
#[derive(Debug, thiserror::Error)]
#[error("outbox: {0}")]
pub struct OutboxError(#[from] rusqlite::Error);

/// Result alias for outbox operations.
pub type Result<T> = std::result::Result<T, OutboxError>;

/// Reading state: not yet in a transaction.
pub const PENDING: i64 = 0;
/// Reading state: in a transaction without a receipt.
pub const IN_FLIGHT: i64 = 1;
/// Reading state: on chain.
pub const CONFIRMED: i64 = 2;
/// Reading state: refused by the contract.
pub const DEAD: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS readings (
    id          INTEGER PRIMARY KEY,
    meter       TEXT    NOT NULL,
    raw_import  INTEGER NOT NULL,
    raw_export  INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    import_wh   INTEGER NOT NULL,
    export_wh   INTEGER NOT NULL,
    seq         INTEGER,
    received_ms INTEGER NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,
    tx_id       INTEGER,
    isolate     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (meter, raw_import, raw_export, ts)
);
CREATE INDEX IF NOT EXISTS readings_state ON readings (state, meter, id);
CREATE INDEX IF NOT EXISTS readings_tx ON readings (tx_id);
CREATE TABLE IF NOT EXISTS meter_state (
    meter       TEXT PRIMARY KEY,
    raw_import  INTEGER NOT NULL,
    raw_export  INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    base_import INTEGER NOT NULL,
    base_export INTEGER NOT NULL,
    epoch       TEXT,
    seq         INTEGER
);
CREATE TABLE IF NOT EXISTS txs (
    id           INTEGER PRIMARY KEY,
    sender       BLOB    NOT NULL,
    nonce        INTEGER NOT NULL,
    hash         BLOB    NOT NULL,
    raw          BLOB    NOT NULL,
    readings     INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_sent_ms INTEGER NOT NULL,
    sends        INTEGER NOT NULL DEFAULT 0,
    state        INTEGER NOT NULL DEFAULT 0,
    block        INTEGER,
    UNIQUE (sender, nonce)
);
CREATE INDEX IF NOT EXISTS txs_state ON txs (state);
CREATE TABLE IF NOT EXISTS dead_letters (
    id      INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    topic   TEXT    NOT NULL,
    meter   TEXT,
    reason  TEXT    NOT NULL,
    detail  TEXT    NOT NULL,
    payload BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS counter_resets (
    id     INTEGER PRIMARY KEY,
    at_ms  INTEGER NOT NULL,
    meter  TEXT    NOT NULL,
    kind   TEXT    NOT NULL,
    detail TEXT    NOT NULL,
    ts     INTEGER NOT NULL
);
";

/// One MQTT message, decoded, to be stored.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A decoded cumulative sample of a configured meter.
    Sample {
        /// Topic it came on.
        topic: String,
        /// Meter id.
        meter: String,
        /// The decoded sample.
        sample: Sample,
        /// The meter's counter-decrease policy.
        policy: DecreasePolicy,
        /// The raw payload (for the dead-letter table).
        payload: Vec<u8>,
    },
    /// A message refused before it became a sample.
    Refused {
        /// Topic it came on.
        topic: String,
        /// Meter id, if the topic is a configured meter's.
        meter: Option<String>,
        /// Why.
        rejection: Rejection,
        /// The raw payload (possibly cut to the size limit).
        payload: Vec<u8>,
    },
    /// A monitoring-only message (nothing to store).
    Monitoring,
}

/// What became of one [`Incoming`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored as pending reading `id`.
    Committed {
        /// Row id.
        id: i64,
        /// Counter reset detected at this reading.
        reset: Option<Reset>,
        /// Sequence numbers were skipped.
        seq_gap: bool,
    },
    /// Already stored.
    Duplicate,
    /// Dead-lettered.
    DeadLettered(Rejection),
    /// Nothing to store.
    Ignored,
}

/// A pending reading, as the submitter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReading {
    /// Row id.
    pub id: i64,
    /// Meter id.
    pub meter: String,
    /// Effective import counter, Wh.
    pub import_wh: u64,
    /// Effective export counter, Wh.
    pub export_wh: u64,
    /// Device timestamp.
    pub timestamp: u64,
    /// Must be sent alone (its batch reverted).
    pub isolate: bool,
}

/// A signed transaction without a receipt.
#[derive(Debug, Clone)]
pub struct SentTx {
    /// Row id.
    pub id: i64,
    /// Sender.
    pub sender: Address,
    /// Nonce.
    pub nonce: u64,
    /// Transaction hash.
    pub hash: B256,
    /// EIP-2718 bytes, resent verbatim.
    pub raw: Vec<u8>,
    /// When it was last sent (ms since the epoch).
    pub last_sent_ms: i64,
    /// How many readings it carries.
    pub readings: usize,
}

/// A transaction about to be recorded.
#[derive(Debug, Clone)]
pub struct NewTx {
    /// Sender.
    pub sender: Address,
    /// Nonce.
    pub nonce: u64,
    /// Hash.
    pub hash: B256,
    /// EIP-2718 bytes.
    pub raw: Vec<u8>,
    /// The readings it carries.
    pub reading_ids: Vec<i64>,
}

/// Counts for `/metrics` and `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Readings not yet in a transaction.
    pub pending: u64,
    /// Readings in transactions without a receipt.
    pub in_flight: u64,
    /// Transactions without a receipt.
    pub txs_in_flight: u64,
    /// Rows in the dead-letter table.
    pub dead_letters: u64,
    /// Confirmed readings.
    pub confirmed: u64,
}

/// A reading confirmed on chain, for lag metrics.
#[derive(Debug, Clone, Copy)]
pub struct ConfirmedReading {
    /// When the bridge received it (ms).
    pub received_ms: i64,
    /// Device timestamp (s).
    pub timestamp: u64,
}

/// The outbox database.
pub struct Outbox {
    conn: Connection,
}

fn to_i64(v: u64) -> i64 {
    v as i64
}

fn to_u64(v: i64) -> u64 {
    v as u64
}

impl Outbox {
    /// Opens (creating if needed) the outbox at `path`: WAL, `synchronous=FULL`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// The `journal_mode` and `synchronous` pragmas in force (for tests and `/health`).
    pub fn durability(&self) -> Result<(String, i64)> {
        let mode: String = self.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let sync: i64 = self.conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        Ok((mode, sync))
    }

    fn meter_state(tx: &rusqlite::Transaction<'_>, meter: &str) -> Result<Option<MeterState>> {
        Ok(tx
            .query_row(
                "SELECT raw_import, raw_export, ts, base_import, base_export, epoch, seq FROM meter_state WHERE meter = ?1",
                [meter],
                |r| {
                    Ok(MeterState {
                        raw_import: to_u64(r.get(0)?),
                        raw_export: to_u64(r.get(1)?),
                        timestamp: to_u64(r.get(2)?),
                        base_import: to_u64(r.get(3)?),
                        base_export: to_u64(r.get(4)?),
                        epoch: r.get(5)?,
                        seq: r.get::<_, Option<i64>>(6)?.map(to_u64),
                    })
                },
            )
            .optional()?)
    }

    fn insert_dead(
        tx: &rusqlite::Transaction<'_>,
        now_ms: i64,
        topic: &str,
        meter: Option<&str>,
        rej: &Rejection,
        payload: &[u8],
    ) -> Result<()> {
        tx.execute(
            "INSERT INTO dead_letters (at_ms, topic, meter, reason, detail, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now_ms, topic, meter, rej.reason.as_str(), rej.detail, payload],
        )?;
        Ok(())
    }

    /// Stores a batch of messages in **one** SQLite transaction (one fsync) and returns what became of
    /// each, in order. Only after this returns may the messages be acknowledged.
    pub fn ingest(&mut self, items: &[Incoming], now_ms: i64, limits: &Limits) -> Result<Vec<Outcome>> {
        let now_secs = (now_ms / 1000) as u64;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Incoming::Monitoring => out.push(Outcome::Ignored),
                Incoming::Refused { topic, meter, rejection, payload } => {
                    Self::insert_dead(&tx, now_ms, topic, meter.as_deref(), rejection, payload)?;
                    out.push(Outcome::DeadLettered(rejection.clone()));
                }
                Incoming::Sample { topic, meter, sample, policy, payload } => {
                    let duplicate: bool = tx
                        .query_row(
                            "SELECT 1 FROM readings WHERE meter = ?1 AND raw_import = ?2 AND raw_export = ?3 AND ts = ?4",
                            params![meter, to_i64(sample.import_wh), to_i64(sample.export_wh), to_i64(sample.timestamp)],
                            |_| Ok(()),
                        )
                        .optional()?
                        .is_some();
                    let prev = Self::meter_state(&tx, meter)?;
                    match judge(prev.as_ref(), sample, *policy, now_secs, limits, duplicate) {
                        Verdict::Duplicate => out.push(Outcome::Duplicate),
                        Verdict::Reject(rej) => {
                            Self::insert_dead(&tx, now_ms, topic, Some(meter), &rej, payload)?;
                            out.push(Outcome::DeadLettered(rej));
                        }
                        Verdict::Accept { import_wh, export_wh, state, reset, seq_gap } => {
                            tx.execute(
                                "INSERT INTO readings (meter, raw_import, raw_export, ts, import_wh, export_wh, seq, received_ms)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                                params![
                                    meter,
                                    to_i64(sample.import_wh),
                                    to_i64(sample.export_wh),
                                    to_i64(sample.timestamp),
                                    to_i64(import_wh),
                                    to_i64(export_wh),
                                    sample.seq.map(to_i64),
                                    now_ms
                                ],
                            )?;
                            let id = tx.last_insert_rowid();
                            tx.execute(
                                "INSERT INTO meter_state (meter, raw_import, raw_export, ts, base_import, base_export, epoch, seq)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                                 ON CONFLICT (meter) DO UPDATE SET raw_import = excluded.raw_import,
                                   raw_export = excluded.raw_export, ts = excluded.ts, base_import = excluded.base_import,
                                   base_export = excluded.base_export, epoch = excluded.epoch, seq = excluded.seq",
                                params![
                                    meter,
                                    to_i64(state.raw_import),
                                    to_i64(state.raw_export),
                                    to_i64(state.timestamp),
                                    to_i64(state.base_import),
                                    to_i64(state.base_export),
                                    state.epoch,
                                    state.seq.map(to_i64)
                                ],
                            )?;
                            if let Some(r) = &reset {
                                tx.execute(
                                    "INSERT INTO counter_resets (at_ms, meter, kind, detail, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                                    params![now_ms, meter, r.kind, r.detail, to_i64(sample.timestamp)],
                                )?;
                            }
                            out.push(Outcome::Committed { id, reset, seq_gap });
                        }
                    }
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Pending readings of meters that have nothing in flight, oldest first, at most `limit`.
    pub fn pending_candidates(&self, limit: usize) -> Result<Vec<PendingReading>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, meter, import_wh, export_wh, ts, isolate FROM readings
             WHERE state = 0 AND meter NOT IN (SELECT meter FROM readings WHERE state = 1)
             ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(PendingReading {
                id: r.get(0)?,
                meter: r.get(1)?,
                import_wh: to_u64(r.get(2)?),
                export_wh: to_u64(r.get(3)?),
                timestamp: to_u64(r.get(4)?),
                isolate: r.get::<_, i64>(5)? != 0,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Records signed transactions and marks their readings in flight, in one SQLite transaction.
    /// Called **before** the transactions are sent, so none is ever sent without being stored.
    pub fn record_txs(&mut self, txs: &[NewTx], now_ms: i64) -> Result<Vec<i64>> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = Vec::with_capacity(txs.len());
        for t in txs {
            tx.execute(
                "INSERT INTO txs (sender, nonce, hash, raw, readings, created_ms, last_sent_ms, sends) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)",
                params![t.sender.as_slice(), to_i64(t.nonce), t.hash.as_slice(), t.raw, t.reading_ids.len() as i64, now_ms],
            )?;
            let id = tx.last_insert_rowid();
            {
                let mut upd = tx.prepare_cached(
                    "UPDATE readings SET state = 1, tx_id = ?1 WHERE id = ?2 AND state = 0",
                )?;
                for r in &t.reading_ids {
                    upd.execute(params![id, r])?;
                }
            }
            ids.push(id);
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Transactions without a receipt, by id.
    pub fn sent_txs(&self) -> Result<Vec<SentTx>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, sender, nonce, hash, raw, last_sent_ms, readings FROM txs WHERE state = 0 ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            let sender: Vec<u8> = r.get(1)?;
            let hash: Vec<u8> = r.get(3)?;
            Ok(SentTx {
                id: r.get(0)?,
                sender: Address::from_slice(&sender),
                nonce: to_u64(r.get(2)?),
                hash: B256::from_slice(&hash),
                raw: r.get(4)?,
                last_sent_ms: r.get(5)?,
                readings: r.get::<_, i64>(6)? as usize,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Notes that transactions were (re)sent at `now_ms`.
    pub fn mark_sent(&mut self, ids: &[i64], now_ms: i64) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut upd =
                tx.prepare_cached("UPDATE txs SET last_sent_ms = ?1, sends = sends + 1 WHERE id = ?2")?;
            for id in ids {
                upd.execute(params![now_ms, id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The highest nonce recorded for `sender`.
    pub fn max_nonce(&self, sender: Address) -> Result<Option<u64>> {
        let v: Option<i64> = self.conn.query_row(
            "SELECT MAX(nonce) FROM txs WHERE sender = ?1",
            [sender.as_slice()],
            |r| r.get(0),
        )?;
        Ok(v.map(to_u64))
    }

    /// A successful receipt: the transaction and its readings are confirmed.
    pub fn confirm(&mut self, tx_id: i64, block: u64) -> Result<Vec<ConfirmedReading>> {
        let tx = self.conn.transaction()?;
        let confirmed = {
            let mut stmt =
                tx.prepare_cached("SELECT received_ms, ts FROM readings WHERE tx_id = ?1 AND state = 1")?;
            let rows = stmt.query_map([tx_id], |r| {
                Ok(ConfirmedReading { received_ms: r.get(0)?, timestamp: to_u64(r.get(1)?) })
            })?;
            rows.collect::<std::result::Result<Vec<_>, _>>()?
        };
        tx.execute("UPDATE readings SET state = 2 WHERE tx_id = ?1 AND state = 1", [tx_id])?;
        tx.execute("UPDATE txs SET state = 1, block = ?2 WHERE id = ?1", params![tx_id, to_i64(block)])?;
        tx.commit()?;
        Ok(confirmed)
    }

    /// The readings of a transaction (for revert handling).
    pub fn tx_readings(&self, tx_id: i64) -> Result<Vec<PendingReading>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, meter, import_wh, export_wh, ts, isolate FROM readings WHERE tx_id = ?1 AND state = 1 ORDER BY id",
        )?;
        let rows = stmt.query_map([tx_id], |r| {
            Ok(PendingReading {
                id: r.get(0)?,
                meter: r.get(1)?,
                import_wh: to_u64(r.get(2)?),
                export_wh: to_u64(r.get(3)?),
                timestamp: to_u64(r.get(4)?),
                isolate: r.get::<_, i64>(5)? != 0,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// A reverted transaction with several readings: they go back to pending, each to be sent alone.
    pub fn revert_to_isolated(&mut self, tx_id: i64, block: u64) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE readings SET state = 0, tx_id = NULL, isolate = 1 WHERE tx_id = ?1 AND state = 1",
            [tx_id],
        )?;
        tx.execute("UPDATE txs SET state = 2, block = ?2 WHERE id = ?1", params![tx_id, to_i64(block)])?;
        tx.commit()?;
        Ok(())
    }

    /// A reverted single-reading transaction: the reading is dead-lettered with the contract's reason.
    pub fn revert_to_dead(
        &mut self,
        tx_id: i64,
        block: u64,
        rejection: &Rejection,
        now_ms: i64,
    ) -> Result<Vec<PendingReading>> {
        let readings = self.tx_readings(tx_id)?;
        let tx = self.conn.transaction()?;
        for r in &readings {
            let payload = format!(
                "{{\"meter\":\"{}\",\"import_wh\":{},\"export_wh\":{},\"ts\":{}}}",
                r.meter, r.import_wh, r.export_wh, r.timestamp
            );
            Self::insert_dead(&tx, now_ms, "(chain)", Some(&r.meter), rejection, payload.as_bytes())?;
        }
        tx.execute("UPDATE readings SET state = 3 WHERE tx_id = ?1 AND state = 1", [tx_id])?;
        tx.execute("UPDATE txs SET state = 2, block = ?2 WHERE id = ?1", params![tx_id, to_i64(block)])?;
        tx.commit()?;
        Ok(readings)
    }

    /// A transaction whose nonce was taken by another one: its readings go back to pending.
    pub fn drop_tx(&mut self, tx_id: i64) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("UPDATE readings SET state = 0, tx_id = NULL WHERE tx_id = ?1 AND state = 1", [tx_id])?;
        tx.execute("UPDATE txs SET state = 3 WHERE id = ?1", [tx_id])?;
        tx.commit()?;
        Ok(())
    }

    /// Queue and table sizes.
    pub fn depth(&self) -> Result<Depth> {
        let count =
            |sql: &str| -> Result<u64> { Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
        Ok(Depth {
            pending: count("SELECT COUNT(*) FROM readings WHERE state = 0")?,
            in_flight: count("SELECT COUNT(*) FROM readings WHERE state = 1")?,
            txs_in_flight: count("SELECT COUNT(*) FROM txs WHERE state = 0")?,
            dead_letters: count("SELECT COUNT(*) FROM dead_letters")?,
            confirmed: count("SELECT COUNT(*) FROM readings WHERE state = 2")?,
        })
    }

    /// Dead letters as (reason, meter, detail), oldest first (for tests and operators).
    pub fn dead_letters(&self) -> Result<Vec<(String, Option<String>, String)>> {
        let mut stmt = self.conn.prepare("SELECT reason, meter, detail FROM dead_letters ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Counter resets as (meter, kind, detail), oldest first.
    pub fn counter_resets(&self) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare("SELECT meter, kind, detail FROM counter_resets ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Reason;

    fn limits() -> Limits {
        Limits { max_payload_bytes: 1024, max_future_secs: 30, max_past_secs: 86_400 }
    }

    fn sample(meter: &str, i: u64, ts: u64) -> Incoming {
        Incoming::Sample {
            topic: format!("meters/{meter}"),
            meter: meter.into(),
            sample: Sample {
                import_wh: i,
                export_wh: 0,
                timestamp: ts,
                seq: None,
                epoch: None,
                power_w: None,
            },
            policy: DecreasePolicy::Reject,
            payload: b"{}".to_vec(),
        }
    }

    const NOW_MS: i64 = 1_800_000_000_000;

    #[test]
    fn durable_pragmas_and_dedup_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        {
            let mut o = Outbox::open(&path).unwrap();
            assert_eq!(o.durability().unwrap(), ("wal".to_string(), 2));
            let out = o
                .ingest(&[sample("a", 1, 1_799_999_000), sample("a", 2, 1_799_999_001)], NOW_MS, &limits())
                .unwrap();
            assert!(matches!(out[0], Outcome::Committed { .. }));
            assert!(matches!(out[1], Outcome::Committed { .. }));
        }
        let mut o = Outbox::open(&path).unwrap();
        let out = o
            .ingest(
                &[
                    sample("a", 1, 1_799_999_000),
                    sample("a", 2, 1_799_999_001),
                    sample("a", 1, 1_799_999_002),
                ],
                NOW_MS,
                &limits(),
            )
            .unwrap();
        assert_eq!(out[0], Outcome::Duplicate);
        assert_eq!(out[1], Outcome::Duplicate);
        assert!(matches!(&out[2], Outcome::DeadLettered(r) if r.reason == Reason::CounterBackwards));
        assert_eq!(o.depth().unwrap().pending, 2);
        assert_eq!(o.dead_letters().unwrap().len(), 1);
    }

    #[test]
    fn tx_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(&dir.path().join("o.sqlite")).unwrap();
        o.ingest(
            &[sample("a", 1, 1_799_999_000), sample("b", 1, 1_799_999_000), sample("a", 2, 1_799_999_001)],
            NOW_MS,
            &limits(),
        )
        .unwrap();
        let c = o.pending_candidates(10).unwrap();
        assert_eq!(c.len(), 3);
        let sender = Address::repeat_byte(1);
        let ids = o
            .record_txs(
                &[NewTx {
                    sender,
                    nonce: 0,
                    hash: B256::repeat_byte(2),
                    raw: vec![1, 2],
                    reading_ids: vec![c[0].id, c[2].id],
                }],
                NOW_MS,
            )
            .unwrap();
        // meter a is in flight: only b is a candidate now
        let c2 = o.pending_candidates(10).unwrap();
        assert_eq!(c2.iter().map(|r| r.meter.as_str()).collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(o.max_nonce(sender).unwrap(), Some(0));
        assert_eq!(o.sent_txs().unwrap().len(), 1);
        o.revert_to_isolated(ids[0], 5).unwrap();
        let c3 = o.pending_candidates(10).unwrap();
        assert_eq!(c3.len(), 3);
        assert!(c3.iter().filter(|r| r.meter == "a").all(|r| r.isolate));
        let ids = o
            .record_txs(
                &[NewTx {
                    sender,
                    nonce: 1,
                    hash: B256::repeat_byte(3),
                    raw: vec![3],
                    reading_ids: vec![c[0].id],
                }],
                NOW_MS,
            )
            .unwrap();
        let conf = o.confirm(ids[0], 6).unwrap();
        assert_eq!(conf.len(), 1);
        let d = o.depth().unwrap();
        assert_eq!((d.pending, d.in_flight, d.confirmed, d.txs_in_flight), (2, 0, 1, 0));
    }
}
