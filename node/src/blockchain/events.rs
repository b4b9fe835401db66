//! Canonical-chain events for in-process listeners, as reth's canonical state notifications:
//! the chain says what changed on its canonical branch, and each listener (the transaction
//! pool first of all, [`crate::txpool`]) keeps itself in step. Listeners are called on the
//! writer's thread right after the change is committed and published, before the next block is
//! built, so a listener is never a block behind the sealer.

use std::sync::Arc;

use alloy_primitives::Address;

use crate::primitives::RecoveredTx;

/// What changed on the canonical chain.
#[derive(Debug, Clone)]
pub enum CanonEvent {
    /// A block was committed on top of the head.
    Committed {
        /// Its number.
        number: u64,
        /// Each sender of its transactions with the account's nonce after the block.
        senders: Vec<(Address, u64)>,
    },
    /// The head moved to another branch (or back to the original one after a failed switch).
    Reorged {
        /// Blocks taken off the canonical chain.
        depth: usize,
        /// Transactions of the blocks taken off that the new branch does not include, oldest
        /// first, each with its sender's nonce on the new head.
        orphaned: Vec<(RecoveredTx, u64)>,
        /// Each sender of the new branch's transactions with its nonce on the new head.
        senders: Vec<(Address, u64)>,
    },
}

/// Something that follows the canonical chain in-process ([`crate::blockchain::Blockchain::add_canon_listener`]).
pub trait CanonListener: Send + Sync {
    /// Called once per event, in order, on the writer's thread: keep it short and never call
    /// back into the chain's writer.
    fn on_canon(&self, event: &CanonEvent);
}

/// The listeners of one chain.
#[derive(Default)]
pub(super) struct CanonListeners {
    listeners: parking_lot::RwLock<Vec<Arc<dyn CanonListener>>>,
}

impl CanonListeners {
    /// Adds `listener`.
    pub(super) fn add(&self, listener: Arc<dyn CanonListener>) {
        self.listeners.write().push(listener);
    }

    /// Tells every listener about `event`.
    pub(super) fn notify(&self, event: &CanonEvent) {
        for l in self.listeners.read().iter() {
            l.on_canon(event);
        }
    }
}
