//! Reorgs are never half-done: a switch to a better branch that fails midway — a storage failure
//! while writing a branch block, and again while putting the old chain back — is rolled back
//! whole; the node keeps its chain in memory and on disk (a restart sees it too), announces
//! nothing, and switches cleanly once the failure is gone. (An invalid block in the middle of a
//! branch is `reorg.rs`'s `switches_to_the_preferred_branch_and_restores_on_an_invalid_one`.)
//!
//! The failure is injected with an SQLite trigger on the node's own database file, from a second
//! connection, as a full disk or an I/O error would surface: an error from one statement of a
//! block's write.

use std::path::Path;
use std::sync::Arc;

use alloy_primitives::B256;
use p2pe_node::blockchain::{Blockchain, ChainOptions};
use p2pe_node::chain::{build_genesis, ChainSpec, GenesisParams};
use p2pe_node::crypto::SigningKey;
use p2pe_node::primitives::Block;
use p2pe_node::storage::{BlockQuery, Store};
use p2pe_node::txpool::{PoolConfig, TxPool};

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&B256::repeat_byte(b)).unwrap()
}

fn open(spec: &ChainSpec, json: &str, dir: &Path) -> Blockchain {
    let mut store = Store::open(dir, None).unwrap();
    if store.head().unwrap().is_none() {
        store.init_genesis(spec, json).unwrap();
    }
    let opts = ChainOptions { read_connections: 2, ..Default::default() };
    Blockchain::open(spec.clone(), store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap()
}

fn seal(chain: &Blockchain, keys: &[&SigningKey], t: u64) -> Block {
    keys.iter().find_map(|k| chain.seal_next(k, t, None).unwrap()).expect("someone may seal").block
}

/// Makes every write of a canonical block numbered 3 or more fail.
const INJECT: &str = "CREATE TRIGGER injected_failure BEFORE INSERT ON canonical WHEN NEW.number >= 3 \
                      BEGIN SELECT RAISE(ABORT, 'injected storage failure'); END;";

#[test]
fn a_reorg_that_fails_midway_is_rolled_back_whole() {
    let (a, b, c) = (key(0xa1), key(0xb2), key(0xc3));
    let t0 = p2pe_node::blockchain::unix_now() - 1_000;
    let params = GenesisParams {
        chain_id: 59,
        signers: vec![a.address(), b.address(), c.address()],
        timestamp: t0,
        ..Default::default()
    };
    let json = serde_json::to_string(&build_genesis(&params)).unwrap();
    let spec = ChainSpec::from_json(&json).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node_dir = dir.path().join("node");

    // The node: 1 (A), 2 (B), 3 (C). Elsewhere, from block 1: 2' (C), 3' (B), ... until heavier.
    let node = open(&spec, &json, &node_dir);
    let b1 = seal(&node, &[&a], t0 + 1);
    seal(&node, &[&b], t0 + 2);
    seal(&node, &[&c], t0 + 3);
    let other = open(&spec, &json, &dir.path().join("other"));
    other.import(b1, None).unwrap();
    let mut branch = vec![seal(&other, &[&c], t0 + 2)];
    let mut t = t0 + 3;
    while other.head().total_difficulty <= node.head().total_difficulty {
        branch.push(seal(&other, &[&b, &a, &c], t));
        t += 1;
    }
    assert!(branch.len() >= 3, "the branch writes blocks 2, 3 and more");
    let before = node.head();
    let canonical = |chain: &Blockchain| -> Vec<Option<B256>> {
        (1..=before.header.number).map(|n| chain.reads().with(|c| c.canonical_hash(n)).unwrap()).collect()
    };
    let chain_before = canonical(&node);
    let mut events = node.subscribe();

    // Block 3' cannot be written; nor can block 3 when the node puts its own chain back.
    let db = rusqlite::Connection::open(node_dir.join("chain.sqlite")).unwrap();
    db.execute_batch(INJECT).unwrap();
    let err = node.reorg_to(branch.clone(), None).unwrap_err().to_string();
    assert!(err.contains("injected storage failure"), "{err}");
    assert_eq!(node.head().hash, before.hash, "the node is back on its own head");
    assert_eq!(node.head().header.state_root, before.header.state_root);
    assert_eq!(
        node.state_at(node.head_number()).unwrap().state_root(),
        before.header.state_root,
        "and its state"
    );
    assert_eq!(canonical(&node), chain_before, "the disk holds the old chain, not half a switch");
    assert!(events.try_recv().is_err(), "nothing was announced");

    // The disk alone says the same: a restart finds the old head and its state.
    drop(node);
    let node = open(&spec, &json, &node_dir);
    assert_eq!(node.head().hash, before.hash);
    assert_eq!(canonical(&node), chain_before);

    // Once the failure is gone, the same branch is adopted.
    db.execute_batch("DROP TRIGGER injected_failure").unwrap();
    node.reorg_to(branch.clone(), None).unwrap();
    assert_eq!(node.head().hash, other.head().hash);
    assert_eq!(node.head().header.state_root, other.head().header.state_root);
}
