//! An in-memory state (genesis, tests, the genesis market deployment).

use std::collections::{BTreeMap, HashMap};

use alloy_genesis::GenesisAccount;
use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use revm::bytecode::Bytecode;
use revm::primitives::KECCAK_EMPTY;

use super::{root, AccountInfo, StateChanges, StateError, StateReader, StateUndo};

/// Analyses raw code (legacy or an EIP-7702 delegation designator).
pub fn bytecode(code: Bytes) -> Bytecode {
    Bytecode::new_raw_checked(code.clone()).unwrap_or_else(|_| Bytecode::new_legacy(code))
}

/// One account with its storage and a cached storage root.
#[derive(Debug, Clone)]
pub(crate) struct AccountEntry {
    pub(crate) info: AccountInfo,
    /// Non-zero storage slots.
    pub(crate) storage: HashMap<U256, U256>,
    pub(crate) storage_root: B256,
    pub(crate) storage_dirty: bool,
}

impl AccountEntry {
    fn new(info: AccountInfo) -> Self {
        Self { info, storage: HashMap::new(), storage_root: EMPTY_ROOT_HASH, storage_dirty: false }
    }
}

/// A whole state in memory (genesis and tests; the node itself runs on SQLite).
#[derive(Debug, Clone, Default)]
pub struct WorldState {
    pub(crate) accounts: HashMap<Address, AccountEntry>,
    pub(crate) codes: HashMap<B256, Bytecode>,
    /// Account trie cache: hashed address → address, in trie order.
    pub(crate) hashed: BTreeMap<B256, Address>,
}

impl WorldState {
    /// Builds the genesis state from a genesis `alloc`.
    pub fn from_alloc(alloc: &BTreeMap<Address, GenesisAccount>) -> Self {
        let mut state = Self::default();
        for (addr, acct) in alloc {
            let code_hash = match &acct.code {
                Some(code) if !code.is_empty() => {
                    let h = keccak256(code);
                    state.codes.insert(h, bytecode(code.clone()));
                    h
                }
                _ => KECCAK_EMPTY,
            };
            let info = AccountInfo { nonce: acct.nonce.unwrap_or(0), balance: acct.balance, code_hash };
            let mut entry = AccountEntry::new(info);
            if let Some(storage) = &acct.storage {
                for (k, v) in storage {
                    let v = U256::from_be_bytes(v.0);
                    if !v.is_zero() {
                        entry.storage.insert(U256::from_be_bytes(k.0), v);
                    }
                }
                entry.storage_dirty = true;
            }
            if info.is_empty() && entry.storage.is_empty() {
                continue;
            }
            state.hashed.insert(keccak256(addr), *addr);
            state.accounts.insert(*addr, entry);
        }
        state
    }

    /// Loads an account with its storage (used when restoring from disk).
    pub fn insert_loaded(&mut self, address: Address, info: AccountInfo, storage: HashMap<U256, U256>) {
        let mut entry = AccountEntry::new(info);
        entry.storage_dirty = !storage.is_empty();
        entry.storage = storage;
        self.hashed.insert(keccak256(address), address);
        self.accounts.insert(address, entry);
    }

    /// Adds contract code (used when restoring from disk).
    pub fn insert_code(&mut self, hash: B256, code: Bytes) {
        self.codes.insert(hash, bytecode(code));
    }

    /// Number of accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Applies one block's changes and returns what they overwrote.
    pub fn apply(&mut self, changes: &StateChanges) -> StateUndo {
        let mut undo = StateUndo::default();
        // The accounts' previous values are read before anything is written: the storage pass
        // below creates the entry of an account that did not exist yet (a new contract, or any
        // account the block touched, whose slot map may be empty), and reading afterwards would
        // record "existed, empty" instead of "did not exist". Undoing the block would then leave
        // an empty account behind, in memory and in the plain state and history on disk.
        let old_accounts: Vec<Option<AccountInfo>> =
            changes.accounts.keys().map(|addr| self.accounts.get(addr).map(|e| e.info)).collect();
        for (hash, code) in &changes.codes {
            self.codes.entry(*hash).or_insert_with(|| bytecode(code.clone()));
        }
        for addr in &changes.wiped {
            if let Some(entry) = self.accounts.get_mut(addr) {
                for (slot, value) in entry.storage.drain() {
                    undo.storage.push((*addr, slot, value));
                }
                entry.storage_dirty = true;
            }
        }
        for (addr, slots) in &changes.storage {
            let entry = self.accounts.entry(*addr).or_insert_with(|| {
                AccountEntry::new(AccountInfo { code_hash: KECCAK_EMPTY, ..Default::default() })
            });
            for (slot, value) in slots {
                let old = if value.is_zero() {
                    entry.storage.remove(slot)
                } else {
                    entry.storage.insert(*slot, *value)
                }
                .unwrap_or_default();
                if old != *value {
                    undo.storage.push((*addr, *slot, old));
                    entry.storage_dirty = true;
                }
            }
        }
        for ((addr, info), old) in changes.accounts.iter().zip(old_accounts) {
            match info {
                Some(info) => {
                    let entry = self.accounts.entry(*addr).or_insert_with(|| AccountEntry::new(*info));
                    entry.info = *info;
                    self.hashed.insert(keccak256(addr), *addr);
                }
                None => {
                    if let Some(entry) = self.accounts.remove(addr) {
                        for (slot, value) in entry.storage {
                            undo.storage.push((*addr, slot, value));
                        }
                        self.hashed.remove(&keccak256(addr));
                    }
                }
            }
            if old != *info {
                undo.accounts.push((*addr, old));
            }
        }
        // Storage written to an account that ended up not existing is dropped with it.
        undo
    }

    /// Reverts a block using the undo record [`WorldState::apply`] returned.
    pub fn revert(&mut self, undo: &StateUndo) {
        // Storage first, so that an account the block created is removed whole afterwards,
        // and an account the block deleted gets its slots back before its info.
        for (addr, slot, value) in undo.storage.iter().rev() {
            if value.is_zero() {
                if let Some(entry) = self.accounts.get_mut(addr) {
                    entry.storage.remove(slot);
                    entry.storage_dirty = true;
                }
                continue;
            }
            let entry = self.accounts.entry(*addr).or_insert_with(|| {
                AccountEntry::new(AccountInfo { code_hash: KECCAK_EMPTY, ..Default::default() })
            });
            entry.storage.insert(*slot, *value);
            entry.storage_dirty = true;
        }
        for (addr, info) in undo.accounts.iter().rev() {
            match info {
                Some(info) => {
                    let entry = self.accounts.entry(*addr).or_insert_with(|| AccountEntry::new(*info));
                    entry.info = *info;
                    self.hashed.insert(keccak256(addr), *addr);
                }
                None => {
                    self.accounts.remove(addr);
                    self.hashed.remove(&keccak256(addr));
                }
            }
        }
    }

    /// Computes the state root, refreshing cached storage roots of changed accounts.
    pub fn state_root(&mut self) -> B256 {
        for entry in self.accounts.values_mut() {
            if entry.storage_dirty {
                entry.storage_root = root::storage_root(&entry.storage);
                entry.storage_dirty = false;
            }
        }
        root::account_root(&self.hashed, &self.accounts)
    }

    /// The storage root of one account (refreshing it if stale).
    pub fn storage_root(&mut self, address: &Address) -> B256 {
        match self.accounts.get_mut(address) {
            Some(entry) => {
                if entry.storage_dirty {
                    entry.storage_root = root::storage_root(&entry.storage);
                    entry.storage_dirty = false;
                }
                entry.storage_root
            }
            None => EMPTY_ROOT_HASH,
        }
    }
}

impl StateReader for WorldState {
    fn account(&self, address: &Address) -> Result<Option<AccountInfo>, StateError> {
        Ok(self.accounts.get(address).map(|e| e.info))
    }

    fn storage(&self, address: &Address, slot: &U256) -> Result<U256, StateError> {
        Ok(self.accounts.get(address).and_then(|e| e.storage.get(slot).copied()).unwrap_or_default())
    }

    fn code(&self, code_hash: &B256) -> Result<Option<Bytecode>, StateError> {
        Ok(self.codes.get(code_hash).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_trie::root::state_root_unhashed;
    use alloy_trie::TrieAccount;

    #[test]
    fn root_matches_alloy_reference_and_undo_restores() {
        let mut ws = WorldState::default();
        let mut changes = StateChanges::default();
        for i in 1..50u8 {
            let info = AccountInfo {
                nonce: i as u64,
                balance: U256::from(i) * U256::from(1000),
                code_hash: KECCAK_EMPTY,
            };
            changes.accounts.insert(Address::repeat_byte(i), Some(info));
        }
        let contract = Address::repeat_byte(7);
        let slots: BTreeMap<U256, U256> = (1..20u64).map(|i| (U256::from(i), U256::from(i * 3))).collect();
        changes.storage.insert(contract, slots.clone());
        ws.apply(&changes);
        let before = ws.state_root();

        let reference = state_root_unhashed(ws.accounts.iter().map(|(a, e)| {
            let sr =
                alloy_trie::root::storage_root_unhashed(e.storage.iter().map(|(k, v)| (B256::from(*k), *v)));
            (
                *a,
                TrieAccount {
                    nonce: e.info.nonce,
                    balance: e.info.balance,
                    storage_root: sr,
                    code_hash: e.info.code_hash,
                },
            )
        }));
        assert_eq!(before, reference);

        let mut second = StateChanges::default();
        second.accounts.insert(Address::repeat_byte(3), None);
        second
            .storage
            .insert(contract, [(U256::from(1), U256::ZERO), (U256::from(99), U256::from(5))].into());
        let undo = ws.apply(&second);
        assert_ne!(ws.state_root(), before);
        ws.revert(&undo);
        assert_eq!(ws.state_root(), before);
    }

    /// A block that creates accounts (a plain recipient, whose touched slot map is empty, and a
    /// contract whose constructor writes storage), deletes a slot and creates another in an
    /// existing contract is undone exactly: the new accounts are gone, not left behind empty.
    #[test]
    fn undo_removes_accounts_the_block_created() {
        let user = Address::repeat_byte(1);
        let existing = Address::repeat_byte(2);
        let recipient = Address::repeat_byte(3);
        let created = Address::repeat_byte(4);
        let mut ws = WorldState::default();
        let mut genesis = StateChanges::default();
        let funded = AccountInfo { nonce: 0, balance: U256::from(1_000), code_hash: KECCAK_EMPTY };
        genesis.accounts.insert(user, Some(funded));
        let code = Bytes::from_static(&[0x60, 0x00, 0x00]);
        let contract = AccountInfo { nonce: 1, balance: U256::ZERO, code_hash: keccak256(&code) };
        genesis.accounts.insert(existing, Some(contract));
        genesis.storage.insert(existing, [(U256::from(0), U256::from(1))].into());
        genesis.codes.insert(keccak256(&code), code.clone());
        ws.apply(&genesis);
        let before = ws.state_root();

        // What the executor emits for such a block: every touched account gets a slot map.
        let mut block = StateChanges::default();
        block.accounts.insert(user, Some(AccountInfo { nonce: 2, balance: U256::from(999), ..funded }));
        block.storage.insert(user, BTreeMap::new());
        block.accounts.insert(recipient, Some(AccountInfo { balance: U256::from(1), ..funded }));
        block.storage.insert(recipient, BTreeMap::new());
        block.accounts.insert(created, Some(contract));
        block.storage.insert(created, [(U256::from(7), U256::from(8))].into());
        block.storage.insert(existing, [(U256::from(0), U256::ZERO), (U256::from(1), U256::from(2))].into());
        let undo = ws.apply(&block);
        assert_ne!(ws.state_root(), before);
        for addr in [recipient, created] {
            assert!(undo.accounts.contains(&(addr, None)), "{addr} is recorded as new: {undo:?}");
        }

        ws.revert(&undo);
        assert_eq!(ws.account(&recipient).unwrap(), None);
        assert_eq!(ws.account(&created).unwrap(), None);
        assert_eq!(ws.storage(&created, &U256::from(7)).unwrap(), U256::ZERO);
        assert_eq!(ws.storage(&existing, &U256::from(0)).unwrap(), U256::from(1));
        assert_eq!(ws.storage(&existing, &U256::from(1)).unwrap(), U256::ZERO);
        assert_eq!(ws.account(&user).unwrap(), Some(funded));
        assert_eq!(ws.account_count(), 2);
        assert_eq!(ws.state_root(), before);
    }
}
