//! The node core against a real `p2pe-node` process: transaction types and rejections, nonce
//! gaps, zero fees, block hashes, state at pinned block numbers, pool limits, the allowlist
//! (through `genesis`, `init`, `run` and a keystore), and malformed JSON-RPC.

use std::process::Command;
use std::time::Duration;

use alloy_consensus::{TxEip1559, TxEip2930, TxEip4844, TxEip7702, TxLegacy};
use alloy_eips::eip7702::Authorization;
use alloy_primitives::{address, Address, Bytes, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use p2pe_tests::harness::{dev_key, hex_u64, node_bin, run_err, run_ok, sign_raw, NodeProcess, Rpc};
use serde_json::{json, Value};

const CHAIN: u64 = 1337;
const SECS: Duration = Duration::from_secs(20);

fn nonce(rpc: &Rpc, a: Address) -> u64 {
    hex_u64(&rpc.call("eth_getTransactionCount", json!([a, "pending"])))
}

fn eip1559(n: u64, to: Address, value: u64, fee: u128, tip: u128) -> TxEip1559 {
    TxEip1559 {
        chain_id: CHAIN,
        nonce: n,
        gas_limit: 21_000,
        max_fee_per_gas: fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(to),
        value: U256::from(value),
        ..Default::default()
    }
}

fn send(rpc: &Rpc, raw: &str) -> String {
    rpc.call("eth_sendRawTransaction", json!([raw])).as_str().unwrap().to_string()
}

fn send_err(rpc: &Rpc, raw: &str) -> String {
    let e = rpc.try_call("eth_sendRawTransaction", json!([raw])).expect_err("must be refused");
    assert!(e.code != 0, "{e:?}");
    e.message
}

#[test]
fn transaction_types_are_accepted_and_never_charged() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    let key = dev_key(1);
    let me = key.address();
    let to = address!("00000000000000000000000000000000000000aa");
    let before = U256::from_str_radix(
        rpc.call("eth_getBalance", json!([me, "latest"])).as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let n = nonce(&rpc, me);
    let legacy = TxLegacy {
        chain_id: Some(CHAIN),
        nonce: n,
        gas_price: 0,
        gas_limit: 21_000,
        to: TxKind::Call(to),
        value: U256::from(1),
        input: Bytes::new(),
    };
    let h0 = send(&rpc, &sign_raw(&key, legacy));
    let al = TxEip2930 {
        chain_id: CHAIN,
        nonce: n + 1,
        gas_price: 7,
        gas_limit: 30_000,
        to: TxKind::Call(to),
        value: U256::from(2),
        ..Default::default()
    };
    let h1 = send(&rpc, &sign_raw(&key, al));
    // A generous fee cap and tip: still nothing is charged.
    let h2 = send(&rpc, &sign_raw(&key, eip1559(n + 2, to, 3, 100_000_000_000, 2_000_000_000)));
    // EIP-7702: delegate this EOA's code to the CREATE2 deployer.
    let target = address!("4e59b44847b379578588920ca78fbf26c0b4956c");
    let auth = Authorization { chain_id: U256::from(CHAIN), address: target, nonce: n + 4 };
    let sig = key.sign_hash_sync(&auth.signature_hash()).unwrap();
    let tx7702 = TxEip7702 {
        chain_id: CHAIN,
        nonce: n + 3,
        gas_limit: 100_000,
        to,
        authorization_list: vec![auth.into_signed(sig)],
        ..Default::default()
    };
    let h3 = send(&rpc, &sign_raw(&key, tx7702));
    for h in [&h0, &h1, &h2, &h3] {
        let r = rpc.wait_receipt(h, SECS);
        assert_eq!(r["status"], "0x1", "{r}");
        assert_eq!(r["effectiveGasPrice"], "0x0", "{r}");
    }
    let types: Vec<_> = [&h0, &h1, &h2, &h3]
        .iter()
        .map(|h| rpc.call("eth_getTransactionByHash", json!([h]))["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["0x0", "0x1", "0x2", "0x4"]);
    let after = U256::from_str_radix(
        rpc.call("eth_getBalance", json!([me, "latest"])).as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    assert_eq!(before - after, U256::from(6), "only the values left the account; no fee");
    let code = rpc.call("eth_getCode", json!([me, "latest"]));
    assert_eq!(
        code.as_str().unwrap(),
        format!("0xef0100{}", alloy_primitives::hex::encode(target)),
        "EIP-7702 delegation"
    );
    assert_eq!(rpc.call("eth_getTransactionCount", json!([me, "latest"])), json!(format!("{:#x}", n + 5)));
}

#[test]
fn invalid_transactions_are_refused_with_clear_errors() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    let key = dev_key(2);
    let to = address!("00000000000000000000000000000000000000bb");
    let pre155 = TxLegacy {
        chain_id: None,
        nonce: 0,
        gas_price: 0,
        gas_limit: 21_000,
        to: TxKind::Call(to),
        value: U256::ZERO,
        input: Bytes::new(),
    };
    assert!(send_err(&rpc, &sign_raw(&key, pre155)).contains("replay-protected"));
    let wrong_chain = TxEip1559 { chain_id: 1, ..eip1559(0, to, 0, 0, 0) };
    assert!(send_err(&rpc, &sign_raw(&key, wrong_chain)).contains("chain id"));
    let blob = TxEip4844 {
        chain_id: CHAIN,
        gas_limit: 21_000,
        to,
        blob_versioned_hashes: vec![Default::default()],
        ..Default::default()
    };
    assert!(send_err(&rpc, &sign_raw(&key, blob)).contains("blob"));
    let big = TxEip1559 { gas_limit: 16_777_217, ..eip1559(0, to, 0, 0, 0) };
    assert!(send_err(&rpc, &sign_raw(&key, big)).contains("gas cap"));
    let oversize =
        TxEip1559 { gas_limit: 16_000_000, input: vec![1u8; 200_000].into(), ..eip1559(0, to, 0, 0, 0) };
    assert!(send_err(&rpc, &sign_raw(&key, oversize)).contains("oversized"));
    let low_gas = TxEip1559 { gas_limit: 20_000, ..eip1559(0, to, 0, 0, 0) };
    assert!(send_err(&rpc, &sign_raw(&key, low_gas)).contains("intrinsic gas too low"));
    assert!(send_err(&rpc, "0x02deadbeef").contains("invalid transaction encoding"));
    // A signature whose s is in the upper half of the curve order (EIP-2).
    let good = sign_raw(&key, eip1559(0, to, 0, 0, 0));
    let mut bytes = alloy_primitives::hex::decode(&good).unwrap();
    let n = bytes.len();
    bytes[n - 32] = 0xff;
    let msg = send_err(&rpc, &format!("0x{}", alloy_primitives::hex::encode(&bytes)));
    assert!(msg.contains("signature"), "{msg}");
    // Nonce already used.
    let h = send(&rpc, &good);
    rpc.wait_receipt(&h, SECS);
    assert!(send_err(&rpc, &good).contains("nonce too low"));
}

#[test]
fn nonce_gaps_wait_until_filled_and_fees_stay_zero() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    let key = dev_key(3);
    let me = key.address();
    let to = address!("00000000000000000000000000000000000000cc");
    let late = send(&rpc, &sign_raw(&key, eip1559(1, to, 1, 0, 0)));
    let start = rpc.block_number();
    rpc.wait_block(start + 2, SECS);
    assert!(rpc.call("eth_getTransactionReceipt", json!([late])).is_null(), "a gapped transaction waits");
    let content = rpc.call("eth_getTransactionByHash", json!([late]));
    assert!(content["blockNumber"].is_null());
    assert_eq!(nonce(&rpc, me), 0, "the pending nonce stops at the gap");
    let first = send(&rpc, &sign_raw(&key, eip1559(0, to, 1, 0, 0)));
    rpc.wait_receipt(&first, SECS);
    rpc.wait_receipt(&late, SECS);

    // Load a block and check the base fee does not move.
    let n0 = nonce(&rpc, me);
    let mut last = String::new();
    for i in 0..200 {
        last = send(&rpc, &sign_raw(&key, eip1559(n0 + i, to, 1, 1, 1)));
    }
    let r = rpc.wait_receipt(&last, SECS);
    let block = rpc.call("eth_getBlockByNumber", json!([r["blockNumber"], false]));
    assert_eq!(block["baseFeePerGas"], "0x0");
    assert_eq!(rpc.call("eth_gasPrice", json!([])), "0x0");
    assert_eq!(rpc.call("eth_maxPriorityFeePerGas", json!([])), "0x0");
    let fh = rpc.call("eth_feeHistory", json!(["0x4", "latest", [25.0, 75.0]]));
    assert!(fh["baseFeePerGas"].as_array().unwrap().iter().all(|v| v == "0x0"), "{fh}");
    assert!(
        fh["reward"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).all(|v| v == "0x0"),
        "{fh}"
    );
    assert_eq!(fh["baseFeePerGas"].as_array().unwrap().len(), 5);
}

#[test]
fn block_hash_is_keccak_of_the_header_rebuilt_from_rpc_json() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    let key = dev_key(4);
    let h = send(&rpc, &sign_raw(&key, eip1559(0, Address::repeat_byte(0xdd), 5, 0, 0)));
    let r = rpc.wait_receipt(&h, SECS);
    for tag in [r["blockNumber"].clone(), json!("0x0"), json!("latest")] {
        let v = rpc.call("eth_getBlockByNumber", json!([tag, true]));
        let block: alloy_rpc_types_eth::Block =
            serde_json::from_value(v.clone()).expect("alloy parses our block JSON");
        assert_eq!(block.header.inner.hash_slow(), block.header.hash, "keccak(rlp(header)) for {tag}");
        assert_eq!(v["mixHash"], format!("0x{}", "00".repeat(32)));
        assert!(v["totalDifficulty"].is_string());
    }
    let signers = rpc.call("clique_getSigners", json!([]));
    assert_eq!(signers.as_array().unwrap().len(), 1);
}

#[test]
fn state_is_queryable_at_pinned_block_numbers_and_pruned_beyond_the_window() {
    let node = NodeProcess::dev(&["--period", "1", "--state-history", "4"]);
    let rpc = node.rpc();
    let key = dev_key(5);
    let to = Address::repeat_byte(0xee);
    let h = send(&rpc, &sign_raw(&key, eip1559(0, to, 1000, 0, 0)));
    let r = rpc.wait_receipt(&h, SECS);
    let mined = hex_u64(&r["blockNumber"]);
    let before = format!("{:#x}", mined - 1);
    let at = format!("{mined:#x}");
    assert_eq!(rpc.call("eth_getBalance", json!([to, before])), "0x0");
    assert_eq!(rpc.call("eth_getBalance", json!([to, at])), "0x3e8");
    assert_eq!(rpc.call("eth_getTransactionCount", json!([key.address(), before])), "0x0");
    assert_eq!(rpc.call("eth_getTransactionCount", json!([key.address(), {"blockNumber": at}])), "0x1");
    let hash = rpc.call("eth_getBlockByNumber", json!([at, false]))["hash"].clone();
    assert_eq!(rpc.call("eth_getBalance", json!([to, {"blockHash": hash}])), "0x3e8");
    // Past the 4-block window the state of `mined - 1` is pruned, with a clear error.
    rpc.wait_block(mined + 12, Duration::from_secs(30));
    let e = rpc.try_call("eth_getBalance", json!([to, before])).expect_err("pruned");
    assert!(e.message.contains("--archive"), "{e:?}");
    assert_eq!(rpc.call("eth_getBalance", json!([to, "latest"])), "0x3e8");
}

/// The `p2pe_state_history_lookups_total` counter of a node serving metrics on `port`.
fn history_lookups(port: u16) -> u64 {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics")).unwrap().text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("p2pe_state_history_lookups_total "))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .expect("the history lookups counter is served")
}

/// An archive node keeps every block's state, and a client asking for an old block costs it
/// one history lookup per account however far back (the history is indexed by key), where a
/// node keeping a window looks through every later block (bounded by the window). eth_getProof
/// is served for --rpc-proof-window blocks behind the head: under and at it, over it refused.
#[test]
fn archive_keeps_every_block_state() {
    let metrics = p2pe_tests::harness::free_port();
    let addr = format!("127.0.0.1:{metrics}");
    let node = NodeProcess::dev(&[
        "--period",
        "1",
        "--state-history",
        "2",
        "--archive",
        "--metrics",
        &addr,
        "--rpc-proof-window",
        "3",
    ]);
    let rpc = node.rpc();
    let key = dev_key(8);
    let to = Address::repeat_byte(0xef);
    let h = send(&rpc, &sign_raw(&key, eip1559(0, to, 7, 0, 0)));
    let mined = hex_u64(&rpc.wait_receipt(&h, SECS)["blockNumber"]);
    rpc.wait_block(mined + 6, Duration::from_secs(30));
    assert_eq!(rpc.call("eth_getBalance", json!([to, format!("{:#x}", mined - 1)])), "0x0");
    assert_eq!(rpc.call("eth_getBalance", json!([to, format!("{mined:#x}")])), "0x7");
    assert_eq!(rpc.call("eth_getBalance", json!([to, "earliest"])), "0x0");
    // An account no block changed, read at block 1 (every block since is at least 6): one lookup.
    let before = history_lookups(metrics);
    assert_eq!(rpc.call("eth_getBalance", json!([Address::repeat_byte(0x77), "0x1"])), "0x0");
    assert_eq!(history_lookups(metrics) - before, 1, "one index seek for a read {mined} blocks back");

    // eth_getProof 3 blocks back (at the window) and 2 (under) are served, 4 (over) is refused.
    let proof_at = |back: u64| loop {
        let head = hex_u64(&rpc.call("eth_blockNumber", json!([])));
        let r = rpc.try_call("eth_getProof", json!([to, [], format!("{:#x}", head - back)]));
        if hex_u64(&rpc.call("eth_blockNumber", json!([]))) == head {
            break r;
        }
    };
    for back in [2, 3] {
        let proof = proof_at(back).unwrap_or_else(|e| panic!("{back} blocks back: {e:?}"));
        assert_eq!(proof["balance"], "0x7", "{back} blocks back");
    }
    let e = proof_at(4).expect_err("4 blocks back is over the window");
    assert_eq!(e.code, -32005, "{e:?}");
    assert!(e.message.contains("--rpc-proof-window"), "{e:?}");
}

/// --rpc-proof-window is capped at 1024 blocks (what one proof may undo): 1023 and 1024 are
/// taken, 1025 is refused at start with the bound named.
#[test]
fn the_proof_window_is_capped() {
    for ok in ["1023", "1024"] {
        run_ok(Command::new(node_bin()).args(["dev", "--rpc-proof-window", ok, "--help"]));
    }
    let err = run_err(Command::new(node_bin()).args(["dev", "--rpc-proof-window", "1025", "--help"]));
    assert!(err.contains("--rpc-proof-window") && err.contains("0..=1024"), "{err}");
}

/// Without --archive and with no index by key, an old read looks the account up in every block
/// after the one asked for: the counter shows the cost the archive node's index saves.
#[test]
fn a_windowed_node_reads_an_old_block_through_every_later_block() {
    let metrics = p2pe_tests::harness::free_port();
    let addr = format!("127.0.0.1:{metrics}");
    let node = NodeProcess::dev(&["--period", "1", "--metrics", &addr]);
    let rpc = node.rpc();
    rpc.wait_block(6, Duration::from_secs(30));
    loop {
        let head = hex_u64(&rpc.call("eth_blockNumber", json!([])));
        let before = history_lookups(metrics);
        assert_eq!(rpc.call("eth_getBalance", json!([Address::repeat_byte(0x77), "0x1"])), "0x0");
        let lookups = history_lookups(metrics) - before;
        if hex_u64(&rpc.call("eth_blockNumber", json!([]))) == head {
            // The read sees the database's head, which may be one block past the published one
            // for the moment between a block's commit and its publication.
            assert!(
                lookups == head - 1 || lookups == head,
                "one lookup per block after block 1 up to the head {head}: {lookups}"
            );
            break;
        }
    }
}

#[test]
fn pool_limits_refuse_with_clear_errors() {
    // Without the market keeper, whose openSlot transactions would take room in this 4-transaction
    // pool that no block empties (period 3600).
    let node = NodeProcess::dev(&[
        "--period",
        "3600",
        "--txpool-max-per-sender",
        "3",
        "--txpool-max-total",
        "4",
        "--no-keeper",
    ]);
    let rpc = node.rpc();
    let a = dev_key(6);
    let b = dev_key(7);
    let to = Address::repeat_byte(1);
    for i in 0..3 {
        send(&rpc, &sign_raw(&a, eip1559(i, to, 1, 0, 0)));
    }
    let e =
        rpc.try_call("eth_sendRawTransaction", json!([sign_raw(&a, eip1559(3, to, 1, 0, 0))])).unwrap_err();
    assert!(e.message.contains("per-sender") || e.message.contains("too far ahead"), "{e:?}");
    send(&rpc, &sign_raw(&b, eip1559(0, to, 1, 0, 0)));
    let e =
        rpc.try_call("eth_sendRawTransaction", json!([sign_raw(&b, eip1559(1, to, 1, 0, 0))])).unwrap_err();
    assert_eq!(e.code, -32005, "{e:?}");
    assert!(e.message.contains("pool is full"), "{e:?}");
    // Replacement: same nonce, lower tip is refused; equal-or-higher replaces.
    let e = rpc.try_call("eth_sendRawTransaction", json!([sign_raw(&a, eip1559(0, to, 2, 0, 0))]));
    assert!(e.is_ok(), "equal fees replace: {e:?}");
    let e = rpc.try_call("eth_sendRawTransaction", json!([sign_raw(&a, eip1559(0, to, 2, 5, 5))]));
    assert!(e.is_ok(), "{e:?}");
    let e =
        rpc.try_call("eth_sendRawTransaction", json!([sign_raw(&a, eip1559(0, to, 3, 1, 1))])).unwrap_err();
    assert!(e.message.contains("underpriced"), "{e:?}");
}

#[test]
fn allowlist_genesis_init_run_with_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let ks = dir.path().join("keys");
    let out = run_ok(
        Command::new(node_bin())
            .args(["account", "new", "--light-kdf", "--keystore-dir"])
            .arg(&ks)
            .arg("--name")
            .arg("signer.json")
            .arg("--password-file")
            .arg(&pw),
    );
    let signer: Address = out.trim().parse().expect("address printed");
    let allowed = dev_key(0);
    let genesis = dir.path().join("genesis.json");
    run_ok(
        Command::new(node_bin())
            .args([
                "genesis",
                "--chain-id",
                "4242",
                "--period",
                "1",
                "--signer",
                &signer.to_string(),
                "--fund",
                &format!("{}=1000000000000000000", allowed.address()),
                "--allow",
                &allowed.address().to_string(),
                "--out",
            ])
            .arg(&genesis),
    );
    let datadir = dir.path().join("data");
    run_ok(Command::new(node_bin()).args(["init", "--genesis"]).arg(&genesis).arg("--datadir").arg(&datadir));
    // The same init again is a no-op; a different genesis on the same directory is refused.
    run_ok(Command::new(node_bin()).args(["init", "--genesis"]).arg(&genesis).arg("--datadir").arg(&datadir));
    let datadir_s = datadir.to_str().unwrap().to_string();
    let keystore = ks.join("signer.json");
    let node = NodeProcess::start(&[
        "run",
        "--datadir",
        &datadir_s,
        "--keystore",
        keystore.to_str().unwrap(),
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    let printed = node.stdout.lock().unwrap().join("\n");
    assert!(printed.contains(&signer.to_string()), "{printed}");
    assert!(!printed.to_lowercase().contains("private"), "no key material printed");
    let rpc = node.rpc();
    assert_eq!(rpc.call("eth_chainId", json!([])), "0x1092");
    let tx = |k: &PrivateKeySigner| {
        sign_raw(k, TxEip1559 { chain_id: 4242, ..eip1559(0, Address::repeat_byte(2), 1, 0, 0) })
    };
    let ok = send(&rpc, &tx(&allowed));
    rpc.wait_receipt(&ok, SECS);
    let e = rpc.try_call("eth_sendRawTransaction", json!([tx(&dev_key(1))])).unwrap_err();
    assert_eq!(e.code, -32003, "{e:?}");
    assert!(e.message.contains("allowlist"), "{e:?}");
    // A wrong password is refused with a clear error, and no node starts.
    std::fs::write(&pw, "wrong\n").unwrap();
    let out = Command::new(node_bin())
        .args([
            "run",
            "--datadir",
            &datadir_s,
            "--keystore",
            keystore.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot decrypt keystore"));
}

#[test]
fn malformed_requests_get_json_rpc_errors() {
    let node = NodeProcess::dev(&["--period", "1", "--rpc-max-body", "100000", "--rpc-max-batch", "50"]);
    let rpc = node.rpc();
    let (_, v) = rpc.raw("{not json").unwrap();
    assert_eq!(v["error"]["code"], -32700);
    let (_, v) = rpc.raw("[]").unwrap();
    assert_eq!(v["error"]["code"], -32600);
    let (_, v) = rpc.raw(r#"{"jsonrpc":"2.0","id":1,"method":"eth_nope"}"#).unwrap();
    assert_eq!(v["error"]["code"], -32601);
    let (_, v) =
        rpc.raw(r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[12, "latest"]}"#).unwrap();
    assert_eq!(v["error"]["code"], -32602);
    let (_, v) = rpc.raw(r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":"x"}"#).unwrap();
    assert_eq!(v["error"]["code"], -32602);
    let batch: Vec<_> = (0..51).map(|i| json!({"jsonrpc":"2.0","id":i,"method":"eth_chainId"})).collect();
    let (_, v) = rpc.raw(&serde_json::to_string(&batch).unwrap()).unwrap();
    assert_eq!(v["error"]["code"], -32005, "{v}");
    let big =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["{}"]}}"#, "a".repeat(200_000));
    let (status, v) = rpc.raw(&big).unwrap();
    assert_eq!(status, 413);
    assert_eq!(v["error"]["code"], -32005);
    // The same body chunked (no Content-Length): counted as it arrives, drained, answered the same.
    let resp = reqwest::blocking::Client::new()
        .post(&node.url)
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(big.clone().into_bytes())))
        .send()
        .expect("the over-limit answer, not a connection reset");
    assert_eq!(resp.status().as_u16(), 413);
    let v: Value = resp.json().unwrap();
    assert_eq!(v["error"]["code"], -32005);
    // A small chunked request is served.
    let resp = reqwest::blocking::Client::new()
        .post(&node.url)
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#.to_vec(),
        )))
        .send()
        .unwrap();
    assert_eq!(resp.json::<Value>().unwrap()["result"], "0x539");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (_, v) = rpc.raw(&deep).unwrap();
    assert_eq!(v["error"]["code"], -32700, "{v}");
    // The node is still serving.
    assert_eq!(rpc.call("eth_chainId", json!([])), "0x539");
}

#[test]
fn coinbase_is_the_block_signer() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    let signer = rpc.call("eth_coinbase", json!([]));
    rpc.wait_block(1, SECS); // the genesis block has no signer
                             // COINBASE PUSH0 MSTORE PUSH1 32 PUSH0 RETURN, placed with a state override.
    let probe = Address::repeat_byte(0x5c);
    let out = rpc.call(
        "eth_call",
        json!([{"to": probe}, "latest", {probe.to_string(): {"code": "0x415f5260205ff3"}}]),
    );
    let word = out.as_str().unwrap();
    assert_eq!(
        format!("0x{}", &word[26..]),
        signer.as_str().unwrap().to_lowercase(),
        "COINBASE is the Clique signer"
    );
    let signers = rpc.call("clique_getSigners", json!([]));
    assert_eq!(signers[0].as_str().unwrap().to_lowercase(), signer.as_str().unwrap().to_lowercase());
}

#[test]
fn huge_batches_and_bodies_under_default_limits() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    // 100,000 requests in one batch: over the default limit of 10,000, refused as a whole.
    let one = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#;
    let batch = format!("[{}]", vec![one; 100_000].join(","));
    let (_, v) = rpc.raw(&batch).unwrap();
    assert_eq!(v["error"]["code"], -32005, "{}", &v.to_string()[..200.min(v.to_string().len())]);
    // A 10 MB body (under the default 16 MiB limit) is read and answered with a fitting error.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":["{}"]}}"#,
        "a".repeat(10 * 1024 * 1024)
    );
    let (status, v) = rpc.raw(&big).unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert_eq!(v["id"], 7);
    // A 20 MB body is over the limit.
    let bigger = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["{}"]}}"#,
        "a".repeat(20 * 1024 * 1024)
    );
    let (status, _) = rpc.raw(&bigger).unwrap();
    assert_eq!(status, 413);
    assert_eq!(rpc.call("eth_chainId", json!([])), "0x539");
}

/// `eth_estimateGas` without a block runs where the transaction will: the next block, at the
/// earliest time it can be sealed. A call whose cost depends on the block (here: a slot write
/// only when `block.timestamp` is past the latest block's, as a meter reading does more work once
/// a slot turns final) is estimated for that block, not for the latest one, and the transaction
/// sent with the estimate succeeds.
#[test]
fn estimate_gas_defaults_to_the_next_block() {
    // Runtime: if (block.timestamp > calldata[0]) sstore(0, 1).
    const CREATION: &str = "0x6010600c60003960106000f36000354211600957005b600160005500";
    let node = NodeProcess::dev(&["--period", "0", "--no-keeper"]);
    let rpc = node.rpc();
    let contract = p2pe_tests::harness::deploy(&rpc, 0, CREATION);
    // A second later the next block's timestamp is past the head's (no block comes meanwhile:
    // with period 0 the node seals only when transactions wait).
    std::thread::sleep(Duration::from_millis(1_100));
    let latest = rpc.call("eth_getBlockByNumber", json!(["latest", false]));
    let (head, t) = (hex_u64(&latest["number"]), hex_u64(&latest["timestamp"]));
    let from = dev_key(0).address();
    let req = json!({ "from": from, "to": contract, "data": format!("0x{t:064x}") });
    let estimate = |block: Option<&str>| {
        let params = match block {
            Some(b) => json!([req, b]),
            None => json!([req]),
        };
        hex_u64(&rpc.call("eth_estimateGas", params))
    };
    let (at_latest, at_pending, default) =
        (estimate(Some("latest")), estimate(Some("pending")), estimate(None));
    assert_eq!(rpc.block_number(), head, "no block was sealed in between");
    assert!(at_latest < 25_000, "in the latest block's environment the write is skipped: {at_latest}");
    assert!(at_pending > 40_000, "in the next block's environment the slot is written: {at_pending}");
    assert_eq!(default, at_pending, "the default block is the next one");
    let tx = json!([{ "from": from, "to": contract, "data": format!("0x{t:064x}"), "gas": format!("{default:#x}") }]);
    let hash = rpc.call("eth_sendTransaction", tx);
    let receipt = rpc.wait_receipt(hash.as_str().unwrap(), SECS);
    assert_eq!(receipt["status"], "0x1", "sent with the default estimate: {receipt}");
    let slot = rpc.call("eth_getStorageAt", json!([contract, "0x0", "latest"]));
    assert_eq!(hex_u64(&slot), 1);
}
