//! Blocks that arrive by gossip, and blocks from the near future.
//!
//! A gossiped block that extends our head is imported on a blocking worker; one on another
//! branch hands its peer to sync. Consensus refuses a block whose timestamp is more than one
//! second ahead of our clock. Clocks drift, so such a block is not the sender's fault:
//!
//! - up to [`FUTURE_BLOCK_TOLERANCE`] seconds ahead, the block is **deferred**: kept (at most
//!   [`MAX_DEFERRED`] blocks) and imported when its time comes, with its gossip verdict given
//!   then: it is forwarded once valid if gossipsub still holds the message (5 heartbeats, 3.5 s),
//!   and otherwise reaches further peers by sync (their status poll every 3 s);
//! - further ahead it is **refused**: not imported, not kept, not forwarded, and the peer is not
//!   punished (a badly set clock is a fault to fix, not an attack). Sync fetches the block again
//!   from a peer that has it once its time has come, and never punishes a future block either.
//!
//! Either way the block's seal must recover to a signer of our head's snapshot (its parent's), or
//! the block is invalid and its sender punished: a forged block cannot hide behind a future
//! timestamp, nor fill the deferred blocks.
//!
//! geth refuses Clique headers from the future and retries blocks up to 15 s ahead later; a few
//! seconds is enough for clocks kept by NTP, and keeps a deferred block within about one block
//! period of its slot.

use alloy_rlp::Encodable;
use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::peers::Offence;
use crate::blockchain::{unix_now, Blockchain, ImportError};
use crate::consensus::clique::{recover_sealer, CliqueError};
use crate::primitives::Block;
use crate::storage::BlockQuery;

/// Seconds ahead of our clock a block may be and still be deferred rather than refused.
pub const FUTURE_BLOCK_TOLERANCE: u64 = 5;
/// Most deferred blocks kept at once (a block is at most 12 MiB, so this bounds their memory).
pub const MAX_DEFERRED: usize = 8;

/// What became of a gossiped block.
#[derive(Debug)]
pub enum Verdict {
    /// Judged: the gossip verdict and the sender's offence, if any.
    Done(MessageAcceptance, Option<Offence>),
    /// From the near future: keep it and try again when its time comes.
    Defer(Box<Block>),
}

/// What to do with a block whose timestamp is `timestamp` at local time `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Consensus accepts it now (at most one second ahead).
    Now,
    /// Keep it until `now` reaches `due`.
    Defer {
        /// Local time from which it can be imported.
        due: u64,
    },
    /// Too far ahead: refuse it (without punishing anyone).
    TooFar,
}

/// Classifies a block timestamp against the local clock.
pub fn timing(timestamp: u64, now: u64) -> Timing {
    if timestamp <= now + 1 {
        Timing::Now
    } else if timestamp <= now + FUTURE_BLOCK_TOLERANCE {
        Timing::Defer { due: timestamp - 1 }
    } else {
        Timing::TooFar
    }
}

/// Whether an import error is a block from the future (which is nobody's fault).
pub fn is_future(e: &ImportError) -> bool {
    matches!(e, ImportError::Consensus { source: CliqueError::FutureBlock(_), .. })
}

/// The offence of a peer that sent a block refused with `e`: an invalid block is one, a block
/// from the future or one that no longer fits our head is not.
pub fn offence_for(e: &ImportError) -> Option<Offence> {
    match e {
        _ if is_future(e) => None,
        ImportError::Consensus { .. } | ImportError::Invalid { .. } => Some(Offence::InvalidBlock),
        _ => None,
    }
}

/// Imports a gossiped block when it extends our head; otherwise hands the peer to sync.
pub(super) fn import_gossip(
    chain: &Blockchain,
    block: Block,
    peer: PeerId,
    sync_tx: &mpsc::Sender<(PeerId, Option<Block>)>,
) -> Verdict {
    let head = chain.head();
    if block.header.parent_hash != head.hash {
        let known = block.header.number <= head.header.number
            && chain.reads().canonical_hash(block.header.number).ok().flatten()
                == Some(block.header.hash_slow());
        if !known {
            let _ = sync_tx.try_send((peer, Some(block)));
        }
        return Verdict::Done(MessageAcceptance::Ignore, None);
    }
    let timestamp = block.header.timestamp;
    let now = unix_now();
    let timing = timing(timestamp, now);
    // A future timestamp is no cover for a forged block: its seal must be a signer's (checked
    // against our head, its parent), or a peer could fill the deferred blocks with junk.
    let sealer = recover_sealer(&block.header).ok();
    if timing != Timing::Now && !sealer.is_some_and(|s| head.snapshot.signers.contains(&s)) {
        tracing::warn!(%peer, number = block.header.number, "block from the future not sealed by a signer");
        return Verdict::Done(MessageAcceptance::Reject, Some(Offence::InvalidBlock));
    }
    match timing {
        Timing::Defer { .. } => return Verdict::Defer(Box::new(block)),
        Timing::TooFar => {
            tracing::warn!(%peer, number = block.header.number, ahead = timestamp - now, tolerance = FUTURE_BLOCK_TOLERANCE,
                "block refused: its timestamp is further ahead of our clock than the tolerance (check the clocks)");
            return Verdict::Done(MessageAcceptance::Ignore, None);
        }
        Timing::Now => {}
    }
    let imported = match sealer {
        Some(sealer) => chain.import_gossiped(block, Some(now), sealer),
        None => chain.import(block, Some(now)),
    };
    match imported {
        Ok(_) => Verdict::Done(MessageAcceptance::Accept, None),
        Err(ImportError::NotOnHead { .. }) => Verdict::Done(MessageAcceptance::Ignore, None),
        // The node is stopping: nobody's fault, and nothing to relay.
        Err(ImportError::Closed) => Verdict::Done(MessageAcceptance::Ignore, None),
        Err(e) => match offence_for(&e) {
            Some(offence) => {
                tracing::warn!(%peer, error = %e, "invalid block from peer");
                Verdict::Done(MessageAcceptance::Reject, Some(offence))
            }
            None if is_future(&e) => Verdict::Done(MessageAcceptance::Ignore, None),
            None => {
                tracing::error!(error = %e, "importing a gossiped block failed");
                Verdict::Done(MessageAcceptance::Ignore, None)
            }
        },
    }
}

/// A deferred block.
#[derive(Debug)]
pub(super) struct DeferredBlock {
    pub due: u64,
    pub id: MessageId,
    pub peer: PeerId,
    pub block: Box<Block>,
}

/// Blocks from the near future, waiting for their time.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    blocks: Vec<DeferredBlock>,
}

impl Deferred {
    /// Keeps `block` until its time; gives it back when [`MAX_DEFERRED`] blocks wait already.
    pub fn push(&mut self, id: MessageId, peer: PeerId, block: Box<Block>) -> Result<u64, DeferredBlock> {
        let due = block.header.timestamp.saturating_sub(1);
        let entry = DeferredBlock { due, id, peer, block };
        if self.blocks.len() >= MAX_DEFERRED {
            return Err(entry);
        }
        tracing::info!(peer = %entry.peer, number = entry.block.header.number, due, size = entry.block.length(),
            "block from the near future deferred until its time");
        self.blocks.push(entry);
        Ok(due)
    }

    /// Takes the blocks whose time has come at `now`.
    pub fn take_due(&mut self, now: u64) -> Vec<DeferredBlock> {
        let (due, later) = std::mem::take(&mut self.blocks).into_iter().partition(|b| b.due <= now);
        self.blocks = later;
        due
    }

    /// Number of blocks waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.blocks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_imported_deferred_or_refused_by_how_far_ahead_they_are() {
        let now = 1_000;
        assert_eq!(timing(now - 10, now), Timing::Now);
        assert_eq!(timing(now + 1, now), Timing::Now, "consensus allows one second");
        assert_eq!(timing(now + 2, now), Timing::Defer { due: now + 1 });
        // Just under, at and over the tolerance.
        assert_eq!(timing(now + FUTURE_BLOCK_TOLERANCE - 1, now), Timing::Defer { due: now + 3 });
        assert_eq!(timing(now + FUTURE_BLOCK_TOLERANCE, now), Timing::Defer { due: now + 4 });
        assert_eq!(timing(now + FUTURE_BLOCK_TOLERANCE + 1, now), Timing::TooFar);
        // When it is due, it is importable.
        assert_eq!(timing(now + 4, now + 3), Timing::Now);
    }

    #[test]
    fn a_future_block_is_nobodys_offence_and_an_invalid_one_is() {
        use alloy_primitives::B256;
        let consensus = |source| ImportError::Consensus { number: 4, hash: B256::ZERO, source };
        assert_eq!(offence_for(&consensus(CliqueError::FutureBlock(10))), None);
        assert_eq!(offence_for(&consensus(CliqueError::InvalidSeal)), Some(Offence::InvalidBlock));
        let invalid = ImportError::Invalid { number: 4, hash: B256::ZERO, reason: "state root".into() };
        assert_eq!(offence_for(&invalid), Some(Offence::InvalidBlock));
        let not_on_head = ImportError::NotOnHead { number: 4, hash: B256::ZERO, parent: B256::ZERO };
        assert_eq!(offence_for(&not_on_head), None);
    }

    #[test]
    fn deferred_blocks_are_bounded_and_come_back_when_due() {
        let mut d = Deferred::default();
        let peer = PeerId::random();
        let block = |ts: u64| {
            let mut b = Block::default();
            b.header.timestamp = ts;
            Box::new(b)
        };
        for i in 0..MAX_DEFERRED as u64 {
            assert_eq!(d.push(MessageId::from(vec![i as u8]), peer, block(100 + i)).unwrap(), 99 + i);
        }
        assert!(d.push(MessageId::from(vec![99]), peer, block(100)).is_err(), "full");
        assert_eq!(d.take_due(98).len(), 0);
        let due = d.take_due(100);
        assert_eq!(due.iter().map(|b| b.block.header.timestamp).collect::<Vec<_>>(), vec![100, 101]);
        assert_eq!(d.len(), MAX_DEFERRED - 2);
    }
}
