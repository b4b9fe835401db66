//! The pool keeps itself in step with the canonical chain from the chain's events
//! ([`CanonEvent`]): a committed block moves its senders' nonces on (their included and now
//! stale transactions leave, queued ones whose gap closed become pending); a reorganisation
//! returns the orphaned transactions the new branch did not include and rebases every sender
//! the new branch touched. The chain never edits the pool itself.

use super::TxPool;
use crate::blockchain::{CanonEvent, CanonListener};

impl CanonListener for TxPool {
    fn on_canon(&self, event: &CanonEvent) {
        match event {
            CanonEvent::Committed { senders, .. } => self.prune(senders.iter().copied()),
            CanonEvent::Reorged { orphaned, senders, .. } => {
                self.prune_reorged(senders.iter().copied());
                for (tx, nonce) in orphaned {
                    if let Err(e) = self.add(tx.clone(), *nonce) {
                        tracing::debug!(tx = %tx.inner().tx_hash(), error = %e, "orphaned transaction not returned to the pool");
                    }
                }
            }
        }
    }
}
