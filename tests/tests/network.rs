//! Several real node processes on loopback forming a Clique network over libp2p
//! (`p2pe-node testnet --generate-only` writes the keys, genesis and each node's command line).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, TxKind, U256};
use p2pe_tests::harness::{dev_key, free_port, hex_u64, node_bin, run_ok, sign_raw, Rpc};
use serde_json::{json, Value};

struct Net {
    nodes: Vec<Value>,
    procs: Vec<Option<Child>>,
}

impl Net {
    fn generate(dir: &std::path::Path, signers: usize, followers: usize) -> Self {
        let (rpc, p2p) = (free_port(), free_port());
        // Ports are consecutive from each base; take bases far apart from what free_port gives.
        let (rpc, p2p) = (20000 + rpc % 20000, 40000 + p2p % 20000);
        run_ok(
            Command::new(node_bin())
                .args([
                    "testnet",
                    "--generate-only",
                    "--period",
                    "1",
                    "--signers",
                    &signers.to_string(),
                    "--followers",
                    &followers.to_string(),
                    "--rpc-base-port",
                    &rpc.to_string(),
                    "--p2p-base-port",
                    &p2p.to_string(),
                    "--dir",
                ])
                .arg(dir),
        );
        let nodes: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
        let procs = nodes.iter().map(|_| None).collect();
        Self { nodes, procs }
    }
    fn start(&mut self, i: usize) {
        let args: Vec<String> = self.nodes[i]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let child = Command::new(node_bin())
            .args(&args)
            .env("P2PE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.procs[i] = Some(child);
        let rpc = self.rpc(i);
        let start = Instant::now();
        while rpc.try_call("eth_blockNumber", json!([])).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "node {i} did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn rpc(&self, i: usize) -> Rpc {
        Rpc::new(self.nodes[i]["rpc"].as_str().unwrap())
    }
    fn head(&self, i: usize) -> u64 {
        self.rpc(i).block_number()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
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
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::generate(dir.path(), 3, 1);
    for i in 0..4 {
        net.start(i);
    }
    wait("peers", 30, || (0..4).all(|i| hex_u64(&net.rpc(i).call("net_peerCount", json!([]))) >= 1));
    wait("blocks", 60, || (0..4).all(|i| net.head(i) >= 5));

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
    wait("blocks without signer 2", 60, || net.head(0) >= h0 + 4 && net.head(3) >= h0 + 3);

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
