//! EIP-1186 proofs from the stored tries: the walk of [`super::state_root`] with the proven keys
//! in its prefix set and a proof retainer, so only the paths to those keys are rebuilt.

use std::collections::BTreeMap;

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_trie::proof::ProofRetainer;
use alloy_trie::{HashBuilder, Nibbles, TrieAccount, EMPTY_ROOT_HASH};
use rusqlite::{params, Connection, OptionalExtension};

use super::nodes::PrefixSet;
use super::source::{account_leaf, storage_leaf, stored_account, DbTrie, Overlay, Scope};
use super::walk::root_of;
use crate::state::StateChanges;
use crate::storage::writer::blob_u256;
use crate::storage::StorageError;

/// An account's proof and its storage proofs.
#[derive(Debug, Clone)]
pub struct StateProof {
    /// The state root the proofs are against.
    pub state_root: B256,
    /// The account (`None` if it does not exist).
    pub account: Option<TrieAccount>,
    /// Account trie nodes from the root to the account.
    pub account_proof: Vec<Bytes>,
    /// Per requested slot: its value and the storage trie nodes from the root to it.
    pub storage: Vec<(U256, Vec<Bytes>)>,
}

/// Proves `address` and `slots` in the state the stored tries hold with `changes` on top (the
/// head state, or an older one when `changes` undo the blocks after it). Reads only the paths
/// to the proven keys and those the changes touch; nothing is written.
pub fn prove(
    conn: &Connection,
    changes: &StateChanges,
    address: Address,
    slots: &[B256],
) -> Result<StateProof, StorageError> {
    let (_, updates) = super::state_root(conn, changes)?;
    let hashed = keccak256(address);
    let account = match updates.accounts.get(&hashed) {
        Some(a) => *a,
        None => stored_account(conn, &hashed)?,
    };
    let (wiped, changed_slots) = match updates.storages.get(&hashed) {
        Some(s) => (s.wiped, s.slots.clone()),
        None => (account.is_none(), BTreeMap::new()),
    };
    let overlay: Overlay =
        changed_slots.iter().map(|(k, v)| (*k, (!v.is_zero()).then(|| storage_leaf(v)))).collect();
    let targets: Vec<B256> = slots.iter().map(keccak256).collect();
    let mut source = DbTrie { conn, scope: Scope::Storage(hashed), overlay: &overlay, wiped };
    let (_, proofs) = proofs_of(&mut source, overlay.keys(), &targets)?;
    let mut storage = Vec::with_capacity(slots.len());
    for (target, proof) in targets.iter().zip(proofs) {
        let value = match changed_slots.get(target) {
            Some(v) => *v,
            None if wiped => U256::ZERO,
            None => stored_slot(conn, &hashed, target)?,
        };
        let empty = account.is_none_or(|a| a.storage_root == EMPTY_ROOT_HASH);
        storage.push((value, if empty { vec![] } else { proof }));
    }
    let overlay: Overlay = updates.accounts.iter().map(|(k, a)| (*k, a.as_ref().map(account_leaf))).collect();
    let mut source = DbTrie { conn, scope: Scope::Accounts, overlay: &overlay, wiped: false };
    let (state_root, mut account_proof) = proofs_of(&mut source, overlay.keys(), &[hashed])?;
    let account_proof = account_proof.pop().unwrap_or_default();
    Ok(StateProof { state_root, account, account_proof, storage })
}

/// The root of one trie and the proofs of `targets` in it (in the order of `targets`): the
/// walk descends along the targets' paths as well as the changed keys'.
fn proofs_of<'a>(
    source: &mut DbTrie<'_>,
    changed: impl Iterator<Item = &'a B256>,
    targets: &[B256],
) -> Result<(B256, Vec<Vec<Bytes>>), StorageError> {
    let changed =
        PrefixSet::new(changed.map(Nibbles::unpack).chain(targets.iter().map(Nibbles::unpack)).collect());
    let retainer = ProofRetainer::new(targets.iter().map(Nibbles::unpack).collect());
    let (root, _, mut hb) = root_of(source, &changed, HashBuilder::default().with_proof_retainer(retainer))?;
    let nodes = hb.take_proof_nodes();
    let proofs = targets
        .iter()
        .map(|t| nodes.matching_nodes_sorted(&Nibbles::unpack(t)).into_iter().map(|(_, node)| node).collect())
        .collect();
    Ok((root, proofs))
}

fn stored_slot(conn: &Connection, owner: &B256, slot: &B256) -> Result<U256, StorageError> {
    let raw: Option<Vec<u8>> = conn
        .prepare_cached("SELECT value FROM hashed_storage WHERE hashed_address = ?1 AND hashed_slot = ?2")?
        .query_row(params![owner.as_slice(), slot.as_slice()], |r| r.get(0))
        .optional()?;
    raw.map(|v| blob_u256(&v)).transpose().map(Option::unwrap_or_default)
}
