//! A write overlay over any [`StateReader`], used as revm's database.
//!
//! Execution of a block (or of an `eth_call`) reads through the overlay to the base state and
//! commits each transaction's effects into the overlay, so later transactions see earlier
//! ones. At the end, [`StateOverlay::into_changes`] yields exactly what changed.

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy_primitives::{Address, B256, U256};
use revm::bytecode::Bytecode;
use revm::database_interface::{Database, DatabaseCommit};
use revm::primitives::{AddressMap, KECCAK_EMPTY};
use revm::state::{Account, AccountInfo as RevmAccountInfo};

use super::{AccountInfo, StateChanges, StateError, StateReader};

/// Hashes of recent blocks, for the BLOCKHASH opcode (the last 256 are reachable).
#[derive(Debug, Clone, Default)]
pub struct BlockHashes(pub HashMap<u64, B256>);

/// Pending writes on top of a base state.
pub struct StateOverlay<'a, R: StateReader + ?Sized> {
    base: &'a R,
    hashes: &'a BlockHashes,
    accounts: HashMap<Address, Option<AccountInfo>>,
    storage: HashMap<Address, HashMap<U256, U256>>,
    wiped: HashSet<Address>,
    codes: HashMap<B256, Bytecode>,
}

impl<'a, R: StateReader + ?Sized> StateOverlay<'a, R> {
    /// An empty overlay over `base`.
    pub fn new(base: &'a R, hashes: &'a BlockHashes) -> Self {
        Self {
            base,
            hashes,
            accounts: HashMap::new(),
            storage: HashMap::new(),
            wiped: HashSet::new(),
            codes: HashMap::new(),
        }
    }

    /// Overrides an account (used by `eth_call` state overrides and by genesis building).
    pub fn set_account(&mut self, address: Address, info: Option<AccountInfo>) {
        self.accounts.insert(address, info);
    }

    /// Overrides a storage slot.
    pub fn set_storage(&mut self, address: Address, slot: U256, value: U256) {
        self.storage.entry(address).or_default().insert(slot, value);
    }

    /// Replaces all storage of an account.
    pub fn wipe_storage(&mut self, address: Address) {
        self.wiped.insert(address);
        self.storage.remove(&address);
    }

    /// Adds code to the overlay and returns its hash.
    pub fn set_code(&mut self, code: Bytecode) -> B256 {
        let hash = code.hash_slow();
        self.codes.insert(hash, code);
        hash
    }

    /// The account as the overlay sees it.
    pub fn account(&self, address: &Address) -> Result<Option<AccountInfo>, StateError> {
        match self.accounts.get(address) {
            Some(info) => Ok(*info),
            None => self.base.account(address),
        }
    }

    /// What changed, ready to apply to the head state and to persist.
    pub fn into_changes(self) -> StateChanges {
        let mut changes = StateChanges {
            accounts: self.accounts.into_iter().collect(),
            wiped: self.wiped.into_iter().collect(),
            storage: BTreeMap::new(),
            codes: BTreeMap::new(),
        };
        changes.wiped.sort();
        for (addr, slots) in self.storage {
            if let Some(None) = changes.accounts.get(&addr) {
                continue;
            }
            changes.storage.insert(addr, slots.into_iter().collect());
        }
        for (hash, code) in self.codes {
            changes.codes.insert(hash, code.original_bytes());
        }
        changes
    }
}

impl<R: StateReader + ?Sized> Database for StateOverlay<'_, R> {
    type Error = StateError;

    fn basic(&mut self, address: Address) -> Result<Option<RevmAccountInfo>, StateError> {
        let Some(info) = self.account(&address)? else { return Ok(None) };
        let code = if info.code_hash == KECCAK_EMPTY {
            Some(Bytecode::default())
        } else {
            Some(self.code_by_hash(info.code_hash)?)
        };
        Ok(Some(RevmAccountInfo {
            balance: info.balance,
            nonce: info.nonce,
            code_hash: info.code_hash,
            code,
            ..Default::default()
        }))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, StateError> {
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        if let Some(code) = self.codes.get(&code_hash) {
            return Ok(code.clone());
        }
        Ok(self.base.code(&code_hash)?.unwrap_or_default())
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, StateError> {
        if let Some(v) = self.storage.get(&address).and_then(|s| s.get(&index)) {
            return Ok(*v);
        }
        if self.wiped.contains(&address) || matches!(self.accounts.get(&address), Some(None)) {
            return Ok(U256::ZERO);
        }
        self.base.storage(&address, &index)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, StateError> {
        Ok(self.hashes.0.get(&number).copied().unwrap_or_default())
    }
}

impl<R: StateReader + ?Sized> DatabaseCommit for StateOverlay<'_, R> {
    fn commit(&mut self, changes: AddressMap<Account>) {
        for (address, account) in changes {
            if !account.is_touched() {
                continue;
            }
            if account.is_selfdestructed() {
                self.accounts.insert(address, None);
                self.wipe_storage(address);
                continue;
            }
            if account.is_created() {
                self.wipe_storage(address);
            }
            // Accounts without code (every transfer's sender and recipient) carry the empty
            // code's hash: no lookup, since the store has no row for it and a miss is not cached.
            let hash = account.info.code_hash;
            if let Some(code) = account.info.code.as_ref().filter(|_| hash != KECCAK_EMPTY) {
                let known = self.codes.contains_key(&hash)
                    || (!account.is_created() && matches!(self.base.code(&hash), Ok(Some(_))));
                if !known {
                    self.codes.insert(hash, code.clone());
                }
            }
            let info = AccountInfo {
                nonce: account.info.nonce,
                balance: account.info.balance,
                code_hash: account.info.code_hash,
            };
            // EIP-161: touched accounts left empty are removed.
            if info.is_empty() {
                self.accounts.insert(address, None);
                self.wipe_storage(address);
                continue;
            }
            self.accounts.insert(address, Some(info));
            let slots = self.storage.entry(address).or_default();
            for (slot, value) in account.storage {
                if value.is_changed() {
                    slots.insert(slot, value.present_value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use alloy_primitives::{keccak256, Bytes};

    /// A base state with one stored contract code, counting its code lookups.
    struct CodeCounting {
        stored: (B256, Bytecode),
        lookups: Cell<usize>,
    }

    impl StateReader for CodeCounting {
        fn account(&self, _: &Address) -> Result<Option<AccountInfo>, StateError> {
            Ok(None)
        }
        fn storage(&self, _: &Address, _: &U256) -> Result<U256, StateError> {
            Ok(U256::ZERO)
        }
        fn code(&self, hash: &B256) -> Result<Option<Bytecode>, StateError> {
            self.lookups.set(self.lookups.get() + 1);
            Ok((*hash == self.stored.0).then(|| self.stored.1.clone()))
        }
    }

    fn touched(balance: u64, code: Bytecode, created: bool) -> Account {
        let info = RevmAccountInfo {
            balance: U256::from(balance),
            nonce: 1,
            code_hash: code.hash_slow(),
            code: Some(code),
            ..Default::default()
        };
        let mut account = Account::from(info);
        account.mark_touch();
        if created {
            account.mark_created();
        }
        account
    }

    #[test]
    fn committing_accounts_without_code_looks_no_code_up() {
        let stored_code = Bytecode::new_raw(Bytes::from_static(&[0x60, 0x00, 0x00]));
        let new_code = Bytecode::new_raw(Bytes::from_static(&[0x60, 0x01, 0x00]));
        let base =
            CodeCounting { stored: (stored_code.hash_slow(), stored_code.clone()), lookups: Cell::new(0) };
        let hashes = BlockHashes::default();
        let mut overlay = StateOverlay::new(&base, &hashes);
        // A transfer: sender and recipient carry the empty code.
        let mut changes = AddressMap::default();
        changes.insert(Address::repeat_byte(1), touched(5, Bytecode::default(), false));
        changes.insert(Address::repeat_byte(2), touched(6, Bytecode::default(), false));
        overlay.commit(changes);
        assert_eq!(base.lookups.get(), 0, "the empty code is never looked up");
        // A call of a stored contract: looked up once, not taken as new code.
        let mut changes = AddressMap::default();
        changes.insert(Address::repeat_byte(3), touched(0, stored_code.clone(), false));
        overlay.commit(changes);
        assert_eq!(base.lookups.get(), 1);
        // A created contract: new code, no lookup.
        let mut changes = AddressMap::default();
        changes.insert(Address::repeat_byte(4), touched(0, new_code.clone(), true));
        overlay.commit(changes);
        assert_eq!(base.lookups.get(), 1);
        let out = overlay.into_changes();
        assert_eq!(out.codes.keys().copied().collect::<Vec<_>>(), vec![keccak256(new_code.original_bytes())]);
        assert_eq!(out.accounts.len(), 4);
        assert_eq!(out.accounts[&Address::repeat_byte(1)].as_ref().map(|a| a.code_hash), Some(KECCAK_EMPTY));
    }
}
