//! The head state lives on disk behind a bounded cache (issue 15, part 1), against a real
//! `p2pe-node dev` process: `--state-cache-entries` just under, at and over its floor; a block
//! history that writes more words than the cache holds (so the writer's cache is emptied and
//! refilled from SQLite while blocks are sealed); every word read back; a `kill -9` and a restart
//! that reads nothing but the head; new blocks on top; and `p2pe-node check` re-executing all of
//! it against the stored state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use alloy_consensus::TxEip1559;
use alloy_primitives::{hex, TxKind, U256};
use p2pe_tests::harness::{dev_key, hex_u64, node_bin, run_err, run_ok, sign_raw, NodeProcess, Rpc};
use serde_json::json;

const CHAIN: u64 = 4_242;
const SECS: Duration = Duration::from_secs(60);

/// Runtime: `sstore(base + i, number + 1)` for i in 0..4, `base` the first calldata word.
const RUNTIME: &str = "600035436001018155436001018160010155436001018160020155436001018160030155500000";
/// The smallest cache the node accepts.
const FLOOR: u64 = 1024;
/// Calls of four new words each: 1,600 words, more than the cache at its floor holds.
const CALLS: u64 = 400;

fn creation() -> String {
    // CODECOPY the 39-byte runtime that follows this 12-byte prefix, and return it.
    format!("0x6027600c60003960276000f3{RUNTIME}")
}

fn word(base: u64, i: u64) -> String {
    format!("0x{:064x}", base + i)
}

/// Checks that each call's four words hold its block number + 1.
fn check_words(rpc: &Rpc, contract: &str, mined: &[(u64, u64)]) {
    for &(base, block) in mined {
        for i in 0..4 {
            let got = rpc.call("eth_getStorageAt", json!([contract, word(base, i), "latest"]));
            assert_eq!(hex_u64(&got), block + 1, "word {i} of call at base {base}, mined in block {block}");
        }
    }
}

#[test]
fn the_state_cache_flag_refuses_values_under_its_floor() {
    let under = (FLOOR - 1).to_string();
    let err = run_err(Command::new(node_bin()).args(["dev", "--state-cache-entries", &under, "--help"]));
    assert!(err.contains("--state-cache-entries") && err.contains("1024"), "{err}");
    // At the floor and over it the value is taken (the node starts; see the test below for a run).
    for ok in [FLOOR, FLOOR + 1] {
        let mut node = NodeProcess::dev(&["--state-cache-entries", &ok.to_string()]);
        assert_eq!(node.rpc().call("eth_chainId", json!([])), "0x539");
        node.terminate();
    }
}

/// Signs a transaction from dev key 0 (the one the genesis funds).
fn raw(nonce: u64, to: TxKind, input: Vec<u8>) -> String {
    let tx = TxEip1559 {
        chain_id: CHAIN,
        nonce,
        gas_limit: 300_000,
        to,
        input: input.into(),
        ..Default::default()
    };
    sign_raw(&dev_key(0), tx)
}

/// Sends a raw transaction and returns its hash.
fn send(rpc: &Rpc, raw: String) -> String {
    rpc.call("eth_sendRawTransaction", json!([raw])).as_str().unwrap().to_string()
}

/// `p2pe-node run` arguments for a one-signer chain in a fresh directory (a dev chain cannot be
/// resumed after a restart: its key is ephemeral).
fn one_signer_chain(dir: &Path) -> Vec<String> {
    let pw = dir.join("pw");
    std::fs::write(&pw, "pw\n").unwrap();
    let mut new_key = Command::new(node_bin());
    new_key.args(["account", "new", "--light-kdf", "--name", "s.json", "--keystore-dir"]).arg(dir);
    let signer = run_ok(new_key.arg("--password-file").arg(&pw));
    let genesis = dir.join("genesis.json");
    let mut gen = Command::new(node_bin());
    gen.args(["genesis", "--chain-id", &CHAIN.to_string(), "--period", "1", "--signer", signer.trim()]);
    gen.arg("--fund").arg(format!("{}=1000000000000000000000", dev_key(0).address()));
    run_ok(gen.arg("--out").arg(&genesis));
    let datadir = dir.join("data");
    run_ok(Command::new(node_bin()).args(["init", "--genesis"]).arg(&genesis).arg("--datadir").arg(&datadir));
    let path = |p: PathBuf| p.to_str().unwrap().to_string();
    let mut args: Vec<String> = ["run", "--no-p2p", "--state-cache-entries", "1024"].map(String::from).into();
    args.extend(["--datadir".into(), path(datadir), "--keystore".into(), path(dir.join("s.json"))]);
    args.extend(["--password-file".into(), path(pw)]);
    args
}

#[test]
fn blocks_run_on_disk_state_through_a_small_cache_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let args = one_signer_chain(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut node = NodeProcess::start(&args);
    let rpc = node.rpc();
    let deployed =
        rpc.wait_receipt(&send(&rpc, raw(0, TxKind::Create, hex::decode(creation()).unwrap())), SECS);
    assert_eq!(deployed["status"], "0x1", "{deployed}");
    let contract = deployed["contractAddress"].as_str().unwrap().to_string();
    let to = TxKind::Call(contract.parse().unwrap());

    let mut hashes = Vec::new();
    for k in 0..CALLS {
        let base = 1_000 + k * 16;
        hashes.push((base, send(&rpc, raw(k + 1, to, U256::from(base).to_be_bytes::<32>().to_vec()))));
    }
    let mut mined = Vec::new();
    for (base, hash) in &hashes {
        let receipt = rpc.wait_receipt(hash, SECS);
        assert_eq!(receipt["status"], "0x1", "{receipt}");
        mined.push((*base, hex_u64(&receipt["blockNumber"])));
    }
    check_words(&rpc, &contract, &mined);
    let head = rpc.block_number();

    // A crash, and a restart that loads no state: the same words, and new blocks on top.
    node.kill9();
    let mut node = NodeProcess::start(&args);
    let rpc = node.rpc();
    assert!(rpc.block_number() >= head, "the restarted node starts from its stored head");
    check_words(&rpc, &contract, &mined);
    let hash = send(&rpc, raw(CALLS + 1, to, U256::from(7).to_be_bytes::<32>().to_vec()));
    let receipt = rpc.wait_receipt(&hash, SECS);
    assert_eq!(receipt["status"], "0x1", "a call after the restart: {receipt}");
    mined.push((7, hex_u64(&receipt["blockNumber"])));
    check_words(&rpc, &contract, &mined);
    assert!(node.terminate().success());

    // Every block re-executed from genesis gives the stored state and trie.
    let datadir = dir.path().join("data");
    let out = run_ok(Command::new(node_bin()).args(["check", "--datadir"]).arg(&datadir));
    assert!(out.contains("OK:"), "{out}");
}
