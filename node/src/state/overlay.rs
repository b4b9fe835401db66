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
            if let Some(code) = &account.info.code {
                let hash = account.info.code_hash;
                let known = self.codes.contains_key(&hash)
                    || (!account.is_created() && matches!(self.base.code(&hash), Ok(Some(_))));
                if hash != KECCAK_EMPTY && !known {
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
