//! The chain: head, state and the one road every block takes into it.
//!
//! A block sealed here and a block from disk or a peer both end in [`Blockchain::import`]'s
//! tail, `commit_executed`: the header is verified by the Clique engine, the transactions are
//! executed by the same executor, the roots are compared, and the block is committed to SQLite
//! in one transaction before the in-memory head moves.
//!
//! The state is not held in memory: blocks execute on the plain state tables through the
//! writer's connection, behind a cache bounded in entries (`--state-cache-entries`), so memory
//! stays flat however large the state grows, and a restart reads nothing but the head.

use std::sync::Arc;

use alloy_consensus::{proofs, Header, ReceiptEnvelope};
use alloy_primitives::{Address, B256, U256};
use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use crate::chain::{next_gas_limit, ChainSpec, SealLimits};
use crate::consensus::clique::{self, CliqueError, Proposal, Snapshot};
use crate::crypto::SigningKey;
use crate::execution::{execute_block, receipts_bloom, BlockInput, BlockOutcome, ExecError, InvalidTxPolicy};
use crate::primitives::{Block, SealedBlock};
use crate::state::{undo_for, BlockHashes, StateChanges, StateError, StateReader, StateUndo};
use crate::storage::{
    BlockWrite, CachedState, HistoricalState, PlainState, ReadPool, StateCache, StorageError, Store,
    DEFAULT_CACHE_ENTRIES,
};
use crate::txpool::{validate_envelope, TxPool, ValidationContext};

/// Why a block was refused. The message names the block and the rule.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A consensus rule.
    #[error("block {number} ({hash}): {source}")]
    Consensus {
        /// Block number.
        number: u64,
        /// Block hash.
        hash: B256,
        /// The rule broken.
        source: CliqueError,
    },
    /// A body or execution rule.
    #[error("block {number} ({hash}): {reason}")]
    Invalid {
        /// Block number.
        number: u64,
        /// Block hash.
        hash: B256,
        /// What is wrong.
        reason: String,
    },
    /// The parent is not our head (side chains are handled by the network layer).
    #[error("block {number} ({hash}): parent {parent} is not the head block")]
    NotOnHead {
        /// Block number.
        number: u64,
        /// Block hash.
        hash: B256,
        /// Its parent.
        parent: B256,
    },
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Reading state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The head of the chain.
#[derive(Debug, Clone)]
pub struct Head {
    /// Head header.
    pub header: Header,
    /// Head hash.
    pub hash: B256,
    /// Total difficulty.
    pub total_difficulty: U256,
    /// Clique snapshot after the head.
    pub snapshot: Snapshot,
}

/// The head as readers see it: header, hash, Clique snapshot and the recent block hashes of one
/// committed block, published together after each commit ([`Blockchain::snapshot`]). The state
/// of that block is read from SQLite at its number ([`crate::storage::HistoricalState`]), so a
/// reader never takes a lock the writer needs.
#[derive(Debug, Clone)]
pub struct ChainSnapshot {
    /// The head block.
    pub head: Head,
    /// The hashes of the head and the 256 blocks before it, for BLOCKHASH.
    pub hashes: BlockHashes,
    /// Accounts and slots RPC readers read at the head, shared between them.
    pub cache: Arc<StateCache>,
}

/// A block that was added to the chain, as announced to subscribers.
#[derive(Debug, Clone)]
pub struct NewBlock {
    /// The block.
    pub block: SealedBlock,
    /// Its receipts.
    pub receipts: Vec<ReceiptEnvelope>,
    /// Total difficulty including this block.
    pub total_difficulty: U256,
    /// `true` when the block left the canonical chain in a reorg (its logs are now removed).
    pub removed: bool,
}

/// Node-level options for the chain.
#[derive(Debug, Clone)]
pub struct ChainOptions {
    /// Blocks of state history to keep; `None` keeps all (archive).
    pub state_history: Option<u64>,
    /// Read connections for RPC.
    pub read_connections: usize,
    /// Accounts and slots cached in front of SQLite, for the writer and again for RPC readers
    /// of the head (about 100 bytes each).
    pub state_cache_entries: usize,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            state_history: Some(crate::storage::DEFAULT_STATE_HISTORY),
            read_connections: 4,
            state_cache_entries: DEFAULT_CACHE_ENTRIES,
        }
    }
}

/// The writer's head block and the hashes of the 256 before it.
#[derive(Debug, Clone)]
struct Tip {
    head: Head,
    hashes: BlockHashes,
}

impl Tip {
    /// Moves to `head`, a child of the current head.
    fn advance(&mut self, head: Head) {
        let number = head.header.number;
        self.hashes.0.insert(number, head.hash);
        self.hashes.0.remove(&number.saturating_sub(257));
        self.head = head;
    }

    /// Moves back to `parent`, the current head's parent.
    fn retreat(&mut self, parent: Head) {
        self.hashes.0.remove(&self.head.header.number);
        self.head = parent;
    }
}

/// The chain, its state and its pool.
pub struct Blockchain {
    spec: ChainSpec,
    store: Mutex<Store>,
    reads: ReadPool,
    /// The writer's cache of head-state reads, in front of the plain state tables; updated with
    /// every committed block, emptied when blocks are reverted. RPC has its own in the
    /// published [`ChainSnapshot`].
    head_cache: StateCache,
    /// Entries each state cache may hold.
    cache_entries: usize,
    /// The writer's head with its recent hashes, changed together under one lock (RPC reads
    /// the published [`ChainSnapshot`]).
    tip: RwLock<Tip>,
    /// The last committed head, published after every commit (and after a reorg's batch as a
    /// whole).
    published: ArcSwap<ChainSnapshot>,
    pool: Arc<TxPool>,
    events: broadcast::Sender<Arc<NewBlock>>,
    /// Events held back while a reorg's batch is not committed yet (subscribers must not hear
    /// of blocks that RPC reads cannot see).
    held_events: Mutex<Option<Vec<Arc<NewBlock>>>>,
    import_lock: Mutex<()>,
    /// What this node's sealer builds within the chain's rules.
    seal_limits: SealLimits,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Blockchain {
    /// Opens the chain in `store` (which must hold a genesis): reads the head block, checks the
    /// stored state trie's root against it, and loads the recent block hashes.
    pub fn open(
        spec: ChainSpec,
        store: Store,
        pool: Arc<TxPool>,
        opts: &ChainOptions,
    ) -> Result<Self, ImportError> {
        if store.head()?.is_none() {
            return Err(StorageError::Invalid(
                "the data directory has no genesis; run `p2pe-node init` first".into(),
            )
            .into());
        }
        let (head, hashes) = load_head(&store)?;
        let reads = ReadPool::open(store.path(), opts.read_connections)?;
        let (events, _) = broadcast::channel(1024);
        let cache_entries = opts.state_cache_entries;
        let cache = Arc::new(StateCache::new(cache_entries));
        let published =
            ArcSwap::from_pointee(ChainSnapshot { head: head.clone(), hashes: hashes.clone(), cache });
        Ok(Self {
            spec,
            store: Mutex::new(store),
            reads,
            head_cache: StateCache::for_writer(cache_entries),
            cache_entries,
            tip: RwLock::new(Tip { head, hashes }),
            published,
            pool,
            events,
            held_events: Mutex::new(None),
            import_lock: Mutex::new(()),
            seal_limits: SealLimits::default(),
        })
    }

    /// Sets what this node's sealer builds (gas limit target, a lower byte limit), after checking
    /// the limits against the chain's rules.
    pub fn with_seal_limits(mut self, limits: SealLimits) -> Result<Self, crate::chain::SealLimitsError> {
        limits.check(&self.spec)?;
        self.seal_limits = limits;
        Ok(self)
    }

    /// What this node's sealer builds within the chain's rules.
    pub fn seal_limits(&self) -> &SealLimits {
        &self.seal_limits
    }

    /// The chain specification.
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// The transaction pool.
    pub fn pool(&self) -> &Arc<TxPool> {
        &self.pool
    }

    /// Read connections to the database.
    pub fn reads(&self) -> &ReadPool {
        &self.reads
    }

    /// New read connections to the chain's database (for RPC call workers, which hold one for
    /// the length of a call).
    pub fn open_readers(&self, n: usize) -> Result<ReadPool, StorageError> {
        let path = self.store.lock().path().to_path_buf();
        ReadPool::open(&path, n)
    }

    /// The last committed head with its recent hashes: one consistent snapshot, lock-free.
    pub fn snapshot(&self) -> Arc<ChainSnapshot> {
        self.published.load_full()
    }

    /// The current (published) head.
    pub fn head(&self) -> Head {
        self.published.load().head.clone()
    }

    /// The head block number.
    pub fn head_number(&self) -> u64 {
        self.published.load().head.header.number
    }

    /// The writer's head: ahead of the published one inside a reorg's batch.
    fn tip(&self) -> Head {
        self.tip.read().head.clone()
    }

    /// Publishes the writer's head as the readers' snapshot, unless a reorg's batch is open
    /// (its blocks are not committed yet). `changes`: what the head block changed on top of the
    /// published head, whose read cache then carries over; otherwise the cache starts empty.
    fn publish(&self, changes: Option<&StateChanges>) {
        if self.held_events.lock().is_some() {
            return;
        }
        let previous = self.published.load();
        let Tip { head, hashes } = self.tip.read().clone();
        let cache = match changes {
            Some(changes) if head.header.parent_hash == previous.head.hash => {
                previous.cache.carry_over(changes)
            }
            _ => StateCache::new(self.cache_entries),
        };
        let snapshot = ChainSnapshot { head, hashes, cache: Arc::new(cache) };
        self.published.store(Arc::new(snapshot));
    }

    /// Runs `f` on the state of the published head, as RPC reads it: a SQLite read transaction
    /// at that block, behind the head's shared read cache. Never waits for the writer.
    pub fn with_head_state<T>(&self, f: impl FnOnce(&dyn StateReader) -> T) -> Result<T, StateError> {
        let snapshot = self.snapshot();
        let state = HistoricalState::open(&self.reads, snapshot.head.header.number)?;
        // The cache holds the published head's values: used only when this read transaction
        // sees that very block (not one a reorg put at its number meanwhile).
        if state.block_hash()? == Some(snapshot.head.hash) {
            return Ok(f(&CachedState::new(state, &snapshot.cache)));
        }
        Ok(f(&state))
    }

    /// A full copy of the state after block `number`, read from the disk: the stored state with
    /// every later change undone from the history. It reads the whole state into memory, so it
    /// is for checks and tests (the node itself never holds the state).
    pub fn state_at(&self, number: u64) -> Result<crate::state::WorldState, StateError> {
        let _guard = self.import_lock.lock();
        let head = self.tip().header.number;
        let mut state = self.store.lock().load_state()?;
        if number < head {
            state.revert(&crate::storage::undo_to(&self.reads, number, head)?);
        }
        Ok(state)
    }

    /// Runs `f` on the writer's head state: the plain tables on the writer connection (which
    /// sees an open reorg batch) behind the writer's cache. Holds the store for its length: for
    /// the writer's own use (import, sealing), under the import lock.
    fn with_writer_state<T>(&self, f: impl FnOnce(&dyn StateReader) -> T) -> T {
        let store = self.store.lock();
        let state =
            CachedState::new(PlainState::new(store.connection(), self.reads.codes()), &self.head_cache);
        f(&state)
    }

    /// The Clique snapshot stored for block `hash` (kept for the blocks within the state
    /// history), e.g. to verify a peer's branch from that block on.
    pub fn snapshot_at(&self, hash: &B256) -> Result<Option<Snapshot>, StorageError> {
        self.store.lock().snapshot(hash)
    }

    /// Recent block hashes for BLOCKHASH (of the published head).
    pub fn block_hashes(&self) -> BlockHashes {
        self.published.load().hashes.clone()
    }

    /// Subscribes to new blocks.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<NewBlock>> {
        self.events.subscribe()
    }

    /// The sender's nonce in the published head's state (0 if it cannot be read: the pool
    /// then keeps the transaction queued until the sealer, which reads the writer's state,
    /// decides).
    pub fn account_nonce(&self, address: &Address) -> u64 {
        if let Some(cached) = self.snapshot().cache.cached_account(address) {
            return cached.map(|a| a.nonce).unwrap_or(0);
        }
        match self.with_head_state(|state| state.account(address)) {
            Ok(Ok(account)) => account.map(|a| a.nonce).unwrap_or(0),
            Ok(Err(e)) | Err(e) => {
                tracing::warn!(%address, error = %e, "cannot read an account nonce");
                0
            }
        }
    }

    /// Validation parameters for new transactions.
    pub fn validation_context(&self) -> ValidationContext<'_> {
        ValidationContext {
            chain_id: self.spec.chain_id,
            block_gas_limit: self.tip.read().head.header.gas_limit,
            // A transaction too large for any block this node seals (or, on a follower, any block
            // of the chain) would wait in the pool for ever.
            max_tx_bytes: self
                .pool
                .config()
                .max_tx_bytes
                .min(usize::try_from(self.seal_limits.largest_tx(&self.spec)).unwrap_or(usize::MAX)),
            allowlist: self.spec.p2pe.allowlist.as_ref(),
        }
    }

    /// Imports a block from a peer or a file: verify, execute, compare, commit.
    pub fn import(&self, block: Block, now: Option<u64>) -> Result<B256, ImportError> {
        let _guard = self.import_lock.lock();
        let _timer = crate::metrics::Timer::start(crate::metrics::names::BLOCK_IMPORT);
        self.import_locked(block, now)
    }

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
        let _guard = self.import_lock.lock();
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
        for event in held {
            let _ = self.events.send(event);
        }
        // Transactions of the abandoned blocks that the branch did not include go back to the pool.
        let included: std::collections::HashSet<B256> =
            branch.iter().flat_map(|b| b.body.transactions.iter().map(|t| *t.tx_hash())).collect();
        for old in reverted.iter().rev() {
            for tx in old.block.recovered_txs() {
                if !included.contains(tx.inner().tx_hash()) {
                    let nonce = self.account_nonce(&tx.signer());
                    let _ = self.pool.add(tx, nonce);
                }
            }
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
    fn announce(&self, event: Arc<NewBlock>) {
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
        let tx_hashes: Vec<B256> = block.block.body.transactions.iter().map(|t| *t.tx_hash()).collect();
        // Emptied whether or not the revert commits (inside a batch it may be rolled back later).
        self.head_cache.clear();
        self.store.lock().revert_block(number, &undo, &tx_hashes, parent_header.state_root)?;
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

    fn import_locked(&self, block: Block, now: Option<u64>) -> Result<B256, ImportError> {
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
        let ctx = ValidationContext { max_tx_bytes: usize::MAX, ..self.validation_context() };
        let mut txs = Vec::with_capacity(block.body.transactions.len());
        for (i, tx) in block.body.transactions.iter().enumerate() {
            let recovered = validate_envelope(tx.clone(), &ctx)
                .map_err(|e| invalid(format!("transaction {i} ({}): {e}", tx.tx_hash())))?;
            txs.push(recovered);
        }
        let input = block_input(&block.header);
        let outcome = {
            let hashes = self.tip.read().hashes.clone();
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

    /// Computes the new state root from the stored trie and the block's changes (incrementally:
    /// only the paths the block touched are rehashed) and the values the changes overwrite
    /// (read from the head state: cache hits for what the block just read). Nothing is written.
    fn apply_outcome(&self, outcome: &BlockOutcome) -> Result<Applied, ImportError> {
        let (root, trie) = self.store.lock().state_root(&outcome.changes)?;
        let store = self.store.lock();
        let plain = PlainState::new(store.connection(), self.reads.codes());
        let undo =
            undo_for(&CachedState::new(&plain, &self.head_cache), |a| plain.slots(a), &outcome.changes)?;
        Ok(Applied { undo, root, trie })
    }

    /// Builds, seals and commits a block on the head with transactions from the pool.
    ///
    /// Returns `None` when it is not this signer's time (signed too recently).
    pub fn seal_next(
        &self,
        key: &SigningKey,
        timestamp: u64,
        vote: Option<Proposal>,
    ) -> Result<Option<SealedBlock>, ImportError> {
        let _guard = self.import_lock.lock();
        let _timer = crate::metrics::Timer::start(crate::metrics::names::BLOCK_SEAL);
        let head = self.tip();
        let signer = key.address();
        let number = head.header.number + 1;
        if !head.snapshot.signers.contains(&signer) || head.snapshot.signed_recently(number, &signer) {
            return Ok(None);
        }
        let gas_limit = next_gas_limit(head.header.gas_limit, self.seal_limits.gas_target(&self.spec));
        let intent = clique::SealIntent { signer: &signer, timestamp, gas_limit, vote };
        let mut header =
            clique::prepare_header(&self.spec.clique, &head.header, head.hash, &head.snapshot, intent);
        let input = block_input_for_signer(&header, signer);
        let max_txs = (header.gas_limit / 21_000) as usize;
        let tx_bytes = self.tx_byte_budget(&header);
        let outcome = {
            let hashes = self.tip.read().hashes.clone();
            self.with_writer_state(|state| {
                let nonce = |a: &Address| state.account(a).ok().flatten().map(|i| i.nonce).unwrap_or(0);
                let candidates = self.pool.best(nonce, max_txs);
                let policy = InvalidTxPolicy::Skip { tx_bytes };
                execute_block(self.spec.chain_id, state, &hashes, &input, candidates, policy)
            })
            .map_err(|e| match e {
                ExecError::State(s) => ImportError::State(s),
                other => ImportError::Invalid { number, hash: B256::ZERO, reason: other.to_string() },
            })?
        };
        for skipped in &outcome.skipped {
            if !skipped.retry {
                tracing::debug!(tx = %skipped.tx.inner().tx_hash(), reason = %skipped.reason, "dropping invalid transaction");
                self.pool.remove(skipped.tx.inner().tx_hash());
            }
        }
        // Fill in what execution decided, then the state root, then seal.
        header.gas_used = outcome.gas_used;
        header.receipts_root = proofs::calculate_receipt_root(&outcome.receipts);
        header.logs_bloom = receipts_bloom(&outcome.receipts);
        let txs: Vec<_> = outcome.txs.iter().map(|t| t.inner().clone()).collect();
        header.transactions_root = proofs::calculate_transaction_root(&txs);
        // The state is applied once, here, and handed to the shared commit below.
        let applied = self.apply_outcome(&outcome)?;
        header.state_root = applied.root;
        let sealed_ok = clique::sign_header(&mut header, key).map_err(|source| ImportError::Consensus {
            number,
            hash: B256::ZERO,
            source,
        });
        let hash = header.hash_slow();
        let verified = sealed_ok.and_then(|_| {
            clique::verify_header(&self.spec.clique, &header, &head.header, head.hash, &head.snapshot, None)
                .map_err(|source| ImportError::Consensus { number, hash, source })
        });
        let (snapshot, _) = verified?;
        let block = Block {
            header,
            body: alloy_consensus::BlockBody {
                transactions: txs,
                ommers: vec![],
                withdrawals: Some(Default::default()),
            },
        };
        let size = alloy_rlp::Encodable::length(&block) as u64;
        if size > self.seal_limits.block_bytes(&self.spec) {
            return Err(ImportError::Invalid {
                number,
                hash,
                reason: format!("the sealed block is {size} bytes, over the byte limit it was built for"),
            });
        }
        let senders = outcome.txs.iter().map(|t| t.signer()).collect();
        let sealed = SealedBlock { hash, block, senders };
        self.commit_executed(sealed.clone(), outcome, snapshot, &head, Some(applied))?;
        Ok(Some(sealed))
    }

    /// Bytes left for transactions in a block built on `header` (prepared, not yet filled): the
    /// sealer's byte limit less the block without transactions, less what filling in the gas used
    /// and the longer list headers can add.
    fn tx_byte_budget(&self, header: &Header) -> usize {
        const FILL_SLACK: u64 = 32;
        let empty = Block {
            header: header.clone(),
            body: alloy_consensus::BlockBody {
                transactions: vec![],
                ommers: vec![],
                withdrawals: Some(Default::default()),
            },
        };
        let fixed = alloy_rlp::Encodable::length(&empty) as u64 + FILL_SLACK;
        usize::try_from(self.seal_limits.block_bytes(&self.spec).saturating_sub(fixed)).unwrap_or(usize::MAX)
    }

    /// The shared tail of sealing and import: check roots, apply, persist, move the head.
    fn commit_executed(
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
        let applied = match applied {
            Some(a) => a,
            None => self.apply_outcome(&outcome)?,
        };
        let receipts_root = proofs::calculate_receipt_root(&outcome.receipts);
        let check = if outcome.gas_used != header.gas_used {
            Err(format!("gasUsed {} but execution used {}", header.gas_used, outcome.gas_used))
        } else if receipts_root != header.receipts_root {
            Err(format!("receiptsRoot {} but execution gives {receipts_root}", header.receipts_root))
        } else if receipts_bloom(&outcome.receipts) != header.logs_bloom {
            Err("logsBloom does not match the receipts".into())
        } else if applied.root != header.state_root {
            Err(format!("stateRoot {} but execution gives {}", header.state_root, applied.root))
        } else {
            Ok(())
        };
        if let Err(reason) = check {
            return Err(invalid(reason));
        }
        let Applied { undo, trie, .. } = applied;
        let total_difficulty = head.total_difficulty + header.difficulty;
        let write = BlockWrite {
            block: &sealed,
            receipts: &outcome.receipts,
            total_difficulty,
            changes: &outcome.changes,
            undo: &undo,
            snapshot: &snapshot,
            trie: &trie,
        };
        self.store.lock().commit_block(&write)?;
        self.head_cache.write_through(&outcome.changes);
        let nonces: Vec<(Address, u64)> = self.with_writer_state(|state| {
            let nonce = |s: &Address| state.account(s).ok().flatten().map(|i| i.nonce).unwrap_or(0);
            sealed.senders.iter().map(|s| (*s, nonce(s))).collect()
        });
        self.tip.write().advance(Head { header: header.clone(), hash, total_difficulty, snapshot });
        self.publish(Some(&outcome.changes));
        self.pool.prune(nonces);
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

/// What committing one executed block writes besides the block: computed, not yet written.
struct Applied {
    /// The values the block's changes overwrite.
    undo: StateUndo,
    /// The state root after the block.
    root: B256,
    /// The block's changes to the stored state trie.
    trie: crate::storage::trie::StateTrieUpdates,
}

/// Reads the head block, its Clique snapshot and total difficulty and the last 257 block hashes
/// from `store`, and checks the stored state trie's root against the head's.
fn load_head(store: &Store) -> Result<(Head, BlockHashes), ImportError> {
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

/// The execution inputs of a header.
///
/// COINBASE is the block's signer, as under geth's Clique (`Author`): the header's `coinbase`
/// field only carries votes. For a header not sealed yet, see [`block_input_for_signer`].
pub fn block_input(header: &Header) -> BlockInput {
    block_input_for_signer(header, clique::recover_sealer(header).unwrap_or_default())
}

/// The execution inputs of a header sealed (or about to be sealed) by `signer`.
pub fn block_input_for_signer(header: &Header, signer: Address) -> BlockInput {
    BlockInput {
        number: header.number,
        timestamp: header.timestamp,
        beneficiary: signer,
        gas_limit: header.gas_limit,
        difficulty: header.difficulty.to::<u64>(),
        prevrandao: header.mix_hash,
    }
}
