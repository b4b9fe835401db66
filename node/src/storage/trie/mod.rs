//! The state trie on disk, updated incrementally (reth's recipe with alloy-trie).
//!
//! Tables (see [`super::schema`]): `hashed_accounts` and `hashed_storage` hold the leaves by
//! hashed key; `account_trie` and `storage_trie` hold the branch nodes `HashBuilder` reports
//! (`BranchNodeCompact`), keyed by nibble path.
//!
//! Per block, [`state_root`] takes the block's [`crate::state::StateChanges`] as an overlay on
//! the stored tries, builds a prefix set of the changed hashed keys, and walks the stored nodes:
//! unchanged subtries go to `HashBuilder::add_branch` by their stored hash, and only the paths
//! under changed keys are rehashed. Only touched accounts' storage tries are walked. The cost is
//! about (changed keys × depth) row reads, not the size of the state. The result is written by
//! [`write_updates`] in the block's transaction.
//!
//! The same root can be computed over a copy of the state in memory ([`MemoryState`]): the walk
//! reads through a `TrieProvider`, so the tables and the copy share every line of it.
//!
//! Undoing a block (reorgs) applies the block's undo record as changes the same way
//! ([`undo_changes`]) and checks the result against the parent's state root.

mod build;
mod memory;
mod nodes;
mod proof;
mod source;
mod state;
mod walk;

pub use build::{rebuild, rebuild_tries, verify};
pub use memory::MemoryState;
pub use proof::{prove, StateProof};
pub use state::{state_root, undo_changes, write_updates, StateTrieUpdates, StorageTrieUpdate};
pub use walk::TrieUpdates;

#[cfg(test)]
mod tests;
