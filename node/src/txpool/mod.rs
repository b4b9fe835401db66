//! The transaction pool: validation, per-sender nonce queues, limits and block ordering.
//!
//! There are no fees to order by, so transactions are served in arrival order, each sender's
//! in nonce order. A transaction whose nonce leaves a gap waits (queued) until the gap fills.
//!
//! **Replacement rule.** A transaction with the same sender and nonce as a waiting one replaces
//! it if its signed tip (`maxPriorityFeePerGas`, or `gasPrice` for legacy) and fee cap are at
//! least the waiting one's; otherwise it is refused with "replacement transaction
//! underpriced". Fees are never charged, so a replacement costs nothing: this rule only exists so
//! a wallet's "speed up" and "cancel", which never lower fees, work as users expect.
//!
//! **Limits.** Fees are zero, so nothing prices pool space and every bound is explicit
//! ([`PoolConfig`]): per sender (waiting and queued), in total (count and bytes), per transaction
//! (size), and in time (queued transactions expire). When the shared room is full, the oldest
//! queued transactions are evicted to make room; executable ones are never evicted. Priority
//! senders (`--txpool-priority`) have a reserve of their own, so the market's operator, keeper,
//! bridge and meters are never shut out by spam.

mod maintain;
mod sender;
mod validate;

pub use validate::{
    validate_envelope, validate_tx, validate_with_sender, TxValidationError, ValidationContext,
};

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_consensus::Transaction;
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256};
use parking_lot::Mutex;
use tokio::sync::{broadcast, Notify};

use crate::primitives::RecoveredTx;
use sender::{Moved, PooledTx, SenderQueue};

/// Pool limits.
///
/// Fees are zero, so nothing prices pool space: every bound is explicit. Transactions of
/// `priority` senders (the operator, keeper, bridge and meter accounts) are counted against their
/// own reserve, so spam can never shut them out; everyone else shares `max_total` and `max_bytes`.
/// When the shared room is full, the oldest queued (gapped) transactions are evicted first; an
/// executable transaction is never evicted.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most transactions one sender may have waiting (executable and queued).
    pub max_per_sender: usize,
    /// Most queued (gapped) transactions one sender may have waiting (geth: 64).
    pub max_queued_per_sender: usize,
    /// Most transactions in the shared room.
    pub max_total: usize,
    /// Most bytes (EIP-2718 encodings) in the shared room.
    pub max_bytes: usize,
    /// Largest accepted transaction, in bytes of its encoding.
    pub max_tx_bytes: usize,
    /// How long a queued transaction may wait for its gap to fill (geth: 3 h).
    pub queued_lifetime: Duration,
    /// Senders with reserved room.
    pub priority: HashSet<Address>,
    /// Most transactions of priority senders (their reserve, outside the shared room).
    pub max_priority: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_per_sender: 16_384,
            max_queued_per_sender: 64,
            max_total: 200_000,
            max_bytes: 128 * 1024 * 1024,
            max_tx_bytes: 128 * 1024,
            queued_lifetime: Duration::from_secs(3 * 3600),
            priority: HashSet::new(),
            max_priority: 50_000,
        }
    }
}

/// Why the pool refused a transaction (after validation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The transaction is already waiting.
    #[error("already known")]
    AlreadyKnown,
    /// Lower nonce than the sender's account.
    #[error("nonce too low: next nonce {expected}, transaction nonce {got}")]
    NonceTooLow {
        /// Account nonce.
        expected: u64,
        /// Transaction nonce.
        got: u64,
    },
    /// Same nonce as a waiting transaction with higher fees.
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    /// Per-sender limit.
    #[error("sender {sender} already has {limit} transactions waiting (the per-sender limit)")]
    SenderFull {
        /// The sender.
        sender: Address,
        /// The limit.
        limit: usize,
    },
    /// Per-sender limit on gapped transactions.
    #[error(
        "sender {sender} already has {limit} queued transactions waiting for a nonce gap to fill \
         (--txpool-max-queued-per-sender); send the missing nonce first"
    )]
    QueuedFull {
        /// The sender.
        sender: Address,
        /// The limit.
        limit: usize,
    },
    /// Nonce too far ahead of the account nonce.
    #[error("nonce {got} is too far ahead of the account nonce {expected} (at most {limit} ahead)")]
    NonceTooHigh {
        /// Account nonce.
        expected: u64,
        /// Transaction nonce.
        got: u64,
        /// How far ahead is allowed.
        limit: usize,
    },
    /// The shared room is full of executable transactions (nothing queued to evict).
    #[error("transaction pool is full ({0}); try again after the next block")]
    PoolFull(String),
}

/// Count and bytes of a part of the pool.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    count: usize,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<B256, (Address, u64)>,
    senders: HashMap<Address, SenderQueue>,
    /// Queued (gapped) transactions by arrival: the eviction and expiry order.
    queued: BTreeMap<u64, (Address, u64)>,
    seq: u64,
    shared: Usage,
    reserved: Usage,
    /// The account nonces the last two blocks' prunes set, for senders whose queue they emptied.
    recent: RecentNonces,
}

/// Account nonces the last two blocks set, by sender. A sender whose queue a block emptied has
/// no queue left to remember its nonce; an add whose caller read the account nonce just before
/// that block committed would otherwise start a new queue at the stale nonce, and its next
/// transaction would wait there as gapped (for the queued lifetime, if the sender sends nothing
/// more). A reorganisation forgets them (nonces may go back).
#[derive(Default)]
struct RecentNonces {
    last: HashMap<Address, u64>,
    before: HashMap<Address, u64>,
}

impl RecentNonces {
    fn record(&mut self, senders: HashMap<Address, u64>) {
        self.before = std::mem::replace(&mut self.last, senders);
    }

    fn get(&self, sender: &Address) -> Option<u64> {
        self.last.get(sender).or_else(|| self.before.get(sender)).copied()
    }
}

/// A snapshot of the pool's contents for `txpool_*` RPC methods.
#[derive(Debug, Clone, Default)]
pub struct PoolContent {
    /// Executable now (contiguous from the account nonce), by sender and nonce.
    pub pending: BTreeMap<Address, BTreeMap<u64, Arc<RecoveredTx>>>,
    /// Waiting for a nonce gap to fill.
    pub queued: BTreeMap<Address, BTreeMap<u64, Arc<RecoveredTx>>>,
}

/// The transaction pool.
pub struct TxPool {
    config: PoolConfig,
    inner: Mutex<Inner>,
    /// Woken whenever a transaction is added.
    pub added: Notify,
    pending_tx: broadcast::Sender<B256>,
}

impl Inner {
    fn usage(&mut self, config: &PoolConfig, sender: &Address) -> &mut Usage {
        if config.priority.contains(sender) {
            &mut self.reserved
        } else {
            &mut self.shared
        }
    }

    /// Keeps the queued index in step with a sender's split.
    fn apply_moved(&mut self, sender: Address, moved: Moved) {
        let Some(q) = self.senders.get(&sender) else { return };
        let arrival = |n: &u64| q.txs.get(n).map(|p| p.arrival);
        let promoted: Vec<u64> = moved.promoted.iter().filter_map(arrival).collect();
        let demoted: Vec<(u64, u64)> = moved.demoted.iter().filter_map(|n| Some((arrival(n)?, *n))).collect();
        for a in promoted {
            self.queued.remove(&a);
        }
        for (a, n) in demoted {
            self.queued.insert(a, (sender, n));
        }
    }

    /// Forgets a transaction that left its sender's queue.
    fn forget(&mut self, config: &PoolConfig, sender: Address, p: &PooledTx) {
        self.by_hash.remove(p.tx.inner().tx_hash());
        self.queued.remove(&p.arrival);
        let u = self.usage(config, &sender);
        u.count -= 1;
        u.bytes -= p.bytes;
    }

    /// Removes `sender`'s transaction at `nonce`, keeping every index right.
    fn remove_at(&mut self, config: &PoolConfig, sender: Address, nonce: u64) -> Option<PooledTx> {
        let q = self.senders.get_mut(&sender)?;
        let (removed, moved) = q.remove(nonce);
        let empty = q.txs.is_empty();
        let removed = removed?;
        self.forget(config, sender, &removed);
        self.apply_moved(sender, moved);
        if empty {
            self.senders.remove(&sender);
        }
        Some(removed)
    }

    /// Moves `sender`'s split to its account nonce, dropping what that nonce made stale.
    /// The waiting transaction with this hash.
    fn lookup(&self, hash: &B256) -> Option<Arc<RecoveredTx>> {
        let (sender, nonce) = self.by_hash.get(hash)?;
        self.senders.get(sender)?.txs.get(nonce).map(|p| p.tx.clone())
    }

    fn rebase(&mut self, config: &PoolConfig, sender: Address, account_nonce: u64) {
        let Some(q) = self.senders.get_mut(&sender) else { return };
        let (dropped, moved) = q.rebase(account_nonce);
        let empty = q.txs.is_empty();
        for p in &dropped {
            self.forget(config, sender, p);
        }
        self.apply_moved(sender, moved);
        if empty {
            self.senders.remove(&sender);
        }
    }

    /// Evicts the oldest queued transaction of a non-priority sender other than `keep`.
    fn evict_oldest_queued(&mut self, config: &PoolConfig, keep: (Address, u64)) -> bool {
        let victim =
            self.queued.values().find(|(s, n)| (*s, *n) != keep && !config.priority.contains(s)).copied();
        match victim {
            Some((s, n)) => {
                tracing::debug!(sender = %s, nonce = n, "evicting the oldest queued transaction");
                self.remove_at(config, s, n).is_some()
            }
            None => false,
        }
    }

    /// Makes room in the shared part for `bytes` more (one more transaction unless `replacing`),
    /// evicting the oldest queued transactions; `Err` when only executable ones are left.
    fn make_room(
        &mut self,
        config: &PoolConfig,
        incoming: (Address, u64),
        bytes: usize,
        replacing: bool,
    ) -> Result<(), PoolError> {
        let extra = usize::from(!replacing);
        loop {
            let u = self.shared;
            let fits_count = u.count + extra <= config.max_total;
            let fits_bytes = u.bytes + bytes <= config.max_bytes;
            if fits_count && fits_bytes {
                return Ok(());
            }
            if !self.evict_oldest_queued(config, incoming) {
                return Err(PoolError::PoolFull(if fits_count {
                    format!("{} bytes, --txpool-max-bytes {}", u.bytes, config.max_bytes)
                } else {
                    format!("{} transactions, --txpool-max-total {}", u.count, config.max_total)
                }));
            }
        }
    }
}

impl TxPool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        let (pending_tx, _) = broadcast::channel(16_384);
        Self { config, inner: Mutex::new(Inner::default()), added: Notify::new(), pending_tx }
    }

    /// The pool's limits.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Subscribes to hashes of newly added transactions.
    pub fn subscribe(&self) -> broadcast::Receiver<B256> {
        self.pending_tx.subscribe()
    }

    /// Adds a validated transaction. `account_nonce` is the sender's nonce in the head state.
    pub fn add(&self, tx: RecoveredTx, account_nonce: u64) -> Result<B256, PoolError> {
        let hash = *tx.inner().tx_hash();
        {
            let mut inner = self.inner.lock();
            self.insert(&mut inner, tx, account_nonce)?;
        }
        let _ = self.pending_tx.send(hash);
        self.added.notify_one();
        Ok(hash)
    }

    fn insert(&self, inner: &mut Inner, tx: RecoveredTx, account_nonce: u64) -> Result<(), PoolError> {
        let cfg = &self.config;
        let hash = *tx.inner().tx_hash();
        let sender = tx.signer();
        let nonce = tx.inner().nonce();
        // The caller read `account_nonce` from the head before it took the pool's lock; a block
        // committed since may have moved the sender on (and `prune` rebased its queue). A nonce
        // older than the queue's is stale, not a reorg (reorgs move nonces back through `prune`
        // only): rebasing back to it made every waiting transaction of the sender look gapped,
        // and the queued cap then refused its next ones (seen under a 60,000-transaction burst).
        let known = inner.senders.get(&sender).map(|q| q.base()).or_else(|| inner.recent.get(&sender));
        let account_nonce = known.map_or(account_nonce, |k| account_nonce.max(k));
        if inner.by_hash.contains_key(&hash) {
            return Err(PoolError::AlreadyKnown);
        }
        if nonce < account_nonce {
            return Err(PoolError::NonceTooLow { expected: account_nonce, got: nonce });
        }
        if nonce - account_nonce >= cfg.max_per_sender as u64 {
            return Err(PoolError::NonceTooHigh {
                expected: account_nonce,
                got: nonce,
                limit: cfg.max_per_sender,
            });
        }
        inner.rebase(cfg, sender, account_nonce);
        let fresh = SenderQueue::new(account_nonce);
        let q = inner.senders.get(&sender).unwrap_or(&fresh);
        let replacing = match q.txs.get(&nonce) {
            Some(existing) => {
                let (old, new) = (existing.tx.inner(), tx.inner());
                let tip_ok = new.priority_fee_or_price() >= old.priority_fee_or_price();
                if !(tip_ok && new.max_fee_per_gas() >= old.max_fee_per_gas()) {
                    return Err(PoolError::ReplacementUnderpriced);
                }
                true
            }
            None if q.txs.len() >= cfg.max_per_sender => {
                return Err(PoolError::SenderFull { sender, limit: cfg.max_per_sender })
            }
            None if q.is_gapped(nonce) && q.queued_len() >= cfg.max_queued_per_sender => {
                return Err(PoolError::QueuedFull { sender, limit: cfg.max_queued_per_sender })
            }
            None => false,
        };
        let gapped = q.is_gapped(nonce);
        let bytes = tx.inner().encode_2718_len();
        if cfg.priority.contains(&sender) {
            if !replacing && inner.reserved.count >= cfg.max_priority {
                return Err(PoolError::PoolFull(format!("priority reserve of {}", cfg.max_priority)));
            }
        } else {
            inner.make_room(cfg, (sender, nonce), bytes, replacing)?;
        }
        if replacing {
            inner.remove_at(cfg, sender, nonce);
        }
        let arrival = inner.seq;
        inner.seq += 1;
        let pooled = PooledTx { tx: Arc::new(tx), arrival, since: Instant::now(), bytes };
        // A replacement may have turned later nonces into queued ones: the sender's entry is
        // looked up again, and gapped-ness is what it was before the replaced one left.
        let q = inner.senders.entry(sender).or_insert_with(|| SenderQueue::new(account_nonce));
        let (_, moved) = q.insert(nonce, pooled);
        if gapped {
            inner.queued.insert(arrival, (sender, nonce));
        }
        inner.apply_moved(sender, moved);
        let u = inner.usage(cfg, &sender);
        u.count += 1;
        u.bytes += bytes;
        inner.by_hash.insert(hash, (sender, nonce));
        Ok(())
    }

    /// Hashes of every transaction in the pool (pending and queued), in no particular order.
    pub fn hashes(&self) -> Vec<B256> {
        self.inner.lock().by_hash.keys().copied().collect()
    }

    /// Number of transactions waiting.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.shared.count + inner.reserved.count
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of queued (gapped) transactions.
    pub fn queued_len(&self) -> usize {
        self.inner.lock().queued.len()
    }

    /// Bytes of the waiting transactions' encodings (shared room and priority reserve).
    pub fn bytes(&self) -> usize {
        let inner = self.inner.lock();
        inner.shared.bytes + inner.reserved.bytes
    }

    /// A waiting transaction by hash.
    pub fn get(&self, hash: &B256) -> Option<Arc<RecoveredTx>> {
        self.inner.lock().lookup(hash)
    }

    /// The waiting transactions of these hashes, in their order (`None` where one is not here),
    /// under one lock: a block's import takes its transactions' recovered senders from here.
    pub fn get_many<'a>(&self, hashes: impl IntoIterator<Item = &'a B256>) -> Vec<Option<Arc<RecoveredTx>>> {
        let inner = self.inner.lock();
        hashes.into_iter().map(|hash| inner.lookup(hash)).collect()
    }

    /// Whether a transaction with this hash waits in the pool.
    pub fn contains(&self, hash: &B256) -> bool {
        self.inner.lock().by_hash.contains_key(hash)
    }

    /// The next nonce for `sender` counting its contiguous waiting transactions ("pending" nonce).
    pub fn pending_nonce(&self, sender: &Address, account_nonce: u64) -> u64 {
        let inner = self.inner.lock();
        let mut next = account_nonce;
        if let Some(queue) = inner.senders.get(sender) {
            for n in queue.txs.range(account_nonce..).map(|(n, _)| *n) {
                if n != next {
                    break;
                }
                next += 1;
            }
        }
        next
    }

    /// Executable transactions for a block, up to `max`: priority senders' first, then everyone's
    /// in arrival order (each sender's in nonce order). Priority first means that a backlog of
    /// spam never delays the keeper's, the operator's or a meter's transaction by more than a block.
    pub fn best(&self, account_nonce: impl Fn(&Address) -> u64, max: usize) -> Vec<RecoveredTx> {
        let inner = self.inner.lock();
        let rank = |s: &Address| u8::from(!self.config.priority.contains(s));
        let mut heap = BinaryHeap::new();
        let mut cursors: HashMap<Address, u64> = HashMap::new();
        for (sender, queue) in &inner.senders {
            let n = account_nonce(sender);
            if let Some(p) = queue.txs.get(&n) {
                heap.push(Reverse((rank(sender), p.arrival, *sender)));
                cursors.insert(*sender, n);
            }
        }
        let mut out = Vec::new();
        while let Some(Reverse((r, _, sender))) = heap.pop() {
            if out.len() >= max {
                break;
            }
            let nonce = cursors[&sender];
            let queue = &inner.senders[&sender].txs;
            out.push((*queue[&nonce].tx).clone());
            if let Some(next) = queue.get(&(nonce + 1)) {
                heap.push(Reverse((r, next.arrival, sender)));
                cursors.insert(sender, nonce + 1);
            }
        }
        out
    }

    /// After a block: drops every transaction of `senders` whose nonce is below the sender's new
    /// account nonce, and every queued transaction older than `--txpool-queued-lifetime`.
    pub fn prune(&self, senders: impl IntoIterator<Item = (Address, u64)>) {
        let mut inner = self.inner.lock();
        let senders: HashMap<Address, u64> = senders.into_iter().collect();
        for (&sender, &account_nonce) in &senders {
            inner.rebase(&self.config, sender, account_nonce);
        }
        inner.recent.record(senders);
        self.expire(&mut inner, Instant::now());
    }

    /// After a reorganisation: as [`TxPool::prune`], with the nonces `senders` had on the branch
    /// left behind forgotten first (they may be ahead of the new branch's).
    pub fn prune_reorged(&self, senders: impl IntoIterator<Item = (Address, u64)>) {
        self.inner.lock().recent = RecentNonces::default();
        self.prune(senders);
    }

    /// Drops queued transactions that waited longer than the lifetime at `now`.
    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((&arrival, &(sender, nonce))) = inner.queued.first_key_value() {
            let since = inner.senders.get(&sender).and_then(|q| q.txs.get(&nonce)).map(|p| p.since);
            match since {
                Some(t) if now.duration_since(t) < self.config.queued_lifetime => break,
                Some(_) => {
                    tracing::debug!(%sender, nonce, "queued transaction expired");
                    inner.remove_at(&self.config, sender, nonce);
                }
                None => {
                    inner.queued.remove(&arrival);
                }
            }
        }
    }

    /// Removes one transaction (e.g. found invalid while building a block).
    pub fn remove(&self, hash: &B256) {
        let mut inner = self.inner.lock();
        if let Some(&(sender, nonce)) = inner.by_hash.get(hash) {
            inner.remove_at(&self.config, sender, nonce);
        }
    }

    /// Pending and queued transactions, given account nonces.
    pub fn content(&self, account_nonce: impl Fn(&Address) -> u64) -> PoolContent {
        let inner = self.inner.lock();
        let mut content = PoolContent::default();
        for (sender, queue) in &inner.senders {
            let mut next = account_nonce(sender);
            for (nonce, p) in &queue.txs {
                if *nonce == next {
                    content.pending.entry(*sender).or_default().insert(*nonce, p.tx.clone());
                    next += 1;
                } else {
                    content.queued.entry(*sender).or_default().insert(*nonce, p.tx.clone());
                }
            }
        }
        content
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKey;
    use alloy_consensus::transaction::Recovered;
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy_primitives::{TxKind, U256};

    fn tx(key: &SigningKey, nonce: u64, tip: u128) -> RecoveredTx {
        let t = TxEip1559 {
            chain_id: 1337,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: tip,
            max_priority_fee_per_gas: tip,
            to: TxKind::Call(Address::repeat_byte(9)),
            value: U256::from(1),
            ..Default::default()
        };
        let sig = key.sign_hash(&t.signature_hash());
        Recovered::new_unchecked(TxEnvelope::from(t.into_signed(sig)), key.address())
    }

    #[test]
    fn an_account_nonce_read_before_a_block_never_moves_a_sender_back() {
        let pool = TxPool::new(PoolConfig { max_queued_per_sender: 2, ..PoolConfig::default() });
        let a = SigningKey::from_bytes(&B256::repeat_byte(1)).unwrap();
        for n in 0..6 {
            pool.add(tx(&a, n, 0), 0).unwrap();
        }
        // A block mined nonces 0..3; its prune moved the sender to 3.
        pool.prune([(a.address(), 3)]);
        assert_eq!(pool.pending_nonce(&a.address(), 3), 6);
        // A sender read the account nonce (0) before that block committed, and adds now: its
        // stale nonce leaves the executable run 3..6 as it is, and the next nonces are taken
        // (with the queue rebased to 0, all three would count as queued over the cap of 2).
        for n in 6..9 {
            pool.add(tx(&a, n, 0), 0).unwrap_or_else(|e| panic!("nonce {n}: {e}"));
        }
        assert_eq!(pool.queued_len(), 0);
        assert_eq!(pool.pending_nonce(&a.address(), 3), 9);
        assert!(matches!(pool.add(tx(&a, 2, 1), 0), Err(PoolError::NonceTooLow { expected: 3, got: 2 })));
        // A reorg moves nonces back through prune, and re-adds what it orphaned.
        pool.prune([(a.address(), 1)]);
        pool.add(tx(&a, 1, 0), 1).unwrap();
        pool.add(tx(&a, 2, 0), 1).unwrap();
        assert_eq!(pool.pending_nonce(&a.address(), 1), 9);
        assert_eq!(pool.queued_len(), 0);
    }

    #[test]
    fn a_stale_account_nonce_after_a_block_emptied_the_senders_queue_does_not_gap_its_next_tx() {
        let pool = TxPool::new(PoolConfig::default());
        let a = SigningKey::from_bytes(&B256::repeat_byte(1)).unwrap();
        pool.add(tx(&a, 0, 0), 0).unwrap();
        // A block mines nonce 0: the sender's queue is empty and gone.
        pool.prune([(a.address(), 1)]);
        assert_eq!(pool.len(), 0);
        // The sender's next transaction, whose caller read the account nonce (0) before that
        // block committed: executable, not waiting for a nonce 0 that is already mined.
        pool.add(tx(&a, 1, 0), 0).unwrap();
        assert_eq!(pool.queued_len(), 0, "nonce 1 is executable");
        assert_eq!(pool.pending_nonce(&a.address(), 1), 2);
        assert_eq!(pool.best(|_| 1, 10).len(), 1, "and goes into the next block");
        // Still known a block later (a caller may be that far behind).
        pool.prune([(a.address(), 2)]);
        pool.prune([(Address::repeat_byte(9), 5)]);
        pool.add(tx(&a, 3, 0), 1).unwrap();
        assert_eq!(pool.queued_len(), 1, "nonce 3 waits for 2, not for 1");
        pool.add(tx(&a, 2, 0), 1).unwrap();
        assert_eq!(pool.queued_len(), 0);
        // A reorganisation that takes those blocks off moves the sender back: its orphaned
        // transactions are taken again at their nonces.
        pool.prune_reorged([(a.address(), 0)]);
        pool.add(tx(&a, 0, 0), 0).unwrap();
        pool.add(tx(&a, 1, 0), 0).unwrap();
        assert_eq!(pool.pending_nonce(&a.address(), 0), 4);
        assert_eq!(pool.queued_len(), 0);
    }

    #[test]
    fn orders_by_arrival_and_nonce_and_queues_gaps() {
        let pool = TxPool::new(PoolConfig::default());
        let a = SigningKey::from_bytes(&B256::repeat_byte(1)).unwrap();
        let b = SigningKey::from_bytes(&B256::repeat_byte(2)).unwrap();
        pool.add(tx(&a, 1, 0), 0).unwrap(); // gap: waits for nonce 0
        pool.add(tx(&b, 0, 0), 0).unwrap();
        pool.add(tx(&a, 0, 0), 0).unwrap();
        let best = pool.best(|_| 0, 10);
        let order: Vec<(Address, u64)> = best.iter().map(|t| (t.signer(), t.inner().nonce())).collect();
        assert_eq!(order, vec![(b.address(), 0), (a.address(), 0), (a.address(), 1)]);
        assert_eq!(pool.pending_nonce(&a.address(), 0), 2);
        let a0 = *tx(&a, 0, 0).inner().tx_hash();
        let mut hashes = pool.hashes();
        hashes.sort();
        let mut expected: Vec<B256> =
            [tx(&a, 0, 0), tx(&a, 1, 0), tx(&b, 0, 0)].iter().map(|t| *t.inner().tx_hash()).collect();
        expected.sort();
        assert_eq!(hashes, expected, "hashes lists pending and queued transactions");
        assert!(pool.contains(&a0));
        pool.prune([(a.address(), 1)]);
        assert_eq!(pool.len(), 2);
        assert!(!pool.contains(&a0), "pruned");
        let content = pool.content(|_| 0);
        assert!(content.queued.contains_key(&a.address()));
    }

    #[test]
    fn limits_and_replacement() {
        let pool = TxPool::new(PoolConfig { max_per_sender: 2, max_total: 3, ..PoolConfig::default() });
        let a = SigningKey::from_bytes(&B256::repeat_byte(1)).unwrap();
        pool.add(tx(&a, 0, 5), 0).unwrap();
        assert_eq!(pool.add(tx(&a, 0, 4), 0), Err(PoolError::ReplacementUnderpriced));
        pool.add(tx(&a, 0, 6), 0).unwrap();
        assert_eq!(pool.len(), 1);
        pool.add(tx(&a, 1, 0), 0).unwrap();
        assert!(matches!(pool.add(tx(&a, 2, 0), 0), Err(PoolError::NonceTooHigh { .. })));
        assert!(matches!(pool.add(tx(&a, 0, 9), 3), Err(PoolError::NonceTooLow { .. })));
        let b = SigningKey::from_bytes(&B256::repeat_byte(2)).unwrap();
        let c = SigningKey::from_bytes(&B256::repeat_byte(3)).unwrap();
        pool.add(tx(&b, 0, 0), 0).unwrap();
        assert!(matches!(pool.add(tx(&c, 0, 0), 0), Err(PoolError::PoolFull(_))));
    }

    fn key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&B256::repeat_byte(i)).unwrap()
    }

    #[test]
    fn queued_per_sender_limit_under_at_and_over() {
        let pool = TxPool::new(PoolConfig { max_queued_per_sender: 3, ..PoolConfig::default() });
        let a = key(1);
        for n in 1..=3 {
            pool.add(tx(&a, n, 0), 0).unwrap(); // gapped: nonce 0 is missing
        }
        assert_eq!(pool.queued_len(), 3);
        assert!(matches!(pool.add(tx(&a, 4, 0), 0), Err(PoolError::QueuedFull { limit: 3, .. })));
        // Filling the gap makes them executable, and the sender may queue again.
        pool.add(tx(&a, 0, 0), 0).unwrap();
        assert_eq!(pool.queued_len(), 0);
        pool.add(tx(&a, 5, 0), 0).unwrap();
        assert_eq!(pool.queued_len(), 1);
    }

    #[test]
    fn a_full_pool_evicts_the_oldest_queued_first_and_never_an_executable_one() {
        let pool = TxPool::new(PoolConfig { max_total: 3, ..PoolConfig::default() });
        let (s1, s2, s3, u) = (key(1), key(2), key(3), key(4));
        let q1 = tx(&s1, 5, 0);
        pool.add(q1.clone(), 0).unwrap(); // queued, oldest
        pool.add(tx(&s2, 5, 0), 0).unwrap(); // queued
        pool.add(tx(&s3, 0, 0), 0).unwrap(); // executable
        assert_eq!(pool.len(), 3);
        // At the limit: a user's executable transaction evicts the oldest queued one.
        pool.add(tx(&u, 0, 0), 0).unwrap();
        assert_eq!(pool.len(), 3);
        assert!(!pool.contains(q1.inner().tx_hash()), "the oldest queued transaction went first");
        pool.add(tx(&u, 1, 0), 0).unwrap();
        assert_eq!(pool.queued_len(), 0);
        // Only executable transactions left: over the limit is refused, nothing is evicted.
        assert!(matches!(pool.add(tx(&key(5), 0, 0), 0), Err(PoolError::PoolFull(_))));
        assert_eq!(pool.len(), 3);
    }

    #[test]
    fn byte_budget_under_at_and_over() {
        let one = tx(&key(1), 0, 0).inner().encode_2718_len();
        let pool = TxPool::new(PoolConfig { max_bytes: 2 * one, ..PoolConfig::default() });
        pool.add(tx(&key(1), 0, 0), 0).unwrap();
        pool.add(tx(&key(2), 0, 0), 0).unwrap();
        assert_eq!(pool.bytes(), 2 * one, "at the budget");
        let e = pool.add(tx(&key(3), 0, 0), 0).unwrap_err();
        assert!(e.to_string().contains("--txpool-max-bytes"), "{e}");
        pool.prune([(key(1).address(), 1)]);
        assert_eq!(pool.bytes(), one, "a mined transaction frees its bytes");
        pool.add(tx(&key(3), 0, 0), 0).unwrap();
    }

    #[test]
    fn priority_senders_have_their_own_room() {
        let op = key(9);
        let pool = TxPool::new(PoolConfig {
            max_total: 1,
            max_priority: 2,
            priority: [op.address()].into_iter().collect(),
            ..PoolConfig::default()
        });
        pool.add(tx(&key(1), 0, 0), 0).unwrap();
        assert!(matches!(pool.add(tx(&key(2), 0, 0), 0), Err(PoolError::PoolFull(_))));
        pool.add(tx(&op, 0, 0), 0).unwrap();
        pool.add(tx(&op, 1, 0), 0).unwrap();
        let order: Vec<Address> = pool.best(|_| 0, 10).iter().map(|t| t.signer()).collect();
        assert_eq!(order, vec![op.address(), op.address(), key(1).address()], "priority senders first");
        assert!(
            matches!(pool.add(tx(&op, 2, 0), 0), Err(PoolError::PoolFull(_))),
            "the reserve is bounded too"
        );
        assert_eq!(pool.len(), 3);
    }

    #[test]
    fn queued_transactions_expire_and_executable_ones_do_not() {
        let pool =
            TxPool::new(PoolConfig { queued_lifetime: Duration::from_secs(60), ..PoolConfig::default() });
        pool.add(tx(&key(1), 3, 0), 0).unwrap();
        pool.add(tx(&key(2), 0, 0), 0).unwrap();
        let mut inner = pool.inner.lock();
        pool.expire(&mut inner, Instant::now() + Duration::from_secs(59));
        assert_eq!(inner.queued.len(), 1, "just under the lifetime: kept");
        pool.expire(&mut inner, Instant::now() + Duration::from_secs(61));
        assert_eq!(inner.queued.len(), 0, "over the lifetime: dropped");
        assert_eq!(inner.shared.count, 1, "the executable transaction stays");
    }

    #[test]
    fn removing_an_executable_transaction_queues_the_later_ones() {
        let pool = TxPool::new(PoolConfig::default());
        let a = key(1);
        for n in 0..3 {
            pool.add(tx(&a, n, 0), 0).unwrap();
        }
        assert_eq!(pool.queued_len(), 0);
        pool.remove(tx(&a, 1, 0).inner().tx_hash());
        assert_eq!(pool.queued_len(), 1, "nonce 2 now waits for 1");
        pool.add(tx(&a, 1, 0), 0).unwrap();
        assert_eq!(pool.queued_len(), 0);
        assert_eq!(pool.best(|_| 0, 10).len(), 3);
    }
}
