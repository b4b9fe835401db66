//! Several real node processes on loopback forming a Clique network over libp2p
//! (`p2pe-node testnet --generate-only` writes the keys, genesis and each node's command line;
//! [`Testnet`] runs them, each node's log in the testnet directory).

use std::process::Command;
use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, TxKind, U256};
use p2pe_tests::harness::{dev_key, hex_u64, node_bin, run_ok, sign_raw, Rpc};
use p2pe_tests::net::Testnet;
use serde_json::{json, Value};

/// The tests here each run several node processes; they run one at a time so that two
/// multi-node networks never compete for the machine's cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn hash_at(rpc: &Rpc, n: u64) -> Value {
    rpc.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))["hash"].clone()
}

#[test]
fn three_signers_and_a_follower_agree_and_survive_losing_signers() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 3, 1, 1);
    for i in 0..4 {
        net.start(i);
    }
    wait("peers", 30, || (0..4).all(|i| hex_u64(&net.rpc(i).call("net_peerCount", json!([]))) >= 1));
    wait("blocks", 60, || (0..4).all(|i| net.head(i) >= 5));
    assert_eq!(net.rpc(3).call("net_listening", json!([])), json!(true));
    assert_eq!(
        net.rpc(3).call("eth_syncing", json!([])),
        json!(false),
        "in step with the signers: not syncing"
    );
    // Three signers: `safe` has ⌊3/2⌋ = 1 block on top, `finalized` 2 (README, "Block tags").
    for (tag, depth) in [("safe", 1), ("finalized", 2)] {
        let before = net.head(0);
        let n = hex_u64(&net.rpc(0).call("eth_getBlockByNumber", json!([tag, false]))["number"]);
        let after = net.head(0);
        assert!((before..=after).contains(&(n + depth)), "{tag} at {n}, head moved from {before} to {after}");
    }

    // A transaction sent to the follower reaches the signers, is sealed and seen everywhere.
    let key = dev_key(5);
    let tx = TxEip1559 {
        chain_id: 1338,
        nonce: 0,
        gas_limit: 21_000,
        to: TxKind::Call(Address::repeat_byte(9)),
        value: U256::from(77),
        ..Default::default()
    };
    let h = net.rpc(3).call("eth_sendRawTransaction", json!([sign_raw(&key, tx)]));
    let r = net.rpc(3).wait_receipt(h.as_str().unwrap(), Duration::from_secs(60));
    let n = hex_u64(&r["blockNumber"]);
    wait("agreement", 60, || {
        let hashes: Vec<Value> = (0..4).map(|i| hash_at(&net.rpc(i), n)).collect();
        hashes.iter().all(|h| *h == hashes[0] && !h.is_null())
    });
    for i in 0..3 {
        assert_eq!(net.rpc(i).call("eth_getBalance", json!([Address::repeat_byte(9), "latest"])), "0x4d");
    }

    // Kill one signer: blocks keep coming.
    net.kill(2);
    let h0 = net.head(0);
    wait("blocks without signer 2", 90, || net.head(0) >= h0 + 4 && net.head(3) >= h0 + 3);

    // Kill a second signer: one signer of three may seal at most every other block, so the
    // chain stalls (and nobody forks).
    net.kill(1);
    std::thread::sleep(Duration::from_secs(4));
    let stalled = net.head(0);
    std::thread::sleep(Duration::from_secs(5));
    assert!(net.head(0) <= stalled + 1, "one signer alone cannot keep the chain going");
    let follower_head = net.head(3);
    assert_eq!(hash_at(&net.rpc(3), follower_head), hash_at(&net.rpc(0), follower_head), "no fork");

    // One comes back: the chain resumes.
    net.start(1);
    let h1 = net.head(0);
    wait("resumed", 90, || net.head(0) >= h1 + 3 && net.head(1) >= h1 + 3);
    let top = net.head(1).min(net.head(0));
    assert_eq!(
        hash_at(&net.rpc(1), top),
        hash_at(&net.rpc(0), top),
        "the returning signer follows the chain"
    );
}

/// Transactions reach the signers however they enter the network: one accepted by a follower
/// before it had any peer (announced when the peers connect), and a burst of 4,000 sent to the
/// follower in JSON-RPC batches (gossiped in batches; each must be sealed, none lost).
#[test]
fn transactions_sent_to_a_lone_follower_or_in_a_burst_reach_the_signers() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 3, 1, 1);
    let follower = net.rpc(3);
    // Senders with keys of their own: zero-fee, zero-value transfers need no balance.
    let keys: Vec<alloy_signer_local::PrivateKeySigner> = (1u8..=41)
        .map(|i| alloy_signer_local::PrivateKeySigner::from_bytes(&alloy_primitives::keccak256([i])).unwrap())
        .collect();
    let transfer = |key: &alloy_signer_local::PrivateKeySigner, nonce: u64| {
        sign_raw(
            key,
            TxEip1559 {
                chain_id: 1338,
                nonce,
                gas_limit: 21_000,
                to: TxKind::Call(Address::repeat_byte(7)),
                ..Default::default()
            },
        )
    };

    // The follower alone takes a transaction.
    net.start(3);
    let early = follower.call("eth_sendRawTransaction", json!([transfer(&keys[40], 0)]));
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..3 {
        net.start(i);
    }
    wait("peers", 30, || (0..4).all(|i| hex_u64(&net.rpc(i).call("net_peerCount", json!([]))) >= 1));

    // A burst: 40 senders x 100 nonces, interleaved, in batches of 500.
    const PER_SENDER: u64 = 100;
    let raws: Vec<String> = (0..PER_SENDER)
        .flat_map(|n| keys[..40].iter().map(move |k| (k, n)))
        .map(|(k, n)| transfer(k, n))
        .collect();
    for chunk in raws.chunks(500) {
        let body: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(id, raw)| json!({"jsonrpc": "2.0", "id": id, "method": "eth_sendRawTransaction", "params": [raw]}))
            .collect();
        let (status, answers) = follower.raw(&Value::Array(body).to_string()).expect("batch");
        assert_eq!(status, 200);
        for a in answers.as_array().expect("a batch answer") {
            assert!(a.get("error").is_none(), "the follower refused a transaction: {a}");
        }
    }
    let nonce = |rpc: &Rpc, k: &alloy_signer_local::PrivateKeySigner| {
        hex_u64(&rpc.call("eth_getTransactionCount", json!([k.address(), "latest"])))
    };
    let signer0 = net.rpc(0);
    wait("the burst sealed", 180, || keys[..40].iter().all(|k| nonce(&signer0, k) == PER_SENDER));
    let r = signer0.wait_receipt(early.as_str().unwrap(), Duration::from_secs(30));
    assert_eq!(r["status"], "0x1");
    wait("the follower at the same state", 60, || {
        keys.iter().all(|k| nonce(&follower, k) == nonce(&signer0, k))
    });
}

fn admin(rpc: &Rpc, method: &str, params: Value) -> Value {
    rpc.call(method, params)
}

#[test]
fn a_partition_heals_into_one_chain_without_losing_transactions() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 3, 0, 1);
    for i in 0..3 {
        net.start(i);
    }
    wait("blocks", 60, || (0..3).all(|i| net.head(i) >= 4));
    let ids: Vec<String> = (0..3).map(|i| net.nodes[i]["peerId"].as_str().unwrap().to_string()).collect();
    // Partition {0, 1} | {2} with the nodes' own peer blocking.
    for i in 0..2 {
        admin(&net.rpc(i), "admin_blockPeer", json!([ids[2]]));
        admin(&net.rpc(2), "admin_blockPeer", json!([ids[i]]));
    }
    wait("partition", 30, || hex_u64(&net.rpc(2).call("net_peerCount", json!([]))) == 0);
    let tx = |k: u32, n: u64| {
        sign_raw(
            &dev_key(k),
            TxEip1559 {
                chain_id: 1338,
                nonce: n,
                gas_limit: 21_000,
                to: TxKind::Call(Address::repeat_byte(k as u8)),
                value: U256::from(1),
                ..Default::default()
            },
        )
    };
    let lone = net.rpc(2).call("eth_sendRawTransaction", json!([tx(6, 0)]));
    let major = net.rpc(0).call("eth_sendRawTransaction", json!([tx(7, 0)]));
    let (h_major, h_lone) = (net.head(0), net.head(2));
    wait("the majority side to keep sealing", 60, || net.head(0) >= h_major + 4);
    assert!(net.head(2) <= h_lone + 1, "one of three signers seals at most one block on its own");
    // Heal.
    for i in 0..2 {
        admin(&net.rpc(i), "admin_unblockPeer", json!([ids[2]]));
        admin(&net.rpc(2), "admin_unblockPeer", json!([ids[i]]));
    }
    wait("convergence", 90, || {
        let top = (0..3).map(|i| net.head(i)).min().unwrap();
        top > h_major + 4 && (0..3).all(|i| hash_at(&net.rpc(i), top) == hash_at(&net.rpc(0), top))
    });
    // Both transactions end up in the final chain (the lone side's one via the pool).
    for h in [&lone, &major] {
        let r = net.rpc(0).wait_receipt(h.as_str().unwrap(), Duration::from_secs(90));
        let n = hex_u64(&r["blockNumber"]);
        wait("agreement on the block", 60, || (0..3).all(|i| hash_at(&net.rpc(i), n) == r["blockHash"]));
    }
}

#[test]
fn vote_in_a_fourth_signer_then_vote_one_out() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 3, 1, 1);
    // Give the follower a key so that it can seal once voted in.
    let fdir = dir.path().join("follower-0");
    let addr = run_ok(
        Command::new(node_bin())
            .args(["account", "new", "--light-kdf", "--name", "keystore.json", "--keystore-dir"])
            .arg(&fdir)
            .arg("--password-file")
            .arg(dir.path().join("password.txt")),
    );
    let newcomer = addr.trim().to_lowercase();
    let args = net.nodes[3]["args"].as_array_mut().unwrap();
    args.extend([
        json!("--keystore"),
        json!(fdir.join("keystore.json")),
        json!("--password-file"),
        json!(dir.path().join("password.txt")),
    ]);
    for i in 0..4 {
        net.start(i);
    }
    wait("blocks", 60, || (0..4).all(|i| net.head(i) >= 3));
    let signers = |i: usize| -> Vec<String> {
        net.rpc(i)
            .call("clique_getSigners", json!([]))
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_lowercase())
            .collect()
    };
    for i in 0..3 {
        net.rpc(i).call("clique_propose", json!([newcomer, true]));
    }
    wait("the newcomer voted in everywhere", 90, || {
        (0..4).all(|i| signers(i).len() == 4 && signers(i).contains(&newcomer))
    });
    wait("the newcomer seals", 90, || {
        let snap = net.rpc(0).call("clique_getSnapshot", json!([]));
        snap["recents"]
            .as_object()
            .is_some_and(|r| r.values().any(|v| v.as_str().unwrap().to_lowercase() == newcomer))
    });
    let leaving = net.nodes[2]["signer"].as_str().unwrap().to_lowercase();
    for i in [0, 1, 3] {
        net.rpc(i).call("clique_propose", json!([leaving, false]));
    }
    wait("signer 2 voted out everywhere", 120, || {
        (0..4).all(|i| signers(i).len() == 3 && !signers(i).contains(&leaving))
    });
    let h = net.head(0);
    wait("blocks after the votes", 60, || net.head(3) >= h + 3);
}

#[test]
fn a_peer_sending_invalid_blocks_is_refused_and_banned() {
    let _serial = serial();
    use alloy_consensus::{Block, BlockBody, Header, TxEnvelope, EMPTY_ROOT_HASH};
    use alloy_rlp::Encodable;
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 1, 1, 1);
    net.start(0);
    net.start(1);
    wait("peers", 30, || hex_u64(&net.rpc(0).call("net_peerCount", json!([]))) == 1);
    let evil = net.nodes[1]["peerId"].as_str().unwrap().to_string();
    let bad_block = |variant: u8| -> String {
        let latest = net.rpc(0).call("eth_getBlockByNumber", json!(["latest", false]));
        let parent: alloy_rpc_types_eth::Block = serde_json::from_value(latest).unwrap();
        let mut header: Header = parent.header.inner.clone();
        header.parent_hash = parent.header.hash;
        header.number += 1;
        header.timestamp += 1;
        header.transactions_root = EMPTY_ROOT_HASH;
        let mut extra = vec![0u8; 32];
        extra.extend(std::iter::repeat_n(variant, 65));
        header.extra_data = extra.into();
        let block = Block::<TxEnvelope> {
            header,
            body: BlockBody { transactions: vec![], ommers: vec![], withdrawals: Some(Default::default()) },
        };
        let mut buf = Vec::new();
        block.encode(&mut buf);
        format!("0x{}", alloy_primitives::hex::encode(buf))
    };
    // Each is a block on the honest head with a seal that recovers to nobody authorised.
    for v in [1u8, 2, 3] {
        net.rpc(1).call("admin_broadcastRawBlock", json!([bad_block(v)]));
        std::thread::sleep(Duration::from_millis(300));
    }
    wait("the bad peer to be banned", 30, || {
        let peers = net.rpc(0).call("admin_peers", json!([]));
        !peers.as_array().unwrap().iter().any(|p| p["id"] == evil)
    });
    // The honest chain is untouched and keeps going.
    let h = net.head(0);
    wait("honest blocks", 30, || net.head(0) >= h + 2);
}
