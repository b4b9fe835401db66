//! Stored Clique snapshots (the recent blocks' and every 1024th), read side.

use alloy_primitives::B256;
use rusqlite::{Connection, OptionalExtension};

use super::StorageError;
use crate::consensus::clique::Snapshot;

fn decode(json: &str) -> Result<Snapshot, StorageError> {
    serde_json::from_str(json).map_err(|e| StorageError::Corrupt(format!("Clique snapshot: {e}")))
}

/// Read access to the stored Clique snapshots.
pub trait SnapshotQuery {
    /// The snapshot stored for block `hash`, if one is kept.
    fn stored_snapshot(&self, hash: &B256) -> Result<Option<Snapshot>, StorageError>;
    /// The nearest snapshot stored for a canonical block below `number`.
    fn canonical_snapshot_below(&self, number: u64) -> Result<Option<Snapshot>, StorageError>;
}

impl SnapshotQuery for Connection {
    fn stored_snapshot(&self, hash: &B256) -> Result<Option<Snapshot>, StorageError> {
        let json: Option<String> = self
            .prepare_cached("SELECT snapshot FROM snapshots WHERE hash = ?1")?
            .query_row([hash.as_slice()], |r| r.get(0))
            .optional()?;
        json.map(|j| decode(&j)).transpose()
    }

    fn canonical_snapshot_below(&self, number: u64) -> Result<Option<Snapshot>, StorageError> {
        let json: Option<String> = self
            .prepare_cached(
                "SELECT s.snapshot FROM snapshots s JOIN canonical c ON c.hash = s.hash \
                 WHERE s.number < ?1 ORDER BY s.number DESC LIMIT 1",
            )?
            .query_row([number as i64], |r| r.get(0))
            .optional()?;
        json.map(|j| decode(&j)).transpose()
    }
}

impl SnapshotQuery for super::ReadPool {
    fn stored_snapshot(&self, hash: &B256) -> Result<Option<Snapshot>, StorageError> {
        self.with(|c| c.stored_snapshot(hash))
    }

    fn canonical_snapshot_below(&self, number: u64) -> Result<Option<Snapshot>, StorageError> {
        self.with(|c| c.canonical_snapshot_below(number))
    }
}
