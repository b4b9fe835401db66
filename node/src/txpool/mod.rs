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
//! Spam is bounded by per-sender and total limits, the size limit, the block gas limit and
//! the optional allowlist.

mod validate;

pub use validate::{validate_envelope, validate_tx, TxValidationError, ValidationContext};

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use alloy_consensus::Transaction;
use alloy_primitives::{Address, B256};
use parking_lot::Mutex;
use tokio::sync::{broadcast, Notify};

use crate::primitives::RecoveredTx;

/// Pool limits.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Most transactions one sender may have waiting.
    pub max_per_sender: usize,
    /// Most transactions in the pool.
    pub max_total: usize,
    /// Largest accepted transaction, in bytes of its encoding.
    pub max_tx_bytes: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { max_per_sender: 16_384, max_total: 200_000, max_tx_bytes: 128 * 1024 }
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
    /// Total limit.
    #[error("transaction pool is full ({0} transactions); try again after the next block")]
    PoolFull(usize),
}

#[derive(Debug, Clone)]
struct PooledTx {
    tx: Arc<RecoveredTx>,
    arrival: u64,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<B256, (Address, u64)>,
    senders: HashMap<Address, BTreeMap<u64, PooledTx>>,
    seq: u64,
    total: usize,
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
        let sender = tx.signer();
        let nonce = tx.inner().nonce();
        {
            let mut inner = self.inner.lock();
            if inner.by_hash.contains_key(&hash) {
                return Err(PoolError::AlreadyKnown);
            }
            if nonce < account_nonce {
                return Err(PoolError::NonceTooLow { expected: account_nonce, got: nonce });
            }
            if nonce - account_nonce >= self.config.max_per_sender as u64 {
                return Err(PoolError::NonceTooHigh {
                    expected: account_nonce,
                    got: nonce,
                    limit: self.config.max_per_sender,
                });
            }
            let seq = inner.seq;
            let total = inner.total;
            let queue = inner.senders.entry(sender).or_default();
            let mut replaced = None;
            if let Some(existing) = queue.get(&nonce) {
                let old = existing.tx.inner();
                let new = tx.inner();
                let tip_ok = new.priority_fee_or_price() >= old.priority_fee_or_price();
                let cap_ok = new.max_fee_per_gas() >= old.max_fee_per_gas();
                if !(tip_ok && cap_ok) {
                    return Err(PoolError::ReplacementUnderpriced);
                }
                replaced = Some(*old.tx_hash());
            } else {
                if queue.len() >= self.config.max_per_sender {
                    return Err(PoolError::SenderFull { sender, limit: self.config.max_per_sender });
                }
                if total >= self.config.max_total {
                    return Err(PoolError::PoolFull(self.config.max_total));
                }
            }
            queue.insert(nonce, PooledTx { tx: Arc::new(tx), arrival: seq });
            inner.seq += 1;
            match replaced {
                Some(old) => {
                    inner.by_hash.remove(&old);
                }
                None => inner.total += 1,
            }
            inner.by_hash.insert(hash, (sender, nonce));
        }
        let _ = self.pending_tx.send(hash);
        self.added.notify_one();
        Ok(hash)
    }

    /// Hashes of every transaction in the pool (pending and queued), in no particular order.
    pub fn hashes(&self) -> Vec<B256> {
        self.inner.lock().by_hash.keys().copied().collect()
    }

    /// Number of transactions waiting.
    pub fn len(&self) -> usize {
        self.inner.lock().total
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A waiting transaction by hash.
    pub fn get(&self, hash: &B256) -> Option<Arc<RecoveredTx>> {
        let inner = self.inner.lock();
        let (sender, nonce) = inner.by_hash.get(hash)?;
        inner.senders.get(sender)?.get(nonce).map(|p| p.tx.clone())
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
            for n in queue.range(account_nonce..).map(|(n, _)| *n) {
                if n != next {
                    break;
                }
                next += 1;
            }
        }
        next
    }

    /// Executable transactions in arrival order (each sender's in nonce order), up to `max`.
    pub fn best(&self, account_nonce: impl Fn(&Address) -> u64, max: usize) -> Vec<RecoveredTx> {
        let inner = self.inner.lock();
        let mut heap = BinaryHeap::new();
        let mut cursors: HashMap<Address, u64> = HashMap::new();
        for (sender, queue) in &inner.senders {
            let n = account_nonce(sender);
            if let Some(p) = queue.get(&n) {
                heap.push(Reverse((p.arrival, *sender)));
                cursors.insert(*sender, n);
            }
        }
        let mut out = Vec::new();
        while let Some(Reverse((_, sender))) = heap.pop() {
            if out.len() >= max {
                break;
            }
            let nonce = cursors[&sender];
            let queue = &inner.senders[&sender];
            out.push((*queue[&nonce].tx).clone());
            if let Some(next) = queue.get(&(nonce + 1)) {
                heap.push(Reverse((next.arrival, sender)));
                cursors.insert(sender, nonce + 1);
            }
        }
        out
    }

    /// Drops transactions that a new block made stale: every transaction of `senders` whose
    /// nonce is below the sender's new account nonce.
    pub fn prune(&self, senders: impl IntoIterator<Item = (Address, u64)>) {
        let mut inner = self.inner.lock();
        for (sender, account_nonce) in senders {
            let Some(queue) = inner.senders.get_mut(&sender) else { continue };
            let keep = queue.split_off(&account_nonce);
            let removed = std::mem::replace(queue, keep);
            let now_empty = queue.is_empty();
            for p in removed.values() {
                inner.by_hash.remove(p.tx.inner().tx_hash());
                inner.total -= 1;
            }
            if now_empty {
                inner.senders.remove(&sender);
            }
        }
    }

    /// Removes one transaction (e.g. found invalid while building a block).
    pub fn remove(&self, hash: &B256) {
        let mut inner = self.inner.lock();
        if let Some((sender, nonce)) = inner.by_hash.remove(hash) {
            if let Some(queue) = inner.senders.get_mut(&sender) {
                queue.remove(&nonce);
                if queue.is_empty() {
                    inner.senders.remove(&sender);
                }
            }
            inner.total -= 1;
        }
    }

    /// Pending and queued transactions, given account nonces.
    pub fn content(&self, account_nonce: impl Fn(&Address) -> u64) -> PoolContent {
        let inner = self.inner.lock();
        let mut content = PoolContent::default();
        for (sender, queue) in &inner.senders {
            let mut next = account_nonce(sender);
            for (nonce, p) in queue {
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
        let pool = TxPool::new(PoolConfig { max_per_sender: 2, max_total: 3, max_tx_bytes: 1 << 17 });
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
        assert_eq!(pool.add(tx(&c, 0, 0), 0), Err(PoolError::PoolFull(3)));
    }
}
