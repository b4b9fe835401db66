//! Decoded blocks by hash, for the read side: a client that polls `eth_getBlockByNumber("latest")`
//! asks for the same block many times, and each call decoded the stored block again (every
//! transaction's hash recomputed): about 22 of the 34 ms such a call took on a block of 30,000
//! transactions (BENCHMARKS.md, "Lookups independent of block size").
//!
//! A block is immutable by its hash (and so are its senders and total difficulty), so an entry is
//! never stale, a reorg included. The cache is bounded by the blocks' encoded size; the oldest
//! entry leaves first, and a block larger than the whole budget is not kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use alloy_primitives::{B256, U256};
use parking_lot::Mutex;

use crate::primitives::SealedBlock;

/// A cached block: the decoded block and its total difficulty.
pub type CachedBlock = (Arc<SealedBlock>, U256);

/// Recently read blocks by hash, up to a budget of encoded bytes.
pub struct BlockCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<B256, (CachedBlock, usize)>,
    /// Hashes in insertion order (the oldest first).
    order: VecDeque<B256>,
    bytes: usize,
}

impl BlockCache {
    /// Default budget: 4 MiB of encoded blocks, about 36,000 transfers (in memory, decoded, about
    /// four times that).
    pub const DEFAULT_BYTES: usize = 4 << 20;

    /// An empty cache of at most `max_bytes` encoded bytes.
    pub fn new(max_bytes: usize) -> Self {
        Self { inner: Mutex::new(Inner::default()), max_bytes }
    }

    /// The block of `hash`, if cached.
    pub fn get(&self, hash: &B256) -> Option<CachedBlock> {
        self.inner.lock().map.get(hash).map(|(b, _)| b.clone())
    }

    /// Keeps `block` (`size`: its encoded size), evicting the oldest entries to stay within the
    /// budget. A block larger than the budget is not kept.
    pub fn insert(&self, block: CachedBlock, size: usize) {
        if size > self.max_bytes {
            return;
        }
        let hash = block.0.hash;
        let mut inner = self.inner.lock();
        if inner.map.contains_key(&hash) {
            return;
        }
        while inner.bytes + size > self.max_bytes {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some((_, s)) = inner.map.remove(&old) {
                inner.bytes -= s;
            }
        }
        inner.map.insert(hash, (block, size));
        inner.order.push_back(hash);
        inner.bytes += size;
    }

    /// Encoded bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: u64) -> CachedBlock {
        let mut b = crate::primitives::Block::default();
        b.header.number = n;
        let hash = b.header.hash_slow();
        (Arc::new(SealedBlock { hash, block: b, senders: vec![] }), U256::from(n))
    }

    #[test]
    fn keeps_blocks_up_to_the_budget_and_evicts_the_oldest_first() {
        let cache = BlockCache::new(100);
        let (a, b, c) = (block(1), block(2), block(3));
        cache.insert(a.clone(), 40);
        cache.insert(b.clone(), 40);
        // Just under and at the budget: both kept.
        assert_eq!(cache.bytes(), 80);
        assert!(Arc::ptr_eq(&cache.get(&a.0.hash).unwrap().0, &a.0));
        cache.insert(block(9), 20);
        assert_eq!(cache.bytes(), 100);
        assert!(cache.get(&a.0.hash).is_some());
        // Over it: the oldest goes.
        cache.insert(c.clone(), 40);
        assert!(cache.get(&a.0.hash).is_none());
        assert!(cache.get(&b.0.hash).is_some() && cache.get(&c.0.hash).is_some());
        assert_eq!(cache.bytes(), 100);
        assert_eq!(cache.get(&c.0.hash).unwrap().1, U256::from(3));
    }

    #[test]
    fn a_read_pool_decodes_a_block_once_and_serves_the_stored_block() {
        use crate::chain::{build_genesis, ChainSpec, GenesisParams};
        use crate::storage::{BlockQuery, ReadPool, Store};
        let dir = tempfile::tempdir().unwrap();
        let params = GenesisParams {
            chain_id: 58,
            signers: vec![alloy_primitives::Address::repeat_byte(1)],
            ..Default::default()
        };
        let json = serde_json::to_string(&build_genesis(&params)).unwrap();
        let spec = ChainSpec::from_json(&json).unwrap();
        let mut store = Store::open(dir.path(), None).unwrap();
        store.init_genesis(&spec, &json).unwrap();
        let reads = ReadPool::open(store.path(), 1).unwrap();
        let hash = reads.canonical_hash(0).unwrap().unwrap();
        let (first, td) = reads.block_shared(&hash).unwrap().unwrap();
        let (second, _) = reads.block_shared(&hash).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &second), "the second read is the cached block");
        let (stored, stored_td) = reads.block_by_hash(&hash).unwrap().unwrap();
        assert_eq!(
            (first.hash, &first.block, &first.senders, td),
            (stored.hash, &stored.block, &stored.senders, stored_td)
        );
        assert!(
            reads.block_shared(&B256::repeat_byte(7)).unwrap().is_none(),
            "an unknown hash is not cached"
        );
    }

    #[test]
    fn a_block_larger_than_the_budget_is_not_kept_and_evicts_nothing() {
        let cache = BlockCache::new(100);
        let a = block(1);
        cache.insert(a.clone(), 100);
        let big = block(2);
        cache.insert(big.clone(), 101);
        assert!(cache.get(&big.0.hash).is_none());
        assert!(cache.get(&a.0.hash).is_some());
        // The same block twice is counted once.
        cache.insert(a.clone(), 100);
        assert_eq!(cache.bytes(), 100);
    }
}
