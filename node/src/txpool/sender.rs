//! One sender's waiting transactions, split into the executable run and the gapped rest.
//!
//! `pending` is the run of nonces `[base, next)` that can execute in order from the sender's
//! account nonce `base`; every waiting nonce above `next` is *queued*: it waits for a gap to fill.
//! The split is kept up to date in amortised O(1) per added transaction, so that the pool can cap
//! queued transactions per sender and evict the oldest queued ones first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::primitives::RecoveredTx;

/// A transaction as the pool holds it.
#[derive(Debug, Clone)]
pub(super) struct PooledTx {
    /// The transaction.
    pub tx: Arc<RecoveredTx>,
    /// Arrival sequence number (block order among senders, eviction order among queued).
    pub arrival: u64,
    /// When it arrived (queued transactions expire).
    pub since: Instant,
    /// Bytes of its EIP-2718 encoding.
    pub bytes: usize,
}

/// Nonces that changed between pending and queued, for the pool's queued index.
#[derive(Debug, Default)]
pub(super) struct Moved {
    /// Became executable (leave the queued index).
    pub promoted: Vec<u64>,
    /// Became gapped (join the queued index).
    pub demoted: Vec<u64>,
}

/// One sender's transactions.
#[derive(Debug)]
pub(super) struct SenderQueue {
    /// Waiting transactions by nonce.
    pub txs: BTreeMap<u64, PooledTx>,
    /// The account nonce the split was last computed for.
    base: u64,
    /// First nonce after the executable run (`base` when nothing is executable).
    next: u64,
}

impl SenderQueue {
    /// An empty queue for an account whose nonce is `account_nonce`.
    pub fn new(account_nonce: u64) -> Self {
        Self { txs: BTreeMap::new(), base: account_nonce, next: account_nonce }
    }

    /// The account nonce the split was last computed for.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Whether `nonce` is beyond the executable run (would wait for a gap).
    pub fn is_gapped(&self, nonce: u64) -> bool {
        nonce > self.next
    }

    /// How many of this sender's transactions are queued (gapped).
    pub fn queued_len(&self) -> usize {
        self.txs.len() - (self.next - self.base) as usize
    }

    /// Nonces of the executable run.
    #[cfg(test)]
    pub fn pending_range(&self) -> std::ops::Range<u64> {
        self.base..self.next
    }

    /// Inserts a transaction at `nonce` (after the caller's checks) and returns the replaced one, if
    /// any, and the nonces that moved from queued to pending.
    pub fn insert(&mut self, nonce: u64, tx: PooledTx) -> (Option<PooledTx>, Moved) {
        let replaced = self.txs.insert(nonce, tx);
        let mut moved = Moved::default();
        if nonce == self.next {
            self.next += 1;
            while self.txs.contains_key(&self.next) {
                moved.promoted.push(self.next);
                self.next += 1;
            }
        }
        (replaced, moved)
    }

    /// Removes `nonce`; a removed executable transaction turns every later one into a queued one.
    pub fn remove(&mut self, nonce: u64) -> (Option<PooledTx>, Moved) {
        let removed = self.txs.remove(&nonce);
        let mut moved = Moved::default();
        if removed.is_some() && nonce >= self.base && nonce < self.next {
            moved.demoted = self.txs.range(nonce + 1..self.next).map(|(n, _)| *n).collect();
            self.next = nonce;
        }
        (removed, moved)
    }

    /// The sender's account nonce is now `account_nonce` (a block included some of its
    /// transactions, or a reorg undid some): drops and returns the transactions below it, and
    /// returns the nonces that moved between queued and pending.
    pub fn rebase(&mut self, account_nonce: u64) -> (Vec<PooledTx>, Moved) {
        let keep = self.txs.split_off(&account_nonce);
        let dropped = std::mem::replace(&mut self.txs, keep).into_values().collect();
        let mut moved = Moved::default();
        if account_nonce < self.base {
            // Backwards (a reorg): the old run stays executable only if the new base reaches it.
            let mut next = account_nonce;
            while self.txs.contains_key(&next) {
                next += 1;
            }
            if next < self.next {
                moved.demoted = self.txs.range(next..self.next).map(|(n, _)| *n).collect();
            } else {
                moved.promoted = self.txs.range(self.next..next).map(|(n, _)| *n).collect();
            }
            self.base = account_nonce;
            self.next = next;
            return (dropped, moved);
        }
        self.base = account_nonce;
        if self.next < account_nonce {
            self.next = account_nonce;
        }
        while self.txs.contains_key(&self.next) {
            moved.promoted.push(self.next);
            self.next += 1;
        }
        (dropped, moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PooledTx {
        use alloy_consensus::transaction::Recovered;
        use alloy_consensus::{Signed, TxEnvelope, TxLegacy};
        let tx = Signed::new_unchecked(
            TxLegacy::default(),
            alloy_primitives::Signature::test_signature(),
            Default::default(),
        );
        let rec = Recovered::new_unchecked(TxEnvelope::Legacy(tx), Default::default());
        PooledTx { tx: Arc::new(rec), arrival: 0, since: Instant::now(), bytes: 1 }
    }

    #[test]
    fn split_follows_gaps_removals_and_the_account_nonce() {
        let mut q = SenderQueue::new(5);
        assert!(!q.is_gapped(5));
        assert!(q.is_gapped(7));
        q.insert(7, p());
        q.insert(8, p());
        assert_eq!((q.queued_len(), q.pending_range()), (2, 5..5));
        let (_, moved) = q.insert(6, p());
        assert!(moved.promoted.is_empty(), "6 does not close the gap at 5");
        let (_, moved) = q.insert(5, p());
        assert_eq!(moved.promoted, vec![6, 7, 8]);
        assert_eq!((q.queued_len(), q.pending_range()), (0, 5..9));
        let (_, moved) = q.remove(6);
        assert_eq!(moved.demoted, vec![7, 8]);
        assert_eq!((q.queued_len(), q.pending_range()), (2, 5..6));
        // The account nonce jumps past the hole (the transaction was mined elsewhere).
        let (dropped, moved) = q.rebase(7);
        assert_eq!(dropped.len(), 1);
        assert_eq!(moved.promoted, vec![7, 8], "7 is the new base; 8 follows it");
        assert_eq!((q.queued_len(), q.pending_range()), (0, 7..9));
        // A reorg takes the account nonce back to 6, which nobody sent: 7 and 8 wait again.
        let (dropped, moved) = q.rebase(6);
        assert!(dropped.is_empty());
        assert_eq!(moved.demoted, vec![7, 8]);
        assert_eq!((q.queued_len(), q.pending_range()), (2, 6..6));
        let (_, moved) = q.insert(6, p());
        assert_eq!(moved.promoted, vec![7, 8]);
    }
}
