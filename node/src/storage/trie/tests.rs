//! The incremental root against a full rebuild, on random workloads.

use std::collections::BTreeMap;

use alloy_primitives::{keccak256, Address, B256, U256};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use revm::primitives::KECCAK_EMPTY;
use rusqlite::Connection;

use super::build::full_trie;
use super::source::{stored_account, Scope};
use super::*;
use crate::state::{AccountInfo, StateChanges, StateUndo, WorldState};

fn open() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    crate::storage::schema::init(&conn).unwrap();
    conn
}

/// Every stored trie equals a full rebuild from the hashed leaves: roots and the set of nodes.
fn assert_matches_rebuild(conn: &Connection, root: B256) {
    let (full_root, nodes) = full_trie(conn, Scope::Accounts).unwrap();
    assert_eq!(root, full_root, "account root");
    let stored = super::build::tests_support::stored(conn, Scope::Accounts);
    assert_eq!(stored, nodes, "account trie nodes");
    let owners: Vec<Vec<u8>> = conn
        .prepare("SELECT hashed_address FROM hashed_accounts")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for owner in owners {
        let owner = B256::from_slice(&owner);
        let (storage_root, nodes) = full_trie(conn, Scope::Storage(owner)).unwrap();
        assert_eq!(stored_account(conn, &owner).unwrap().unwrap().storage_root, storage_root);
        assert_eq!(super::build::tests_support::stored(conn, Scope::Storage(owner)), nodes, "storage nodes");
    }
    let orphans: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM storage_trie WHERE hashed_address NOT IN (SELECT hashed_address FROM hashed_accounts)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "storage nodes of accounts that do not exist");
}

/// One random block over a pool of addresses and slots.
fn random_block(rng: &mut StdRng, ws: &WorldState, addresses: &[Address]) -> StateChanges {
    let mut changes = StateChanges::default();
    let touched = rng.gen_range(1..8);
    for _ in 0..touched {
        let address = addresses[rng.gen_range(0..addresses.len())];
        if changes.accounts.contains_key(&address) {
            continue;
        }
        let exists = ws.accounts.contains_key(&address);
        let roll = rng.gen_range(0..100);
        if exists && roll < 8 {
            changes.accounts.insert(address, None);
            continue;
        }
        if exists && roll < 16 {
            changes.wiped.push(address);
        }
        let info = AccountInfo {
            nonce: rng.gen_range(0..5),
            balance: U256::from(rng.gen_range(0u64..1_000_000)),
            code_hash: if rng.gen_bool(0.5) { KECCAK_EMPTY } else { keccak256([rng.gen::<u8>()]) },
        };
        // Storage-only changes (the account keeps its fields) now and then.
        if !(exists && roll < 30) {
            changes.accounts.insert(address, Some(info));
        }
        let mut slots = BTreeMap::new();
        let writes = if rng.gen_bool(0.2) { rng.gen_range(50..400) } else { rng.gen_range(0..12) };
        for _ in 0..writes {
            let slot = U256::from(rng.gen_range(0u64..3_000));
            let value = if rng.gen_bool(0.3) { U256::ZERO } else { U256::from(rng.gen_range(1u64..1 << 40)) };
            slots.insert(slot, value);
        }
        changes.storage.insert(address, slots);
    }
    changes
}

/// The root after `changes` from the stored tries, checked against the same walk over a copy of
/// the tables in memory ([`MemoryState`]): the same root and the same trie changes.
fn root_after(conn: &Connection, changes: &StateChanges) -> (B256, StateTrieUpdates) {
    let (root, updates) = state_root(conn, changes).unwrap();
    let (in_memory, memory_updates) = MemoryState::load(conn).unwrap().state_root(changes).unwrap();
    assert_eq!(in_memory, root, "the walk in memory gives the tables' root");
    assert_eq!(format!("{memory_updates:?}"), format!("{updates:?}"), "and the same trie changes");
    (root, updates)
}

/// Computes the block's root from the stored tries, writes it, and applies it in memory.
fn commit(conn: &Connection, ws: &mut WorldState, changes: &StateChanges) -> (B256, StateUndo) {
    let (root, updates) = root_after(conn, changes);
    write_updates(conn, &updates).unwrap();
    let undo = ws.apply(changes);
    (root, undo)
}

/// Random workloads: 2 seeds by default (about 15 s in a debug build); set `P2PE_TRIE_SEEDS` to
/// run more (each seed is 30 blocks with two reorgs).
#[test]
fn incremental_root_equals_full_rebuild_on_random_blocks_and_reorgs() {
    let seeds: u64 = std::env::var("P2PE_TRIE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let conn = open();
        let mut ws = WorldState::default();
        let addresses: Vec<Address> = (0..24u8).map(Address::repeat_byte).collect();
        // A contract with many words, so its trie has stored nodes several levels deep.
        let mut genesis = StateChanges::default();
        let big = addresses[0];
        genesis
            .accounts
            .insert(big, Some(AccountInfo { nonce: 1, code_hash: keccak256([1]), ..Default::default() }));
        genesis.storage.insert(big, (0..1_500u64).map(|i| (U256::from(i), U256::from(i + 1))).collect());
        let (root, _) = commit(&conn, &mut ws, &genesis);
        assert_eq!(root, ws.state_root());
        let mut roots = vec![root];
        let mut undos: Vec<StateUndo> = Vec::new();
        for block in 0..30 {
            let changes = random_block(&mut rng, &ws, &addresses);
            let (root, undo) = commit(&conn, &mut ws, &changes);
            assert_eq!(root, ws.state_root(), "seed {seed} block {block}");
            if block % 3 == 0 {
                assert_matches_rebuild(&conn, root);
            }
            roots.push(root);
            undos.push(undo);
            // A reorg now and then: take 1..=4 blocks off through their undo records.
            if block % 13 == 12 {
                for _ in 0..rng.gen_range(1..=4usize).min(undos.len()) {
                    let undo = undos.pop().unwrap();
                    roots.pop();
                    let (root, updates) = root_after(&conn, &undo_changes(&undo));
                    write_updates(&conn, &updates).unwrap();
                    ws.revert(&undo);
                    assert_eq!(root, *roots.last().unwrap(), "seed {seed}: undo gives the parent's root");
                    assert_eq!(root, ws.state_root());
                    assert_matches_rebuild(&conn, root);
                }
            }
        }
    }
}

#[test]
fn empty_changes_give_the_stored_root_and_empty_state_the_empty_root() {
    let conn = open();
    let (root, updates) = state_root(&conn, &StateChanges::default()).unwrap();
    assert_eq!(root, alloy_trie::EMPTY_ROOT_HASH);
    assert!(updates.accounts.is_empty());
    let mut ws = WorldState::default();
    let mut changes = StateChanges::default();
    for i in 1..=40u8 {
        changes
            .accounts
            .insert(Address::repeat_byte(i), Some(AccountInfo { nonce: i as u64, ..Default::default() }));
    }
    let (root, _) = commit(&conn, &mut ws, &changes);
    assert_eq!(state_root(&conn, &StateChanges::default()).unwrap().0, root);
}

/// Slots whose hashed keys start with `prefix` (found by search).
fn slots_under(prefix: &[u8], count: usize, skip: u64) -> Vec<U256> {
    (skip..)
        .map(U256::from)
        .filter(|s| {
            let h = keccak256(s.to_be_bytes::<32>());
            alloy_trie::Nibbles::unpack(h).starts_with(&alloy_trie::Nibbles::from_nibbles(prefix))
        })
        .take(count)
        .collect()
}

/// A storage trie that is an extension over a stored branch: keys added beside the extension
/// (before and after the stored node, in the same and in another first nibble) and removed again.
#[test]
fn keys_beside_an_extension_split_it_and_merge_back() {
    let conn = open();
    let mut ws = WorldState::default();
    let contract = Address::repeat_byte(9);
    let under: Vec<U256> = slots_under(&[0xa, 0xb], 200, 0);
    let mut genesis = StateChanges::default();
    genesis.accounts.insert(contract, Some(AccountInfo { nonce: 1, ..Default::default() }));
    genesis.storage.insert(contract, under.iter().map(|s| (*s, U256::from(7))).collect());
    let (root0, _) = commit(&conn, &mut ws, &genesis);
    assert_eq!(root0, ws.state_root());
    let owner = keccak256(contract);
    let first_node = super::build::tests_support::stored(&conn, Scope::Storage(owner))[0].0;
    assert_eq!(
        first_node,
        alloy_trie::Nibbles::from_nibbles([0xa, 0xb]),
        "the stored trie starts below an extension"
    );
    let mut beside = slots_under(&[0xa, 0x0], 1, 0);
    beside.extend(slots_under(&[0xa, 0xf], 1, 0));
    beside.extend(slots_under(&[0xc], 1, 0));
    beside.extend(slots_under(&[0x1], 1, 0));
    for slot in &beside {
        let mut add = StateChanges::default();
        add.storage.insert(contract, [(*slot, U256::from(1))].into());
        let (root, undo) = commit(&conn, &mut ws, &add);
        assert_eq!(root, ws.state_root());
        assert_matches_rebuild(&conn, root);
        let (back, updates) = state_root(&conn, &undo_changes(&undo)).unwrap();
        write_updates(&conn, &updates).unwrap();
        ws.revert(&undo);
        assert_eq!(back, root0);
        assert_matches_rebuild(&conn, back);
    }
    let mut all = StateChanges::default();
    all.storage.insert(contract, beside.iter().map(|s| (*s, U256::from(2))).collect());
    let (root, _) = commit(&conn, &mut ws, &all);
    assert_eq!(root, ws.state_root());
    assert_matches_rebuild(&conn, root);
}

/// Checks a proof of `address` and `slots` against `root` and the expected state `ws`.
fn assert_proves(
    conn: &Connection,
    changes: &StateChanges,
    ws: &mut WorldState,
    root: B256,
    address: Address,
    slots: &[U256],
) {
    use alloy_trie::proof::verify_proof;
    let keys: Vec<B256> = slots.iter().map(|s| B256::from(*s)).collect();
    let proof = prove(conn, changes, address, &keys).unwrap();
    assert_eq!(proof.state_root, root);
    let expected = ws.accounts.get(&address).map(|e| e.info);
    assert_eq!(
        proof.account.map(|a| (a.nonce, a.balance, a.code_hash)),
        expected.map(|i| (i.nonce, i.balance, i.code_hash))
    );
    let storage_root = ws.storage_root(&address);
    let leaf = proof.account.map(|a| {
        assert_eq!(a.storage_root, storage_root);
        super::source::account_leaf(&a)
    });
    verify_proof(root, alloy_trie::Nibbles::unpack(keccak256(address)), leaf, &proof.account_proof)
        .unwrap_or_else(|e| panic!("account proof of {address}: {e}"));
    for (slot, (value, nodes)) in slots.iter().zip(&proof.storage) {
        use crate::state::StateReader;
        assert_eq!(*value, ws.storage(&address, slot).unwrap());
        if storage_root == alloy_trie::EMPTY_ROOT_HASH {
            assert!(nodes.is_empty());
            continue;
        }
        let leaf = (!value.is_zero()).then(|| super::source::storage_leaf(value));
        let key = alloy_trie::Nibbles::unpack(keccak256(slot.to_be_bytes::<32>()));
        verify_proof(storage_root, key, leaf, nodes)
            .unwrap_or_else(|e| panic!("slot {slot} of {address}: {e}"));
    }
}

#[test]
fn proofs_from_stored_nodes_verify_at_the_head_and_at_older_blocks() {
    let mut rng = StdRng::seed_from_u64(99);
    let conn = open();
    let mut ws = WorldState::default();
    let addresses: Vec<Address> = (0..24u8).map(Address::repeat_byte).collect();
    let mut genesis = StateChanges::default();
    genesis.accounts.insert(addresses[0], Some(AccountInfo { nonce: 1, ..Default::default() }));
    genesis.storage.insert(addresses[0], (0..1_000u64).map(|i| (U256::from(i), U256::from(i + 1))).collect());
    commit(&conn, &mut ws, &genesis);
    let mut history: Vec<(WorldState, B256, StateUndo)> = Vec::new();
    for _ in 0..8 {
        let before = ws.clone();
        let changes = random_block(&mut rng, &ws, &addresses);
        let (root, undo) = commit(&conn, &mut ws, &changes);
        history.push((before, root, undo));
    }
    let slots: Vec<U256> = [0u64, 1, 17, 999, 1_500, 2_999].into_iter().map(U256::from).collect();
    let head_root = history.last().unwrap().1;
    for address in addresses.iter().chain([Address::repeat_byte(0xee)].iter()) {
        assert_proves(&conn, &StateChanges::default(), &mut ws, head_root, *address, &slots);
    }
    // Three blocks back: the undo records of the last three blocks as the overlay (oldest
    // first: the first recorded old value of a key is its value before those blocks).
    let mut undo = StateUndo::default();
    for (_, _, u) in &history[history.len() - 3..] {
        undo.accounts.extend(u.accounts.iter().cloned());
        undo.storage.extend(u.storage.iter().cloned());
    }
    let (mut old, _, _) = history[history.len() - 3].clone();
    let old_root = history[history.len() - 4].1;
    for address in &addresses {
        assert_proves(&conn, &undo_changes(&undo), &mut old, old_root, *address, &slots);
    }
}
