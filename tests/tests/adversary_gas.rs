//! Gas limit rules: a sealer steers the block gas limit toward its `--gas-limit-target` one bounded
//! step per block, up and down, on a real node; a header that moves the limit by parent/1024 or
//! more, or below the minimum (16,777,216, the EIP-7825 transaction cap), is refused by
//! `p2pe-node import` with an error naming the rule, while the largest allowed step imports.

use std::process::Command;
use std::sync::Arc;

use alloy_primitives::B256;
use alloy_rlp::Encodable;
use p2pe_node::blockchain::{Blockchain, ChainOptions};
use p2pe_node::chain::{build_genesis, next_gas_limit, ChainSpec, GenesisParams, MIN_GAS_LIMIT};
use p2pe_node::consensus::clique::sign_header;
use p2pe_node::crypto::SigningKey;
use p2pe_node::primitives::Block;
use p2pe_node::storage::Store;
use p2pe_node::txpool::{PoolConfig, TxPool};
use p2pe_tests::harness::{hex_u64, node_bin, run_any, run_err, run_ok, NodeProcess};
use serde_json::json;

/// Gas limits of blocks 0..=n of `node`.
fn gas_limits(node: &NodeProcess, n: u64) -> Vec<u64> {
    node.rpc().wait_block(n, std::time::Duration::from_secs(60));
    (0..=n)
        .map(|i| {
            let b = node.rpc().call("eth_getBlockByNumber", json!([format!("{i:#x}"), false]));
            hex_u64(&b["gasLimit"])
        })
        .collect()
}

#[test]
fn the_sealer_steers_the_gas_limit_toward_its_target_both_ways() {
    let start = 30_000_000u64;
    let step = start / 1024 - 1;
    // Up: the target is 3.5 steps away, so block 4 reaches it and later blocks stay there.
    let up = start + 7 * step / 2;
    let down = start - 7 * step / 2;
    for target in [up, down] {
        let node = NodeProcess::dev(&[
            "--period",
            "1",
            "--gas-limit",
            &start.to_string(),
            "--gas-limit-target",
            &target.to_string(),
            "--no-keeper",
        ]);
        let limits = gas_limits(&node, 6);
        let mut expected = vec![start];
        for _ in 1..=6 {
            expected.push(next_gas_limit(*expected.last().unwrap(), target));
        }
        assert_eq!(limits, expected, "target {target}");
        assert_eq!(limits[4], target, "reached in four blocks");
        for w in limits.windows(2) {
            assert!(w[0].abs_diff(w[1]) < w[0] / 1024, "each step is inside the bound: {limits:?}");
        }
    }
    // A target under the minimum is refused at start, naming the flag.
    let out = run_err(Command::new(node_bin()).args([
        "dev",
        "--http-addr",
        "127.0.0.1:0",
        "--gas-limit-target",
        "16777215",
    ]));
    assert!(out.contains("--gas-limit-target 16777215") && out.contains("minimum block gas limit"), "{out}");
}

/// A one-signer chain whose genesis gas limit is the minimum, with block 1 sealed in-process by
/// the node's own code; returns (genesis JSON, the signer's key, block 1).
fn chain_at_the_minimum(dir: &std::path::Path) -> (String, SigningKey, Block) {
    let key = SigningKey::from_bytes(&B256::repeat_byte(0x77)).unwrap();
    let t0 = p2pe_node::blockchain::unix_now() - 100;
    let params = GenesisParams {
        chain_id: 58,
        gas_limit: MIN_GAS_LIMIT,
        signers: vec![key.address()],
        timestamp: t0,
        ..Default::default()
    };
    let json = serde_json::to_string(&build_genesis(&params)).unwrap();
    let spec = ChainSpec::from_json(&json).unwrap();
    let mut store = Store::open(&dir.join("builder"), None).unwrap();
    store.init_genesis(&spec, &json).unwrap();
    let opts = ChainOptions { read_connections: 1, ..Default::default() };
    let chain = Blockchain::open(spec, store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap();
    let block = chain.seal_next(&key, t0 + 1, None).unwrap().expect("the only signer seals").block;
    assert_eq!(block.header.gas_limit, MIN_GAS_LIMIT);
    (json, key, block)
}

#[test]
fn import_refuses_a_header_that_breaks_the_gas_limit_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (genesis_json, key, block1) = chain_at_the_minimum(dir.path());
    let genesis = dir.path().join("genesis.json");
    std::fs::write(&genesis, &genesis_json).unwrap();
    let bin = node_bin();
    let bound = MIN_GAS_LIMIT / 1024;
    // (gas limit of block 1, what import says): just inside the bound, at it, and below the minimum
    // by one (a step well inside the bound).
    let cases = [
        (MIN_GAS_LIMIT + bound - 1, None),
        (MIN_GAS_LIMIT + bound, Some("parent/1024")),
        (MIN_GAS_LIMIT + 10 * bound, Some("parent/1024")),
        (MIN_GAS_LIMIT - 1, Some("minimum block gas limit")),
    ];
    for (i, (gas_limit, refusal)) in cases.into_iter().enumerate() {
        let mut block = block1.clone();
        block.header.gas_limit = gas_limit;
        sign_header(&mut block.header, &key).unwrap();
        let file = dir.path().join(format!("case{i}.rlp"));
        let mut buf = Vec::new();
        block.encode(&mut buf);
        std::fs::write(&file, buf).unwrap();
        let data = dir.path().join(format!("data{i}"));
        run_ok(Command::new(&bin).args(["init", "--genesis"]).arg(&genesis).arg("--datadir").arg(&data));
        let (ok, out) = run_any(Command::new(&bin).args(["import", "--datadir"]).arg(&data).arg(&file));
        match refusal {
            None => assert!(ok && out.contains("Imported 1 blocks"), "gas limit {gas_limit}: {out}"),
            Some(rule) => {
                assert!(!ok, "gas limit {gas_limit} was imported: {out}");
                assert!(
                    out.contains("block 1") && out.contains("gas limit rule") && out.contains(rule),
                    "{out}"
                );
            }
        }
    }
}
