//! World state: accounts, storage and code, plus the Merkle-Patricia state root.
//!
//! The head state lives in SQLite (`storage::PlainState`, behind a bounded cache); the storage
//! layer persists every block's [`StateChanges`] with its [`StateUndo`] ([`undo_for`]) and keeps
//! history for older blocks. [`WorldState`] is an in-memory state for genesis and tests.
//! Anything that can answer account, storage and code questions implements [`StateReader`],
//! which is the seam between execution and where the state comes from.

mod overlay;
mod root;
mod undo;
mod world;

pub use overlay::{BlockHashes, StateOverlay};
pub use undo::undo_for;
pub use world::{bytecode, WorldState};

use std::collections::BTreeMap;

use alloy_primitives::{Address, Bytes, B256, U256};
use revm::bytecode::Bytecode;

/// The account fields that live in the account trie (the storage root is derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountInfo {
    /// Transaction count (or contract creations for contracts).
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// keccak256 of the code, `KECCAK_EMPTY` for accounts without code.
    pub code_hash: B256,
}

impl AccountInfo {
    /// EIP-161 emptiness: no nonce, no balance, no code.
    pub fn is_empty(&self) -> bool {
        self.nonce == 0 && self.balance.is_zero() && self.code_hash == revm::primitives::KECCAK_EMPTY
    }
}

/// Errors from reading state.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    /// The requested block's state was pruned.
    #[error("state for block {0} is no longer kept (the node keeps the last blocks' state; run with --archive to keep all)")]
    Pruned(u64),
    /// The storage backend failed.
    #[error("state storage error: {0}")]
    Backend(String),
}

impl revm::database_interface::DBErrorMarker for StateError {}

/// Read access to one version of the world state.
pub trait StateReader {
    /// The account at `address`, `None` if it does not exist.
    fn account(&self, address: &Address) -> Result<Option<AccountInfo>, StateError>;
    /// The value of storage `slot` of `address` (zero if unset).
    fn storage(&self, address: &Address, slot: &U256) -> Result<U256, StateError>;
    /// Contract code by its hash, analysed and ready to run.
    fn code(&self, code_hash: &B256) -> Result<Option<Bytecode>, StateError>;
}

impl<R: StateReader + ?Sized> StateReader for &R {
    fn account(&self, address: &Address) -> Result<Option<AccountInfo>, StateError> {
        (**self).account(address)
    }

    fn storage(&self, address: &Address, slot: &U256) -> Result<U256, StateError> {
        (**self).storage(address, slot)
    }

    fn code(&self, code_hash: &B256) -> Result<Option<Bytecode>, StateError> {
        (**self).code(code_hash)
    }
}

/// What one block changed, in a form both the memory state and the database apply.
#[derive(Debug, Clone, Default)]
pub struct StateChanges {
    /// Changed accounts, `None` for deleted ones, in address order.
    pub accounts: BTreeMap<Address, Option<AccountInfo>>,
    /// Accounts whose storage was cleared before `storage` applies (self-destruct, re-creation).
    pub wiped: Vec<Address>,
    /// Changed storage slots; a zero value deletes the slot.
    pub storage: BTreeMap<Address, BTreeMap<U256, U256>>,
    /// New contract code by hash.
    pub codes: BTreeMap<B256, Bytes>,
}

/// The values a block overwrote, kept so older states can be read and blocks can be undone.
#[derive(Debug, Clone, Default)]
pub struct StateUndo {
    /// Previous account values (`None` = did not exist).
    pub accounts: Vec<(Address, Option<AccountInfo>)>,
    /// Previous storage values (zero = unset).
    pub storage: Vec<(Address, U256, U256)>,
}
