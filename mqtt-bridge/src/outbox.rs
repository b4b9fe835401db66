//! The SQLite outbox: every accepted reading, every signed transaction, every dead letter and every
//! counter reset. WAL mode with `synchronous=FULL`, so a committed reading survives `kill -9` and power
//! loss; the MQTT message is acknowledged only after the commit.
//!
//! Reading states: `0` pending (not in any transaction), `1` in flight (in a signed transaction without a
//! receipt), `2` confirmed, `3` dead (refused by the contract, also in `dead_letters`).
//! Transaction states: `0` sent (no receipt yet; resent verbatim), `1` mined with success and
//! `chain.confirmations` blocks deep (final), `2` reverted, `3` dropped (its nonce was used by another
//! transaction; its readings went back to pending), `4` mined but not yet deep enough (its readings stay
//! in flight; checked every round, and back to `0` and resent if the receipt disappears in a reorg).
//!
//! Refused input goes to `dead_letters`, physically implausible readings to `quarantine`. Both are
//! bounded: at most `limits.dead_letters_per_minute` rows per minute and source (a meter, or all
//! unknown topics together; beyond it a message is counted and acked but not stored), rows older than
//! `limits.dead_letter_retention_secs` are deleted, and each table keeps at most
//! `limits.max_dead_letters` rows.

use std::collections::HashMap;
use std::path::Path;

use alloy_primitives::{Address, B256};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::config::Limits;
use crate::decode::{Rejection, Sample};
use crate::ingest::{judge, History, MeterRules, MeterState, Reset, Verdict};

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

/// Transaction state: sent, no receipt.
pub const TX_SENT: i64 = 0;
/// Transaction state: mined with success, at least `confirmations` deep.
pub const TX_CONFIRMED: i64 = 1;
/// Transaction state: mined with success, not yet `confirmations` deep.
pub const TX_MINED: i64 = 4;

/// Rate-limit key shared by all topics no meter is configured for.
/// `readings.isolate` of a reading sent alone with the per-transaction gas cap (1: alone).
const ISOLATE_AT_CAP: i64 = 2;

const UNKNOWN_SOURCE: &str = "(unknown topic)";

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
CREATE INDEX IF NOT EXISTS dead_letters_at ON dead_letters (at_ms);
CREATE TABLE IF NOT EXISTS counter_resets (
    id     INTEGER PRIMARY KEY,
    at_ms  INTEGER NOT NULL,
    meter  TEXT    NOT NULL,
    kind   TEXT    NOT NULL,
    detail TEXT    NOT NULL,
    ts     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS counter_resets_meter ON counter_resets (meter, ts);
CREATE TABLE IF NOT EXISTS quarantine (
    id         INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    topic      TEXT    NOT NULL,
    meter      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    raw_import INTEGER NOT NULL,
    raw_export INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    payload    BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_at ON quarantine (at_ms);
CREATE TABLE IF NOT EXISTS meter_epochs (
    meter   TEXT    NOT NULL,
    epoch   TEXT    NOT NULL,
    last_ts INTEGER NOT NULL,
    PRIMARY KEY (meter, epoch)
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
        /// The meter's rules (counter-decrease policy, rated power).
        rules: MeterRules,
        /// The raw payload (for the dead-letter table).
        payload: Vec<u8>,
        /// It came on the shared session while the meter has a session of its own: stored only if
        /// it is accepted (it arrived first), otherwise dropped as [`Outcome::Copy`] (the meter's own
        /// session delivers the message that is judged and counted).
        copy: bool,
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
    /// The shared session's copy of a message on a meter's topic that is not a reading (refused or
    /// monitoring): the meter's own session delivers the message that is judged and counted.
    Copy,
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
    /// Quarantined (implausible rise or epoch flapping): stored apart, never signed.
    Quarantined(Rejection),
    /// Refused, but not stored: its source is over `limits.dead_letters_per_minute`.
    Suppressed(Rejection),
    /// Nothing to store.
    Ignored,
    /// A copy (see [`Incoming::Copy`]) not stored: refused, a duplicate, or not a reading.
    Copy,
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
    /// Sent alone, it ran out of gas with the static allowance (the node gave no estimate): it
    /// is sent with the per-transaction cap.
    pub at_cap: bool,
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
    /// The block it was seen mined in, while it is not yet deep enough (state `4`).
    pub mined_block: Option<u64>,
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
    /// Rows in the quarantine table.
    pub quarantined: u64,
}

/// A row of the quarantine table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedReading {
    /// `implausible_rise` or `epoch_flapping`.
    pub reason: String,
    /// Meter id.
    pub meter: String,
    /// Why, in words.
    pub detail: String,
    /// Raw import counter as sent (Wh).
    pub raw_import: u64,
    /// Raw export counter as sent (Wh).
    pub raw_export: u64,
    /// Device timestamp.
    pub timestamp: u64,
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
    /// Token buckets of refused-message storage, per source: (tokens, last refill ms).
    buckets: HashMap<String, (f64, i64)>,
}

fn to_i64(v: u64) -> i64 {
    v as i64
}

fn to_u64(v: i64) -> u64 {
    v as u64
}

/// Takes a token from `source`'s bucket (`per_minute` tokens a minute, as many at most).
fn take_token(buckets: &mut HashMap<String, (f64, i64)>, source: &str, now_ms: i64, per_minute: u64) -> bool {
    let cap = per_minute as f64;
    let b = buckets.entry(source.to_string()).or_insert((cap, now_ms));
    let elapsed = (now_ms - b.1).max(0) as f64;
    b.0 = (b.0 + elapsed * cap / 60_000.0).min(cap);
    b.1 = now_ms;
    if b.0 >= 1.0 {
        b.0 -= 1.0;
        true
    } else {
        false
    }
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
        Ok(Self { conn, buckets: HashMap::new() })
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
        // The buckets are taken out of `self` while the SQLite transaction borrows the connection.
        let mut buckets = std::mem::take(&mut self.buckets);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(items.len());
        let mut refused_written = false;
        for item in items {
            let outcome = match item {
                Incoming::Monitoring => Outcome::Ignored,
                Incoming::Copy => Outcome::Copy,
                Incoming::Refused { topic, meter, rejection, payload } => {
                    let source = meter.as_deref().unwrap_or(UNKNOWN_SOURCE);
                    if take_token(&mut buckets, source, now_ms, limits.dead_letters_per_minute) {
                        Self::insert_dead(&tx, now_ms, topic, meter.as_deref(), rejection, payload)?;
                        refused_written = true;
                        Outcome::DeadLettered(rejection.clone())
                    } else {
                        Outcome::Suppressed(rejection.clone())
                    }
                }
                Incoming::Sample { topic, meter, sample, rules, payload, copy } => {
                    let verdict = Self::judge_sample(&tx, meter, sample, *rules, now_secs, limits)?;
                    if *copy && !matches!(verdict, Verdict::Accept { .. }) {
                        out.push(Outcome::Copy);
                        continue;
                    }
                    let refused = match &verdict {
                        Verdict::Reject(r) | Verdict::Quarantine(r) => Some(r.clone()),
                        _ => None,
                    };
                    let over = refused.is_some()
                        && !take_token(&mut buckets, meter, now_ms, limits.dead_letters_per_minute);
                    if let (true, Some(r)) = (over, refused.as_ref()) {
                        Outcome::Suppressed(r.clone())
                    } else {
                        refused_written |= refused.is_some();
                        Self::apply(&tx, now_ms, topic, meter, sample, payload, verdict)?
                    }
                }
            };
            out.push(outcome);
        }
        if refused_written {
            Self::purge(&tx, now_ms, limits)?;
        }
        tx.commit()?;
        self.buckets = buckets;
        Ok(out)
    }

    /// Judges one sample against the stored state and history of its meter.
    fn judge_sample(
        tx: &rusqlite::Transaction<'_>,
        meter: &str,
        sample: &Sample,
        rules: MeterRules,
        now_secs: u64,
        limits: &Limits,
    ) -> Result<Verdict> {
        let stored_duplicate = tx
            .query_row(
                "SELECT 1 FROM readings WHERE meter = ?1 AND raw_import = ?2 AND raw_export = ?3 AND ts = ?4",
                params![meter, to_i64(sample.import_wh), to_i64(sample.export_wh), to_i64(sample.timestamp)],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        let prev = Self::meter_state(tx, meter)?;
        let since = to_i64(sample.timestamp.saturating_sub(limits.counter_reset_window_secs));
        let epoch_seen_before = match &sample.epoch {
            Some(e) => tx
                .query_row(
                    "SELECT 1 FROM meter_epochs WHERE meter = ?1 AND epoch = ?2 AND last_ts >= ?3",
                    params![meter, e, since],
                    |_| Ok(()),
                )
                .optional()?
                .is_some(),
            None => false,
        };
        let resets_in_window: i64 = tx.query_row(
            "SELECT COUNT(*) FROM counter_resets WHERE meter = ?1 AND ts >= ?2",
            params![meter, since],
            |r| r.get(0),
        )?;
        let history =
            History { stored_duplicate, epoch_seen_before, resets_in_window: resets_in_window as u64 };
        Ok(judge(prev.as_ref(), sample, rules, now_secs, limits, history))
    }

    /// Writes what a verdict means and returns the outcome.
    fn apply(
        tx: &rusqlite::Transaction<'_>,
        now_ms: i64,
        topic: &str,
        meter: &str,
        sample: &Sample,
        payload: &[u8],
        verdict: Verdict,
    ) -> Result<Outcome> {
        match verdict {
            Verdict::Duplicate => Ok(Outcome::Duplicate),
            Verdict::Reject(rej) => {
                Self::insert_dead(tx, now_ms, topic, Some(meter), &rej, payload)?;
                Ok(Outcome::DeadLettered(rej))
            }
            Verdict::Quarantine(rej) => {
                tx.execute(
                    "INSERT INTO quarantine (at_ms, topic, meter, reason, detail, raw_import, raw_export, ts, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        now_ms,
                        topic,
                        meter,
                        rej.reason.as_str(),
                        rej.detail,
                        to_i64(sample.import_wh),
                        to_i64(sample.export_wh),
                        to_i64(sample.timestamp),
                        payload
                    ],
                )?;
                Ok(Outcome::Quarantined(rej))
            }
            Verdict::Accept { import_wh, export_wh, state, reset, seq_gap } => {
                let prev = Self::meter_state(tx, meter)?;
                Self::store_reading(tx, now_ms, meter, sample, import_wh, export_wh, &state)?;
                let id = tx.last_insert_rowid();
                if let Some(r) = &reset {
                    tx.execute(
                        "INSERT INTO counter_resets (at_ms, meter, kind, detail, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![now_ms, meter, r.kind, r.detail, to_i64(sample.timestamp)],
                    )?;
                    if let Some(p) = prev.as_ref().filter(|p| p.epoch.is_some()) {
                        tx.execute(
                            "INSERT INTO meter_epochs (meter, epoch, last_ts) VALUES (?1, ?2, ?3)
                             ON CONFLICT (meter, epoch) DO UPDATE SET last_ts = MAX(last_ts, excluded.last_ts)",
                            params![meter, p.epoch, to_i64(p.timestamp)],
                        )?;
                    }
                }
                Ok(Outcome::Committed { id, reset, seq_gap })
            }
        }
    }

    /// Inserts the meter's new state and then the accepted reading, so that `last_insert_rowid` is the
    /// reading's id.
    fn store_reading(
        tx: &rusqlite::Transaction<'_>,
        now_ms: i64,
        meter: &str,
        sample: &Sample,
        import_wh: u64,
        export_wh: u64,
        state: &MeterState,
    ) -> Result<()> {
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
        Ok(())
    }

    /// Retention and size bound of the dead-letter and quarantine tables.
    fn purge(tx: &rusqlite::Transaction<'_>, now_ms: i64, limits: &Limits) -> Result<()> {
        let cutoff = now_ms - (limits.dead_letter_retention_secs as i64).saturating_mul(1000);
        let keep = to_i64(limits.max_dead_letters);
        for table in ["dead_letters", "quarantine"] {
            tx.execute(&format!("DELETE FROM {table} WHERE at_ms < ?1"), [cutoff])?;
            tx.execute(
                &format!("DELETE FROM {table} WHERE id <= (SELECT MAX(id) FROM {table}) - ?1"),
                [keep],
            )?;
        }
        Ok(())
    }

    /// Deletes dead letters and quarantined readings past `dead_letter_retention_secs` (and over
    /// `max_dead_letters`); run periodically, so rows expire even when nothing new is refused.
    pub fn purge_expired(&mut self, now_ms: i64, limits: &Limits) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::purge(&tx, now_ms, limits)?;
        tx.commit()?;
        Ok(())
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
                at_cap: r.get::<_, i64>(5)? == ISOLATE_AT_CAP,
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

    /// Transactions that are not final: sent without a receipt (state `0`) or mined but not yet
    /// `confirmations` deep (state `4`, with `mined_block`), by id.
    pub fn sent_txs(&self) -> Result<Vec<SentTx>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, sender, nonce, hash, raw, last_sent_ms, readings, state, block FROM txs
             WHERE state IN (0, 4) ORDER BY id",
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
                mined_block: if r.get::<_, i64>(7)? == TX_MINED {
                    r.get::<_, Option<i64>>(8)?.map(to_u64)
                } else {
                    None
                },
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// A successful receipt in `block`, not yet deep enough: the readings stay in flight.
    pub fn mark_mined(&mut self, tx_id: i64, block: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE txs SET state = 4, block = ?2 WHERE id = ?1 AND state IN (0, 4)",
            params![tx_id, to_i64(block)],
        )?;
        Ok(())
    }

    /// A mined transaction whose receipt is gone (its block left the canonical chain): back to sent,
    /// due for a verbatim resend at once.
    pub fn unmine(&mut self, tx_id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE txs SET state = 0, block = NULL, last_sent_ms = 0 WHERE id = ?1 AND state = 4",
            [tx_id],
        )?;
        Ok(())
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

    /// A successful receipt `confirmations` deep: the transaction and its readings are confirmed.
    pub fn confirm(&mut self, tx_id: i64, block: u64) -> Result<Vec<ConfirmedReading>> {
        let tx = self.conn.transaction()?;
        let confirmed = Self::confirm_in(&tx, tx_id, block)?;
        tx.commit()?;
        Ok(confirmed)
    }

    /// Confirms the readings of `tx_id` still in flight and the transaction itself, inside `tx`.
    fn confirm_in(tx: &rusqlite::Transaction<'_>, tx_id: i64, block: u64) -> Result<Vec<ConfirmedReading>> {
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
        Ok(confirmed)
    }

    /// A successful batch `confirmations` deep in which the contract skipped some readings
    /// (`ReadingSkipped` events): those are dead-lettered with their reason, the rest confirmed, in one
    /// SQLite transaction. Returns (confirmed, skipped). Ids in `skipped` that are not in flight in this
    /// transaction are ignored.
    pub fn confirm_except(
        &mut self,
        tx_id: i64,
        block: u64,
        skipped: &[(i64, Rejection)],
        now_ms: i64,
    ) -> Result<(Vec<ConfirmedReading>, Vec<PendingReading>)> {
        let in_tx = self.tx_readings(tx_id)?;
        let tx = self.conn.transaction()?;
        let mut dead = Vec::new();
        for (id, rej) in skipped {
            let Some(r) = in_tx.iter().find(|r| r.id == *id) else { continue };
            let payload = format!(
                "{{\"meter\":\"{}\",\"import_wh\":{},\"export_wh\":{},\"ts\":{}}}",
                r.meter, r.import_wh, r.export_wh, r.timestamp
            );
            Self::insert_dead(&tx, now_ms, "(chain)", Some(&r.meter), rej, payload.as_bytes())?;
            tx.execute(
                "UPDATE readings SET state = 3 WHERE id = ?1 AND tx_id = ?2 AND state = 1",
                params![id, tx_id],
            )?;
            dead.push(r.clone());
        }
        let confirmed = Self::confirm_in(&tx, tx_id, block)?;
        tx.commit()?;
        Ok((confirmed, dead))
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
                at_cap: r.get::<_, i64>(5)? == ISOLATE_AT_CAP,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// A reverted transaction: its readings go back to pending, each to be sent alone (a batch that
    /// reverted). With `at_cap` (a single reading that ran out of gas), the readings are sent with the per-transaction gas cap ([`PendingReading::at_cap`]).
    pub fn revert_to_isolated(&mut self, tx_id: i64, block: u64, at_cap: bool) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE readings SET state = 0, tx_id = NULL, isolate = ?2 WHERE tx_id = ?1 AND state = 1",
            params![tx_id, if at_cap { ISOLATE_AT_CAP } else { 1 }],
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
            txs_in_flight: count("SELECT COUNT(*) FROM txs WHERE state IN (0, 4)")?,
            dead_letters: count("SELECT COUNT(*) FROM dead_letters")?,
            confirmed: count("SELECT COUNT(*) FROM readings WHERE state = 2")?,
            quarantined: count("SELECT COUNT(*) FROM quarantine")?,
        })
    }

    /// Dead letters as (reason, meter, detail), oldest first (for tests and operators).
    pub fn dead_letters(&self) -> Result<Vec<(String, Option<String>, String)>> {
        let mut stmt = self.conn.prepare("SELECT reason, meter, detail FROM dead_letters ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Quarantined readings, oldest first.
    pub fn quarantined(&self) -> Result<Vec<QuarantinedReading>> {
        let mut stmt = self.conn.prepare(
            "SELECT reason, meter, detail, raw_import, raw_export, ts FROM quarantine ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(QuarantinedReading {
                reason: r.get(0)?,
                meter: r.get(1)?,
                detail: r.get(2)?,
                raw_import: to_u64(r.get(3)?),
                raw_export: to_u64(r.get(4)?),
                timestamp: to_u64(r.get(5)?),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// The state of the transaction carrying reading `reading_id`, and its block (for tests).
    pub fn reading_tx(&self, reading_id: i64) -> Result<Option<(i64, Option<u64>)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT t.state, t.block FROM readings r JOIN txs t ON t.id = r.tx_id WHERE r.id = ?1",
                [reading_id],
                |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.map(to_u64))),
            )
            .optional()?)
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
    use crate::config::DecreasePolicy;
    use crate::decode::Reason;

    fn limits() -> Limits {
        Limits { max_payload_bytes: 1024, max_future_secs: 30, max_past_secs: 86_400, ..Limits::default() }
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
            rules: MeterRules { policy: DecreasePolicy::Reject, max_power_w: 43_470 },
            payload: b"{}".to_vec(),
            copy: false,
        }
    }

    fn copy(item: Incoming) -> Incoming {
        match item {
            Incoming::Sample { topic, meter, sample, rules, payload, .. } => {
                Incoming::Sample { topic, meter, sample, rules, payload, copy: true }
            }
            other => other,
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
    fn a_copy_is_stored_only_when_it_arrives_first_and_never_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(&dir.path().join("o.sqlite")).unwrap();
        // The meter's own session delivered readings 1 and 2; the shared session's copies come later
        // (older than the last accepted reading, or the same): dropped, not `out_of_order` dead letters.
        o.ingest(&[sample("a", 1, 1_799_999_000), sample("a", 2, 1_799_999_001)], NOW_MS, &limits()).unwrap();
        let out = o
            .ingest(
                &[copy(sample("a", 1, 1_799_999_000)), copy(sample("a", 2, 1_799_999_001)), Incoming::Copy],
                NOW_MS,
                &limits(),
            )
            .unwrap();
        assert_eq!(out, vec![Outcome::Copy, Outcome::Copy, Outcome::Copy]);
        // A copy that arrives first (the meter's session is behind, or did not exist yet) is stored,
        // and the meter session's message after it is the duplicate.
        let out = o.ingest(&[copy(sample("a", 3, 1_799_999_002))], NOW_MS, &limits()).unwrap();
        assert!(matches!(out[0], Outcome::Committed { .. }));
        let out = o.ingest(&[sample("a", 3, 1_799_999_002)], NOW_MS, &limits()).unwrap();
        assert_eq!(out[0], Outcome::Duplicate);
        // A copy the rules refuse is dropped: only the meter session's message is dead-lettered.
        let out = o.ingest(&[copy(sample("a", 1, 1_799_999_003))], NOW_MS, &limits()).unwrap();
        assert_eq!(out[0], Outcome::Copy);
        let out = o.ingest(&[sample("a", 1, 1_799_999_003)], NOW_MS, &limits()).unwrap();
        assert!(matches!(&out[0], Outcome::DeadLettered(r) if r.reason == Reason::CounterBackwards));
        assert_eq!(o.depth().unwrap().pending, 3);
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
        o.revert_to_isolated(ids[0], 5, false).unwrap();
        let c3 = o.pending_candidates(10).unwrap();
        assert_eq!(c3.len(), 3);
        assert!(c3.iter().filter(|r| r.meter == "a").all(|r| r.isolate && !r.at_cap));
        assert!(c3.iter().all(|r| !r.at_cap));
        // Sent alone, one of them runs out of gas: it is sent again at the gas cap.
        let alone = o
            .record_txs(
                &[NewTx {
                    sender,
                    nonce: 1,
                    hash: B256::repeat_byte(4),
                    raw: vec![4],
                    reading_ids: vec![c[2].id],
                }],
                NOW_MS,
            )
            .unwrap();
        o.revert_to_isolated(alone[0], 6, true).unwrap();
        let c4 = o.pending_candidates(10).unwrap();
        let at_cap: Vec<i64> = c4.iter().filter(|r| r.at_cap).map(|r| r.id).collect();
        assert_eq!(at_cap, vec![c[2].id]);
        assert!(c4.iter().all(|r| r.isolate || r.meter == "b"));
        let ids = o
            .record_txs(
                &[NewTx {
                    sender,
                    nonce: 2,
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

    fn refused(meter: Option<&str>, topic: &str) -> Incoming {
        Incoming::Refused {
            topic: topic.into(),
            meter: meter.map(Into::into),
            rejection: Rejection::new(Reason::Malformed, "x"),
            payload: b"garbage".to_vec(),
        }
    }

    #[test]
    fn dead_letters_are_rate_limited_per_source() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(&dir.path().join("o.sqlite")).unwrap();
        let l = Limits { dead_letters_per_minute: 10, ..limits() };
        // Under and at the limit: stored; over it: suppressed. Unknown topics share one bucket.
        let items: Vec<Incoming> = (0..11).map(|i| refused(None, &format!("meters/x{i}/r"))).collect();
        let out = o.ingest(&items, NOW_MS, &l).unwrap();
        assert!(out[..10].iter().all(|r| matches!(r, Outcome::DeadLettered(_))), "{out:?}");
        assert!(matches!(out[10], Outcome::Suppressed(_)));
        // Another source has its own bucket.
        let out = o.ingest(&[refused(Some("a"), "meters/a")], NOW_MS, &l).unwrap();
        assert!(matches!(out[0], Outcome::DeadLettered(_)));
        // 6 s later one token is back (10 a minute).
        let out = o.ingest(&[refused(None, "t"), refused(None, "t")], NOW_MS + 6_000, &l).unwrap();
        assert!(matches!(out[0], Outcome::DeadLettered(_)) && matches!(out[1], Outcome::Suppressed(_)));
        assert_eq!(o.dead_letters().unwrap().len(), 12);
    }

    #[test]
    fn dead_letters_have_a_retention_and_a_size_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(&dir.path().join("o.sqlite")).unwrap();
        let l = Limits {
            dead_letters_per_minute: 1_000_000,
            max_dead_letters: 100,
            dead_letter_retention_secs: 600,
            ..limits()
        };
        let items: Vec<Incoming> = (0..99).map(|_| refused(None, "t")).collect();
        o.ingest(&items, NOW_MS, &l).unwrap();
        assert_eq!(o.depth().unwrap().dead_letters, 99, "under the bound");
        o.ingest(&[refused(None, "t")], NOW_MS, &l).unwrap();
        assert_eq!(o.depth().unwrap().dead_letters, 100, "at the bound");
        o.ingest(&[refused(None, "t")], NOW_MS, &l).unwrap();
        assert_eq!(o.depth().unwrap().dead_letters, 100, "over it: the oldest went");
        // Retention: 600 s later (exactly) the rows stay, one ms later they go.
        o.ingest(&[refused(None, "t")], NOW_MS + 600_000, &l).unwrap();
        assert_eq!(o.depth().unwrap().dead_letters, 100);
        o.ingest(&[refused(None, "t")], NOW_MS + 600_001, &l).unwrap();
        assert_eq!(o.depth().unwrap().dead_letters, 2);
        // Without new input, the periodic purge expires them too.
        o.purge_expired(NOW_MS + 1_200_000, &l).unwrap();
        assert_eq!(o.depth().unwrap().dead_letters, 2, "at the retention");
        o.purge_expired(NOW_MS + 1_200_001, &l).unwrap();
        assert_eq!(o.depth().unwrap().dead_letters, 1, "one ms over it");
        o.purge_expired(NOW_MS + 1_200_002, &l).unwrap();
        assert_eq!(o.depth().unwrap().dead_letters, 0);
    }

    #[test]
    fn spikes_and_flapping_epochs_are_quarantined_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(&dir.path().join("o.sqlite")).unwrap();
        let ep = |i: u64, ts: u64, e: &str| {
            let mut s = sample("a", i, ts);
            if let Incoming::Sample { sample, .. } = &mut s {
                sample.epoch = Some(e.into());
            }
            s
        };
        let t = 1_799_990_000;
        let out = o
            .ingest(
                &[
                    ep(1000, t, "A"),
                    ep(9_000_000, t + 60, "A"), // spike
                    ep(1500, t + 120, "A"),     // genuine again
                    ep(10, t + 180, "B"),       // reset A -> B
                    ep(20, t + 240, "A"),       // back to A: flapping
                    ep(30, t + 300, "B"),       // B goes on
                ],
                NOW_MS,
                &limits(),
            )
            .unwrap();
        let kinds: Vec<&str> = out
            .iter()
            .map(|r| match r {
                Outcome::Committed { .. } => "ok",
                Outcome::Quarantined(r) => r.reason.as_str(),
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["ok", "implausible_rise", "ok", "ok", "epoch_flapping", "ok"]);
        let q = o.quarantined().unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!((q[0].raw_import, q[0].timestamp), (9_000_000, t + 60));
        assert_eq!(o.depth().unwrap().quarantined, 2);
        assert_eq!(o.depth().unwrap().pending, 4);
    }

    #[test]
    fn a_mined_transaction_is_final_only_when_confirmed_and_resent_when_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(&dir.path().join("o.sqlite")).unwrap();
        o.ingest(&[sample("a", 1, 1_799_999_000)], NOW_MS, &limits()).unwrap();
        let c = o.pending_candidates(10).unwrap();
        let ids = o
            .record_txs(
                &[NewTx {
                    sender: Address::repeat_byte(1),
                    nonce: 0,
                    hash: B256::repeat_byte(2),
                    raw: vec![1],
                    reading_ids: vec![c[0].id],
                }],
                NOW_MS,
            )
            .unwrap();
        o.mark_mined(ids[0], 7).unwrap();
        let s = o.sent_txs().unwrap();
        assert_eq!((s.len(), s[0].mined_block), (1, Some(7)), "still followed");
        let d = o.depth().unwrap();
        assert_eq!((d.in_flight, d.confirmed, d.txs_in_flight), (1, 0, 1), "not confirmed yet");
        assert!(o.pending_candidates(10).unwrap().is_empty(), "the meter stays busy");
        // The receipt disappears (reorg): sent again at once.
        o.unmine(ids[0]).unwrap();
        let s = o.sent_txs().unwrap();
        assert_eq!((s[0].mined_block, s[0].last_sent_ms), (None, 0));
        assert_eq!(o.reading_tx(c[0].id).unwrap(), Some((TX_SENT, None)));
        // Mined again elsewhere, then deep enough.
        o.mark_mined(ids[0], 9).unwrap();
        o.confirm(ids[0], 9).unwrap();
        assert!(o.sent_txs().unwrap().is_empty());
        assert_eq!(o.reading_tx(c[0].id).unwrap(), Some((TX_CONFIRMED, Some(9))));
        assert_eq!(o.depth().unwrap().confirmed, 1);
        // unmine of a final transaction does nothing.
        o.unmine(ids[0]).unwrap();
        assert_eq!(o.depth().unwrap().confirmed, 1);
    }
}
