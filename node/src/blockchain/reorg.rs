//! Switching branches: taking blocks off the head (their state undone from the history) and
//! importing a better branch, all in one SQLite batch that commits or rolls back whole.

use std::sync::Arc;

use alloy_primitives::{Address, B256};

use crate::consensus::clique::{self};
use crate::primitives::Block;

use super::import::load_head;
use super::{Blockchain, CanonEvent, Head, ImportError, NewBlock, Tip};

impl Blockchain {
    /// Switches the canonical chain to `branch`: blocks whose first one's parent is a canonical
    /// block within the kept history. The current blocks above that parent are taken off (state
    /// undone, indexes removed, `removed` events sent, their transactions returned to the pool
    /// unless the branch includes them), then the branch is imported through the normal road.
    /// If a branch block is invalid, the original chain is restored and the error returned.
    ///
    /// The switch is one SQLite transaction (a batch) and its block events are sent after it
    /// commits, so RPC readers see the old chain or the new one, never the fork point alone. A
    /// switch that fails (an invalid block, a storage error) is rolled back whole, its events are
    /// dropped, and the head is reloaded from the disk if memory could not be put back.
    /// (In memory the head moves block by block meanwhile; the import lock keeps every other
    /// writer out.)
    pub fn reorg_to(&self, branch: Vec<Block>, now: Option<u64>) -> Result<B256, ImportError> {
        let _guard = self.lock_for_writing()?;
        let first = branch.first().ok_or_else(|| ImportError::Invalid {
            number: 0,
            hash: B256::ZERO,
            reason: "empty branch".into(),
        })?;
        let fork_parent = first.header.parent_hash;
        let fork_number = first.header.number.saturating_sub(1);
        let canonical = self.reads.with(|c| crate::storage::BlockQuery::canonical_hash(c, fork_number))?;
        if canonical != Some(fork_parent) {
            return Err(ImportError::NotOnHead {
                number: first.header.number,
                hash: first.header.hash_slow(),
                parent: fork_parent,
            });
        }
        // The whole switch is one SQLite transaction: readers (RPC) see the old branch until
        // the new one is complete, never the chain cut back to the fork point in between (with
        // the orphaned blocks' transaction index and receipts gone while the branch executes).
        let original = self.tip().hash;
        self.store.lock().begin_batch()?;
        *self.held_events.lock() = Some(Vec::new());
        let switched = self.switch_locked(&branch, fork_number, now);
        // A switch that failed, however far it got (an invalid branch block, or a storage error
        // while switching or while putting the old chain back), is rolled back whole: never
        // committed half-done.
        let ended = match &switched {
            Ok(_) => self.store.lock().end_batch(),
            Err(_) => {
                // The writer's cache took the branch's values: they are gone with the batch.
                self.head_cache.clear();
                self.store.lock().rollback_batch()
            }
        };
        let held = self.held_events.lock().take().unwrap_or_default();
        if let Err(e) = ended {
            // Nothing of the switch reached the disk: go back to what is there.
            self.reload_head_locked()?;
            return Err(e.into());
        }
        // Readers move to the new branch (or stay on the old chain) in one step.
        self.publish(None);
        let reverted = match switched {
            Ok(reverted) => reverted,
            Err(e) => {
                // The disk holds the chain as it was; so does memory, unless putting the old
                // chain back failed midway: then reload it from the disk.
                if self.tip().hash != original {
                    tracing::warn!(error = %e, "a failed reorganisation could not be undone in memory; reloading the head");
                    self.reload_head_locked()?;
                }
                return Err(e);
            }
        };
        // The listeners (the pool) hear of the switch as a whole: the senders of the blocks now
        // canonical, and the transactions of the abandoned blocks that the branch did not include.
        let mut senders: Vec<Address> =
            held.iter().filter(|e| !e.removed).flat_map(|e| e.block.senders.iter().copied()).collect();
        senders.sort_unstable();
        senders.dedup();
        let senders = senders.into_iter().map(|s| (s, self.account_nonce(&s))).collect();
        let included: std::collections::HashSet<B256> =
            branch.iter().flat_map(|b| b.body.transactions.iter().map(|t| *t.tx_hash())).collect();
        let orphaned = reverted
            .iter()
            .rev()
            .flat_map(|old| old.block.recovered_txs())
            .filter(|tx| !included.contains(tx.inner().tx_hash()))
            .map(|tx| {
                let nonce = self.account_nonce(&tx.signer());
                (tx, nonce)
            })
            .collect();
        self.canon.notify(&CanonEvent::Reorged { depth: reverted.len(), orphaned, senders });
        for event in held {
            let _ = self.events.send(event);
        }
        tracing::info!(depth = reverted.len(), new_head = self.head_number(), "reorganised");
        crate::metrics::reorged(reverted.len());
        Ok(self.tip().hash)
    }

    /// The body of [`Blockchain::reorg_to`], inside its batch: revert to `fork_number`, import
    /// `branch`, or put the original chain back if a branch block is invalid. Returns the
    /// blocks taken off.
    fn switch_locked(
        &self,
        branch: &[Block],
        fork_number: u64,
        now: Option<u64>,
    ) -> Result<Vec<NewBlock>, ImportError> {
        let mut reverted = Vec::new();
        while self.tip().header.number > fork_number {
            reverted.push(self.revert_head_locked()?);
        }
        let mut imported = 0;
        let mut failure = None;
        for block in branch {
            match self.import_locked(block.clone(), now) {
                Ok(_) => imported += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            // Put the original chain back: undo what the branch added, re-import what we had.
            for _ in 0..imported {
                self.revert_head_locked()?;
            }
            for old in reverted.iter().rev() {
                self.import_locked(old.block.block.clone(), None)?;
            }
            return Err(e);
        }
        Ok(reverted)
    }

    /// Sends a block event now, or holds it until the open reorg batch is committed.
    pub(super) fn announce(&self, event: Arc<NewBlock>) {
        match self.held_events.lock().as_mut() {
            Some(held) => held.push(event),
            None => {
                let _ = self.events.send(event);
            }
        }
    }

    /// Reloads head, state and recent hashes from the database (after a reorg batch failed to
    /// commit, so the in-memory chain is ahead of the disk).
    fn reload_head_locked(&self) -> Result<(), ImportError> {
        let (head, hashes) = load_head(&self.store.lock())?;
        self.head_cache.clear();
        *self.tip.write() = Tip { head, hashes };
        self.publish(None);
        Ok(())
    }

    /// Whether a branch tip should replace the current head under EIP-3436 fork choice (on a
    /// full tie the current head, seen first, stays).
    pub fn prefers(&self, tip: &crate::consensus::clique::fork_choice::Tip) -> bool {
        let head = self.tip();
        let Ok(signer) = clique::recover_sealer(&head.header) else { return true };
        let ours = crate::consensus::clique::fork_choice::Tip {
            total_difficulty: head.total_difficulty,
            number: head.header.number,
            hash: head.hash,
            signer,
        };
        let signers = head.snapshot.signers_sorted();
        crate::consensus::clique::fork_choice::prefers(tip, &ours, &signers)
    }

    /// Takes the head block off the canonical chain (for reorgs); returns it.
    ///
    /// Everything is read on the writer connection: inside a reorg's batch the blocks being
    /// taken off may have been written by that same, not yet committed, batch.
    fn revert_head_locked(&self) -> Result<NewBlock, ImportError> {
        let head = self.tip();
        let number = head.header.number;
        let hash = head.hash;
        let invalid = |reason: String| ImportError::Invalid { number, hash, reason };
        if number == 0 {
            return Err(invalid("cannot revert the genesis block".into()));
        }
        let parent = head.header.parent_hash;
        let (undo, stored, receipts, parent_row, parent_snapshot) = {
            let store = self.store.lock();
            let undo = store.read(|c| crate::storage::undo_block(c, number))?;
            let stored = store.read(|c| crate::storage::BlockQuery::block_by_hash(c, &hash))?;
            let receipts = store.read(|c| crate::storage::BlockQuery::receipts_by_hash(c, &hash))?;
            let parent_row = store.read(|c| crate::storage::BlockQuery::header_by_hash(c, &parent))?;
            (undo, stored, receipts, parent_row, store.snapshot(&parent)?)
        };
        let undo = undo.ok_or_else(|| {
            invalid("its state history is no longer kept, so it cannot be reorganised away".into())
        })?;
        let (block, td) = stored.ok_or_else(|| invalid("block body missing".into()))?;
        let receipts = receipts.unwrap_or_default();
        let (parent_header, parent_td) = parent_row.ok_or_else(|| invalid("parent block missing".into()))?;
        let parent_snapshot =
            parent_snapshot.ok_or_else(|| invalid("no Clique snapshot kept for its parent".into()))?;
        // Emptied whether or not the revert commits (inside a batch it may be rolled back later).
        self.head_cache.clear();
        self.store.lock().revert_block(number, &undo, &block, parent_header.state_root)?;
        self.tip.write().retreat(Head {
            header: parent_header,
            hash: parent,
            total_difficulty: parent_td,
            snapshot: parent_snapshot,
        });
        self.publish(None);
        let event = NewBlock { block, receipts, total_difficulty: td, removed: true };
        self.announce(Arc::new(event.clone()));
        Ok(event)
    }
}
