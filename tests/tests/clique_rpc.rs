//! The `clique_` namespace against real nodes: proposals voted into headers by the sealer,
//! snapshots (geth's JSON) before and after a vote, the tally with three signers, and
//! `clique_status`.
//!
//! Both chains run with `--period 0` (a block only when a transaction waits), so the blocks a
//! test sees are the ones it asked for. Once a vote leaves a lone sealing node among two or
//! more signers, the "signed recently" rule stops it, and the tests check that too rather than
//! wait for blocks that cannot come.

use std::process::Command;
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use p2pe_tests::harness::{dev_key, hex_u64, node_bin, run_ok, NodeProcess, Rpc};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(30);
const NONCE_AUTH: &str = "0xffffffffffffffff";
const NONCE_DROP: &str = "0x0000000000000000";

fn lower(a: &Address) -> String {
    format!("{a:#x}")
}

/// Sends a value transfer from dev account `from` and returns its receipt.
fn send(rpc: &Rpc, from: u32) -> Value {
    let to = dev_key(9).address();
    let h =
        rpc.call("eth_sendTransaction", json!([{"from": dev_key(from).address(), "to": to, "value": "0x1"}]));
    rpc.wait_receipt(h.as_str().unwrap(), SECS)
}

fn block(rpc: &Rpc, number: u64) -> Value {
    rpc.call("eth_getBlockByNumber", json!([format!("{number:#x}"), false]))
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn propose_adds_a_signer_on_a_single_signer_dev_chain() {
    // Without the market keeper: with period 0 its openSlot transactions would seal blocks at
    // moments of their own, and the test needs the vote in the block of its own transaction.
    let node = NodeProcess::dev(&["--period", "0", "--no-keeper", "--rpc-admin"]);
    let rpc = node.rpc();
    let signers = rpc.call("clique_getSigners", json!([]));
    let a: Address = signers[0].as_str().unwrap().parse().unwrap();
    assert_eq!(signers.as_array().unwrap().len(), 1);
    let x = Address::repeat_byte(0x77);
    let stranger = Address::repeat_byte(0x55);

    // Proposals: geth's map of address → authorize.
    assert_eq!(rpc.call("clique_proposals", json!([])), json!({}));
    // Dropping a non-signer and adding an existing signer are already in effect: never voted.
    assert_eq!(rpc.call("clique_propose", json!([stranger, false])), Value::Null);
    assert_eq!(rpc.call("clique_propose", json!([a, true])), Value::Null);
    let r1 = send(&rpc, 0);
    let b1 = block(&rpc, hex_u64(&r1["blockNumber"]));
    assert_eq!(b1["miner"], lower(&Address::ZERO), "no valid proposal, no vote: {b1}");
    assert_eq!(b1["nonce"], NONCE_DROP);

    rpc.call("clique_propose", json!([x, true]));
    assert_eq!(
        rpc.call("clique_proposals", json!([])),
        json!({lower(&a): true, lower(&x): true, lower(&stranger): false})
    );
    let before = rpc.call("clique_getSnapshot", json!([]));
    let r2 = send(&rpc, 0);
    let n = hex_u64(&r2["blockNumber"]);
    let b2 = block(&rpc, n);
    // The vote is in the header: coinbase = the account, nonce = add.
    assert_eq!(b2["miner"], lower(&x), "{b2}");
    assert_eq!(b2["nonce"], NONCE_AUTH);

    // With one signer a single vote passes at once.
    let mut want = vec![a, x];
    want.sort();
    assert_eq!(rpc.call("clique_getSigners", json!([])), json!(want));
    assert_eq!(rpc.call("clique_getSigners", json!([format!("{:#x}", n - 1)])), json!([a]));
    assert_eq!(rpc.call("clique_getSignersAtHash", json!([b2["hash"]])), json!(want));
    assert_eq!(rpc.call("clique_getSignersAtHash", json!([b2["parentHash"]])), json!([a]));
    let snap = rpc.call("clique_getSnapshot", json!([]));
    assert_eq!(keys(&snap), ["hash", "number", "recents", "signers", "tally", "votes"]);
    assert_eq!(snap["number"], json!(n), "number is a JSON number, as in geth");
    assert_eq!(snap["hash"], b2["hash"]);
    assert_eq!(snap["signers"], json!({lower(&a): {}, lower(&x): {}}));
    assert_eq!(snap["votes"], json!([]), "a vote that passed is cleared");
    assert_eq!(snap["tally"], json!({}));
    assert_eq!(snap["recents"][n.to_string()], lower(&a), "{snap}");
    assert_eq!(rpc.call("clique_getSnapshotAtHash", json!([b2["hash"]])), snap);
    assert_eq!(rpc.call("clique_getSnapshotAtHash", json!([b2["parentHash"]])), before);
    assert_eq!(before["signers"], json!({lower(&a): {}}));

    // Status over the blocks so far: every block in turn, all sealed by A; X is listed with 0.
    let status = rpc.call("clique_status", json!([]));
    assert_eq!(
        status,
        json!({"inturnPercent": 100, "sealerActivity": {lower(&a): n, lower(&x): 0}, "numBlocks": n})
    );

    // Discard takes the proposal out.
    assert_eq!(rpc.call("clique_discard", json!([x])), Value::Null);
    assert_eq!(rpc.call("clique_proposals", json!([])), json!({lower(&a): true, lower(&stranger): false}));

    // Two signers and only A sealing: A signed block n and may not sign n+1 (signer limit 2),
    // so a waiting transaction stays pending and the chain stops at n.
    let h = rpc.call(
        "eth_sendTransaction",
        json!([{"from": dev_key(1).address(), "to": lower(&x), "value": "0x1"}]),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rpc.block_number(), n, "the lone signer cannot seal two blocks in a row");
    assert!(rpc.call("eth_getTransactionReceipt", json!([h])).is_null());
    assert_eq!(rpc.call("txpool_status", json!([]))["pending"], "0x1");
}

#[test]
fn votes_are_tallied_with_three_signers() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "clique votes\n").unwrap();
    let ks = dir.path().join("keys");
    let out = run_ok(
        Command::new(node_bin())
            .args(["account", "new", "--light-kdf", "--keystore-dir"])
            .arg(&ks)
            .args(["--name", "a.json", "--password-file"])
            .arg(&pw),
    );
    let a: Address = out.trim().parse().expect("address printed");
    let (b, c, d) = (Address::repeat_byte(0xbb), Address::repeat_byte(0xcc), Address::repeat_byte(0xdd));
    let genesis = dir.path().join("genesis.json");
    let funded = format!("{}=1000000000000000000", dev_key(0).address());
    run_ok(
        Command::new(node_bin())
            .args(["genesis", "--chain-id", "4243", "--period", "0", "--fund", &funded])
            .args(["--signer", &a.to_string(), "--signer", &b.to_string(), "--signer", &c.to_string()])
            .arg("--out")
            .arg(&genesis),
    );
    let datadir = dir.path().join("data");
    run_ok(Command::new(node_bin()).args(["init", "--genesis"]).arg(&genesis).arg("--datadir").arg(&datadir));
    let node = NodeProcess::start(&[
        "run",
        "--datadir",
        datadir.to_str().unwrap(),
        "--keystore",
        ks.join("a.json").to_str().unwrap(),
        "--password-file",
        pw.to_str().unwrap(),
        "--rpc-admin",
    ]);
    let rpc = node.rpc();
    let mut all = vec![a, b, c];
    all.sort();
    assert_eq!(rpc.call("clique_getSigners", json!([])), json!(all));

    // Two proposals: adding D and dropping B; each block carries one of them, picked at random.
    rpc.call("clique_propose", json!([d, true]));
    rpc.call("clique_propose", json!([b, false]));
    let key = dev_key(0);
    let raw = p2pe_tests::harness::sign_raw(
        &key,
        alloy_consensus::TxLegacy {
            chain_id: Some(4243),
            nonce: 0,
            gas_price: 0,
            gas_limit: 21_000,
            to: alloy_primitives::TxKind::Call(c),
            value: alloy_primitives::U256::from(1),
            input: Default::default(),
        },
    );
    let h = rpc.call("eth_sendRawTransaction", json!([raw]));
    let receipt = rpc.wait_receipt(h.as_str().unwrap(), SECS);
    assert_eq!(receipt["blockNumber"], "0x1");
    let b1 = block(&rpc, 1);
    let (target, authorize, nonce) =
        if b1["miner"] == lower(&d) { (d, true, NONCE_AUTH) } else { (b, false, NONCE_DROP) };
    assert_eq!(b1["miner"], lower(&target), "the vote is one of the proposals: {b1}");
    assert_eq!(b1["nonce"], nonce);

    // One vote of three signers does not pass (more than N/2 = 1.5 are needed): it is tallied.
    let snap = rpc.call("clique_getSnapshot", json!(["latest"]));
    assert_eq!(snap["number"], json!(1));
    assert_eq!(snap["signers"], json!({lower(&all[0]): {}, lower(&all[1]): {}, lower(&all[2]): {}}));
    assert_eq!(snap["recents"], json!({"1": lower(&a)}));
    assert_eq!(
        snap["votes"],
        json!([{"signer": lower(&a), "block": 1, "address": lower(&target), "authorize": authorize}])
    );
    assert_eq!(snap["tally"], json!({lower(&target): {"authorize": authorize, "votes": 1}}));
    assert_eq!(rpc.call("clique_getSnapshotAtHash", json!([b1["hash"]])), snap);
    let genesis_snap = rpc.call("clique_getSnapshot", json!(["0x0"]));
    assert_eq!((genesis_snap["votes"].clone(), genesis_snap["tally"].clone()), (json!([]), json!({})));
    assert_eq!(genesis_snap["recents"], json!({}));

    let status = rpc.call("clique_status", json!([]));
    assert_eq!(status["numBlocks"], json!(1));
    assert_eq!(status["sealerActivity"], json!({lower(&a): 1, lower(&b): 0, lower(&c): 0}));
    // A is in turn at block 1 only if it is second in the sorted list (1 % 3 == 1).
    let in_turn = all.iter().position(|s| *s == a) == Some(1);
    assert_eq!(status["inturnPercent"], json!(if in_turn { 100 } else { 0 }));
    assert_eq!(b1["difficulty"], if in_turn { "0x2" } else { "0x1" });

    // A signed block 1 and the limit is 2 of 3: block 2 needs B or C, who are not running.
    let start = Instant::now();
    let h2 = rpc.call(
        "eth_sendRawTransaction",
        json!([p2pe_tests::harness::sign_raw(
            &key,
            alloy_consensus::TxLegacy {
                chain_id: Some(4243),
                nonce: 1,
                gas_price: 0,
                gas_limit: 21_000,
                to: alloy_primitives::TxKind::Call(c),
                value: alloy_primitives::U256::from(1),
                input: Default::default(),
            },
        )]),
    );
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(rpc.block_number(), 1, "A may not seal block 2");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(rpc.call("eth_getTransactionReceipt", json!([h2])).is_null());

    // Errors: unknown hash, bad arguments.
    let missing = format!("0x{}", "ab".repeat(32));
    assert_eq!(rpc.try_call("clique_getSnapshotAtHash", json!([missing])).unwrap_err().code, -32001);
    assert_eq!(rpc.try_call("clique_getSignersAtHash", json!([missing])).unwrap_err().code, -32001);
    assert_eq!(rpc.try_call("clique_propose", json!([d])).unwrap_err().code, -32602);
    assert_eq!(rpc.try_call("clique_propose", json!(["0x12", true])).unwrap_err().code, -32602);
    assert_eq!(rpc.try_call("clique_getSnapshot", json!(["0x01"])).unwrap_err().code, -32602);
}

#[test]
fn snapshots_of_pruned_blocks_are_rebuilt_from_an_older_one() {
    // Snapshots older than the state history window are pruned (all but every 1024th);
    // asking for one replays the headers from the nearest kept snapshot below it.
    // Without the market keeper, so that the first transaction is block 1's and blocks come
    // only from this test's transactions (period 0).
    let node = NodeProcess::dev(&["--period", "0", "--state-history", "2", "--no-keeper"]);
    let rpc = node.rpc();
    let r1 = send(&rpc, 0);
    assert_eq!(r1["blockNumber"], "0x1");
    let kept = rpc.call("clique_getSnapshot", json!(["0x1"]));
    let b1 = block(&rpc, 1);
    for _ in 0..5 {
        send(&rpc, 0);
    }
    assert!(rpc.block_number() >= 6);
    let rebuilt = rpc.call("clique_getSnapshot", json!(["0x1"]));
    assert_eq!(rebuilt, kept);
    assert_eq!(rebuilt["number"], json!(1));
    assert_eq!(rebuilt["hash"], b1["hash"]);
    assert_eq!(rpc.call("clique_getSnapshotAtHash", json!([b1["hash"]])), kept);
    assert_eq!(
        rpc.call("clique_getSignersAtHash", json!([b1["hash"]])),
        rpc.call("clique_getSigners", json!([]))
    );
    let signer = rpc.call("clique_getSigners", json!([]))[0].as_str().unwrap().to_lowercase();
    assert_eq!(rpc.call("clique_getSnapshot", json!(["0x3"]))["recents"], json!({"3": signer}));
}
