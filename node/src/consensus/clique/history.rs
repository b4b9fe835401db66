//! The Clique snapshot after any kept canonical block, from the stored ones.

use alloy_primitives::B256;

use super::Snapshot;
use crate::storage::{BlockQuery, SnapshotQuery, StorageError};

/// Why no snapshot could be given.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotLookupError {
    /// The block is unknown, not canonical, or below every stored snapshot.
    #[error("{0}")]
    NotFound(String),
    /// The stored chain does not replay (a missing header, a header the rules refuse).
    #[error("{0}")]
    Corrupt(String),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The snapshot after canonical block `hash`: the one stored for it, or one rebuilt from the
/// nearest stored snapshot below it by applying the canonical headers in between (snapshots are
/// stored for the recent blocks and every 1024th).
pub fn snapshot_after<P>(provider: &P, hash: B256) -> Result<Snapshot, SnapshotLookupError>
where
    P: BlockQuery + SnapshotQuery + ?Sized,
{
    if let Some(snapshot) = provider.stored_snapshot(&hash)? {
        return Ok(snapshot);
    }
    let not_found = |what: String| SnapshotLookupError::NotFound(what);
    let (header, _) =
        provider.header_by_hash(&hash)?.ok_or_else(|| not_found(format!("block {hash} not found")))?;
    let target = header.number;
    if provider.canonical_hash(target)? != Some(hash) {
        return Err(not_found(format!("block {hash} is not canonical")));
    }
    let mut snap = provider
        .canonical_snapshot_below(target)?
        .ok_or_else(|| not_found(format!("no Clique snapshot below block {target}")))?;
    for (number, h) in provider.canonical_range(snap.number + 1, target)? {
        let (header, _) = provider
            .header_by_hash(&h)?
            .ok_or_else(|| SnapshotLookupError::Corrupt(format!("canonical header {number} missing")))?;
        snap.apply(&header, h)
            .map_err(|e| SnapshotLookupError::Corrupt(format!("replaying block {number}: {e}")))?;
    }
    Ok(snap)
}
