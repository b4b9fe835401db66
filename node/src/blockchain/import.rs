//! The road every block takes into the chain: verify, execute, check the roots, commit.
//! `commit_executed` is the one place a block reaches the disk and the head moves.

use std::sync::Arc;

use alloy_consensus::proofs;
use alloy_primitives::{Address, B256};

use crate::consensus::clique::{self, Snapshot};
use crate::execution::{execute_block, receipts_bloom, BlockOutcome, ExecError, InvalidTxPolicy};
use crate::primitives::{Block, SealedBlock};
use crate::state::{undo_for, BlockHashes, StateUndo};
use crate::storage::{BlockWrite, CachedState, PlainState, StorageError, Store};
use crate::txpool::{validate_with_sender, ValidationContext};

use super::CanonEvent;

use super::builder::block_input;
use super::{Blockchain, Head, ImportError, NewBlock};

impl Blockchain {
    /// Imports a block from a peer, a sync or a file: verify, execute, compare, commit.
    pub fn import(&self, block: Block, now: Option<u64>) -> Result<B256, ImportError> {
        let _guard = self.lock_for_writing()?;
        let _timer = crate::metrics::Timer::start(crate::metrics::names::BLOCK_IMPORT);
        self.import_locked(block, now)
    }

    /// Imports a block a peer gossiped just after sealing it, whose seal the caller recovered to
    /// `sealer`. If it extends our head and `sealer` is a signer of our head's snapshot that may
    /// seal it, its height is announced as arriving before the import lock is taken, so that a
    /// sealer holding the lock for an out-of-turn block at that height abandons it (see
    /// [`Blockchain::seal_on`]) instead of forking the chain. The mark ends with the import,
    /// whatever its outcome. Only fresh gossip needs it: a sync or a file imports blocks that
    /// are not racing our sealer, and spares the check.
    pub fn import_gossiped(
        &self,
        block: Block,
        now: Option<u64>,
        sealer: Address,
    ) -> Result<B256, ImportError> {
        let _arriving = self.announce_arriving(&block, sealer);
        let _guard = self.lock_for_writing()?;
        let _timer = crate::metrics::Timer::start(crate::metrics::names::BLOCK_IMPORT);
        self.import_locked(block, now)
    }

    pub(super) fn import_locked(&self, block: Block, now: Option<u64>) -> Result<B256, ImportError> {
        let hash = block.header.hash_slow();
        let number = block.header.number;
        let invalid = |reason: String| ImportError::Invalid { number, hash, reason };
        let head = self.tip();
        // Already on the canonical chain: nothing to do. (A stored side block, e.g. one a reorg
        // took off, is imported again like any other block.)
        if hash == head.hash
            || (number <= head.header.number
                && self.store.lock().read(|c| crate::storage::BlockQuery::canonical_hash(c, number))?
                    == Some(hash))
        {
            return Ok(hash);
        }
        if block.header.parent_hash != head.hash {
            return Err(ImportError::NotOnHead { number, hash, parent: block.header.parent_hash });
        }
        let size = alloy_rlp::Encodable::length(&block) as u64;
        if size > self.spec.max_block_bytes() {
            return Err(invalid(format!(
                "block size rule: the block is {size} bytes, over the chain's limit of {} bytes \
                 (config.p2pe.maxBlockBytes)",
                self.spec.max_block_bytes()
            )));
        }
        let (snapshot, _signer) = clique::verify_header(
            &self.spec.clique,
            &block.header,
            &head.header,
            head.hash,
            &head.snapshot,
            now,
        )
        .map_err(|source| ImportError::Consensus { number, hash, source })?;
        if !block.body.ommers.is_empty() {
            return Err(invalid("blocks must not have ommers".into()));
        }
        if block.body.withdrawals.as_ref().is_none_or(|w| !w.is_empty()) {
            return Err(invalid("blocks must carry an empty withdrawals list".into()));
        }
        let tx_root = proofs::calculate_transaction_root(&block.body.transactions);
        if tx_root != block.header.transactions_root {
            return Err(invalid(format!(
                "transactionsRoot {} does not match the body's {tx_root}",
                block.header.transactions_root
            )));
        }
        let txs = self.recover_block_txs(&block).map_err(invalid)?;
        let input = block_input(&block.header);
        let outcome = {
            let hashes = self.tip.read().hashes.clone();
            let _timer = crate::metrics::Timer::start(crate::metrics::names::BLOCK_EXECUTE);
            self.with_writer_state(|state| {
                execute_block(self.spec.chain_id, state, &hashes, &input, txs, InvalidTxPolicy::Reject)
            })
            .map_err(|e| match e {
                ExecError::State(s) => ImportError::State(s),
                other => invalid(other.to_string()),
            })?
        };
        let senders = outcome.txs.iter().map(|t| t.signer()).collect();
        let sealed = SealedBlock { hash, block, senders };
        self.commit_executed(sealed, outcome, snapshot, &head, None)
    }

    /// Marks `block`'s height as arriving while the returned guard lives, if it extends our
    /// head and `sealer` (its seal's signer, recovered by the caller) is a signer of our head's
    /// snapshot that may seal it.
    pub(super) fn announce_arriving(&self, block: &Block, sealer: Address) -> Option<Arriving<'_>> {
        let head = self.head();
        let number = block.header.number;
        if block.header.parent_hash != head.hash {
            return None;
        }
        if !head.snapshot.signers.contains(&sealer) || head.snapshot.signed_recently(number, &sealer) {
            return None;
        }
        self.arriving.lock().push(number);
        Some(Arriving { chain: self, number })
    }

    /// Whether a block at `number` sealed by a signer waits to be imported or is being imported.
    pub(super) fn is_arriving(&self, number: u64) -> bool {
        self.arriving.lock().contains(&number)
    }

    /// Checks a block's transactions as the pool checks them and recovers their senders. A
    /// transaction that waits in our pool had its sender recovered when it came in (its hash
    /// covers its signature, so the same hash is the same transaction): that sender is taken
    /// from there, which spares the signature recovery that dominated a large block's import.
    /// Every other check runs on every transaction, so whether a block is valid never depends
    /// on what our pool holds.
    ///
    /// The recoveries left (a synced block, or one after a reorg, whose transactions this pool
    /// never saw) run on every core when there are [`PARALLEL_RECOVERY_MIN`] or more: a block of
    /// 20,000 such transfers spent over half a second recovering on one.
    fn recover_block_txs(&self, block: &Block) -> Result<Vec<crate::primitives::RecoveredTx>, String> {
        let ctx = ValidationContext { max_tx_bytes: usize::MAX, ..self.validation_context() };
        let txs = &block.body.transactions;
        let pooled: Vec<Option<Address>> = self
            .pool
            .get_many(txs.iter().map(|tx| tx.tx_hash()))
            .into_iter()
            .map(|p| p.map(|p| p.signer()))
            .collect();
        let check = |i: usize| {
            validate_with_sender(txs[i].clone(), pooled[i], &ctx)
                .map_err(|e| format!("transaction {i} ({}): {e}", txs[i].tx_hash()))
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = recovery_threads(pooled.iter().filter(|p| p.is_none()).count(), cores);
        if threads == 1 {
            return (0..txs.len()).map(check).collect();
        }
        let chunk = txs.len().div_ceil(threads);
        let check = &check;
        std::thread::scope(|scope| {
            let parts: Vec<_> = (0..txs.len())
                .step_by(chunk)
                .map(|start| {
                    let end = (start + chunk).min(txs.len());
                    scope.spawn(move || (start..end).map(check).collect::<Result<Vec<_>, String>>())
                })
                .collect();
            // Joined in block order: the first error returned is the block's first invalid one.
            let mut out = Vec::with_capacity(txs.len());
            for part in parts {
                out.extend(part.join().map_err(|_| "a sender recovery thread panicked".to_string())??);
            }
            Ok(out)
        })
    }

    /// Computes the new state root from the stored trie and the block's changes (incrementally:
    /// only the paths the block touched are rehashed) and the values the changes overwrite
    /// (read from the head state: cache hits for what the block just read). Nothing is written.
    pub(super) fn apply_outcome(&self, outcome: &BlockOutcome) -> Result<Applied, ImportError> {
        let store = self.store.lock();
        store.in_read_transaction(|conn| {
            let (root, trie) = {
                let _timer = crate::metrics::Timer::start(crate::metrics::names::STATE_ROOT);
                store.state_root(&outcome.changes)?
            };
            let plain = PlainState::new(conn, self.reads.codes());
            let undo =
                undo_for(&CachedState::new(&plain, &self.head_cache), |a| plain.slots(a), &outcome.changes)?;
            Ok(Applied { undo, root, trie })
        })
    }

    /// The shared tail of sealing and import: check roots, apply, persist, move the head.
    /// `applied` is given by the sealer (the header was made from `outcome`); an import passes
    /// `None`, and the state root is computed and the header checked here.
    pub(super) fn commit_executed(
        &self,
        sealed: SealedBlock,
        outcome: BlockOutcome,
        snapshot: Snapshot,
        head: &Head,
        applied: Option<Applied>,
    ) -> Result<B256, ImportError> {
        let _timer = crate::metrics::Timer::start(crate::metrics::names::BLOCK_COMMIT);
        let header = sealed.header().clone();
        let number = header.number;
        let hash = sealed.hash;
        let invalid = |reason: String| ImportError::Invalid { number, hash, reason };
        // A block sealed here has its header filled in from this very outcome (`seal_executed`):
        // checking it against the outcome again would only recompute the receipts' trie and bloom.
        let applied = match applied {
            Some(a) => a,
            None => {
                let applied = self.apply_outcome(&outcome)?;
                check_outcome(&header, &outcome, &applied).map_err(invalid)?;
                applied
            }
        };
        let Applied { undo, trie, .. } = applied;
        let total_difficulty = head.total_difficulty + header.difficulty;
        let tx_accounts: Vec<Vec<Address>> = outcome.tx_outcomes.iter().map(|o| o.accounts.clone()).collect();
        let tx_created: Vec<Vec<Address>> = outcome.tx_outcomes.iter().map(|o| o.created.clone()).collect();
        let write = BlockWrite {
            block: &sealed,
            receipts: &outcome.receipts,
            total_difficulty,
            changes: &outcome.changes,
            undo: &undo,
            snapshot: &snapshot,
            trie: &trie,
            tx_accounts: &tx_accounts,
            tx_created: &tx_created,
        };
        self.store.lock().commit_block(&write)?;
        self.head_cache.write_through(&outcome.changes);
        self.tip.write().advance(Head { header: header.clone(), hash, total_difficulty, snapshot });
        self.publish(Some(&outcome.changes));
        // Inside a reorg's batch the listeners hear of the switch as a whole when it commits.
        if self.held_events.lock().is_none() {
            let senders: Vec<(Address, u64)> = self.with_writer_state(|state| {
                let nonce = |s: &Address| state.account(s).ok().flatten().map(|i| i.nonce).unwrap_or(0);
                sealed.senders.iter().map(|s| (*s, nonce(s))).collect()
            });
            self.canon.notify(&CanonEvent::Committed { number, senders });
        }
        let txs = sealed.block.body.transactions.len();
        crate::metrics::block_committed(number, txs);
        if txs > 0 {
            tracing::info!(number, %hash, txs, gas = header.gas_used, "block committed");
        } else {
            tracing::debug!(number, %hash, "empty block committed");
        }
        self.announce(Arc::new(NewBlock {
            block: sealed,
            receipts: outcome.receipts,
            total_difficulty,
            removed: false,
        }));
        Ok(hash)
    }
}

/// A block's height marked as arriving; unmarked when dropped.
pub(super) struct Arriving<'a> {
    chain: &'a Blockchain,
    number: u64,
}

impl Drop for Arriving<'_> {
    fn drop(&mut self) {
        let mut arriving = self.chain.arriving.lock();
        if let Some(i) = arriving.iter().position(|n| *n == self.number) {
            arriving.swap_remove(i);
        }
    }
}

/// What committing one executed block writes besides the block: computed, not yet written.
pub(super) struct Applied {
    /// The values the block's changes overwrite.
    undo: StateUndo,
    /// The state root after the block.
    pub(super) root: B256,
    /// The block's changes to the stored state trie.
    trie: crate::storage::trie::StateTrieUpdates,
}

/// Below this many signatures to recover, an import recovers them on its own thread (starting
/// threads costs more than it saves).
pub(super) const PARALLEL_RECOVERY_MIN: usize = 256;

/// How many threads recover `unpooled` signatures on a machine with `cores` cores.
pub(super) fn recovery_threads(unpooled: usize, cores: usize) -> usize {
    if unpooled < PARALLEL_RECOVERY_MIN {
        1
    } else {
        cores.clamp(1, 8)
    }
}

/// Checks an imported block's header against what executing it gave: gas used, receipts root,
/// logs bloom and state root.
fn check_outcome(
    header: &alloy_consensus::Header,
    outcome: &BlockOutcome,
    applied: &Applied,
) -> Result<(), String> {
    if outcome.gas_used != header.gas_used {
        return Err(format!("gasUsed {} but execution used {}", header.gas_used, outcome.gas_used));
    }
    let receipts_root = proofs::calculate_receipt_root(&outcome.receipts);
    if receipts_root != header.receipts_root {
        return Err(format!("receiptsRoot {} but execution gives {receipts_root}", header.receipts_root));
    }
    if receipts_bloom(&outcome.receipts) != header.logs_bloom {
        return Err("logsBloom does not match the receipts".into());
    }
    if applied.root != header.state_root {
        return Err(format!("stateRoot {} but execution gives {}", header.state_root, applied.root));
    }
    Ok(())
}

/// Reads the head block, its Clique snapshot and total difficulty and the last 257 block hashes
/// from `store`, and checks the stored state trie's root against the head's.
pub(super) fn load_head(store: &Store) -> Result<(Head, BlockHashes), ImportError> {
    let (number, hash) =
        store.head()?.ok_or_else(|| StorageError::Corrupt("the database has no head block".into()))?;
    let header = store
        .header_by_number(number)?
        .ok_or_else(|| StorageError::Corrupt(format!("head block {number} missing")))?;
    let snapshot = store
        .snapshot(&hash)?
        .ok_or_else(|| StorageError::Corrupt(format!("no Clique snapshot for head block {number}")))?;
    let total_difficulty = store.total_difficulty(&hash)?.unwrap_or_default();
    // The root of the stored trie (no changes on top): the stored nodes' hashes, not a rebuild.
    let (root, _) = store.state_root(&Default::default())?;
    if root != header.state_root {
        return Err(StorageError::Corrupt(format!(
            "state root {root} of the stored state trie does not match head block {number}'s {} \
             (run `p2pe-node check` to find the first stored node that is wrong)",
            header.state_root
        ))
        .into());
    }
    let mut hashes = BlockHashes::default();
    for n in number.saturating_sub(256)..=number {
        if let Some(h) = store.header_by_number(n)? {
            hashes.0.insert(n, h.hash_slow());
        }
    }
    Ok((Head { header, hash, total_difficulty, snapshot }, hashes))
}
