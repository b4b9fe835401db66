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

use alloy_consensus::{Header, ReceiptEnvelope};
use alloy_primitives::{Address, B256, U256};
use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use crate::chain::{ChainSpec, SealLimits};
use crate::consensus::clique::{CliqueError, Snapshot};
use crate::primitives::SealedBlock;
use crate::state::{BlockHashes, StateChanges, StateError, StateReader};
use crate::storage::{
    CachedState, HistoricalState, PlainState, ReadPool, StateCache, StorageError, Store,
    DEFAULT_CACHE_ENTRIES,
};
use crate::txpool::{TxPool, ValidationContext};

mod builder;
mod events;
mod import;
mod reorg;

pub use builder::{block_input, block_input_for_signer, build_budget};
pub use events::{CanonEvent, CanonListener};
use import::load_head;

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
    /// The chain was closed ([`Blockchain::close`]): the node is stopping and writes no block.
    #[error("the chain is closed: the node is stopping")]
    Closed,
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

/// Node-level options for the chain. How much state history is kept is the store's setting
/// ([`Store::open`](crate::storage::Store::open)), not one of these.
#[derive(Debug, Clone)]
pub struct ChainOptions {
    /// Read connections for RPC.
    pub read_connections: usize,
    /// Accounts and slots cached in front of SQLite, for the writer and again for RPC readers
    /// of the head (about 100 bytes each).
    pub state_cache_entries: usize,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self { read_connections: 4, state_cache_entries: DEFAULT_CACHE_ENTRIES }
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

/// The chain, its state and its pool (which it feeds with [`CanonEvent`]s and builds blocks from).
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
    /// The pool the builder takes transactions from; it follows the chain as a [`CanonListener`].
    pool: Arc<TxPool>,
    /// In-process listeners of the canonical chain (the pool first).
    canon: events::CanonListeners,
    events: broadcast::Sender<Arc<NewBlock>>,
    /// Blocks this node sealed, sent before their commit so the network gossips them meanwhile
    /// ([`Blockchain::subscribe_sealed`]).
    sealed_events: broadcast::Sender<Arc<SealedBlock>>,
    /// The block this node sealed and is committing: a peer that fetches its body (a compact
    /// block it could not rebuild) gets it from here until the commit makes it readable.
    committing: Mutex<Option<Arc<SealedBlock>>>,
    /// Events held back while a reorg's batch is not committed yet (subscribers must not hear
    /// of blocks that RPC reads cannot see).
    held_events: Mutex<Option<Vec<Arc<NewBlock>>>>,
    /// Held by every writer of blocks (import, reorg, seal); `true` once the chain is closed.
    import_lock: Mutex<bool>,
    /// Heights of blocks sealed by a signer on our head whose import waits or runs (see
    /// [`Blockchain::import`]): an out-of-turn seal at such a height is abandoned.
    arriving: Mutex<Vec<u64>>,
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
        let (sealed_events, _) = broadcast::channel(16);
        let cache_entries = opts.state_cache_entries;
        let cache = Arc::new(StateCache::new(cache_entries));
        let published =
            ArcSwap::from_pointee(ChainSnapshot { head: head.clone(), hashes: hashes.clone(), cache });
        let canon = events::CanonListeners::default();
        canon.add(pool.clone());
        Ok(Self {
            spec,
            store: Mutex::new(store),
            reads,
            head_cache: StateCache::for_writer(cache_entries),
            cache_entries,
            tip: RwLock::new(Tip { head, hashes }),
            published,
            pool,
            canon,
            events,
            sealed_events,
            committing: Mutex::new(None),
            held_events: Mutex::new(None),
            import_lock: Mutex::new(false),
            arriving: Mutex::new(Vec::new()),
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

    /// Adds an in-process listener of the canonical chain (the pool is the first, added by
    /// [`Blockchain::open`]).
    pub fn add_canon_listener(&self, listener: Arc<dyn CanonListener>) {
        self.canon.add(listener);
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

    /// Closes the chain to writers, then empties the write-ahead log into `chain.sqlite`, so the
    /// file alone holds every committed block (the node's last step when it stops). A block being
    /// imported or sealed is finished first; every later import or reorg fails with
    /// [`ImportError::Closed`] and every later seal seals nothing, so no block (a peer's, arriving
    /// while the network winds down) reaches the log after the checkpoint. See
    /// [`Store::checkpoint_all`](crate::storage::Store::checkpoint_all); on its error the chain
    /// stays closed and the log still holds the blocks (the next start applies it).
    pub fn close(&self) -> Result<(), StorageError> {
        let mut closed = self.import_lock.lock();
        *closed = true;
        self.store.lock().checkpoint_all()
    }

    /// Takes the import lock for a block writer, unless the chain is closed.
    fn lock_for_writing(&self) -> Result<parking_lot::MutexGuard<'_, bool>, ImportError> {
        let guard = self.import_lock.lock();
        if *guard {
            return Err(ImportError::Closed);
        }
        Ok(guard)
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
        store.in_read_transaction(|conn| {
            let state = CachedState::new(PlainState::new(conn, self.reads.codes()), &self.head_cache);
            f(&state)
        })
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

    /// Subscribes to the blocks this node seals, each sent once it is sealed and before its commit
    /// (the network gossips it while the commit writes and syncs it; every other listener waits for
    /// [`Blockchain::subscribe`], whose blocks RPC can read).
    pub fn subscribe_sealed(&self) -> broadcast::Receiver<Arc<SealedBlock>> {
        self.sealed_events.subscribe()
    }

    /// The block `hash` if this node sealed it and is committing it now.
    pub fn committing(&self, hash: &B256) -> Option<Arc<SealedBlock>> {
        self.committing.lock().as_ref().filter(|b| b.hash == *hash).cloned()
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
}
