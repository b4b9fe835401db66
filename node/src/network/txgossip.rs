//! Transaction gossip in batches.
//!
//! Transactions entering the pool are collected for a few milliseconds and published as one
//! gossip message: an RLP list of EIP-2718 encodings, each an RLP byte string. One signed
//! message per transaction made a burst of 20,000 transactions 20,000 gossipsub messages per
//! peer, and gossipsub's send queues overflowed ("Send Queue full"), so some transactions
//! reached the signers late or not at all.
//!
//! A received batch is decoded on the swarm loop (cheap: the list is split, nothing is
//! recovered) and validated on a blocking worker (signature recovery per transaction).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use alloy_primitives::{Bytes, B256};
use alloy_rlp::Decodable;
use libp2p::gossipsub::MessageAcceptance;

use crate::blockchain::Blockchain;
use crate::txpool::{validate_tx, PoolError};

use super::peers::Offence;

/// A batch is published once its transactions' encodings reach this many bytes...
pub const BATCH_MAX_BYTES: usize = 512 * 1024;
/// ...or this many transactions...
pub const BATCH_MAX_TXS: usize = 2048;
/// ...or when the oldest transaction in it has waited this long.
pub const BATCH_DELAY: Duration = Duration::from_millis(20);
/// A received batch with more transactions than this is garbage (ours hold at most
/// [`BATCH_MAX_TXS`]).
pub const MAX_TXS_PER_MESSAGE: usize = 4 * BATCH_MAX_TXS;

/// Transactions waiting to be published together.
#[derive(Debug, Default)]
pub struct Batcher {
    txs: Vec<Bytes>,
    bytes: usize,
}

impl Batcher {
    /// Adds an encoded transaction; returns whether the batch is full and should go out now.
    pub fn push(&mut self, raw: Bytes) -> bool {
        self.bytes += raw.len();
        self.txs.push(raw);
        self.bytes >= BATCH_MAX_BYTES || self.txs.len() >= BATCH_MAX_TXS
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Takes the batch as one gossip message, leaving the batcher empty.
    pub fn take_message(&mut self) -> Vec<u8> {
        self.bytes = 0;
        encode_batch(&std::mem::take(&mut self.txs))
    }
}

/// Encodes a batch message: an RLP list of byte strings, each one transaction's EIP-2718 encoding.
pub fn encode_batch(txs: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(txs.iter().map(|t| t.len() + 5).sum::<usize>() + 5);
    alloy_rlp::encode_list::<_, Bytes>(txs, &mut out);
    out
}

/// Decodes a batch message. Fails on anything but a well-formed list of at most
/// [`MAX_TXS_PER_MESSAGE`] non-empty byte strings with nothing after it.
pub fn decode_batch(mut data: &[u8]) -> Result<Vec<Bytes>, String> {
    let header = alloy_rlp::Header::decode(&mut data).map_err(|e| e.to_string())?;
    if !header.list {
        return Err("a transaction batch must be an RLP list".into());
    }
    if header.payload_length != data.len() {
        return Err("bytes after the transaction batch".into());
    }
    let mut txs = Vec::new();
    while !data.is_empty() {
        if txs.len() == MAX_TXS_PER_MESSAGE {
            return Err(format!("more than {MAX_TXS_PER_MESSAGE} transactions in one batch"));
        }
        let raw = Bytes::decode(&mut data).map_err(|e| e.to_string())?;
        if raw.is_empty() {
            return Err("an empty transaction in a batch".into());
        }
        txs.push(raw);
    }
    Ok(txs)
}

/// What became of a received batch.
#[derive(Debug)]
pub struct BatchVerdict {
    /// The gossipsub verdict on the message.
    pub acceptance: MessageAcceptance,
    /// The sender's offence, if any.
    pub offence: Option<Offence>,
    /// Transactions of a rejected batch that were valid and new here. gossipsub does not forward
    /// a rejected message, so these are published again by this node, or peers that only hear
    /// of the batch through us would never see them.
    pub republish: Vec<B256>,
}

/// Validates each transaction of a batch and adds the valid ones to the pool.
///
/// The message is rejected (and its sender punished) when any transaction in it is invalid
/// (bad encoding, signature, chain id, size); it is forwarded when at least one was new to
/// us, and ignored when all were known or not poolable here (nonce too low, pool full).
pub fn accept_batch(chain: &Blockchain, txs: &[Bytes]) -> BatchVerdict {
    let ctx = chain.validation_context();
    let mut added = Vec::new();
    let mut invalid = 0usize;
    for raw in txs {
        // Known already (a re-announced pool, a batch that reached us twice): no signature
        // recovery. The hash of a transaction is the hash of its EIP-2718 encoding.
        if chain.pool().contains(&alloy_primitives::keccak256(raw)) {
            continue;
        }
        match validate_tx(raw, &ctx) {
            Ok(tx) => {
                let nonce = chain.account_nonce(&tx.signer());
                match chain.pool().add(tx, nonce) {
                    Ok(hash) => added.push(hash),
                    Err(PoolError::AlreadyKnown) | Err(PoolError::NonceTooLow { .. }) => {}
                    Err(e) => tracing::debug!(error = %e, "gossiped transaction not pooled"),
                }
            }
            Err(e) => {
                invalid += 1;
                tracing::debug!(error = %e, "invalid transaction in a gossiped batch");
            }
        }
    }
    if invalid > 0 {
        BatchVerdict {
            acceptance: MessageAcceptance::Reject,
            offence: Some(Offence::InvalidTx),
            republish: added,
        }
    } else if !added.is_empty() {
        BatchVerdict { acceptance: MessageAcceptance::Accept, offence: None, republish: Vec::new() }
    } else {
        BatchVerdict { acceptance: MessageAcceptance::Ignore, offence: None, republish: Vec::new() }
    }
}

/// The most recent hashes seen, bounded: a set for look-ups and a queue for eviction order.
#[derive(Debug)]
pub struct RecentHashes {
    set: HashSet<B256>,
    order: VecDeque<B256>,
    capacity: usize,
}

impl RecentHashes {
    /// An empty set that keeps the last `capacity` hashes.
    pub fn new(capacity: usize) -> Self {
        Self { set: HashSet::with_capacity(capacity), order: VecDeque::with_capacity(capacity), capacity }
    }

    /// Remembers `hash`, forgetting the oldest one when full.
    pub fn insert(&mut self, hash: B256) {
        if !self.set.insert(hash) {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(hash);
    }

    /// Whether `hash` is remembered.
    pub fn contains(&self, hash: &B256) -> bool {
        self.set.contains(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_fill_up() {
        let mut b = Batcher::default();
        assert!(b.is_empty());
        assert!(!b.push(Bytes::from(vec![0x02, 1, 2, 3])));
        assert!(!b.push(Bytes::from(vec![0xf8; 70])));
        let msg = b.take_message();
        assert!(b.is_empty());
        let txs = decode_batch(&msg).unwrap();
        assert_eq!(txs, vec![Bytes::from(vec![0x02, 1, 2, 3]), Bytes::from(vec![0xf8; 70])]);
        for _ in 0..BATCH_MAX_TXS - 1 {
            assert!(!b.push(Bytes::from_static(&[1])));
        }
        assert!(b.push(Bytes::from_static(&[1])), "the batch is full at BATCH_MAX_TXS");
        let _ = b.take_message();
        assert!(b.push(Bytes::from(vec![7u8; BATCH_MAX_BYTES])), "the batch is full at BATCH_MAX_BYTES");
    }

    #[test]
    fn garbage_batches_are_refused() {
        // Not a list.
        assert!(decode_batch(&[0x83, 1, 2, 3]).is_err());
        // Truncated.
        let msg = encode_batch(&[Bytes::from(vec![5u8; 10])]);
        assert!(decode_batch(&msg[..msg.len() - 1]).is_err());
        // Trailing bytes.
        let mut long = msg.clone();
        long.push(0);
        assert!(decode_batch(&long).is_err());
        // A nested list instead of a byte string.
        assert!(decode_batch(&[0xc2, 0xc1, 0x01]).is_err());
        // An empty transaction.
        assert!(decode_batch(&[0xc1, 0x80]).is_err());
        // Empty input.
        assert!(decode_batch(&[]).is_err());
        // Too many transactions.
        let many = vec![Bytes::from_static(&[1]); MAX_TXS_PER_MESSAGE + 1];
        assert!(decode_batch(&encode_batch(&many)).unwrap_err().contains("more than"));
        // The empty list decodes (and is then ignored by the caller).
        assert_eq!(decode_batch(&[0xc0]).unwrap(), Vec::<Bytes>::new());
    }

    #[test]
    fn recent_hashes_forget_the_oldest() {
        let mut r = RecentHashes::new(2);
        let h = |b: u8| B256::repeat_byte(b);
        r.insert(h(1));
        r.insert(h(2));
        r.insert(h(2));
        assert!(r.contains(&h(1)) && r.contains(&h(2)));
        r.insert(h(3));
        assert!(!r.contains(&h(1)));
        assert!(r.contains(&h(2)) && r.contains(&h(3)));
    }
}
