//! Issue 5: a fresh follower joins a 3-signer network after 10,000 blocks and syncs completely.
//!
//! The network is `p2pe-node testnet --generate-only` (3 signers, 1 follower, 1 s blocks). The
//! signers get their 10,000 blocks from [`seed_chain`] (sealed in-process by their own keys, in
//! turn, one second apart; a transfer in every second block, a contract call in every tenth),
//! since producing them at one per second would take almost three hours. The follower starts
//! from genesis and gets every block over libp2p from the running signers, verifying each seal
//! and re-executing each block, while the signers keep sealing new ones.
//!
//! The sync time is printed (`--nocapture`). The node binary is `P2PE_NODE_BIN`, else the newer
//! of `target/{debug,release}/p2pe-node`. Measured on the 2-core project machine (load 2–3): with
//! the debug node, sync 76 s (132 blocks/s), whole test 146 s; with the release node, 7–9 s
//! (1,169–1,373 blocks/s). For the release figure alone: `cargo build --release -p p2pe-node
//! -p p2pe-tests && target/release/p2pe-netbench --sync-only`, or `P2PE_NODE_BIN=$PWD/target/
//! release/p2pe-node cargo test -p p2pe-tests --test network_sync -- --nocapture`.

use std::time::{Duration, Instant};

use p2pe_tests::harness::{hex_u64, node_bin, Rpc};
use p2pe_tests::loadgen::contract;
use p2pe_tests::net::{
    block_id, seed_chain, seed_recipient, seed_transfer, time_follower_sync, wait_for, Testnet,
};
use serde_json::{json, Value};

/// Blocks the signers have before the follower joins (the issue asks for at least 10,000);
/// `P2PE_SYNC_BLOCKS` sets another number, e.g. for a longer run.
fn block_count() -> u64 {
    std::env::var("P2PE_SYNC_BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}
/// Every this many blocks the seeded chain calls the benchmark contract.
const CALL_EVERY: u64 = 10;

#[test]
fn a_fresh_follower_syncs_ten_thousand_blocks_from_three_signers() {
    let t_test = Instant::now();
    let blocks = block_count();
    let bin = node_bin();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&bin, dir.path(), 3, 1, 1);
    let seeded = seed_chain(&net, blocks, CALL_EVERY);
    eprintln!(
        "seeded {blocks} blocks ({} transactions, {} contract calls) in {:.1} s",
        seeded.txs,
        seeded.contract_calls,
        seeded.build.as_secs_f64()
    );
    let head_hash = seeded.head_hash.to_string();
    let state_root = seeded.state_root.to_string();
    for i in 0..3 {
        net.start(i);
        assert_eq!(
            block_id(&net.rpc(i), blocks),
            (head_hash.clone(), state_root.clone()),
            "signer {i} serves the seeded block {blocks}"
        );
    }
    wait_for("the signers to peer with each other", Duration::from_secs(60), || {
        (0..3).all(|i| net.peers(i) >= 2)
    });
    wait_for("the signers to seal on top of the seeded chain", Duration::from_secs(60), || {
        net.head(0) > blocks
    });

    // The follower has only the genesis: every block comes from the signers over libp2p.
    let follower = 3;
    assert_eq!(net.rpc(follower).try_call("eth_blockNumber", json!([])).ok(), None, "not started yet");
    let run = time_follower_sync(&mut net, follower, blocks, Duration::from_secs(900));
    println!(
        "follower synced {blocks} blocks ({} transactions) from 3 signers over libp2p in {:.1} s: \
         {:.0} blocks/s (node {}, test profile {})",
        seeded.txs,
        run.elapsed.as_secs_f64(),
        run.blocks_per_sec(),
        bin.display(),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );

    let f = net.rpc(follower);
    // eth_syncing reported the sync while it ran, with the block it started from, its progress and
    // the signers' head; and reports `false` once the follower has caught up.
    let seen = &run.syncing;
    assert!(!seen.is_empty(), "eth_syncing never reported the sync of {blocks} blocks");
    let field = |v: &Value, k: &str| hex_u64(&v[k]);
    for s in seen {
        assert!(field(s, "startingBlock") <= field(s, "currentBlock"), "{s}");
        assert!(field(s, "currentBlock") <= field(s, "highestBlock"), "{s}");
        assert!(field(s, "highestBlock") >= blocks, "the peer's head is at least the seeded chain: {s}");
    }
    assert!(
        field(&seen[seen.len() - 1], "currentBlock") > field(&seen[0], "currentBlock"),
        "currentBlock advances: {seen:?}"
    );
    wait_for("eth_syncing to say false once caught up", Duration::from_secs(120), || {
        f.call("eth_syncing", json!([])) == json!(false)
    });
    assert_eq!(
        block_id(&f, blocks),
        (head_hash, state_root),
        "the follower's block {blocks} (hash, state root) is the signers'"
    );
    // It keeps up with the blocks sealed since, and agrees with every signer on them.
    let top = net.head(0);
    wait_for("the follower to reach the signers' head", Duration::from_secs(120), || f.block_number() >= top);
    for i in 0..3 {
        assert_eq!(
            block_id(&f, top),
            block_id(&net.rpc(i), top),
            "follower and signer {i} agree on block {top} (hash, state root)"
        );
    }
    check_state(&f, &net.rpc(0), &seeded.contract, blocks);
    println!("test wall time {:.1} s", t_test.elapsed().as_secs_f64());
}

/// The follower's re-executed state answers like a signer's: the contract's code and its
/// last-written slot, and the balance of a seeded transfer's recipient.
fn check_state(follower: &Rpc, signer: &Rpc, contract: &alloy_primitives::Address, blocks: u64) {
    let code = follower.call("eth_getCode", json!([contract, "latest"]));
    assert_eq!(
        code.as_str(),
        Some(alloy_primitives::hex::encode_prefixed(contract::RUNTIME).as_str()),
        "the follower has the contract deployed in block 1"
    );
    let caller = p2pe_tests::harness::dev_key(9).address();
    let slot = alloy_primitives::B256::left_padding_from(caller.as_slice());
    let stored = follower.call("eth_getStorageAt", json!([contract, slot, "latest"]));
    let last_call = blocks - blocks % CALL_EVERY;
    assert_eq!(
        stored,
        json!(format!("0x{last_call:064x}")),
        "the contract's slot holds the value of the last seeded call (block {last_call})"
    );
    assert_eq!(stored, signer.call("eth_getStorageAt", json!([contract, slot, "latest"])));
    // Every even block n sent n wei to recipient (n / 2) % 16.
    let recipient = seed_recipient(7);
    let expected: u64 =
        (1..=blocks).filter(|n| seed_transfer(*n).is_some_and(|(to, _)| to == recipient)).sum();
    let balance = follower.call("eth_getBalance", json!([recipient, "latest"]));
    assert_eq!(
        balance,
        json!(format!("{expected:#x}")),
        "the seeded transfers to {recipient} add up in the follower's state"
    );
}
