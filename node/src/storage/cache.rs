//! A cache of head-state reads in front of SQLite, shared by the RPC readers of one head.
//!
//! Each published head ([`crate::blockchain::ChainSnapshot`]) carries a [`StateCache`] of the
//! accounts and slots read at that block. When the next block is committed on top, the entries
//! move to the new head's cache minus every account and slot the block changed
//! ([`StateCache::carry_over`]): O(changes), never O(state). A reorg or reload starts an empty
//! cache. A reader of an older head keeps reading correct values (its cache is only emptied).
//!
//! Each [`CachedState`] counts its hits and misses and adds them to the node's metrics
//! (`p2pe_state_cache_hits_total` / `p2pe_state_cache_misses_total` by `kind`, account or
//! storage) when it is dropped: one registry update per RPC read, not one per slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::{Address, B256, U256};
use parking_lot::Mutex;
use revm::bytecode::Bytecode;

use crate::state::{AccountInfo, StateChanges, StateError, StateReader};

/// Default number of cached accounts and slots (about 100 bytes each, so about 26 MB per cache).
pub const DEFAULT_CACHE_ENTRIES: usize = 262_144;

#[derive(Default)]
struct Maps {
    accounts: HashMap<Address, Option<AccountInfo>>,
    storage: HashMap<Address, HashMap<U256, U256>>,
    entries: usize,
}

/// Accounts and storage slots read at one block.
pub struct StateCache {
    maps: Mutex<Maps>,
    max_entries: usize,
    /// Whose cache this is, for the metrics: `writer` or `rpc`.
    role: &'static str,
}

impl std::fmt::Debug for StateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCache")
            .field("entries", &self.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl StateCache {
    /// An empty cache holding at most `max_entries` accounts and slots.
    pub fn new(max_entries: usize) -> Self {
        Self { maps: Mutex::new(Maps::default()), max_entries, role: "rpc" }
    }

    /// An empty cache for the writer (block execution), counted apart in the metrics.
    pub fn for_writer(max_entries: usize) -> Self {
        Self { role: "writer", ..Self::new(max_entries) }
    }

    /// The cache of the block on top: this cache's entries, less what `changes` touched. This
    /// cache is left empty.
    pub fn carry_over(&self, changes: &StateChanges) -> Self {
        let mut maps = std::mem::take(&mut *self.maps.lock());
        for (address, info) in &changes.accounts {
            maps.accounts.remove(address);
            if info.is_none() {
                maps.storage.remove(address);
            }
        }
        for address in &changes.wiped {
            maps.storage.remove(address);
        }
        for (address, slots) in &changes.storage {
            if let Some(cached) = maps.storage.get_mut(address) {
                for slot in slots.keys() {
                    cached.remove(slot);
                }
            }
        }
        maps.entries = maps.accounts.len() + maps.storage.values().map(HashMap::len).sum::<usize>();
        Self { maps: Mutex::new(maps), max_entries: self.max_entries, role: self.role }
    }

    /// Brings the cache up to date with a block `changes` committed on top of its state (the
    /// writer's cache, which moves with every block): cached accounts and slots take their new
    /// values, the slots of wiped and deleted accounts are dropped (they are read again from the
    /// disk, where they are gone), and new values are cached while there is room. A cache that
    /// has reached its bound is emptied, so that the entries in use come back on the next blocks.
    /// Call only once the block is committed.
    pub fn write_through(&self, changes: &StateChanges) {
        let mut guard = self.maps.lock();
        let maps = &mut *guard;
        for address in &changes.wiped {
            maps.storage.remove(address);
        }
        for (address, slots) in &changes.storage {
            let cached = maps.storage.entry(*address).or_default();
            for (slot, value) in slots {
                cached.insert(*slot, *value);
            }
        }
        for (address, info) in &changes.accounts {
            maps.accounts.insert(*address, *info);
            if info.is_none() {
                maps.storage.remove(address);
            }
        }
        maps.entries = maps.accounts.len() + maps.storage.values().map(HashMap::len).sum::<usize>();
        if maps.entries >= self.max_entries {
            *maps = Maps::default();
        }
    }

    /// Empties the cache (after the state under it was reverted, or a batch rolled back).
    pub fn clear(&self) {
        *self.maps.lock() = Maps::default();
    }

    /// The account at `address` if it is cached (`Some(None)`: cached as not existing).
    pub fn cached_account(&self, address: &Address) -> Option<Option<AccountInfo>> {
        self.maps.lock().accounts.get(address).copied()
    }

    /// Entries cached now.
    pub fn len(&self) -> usize {
        self.maps.lock().entries
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hits and misses of one [`CachedState`], by kind.
#[derive(Debug, Default)]
struct Counts {
    account_hits: AtomicU64,
    account_misses: AtomicU64,
    storage_hits: AtomicU64,
    storage_misses: AtomicU64,
}

impl Counts {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(account hits, account misses, storage hits, storage misses)` so far.
    fn get(&self) -> (u64, u64, u64, u64) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            load(&self.account_hits),
            load(&self.account_misses),
            load(&self.storage_hits),
            load(&self.storage_misses),
        )
    }
}

/// A [`StateReader`] that answers from a [`StateCache`] and fills it from `base`, which must read
/// the state of the cache's block. Its hits and misses go to the node's metrics when it is
/// dropped.
pub struct CachedState<'c, R> {
    base: R,
    cache: &'c StateCache,
    counts: Counts,
}

impl<'c, R: StateReader> CachedState<'c, R> {
    /// `base` with `cache` in front.
    pub fn new(base: R, cache: &'c StateCache) -> Self {
        Self { base, cache, counts: Counts::default() }
    }

    /// The state behind the cache.
    pub fn base(&self) -> &R {
        &self.base
    }

    /// `(hits, misses)` of this reader so far, accounts and slots together.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        let (ah, am, sh, sm) = self.counts.get();
        (ah + sh, am + sm)
    }
}

impl<R> Drop for CachedState<'_, R> {
    fn drop(&mut self) {
        let (ah, am, sh, sm) = self.counts.get();
        crate::metrics::state_cache_reads(self.cache.role, ah, am, sh, sm);
    }
}

impl<R: StateReader> StateReader for CachedState<'_, R> {
    fn account(&self, address: &Address) -> Result<Option<AccountInfo>, StateError> {
        if let Some(hit) = self.cache.maps.lock().accounts.get(address) {
            Counts::bump(&self.counts.account_hits);
            return Ok(*hit);
        }
        Counts::bump(&self.counts.account_misses);
        let value = self.base.account(address)?;
        let mut maps = self.cache.maps.lock();
        if maps.entries < self.cache.max_entries && maps.accounts.insert(*address, value).is_none() {
            maps.entries += 1;
        }
        Ok(value)
    }

    fn storage(&self, address: &Address, slot: &U256) -> Result<U256, StateError> {
        if let Some(hit) = self.cache.maps.lock().storage.get(address).and_then(|s| s.get(slot)) {
            Counts::bump(&self.counts.storage_hits);
            return Ok(*hit);
        }
        Counts::bump(&self.counts.storage_misses);
        let value = self.base.storage(address, slot)?;
        let mut maps = self.cache.maps.lock();
        if maps.entries < self.cache.max_entries
            && maps.storage.entry(*address).or_default().insert(*slot, value).is_none()
        {
            maps.entries += 1;
        }
        Ok(value)
    }

    fn code(&self, code_hash: &B256) -> Result<Option<Bytecode>, StateError> {
        // Code has its own cache by hash in the read pool.
        self.base.code(code_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A base state that counts its reads and answers a fixed value.
    struct Counting {
        reads: Cell<usize>,
        value: U256,
    }

    impl StateReader for Counting {
        fn account(&self, _: &Address) -> Result<Option<AccountInfo>, StateError> {
            self.reads.set(self.reads.get() + 1);
            Ok(Some(AccountInfo { nonce: self.value.to(), ..Default::default() }))
        }
        fn storage(&self, _: &Address, _: &U256) -> Result<U256, StateError> {
            self.reads.set(self.reads.get() + 1);
            Ok(self.value)
        }
        fn code(&self, _: &B256) -> Result<Option<Bytecode>, StateError> {
            Ok(None)
        }
    }

    #[test]
    fn a_block_carries_the_cache_over_less_what_it_changed() {
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let cache = StateCache::new(100);
        let base = Counting { reads: Cell::new(0), value: U256::from(7) };
        let state = CachedState::new(base, &cache);
        for slot in 0..3u64 {
            state.storage(&a, &U256::from(slot)).unwrap();
            state.storage(&a, &U256::from(slot)).unwrap();
        }
        state.account(&b).unwrap();
        state.storage(&b, &U256::ZERO).unwrap();
        assert_eq!((state.base().reads.get(), cache.len()), (5, 5), "each entry read from the base once");
        assert_eq!(state.hits_and_misses(), (3, 5), "the second read of each slot of `a` hits");

        // The next block changes slot 1 of `a` and deletes `b`.
        let mut changes = StateChanges::default();
        changes.storage.entry(a).or_default().insert(U256::from(1), U256::from(9));
        changes.accounts.insert(b, None);
        let next = cache.carry_over(&changes);
        assert!(cache.is_empty(), "the old head's cache is emptied, not copied");
        assert_eq!(next.len(), 2);
        let base = Counting { reads: Cell::new(0), value: U256::from(9) };
        let state = CachedState::new(base, &next);
        assert_eq!(state.storage(&a, &U256::ZERO).unwrap(), U256::from(7), "kept");
        assert_eq!(state.storage(&a, &U256::from(1)).unwrap(), U256::from(9), "changed: read again");
        assert_eq!(state.storage(&b, &U256::ZERO).unwrap(), U256::from(9), "deleted account: read again");
        assert_eq!(state.base().reads.get(), 2);
    }

    /// The writer's cache after a commit: new values for what it holds and for new keys, no
    /// slots of wiped or deleted accounts, and emptied once it reaches its bound.
    #[test]
    fn write_through_takes_the_new_values() {
        let (a, b, c) = (Address::repeat_byte(1), Address::repeat_byte(2), Address::repeat_byte(3));
        let cache = StateCache::new(8);
        let state = CachedState::new(Counting { reads: Cell::new(0), value: U256::from(7) }, &cache);
        state.storage(&a, &U256::ZERO).unwrap();
        state.storage(&b, &U256::ZERO).unwrap();
        state.storage(&c, &U256::ZERO).unwrap();
        state.account(&c).unwrap();
        let mut changes = StateChanges::default();
        changes.storage.entry(a).or_default().insert(U256::ZERO, U256::from(1));
        changes.storage.entry(a).or_default().insert(U256::from(5), U256::from(2));
        changes.wiped.push(b);
        changes.accounts.insert(c, None);
        cache.write_through(&changes);
        drop(state);
        let base = Counting { reads: Cell::new(0), value: U256::from(9) };
        let state = CachedState::new(base, &cache);
        assert_eq!(state.storage(&a, &U256::ZERO).unwrap(), U256::from(1), "overwritten");
        assert_eq!(state.storage(&a, &U256::from(5)).unwrap(), U256::from(2), "added");
        assert_eq!(state.account(&c).unwrap(), None, "deleted, cached as absent");
        assert_eq!(state.base().reads.get(), 0, "all three from the cache");
        assert_eq!(state.storage(&b, &U256::ZERO).unwrap(), U256::from(9), "wiped: read again");
        assert_eq!(state.storage(&c, &U256::ZERO).unwrap(), U256::from(9), "deleted: read again");
        assert_eq!(state.base().reads.get(), 2);
        drop(state);

        // Filling it to the bound empties it.
        let mut many = StateChanges::default();
        many.storage.insert(a, (0..8u64).map(|i| (U256::from(i), U256::from(i))).collect());
        cache.write_through(&many);
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stops_growing_at_its_bound() {
        let cache = StateCache::new(2);
        let base = Counting { reads: Cell::new(0), value: U256::from(1) };
        let state = CachedState::new(base, &cache);
        for slot in 0..5u64 {
            state.storage(&Address::ZERO, &U256::from(slot)).unwrap();
        }
        assert_eq!(cache.len(), 2);
    }
}
