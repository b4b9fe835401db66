//! Sync that verifies before it trusts (issue 12, part 2): a lying sync peer, the `p2pe-liar`
//! process (tests/src/bin/p2pe-liar.rs, built on the node library's own protocol types, codec and
//! protocol name), attacks a real node: a signer of a one-signer `p2pe-node testnet` sealing
//! every second. The liar claims a head a million blocks ahead of the node's, with a total
//! difficulty such a chain could carry, and serves
//!
//! - garbage: about 1 MiB of bytes that are no headers, just under the header answer cap; or
//! - the node's own headers, then a valid header the node does not have (a sibling of its head,
//!   sealed with the signer's key, which the liar is given), then headers that link up but whose
//!   seals are garbage.
//!
//! Each test shows, with the node's process and its admin RPC:
//!
//! - memory stays bounded: the node's VmRSS (from /proc/PID/status) while attacked stays within
//!   [`RSS_GROWTH_LIMIT`] of what it was before (the sync code holds at most one header answer,
//!   1 MiB, plus 1 MiB of verified headers for a peer without valid headers; the million blocks
//!   claimed would be about 600 MB of headers alone);
//! - no canonical block is reverted: every block the node had, and every head it reached during
//!   the attack, is still its block at that height, and its log has no reorganisation;
//! - the liar is banned: it keeps redialling, and `admin_peers` never lists it again, while its
//!   log names the offence;
//! - sealing goes on throughout: the head never stands still for more than 3 s.
//!
//! A third test plays a liar that stalls: it answers the status but never a header request. A
//! follower that has only the liar to sync from moves on to the honest signer when the request
//! times out (`REQUEST_TIMEOUT`, 15 s), leaves the liar alone for `STALL_BACKOFF` (30 s) while the
//! signer is there, and does not punish it (slowness is not an offence).
//!
//! Each test takes 15 to 30 s in a debug build.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2pe_tests::harness::{hex_u64, node_bin, Rpc};
use p2pe_tests::net::{wait_for, Testnet};
use serde_json::{json, Value};

/// How much the node's resident memory may grow while attacked.
const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;

/// A running `p2pe-liar`, killed when dropped.
struct Liar {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    peer: String,
}

impl Liar {
    fn start(dial: &str, mode: &str, key_file: Option<&std::path::Path>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2pe-liar"));
        cmd.args(["--dial", dial, "--mode", mode]).stdout(Stdio::piped());
        if let Some(k) = key_file {
            cmd.arg("--key-file").arg(k);
        }
        let mut child = cmd.spawn().expect("start p2pe-liar");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(id) = line.strip_prefix("peer ") {
                        let _ = tx.send(id.to_string());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let peer = rx.recv_timeout(Duration::from_secs(30)).expect("the liar prints its peer id");
        Self { child, lines, peer }
    }

    /// How many lines it printed that start with `prefix`.
    fn count(&self, prefix: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.starts_with(prefix)).count()
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of a process, in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB")
}

fn hash_at(rpc: &Rpc, n: u64) -> Value {
    rpc.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))["hash"].clone()
}

fn listed(rpc: &Rpc, peer: &str) -> bool {
    rpc.call("admin_peers", json!([]))
        .as_array()
        .expect("admin_peers is a list")
        .iter()
        .any(|p| p["id"] == peer)
}

/// What the node did while it was attacked.
struct Watch {
    rss_before: u64,
    rss_max: u64,
    /// Height → hash of every head seen, and of every block before the attack.
    seen: std::collections::BTreeMap<u64, Value>,
    longest_stall: Duration,
    blocks_sealed: u64,
}

impl Watch {
    fn start(net: &Testnet, rpc: &Rpc) -> Self {
        let pid = net.pid(0).expect("the node runs");
        // The baseline: the largest of a few samples over two seconds of ordinary sealing.
        let mut rss_before = 0;
        for _ in 0..10 {
            rss_before = rss_before.max(vm_rss_kib(pid));
            std::thread::sleep(Duration::from_millis(200));
        }
        let head = rpc.block_number();
        let seen = (1..=head).map(|n| (n, hash_at(rpc, n))).collect();
        Self { rss_before, rss_max: rss_before, seen, longest_stall: Duration::ZERO, blocks_sealed: 0 }
    }

    /// Samples memory and the head every 200 ms for `secs`, or until `done` holds.
    fn run(&mut self, net: &Testnet, rpc: &Rpc, secs: u64, mut done: impl FnMut() -> bool) -> bool {
        let pid = net.pid(0).expect("the node runs");
        let start = Instant::now();
        let first = rpc.block_number();
        let (mut last, mut since) = (first, Instant::now());
        while start.elapsed() < Duration::from_secs(secs) {
            self.rss_max = self.rss_max.max(vm_rss_kib(pid));
            let head = rpc.block_number();
            if head > last {
                (last, since) = (head, Instant::now());
                self.seen.insert(head, hash_at(rpc, head));
            }
            self.longest_stall = self.longest_stall.max(since.elapsed());
            if done() {
                self.blocks_sealed += last - first;
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.blocks_sealed += last - first;
        false
    }

    /// Every block seen is still the node's block at its height.
    fn assert_nothing_reverted(&self, rpc: &Rpc, log: &str) {
        for (n, hash) in &self.seen {
            assert_eq!(&hash_at(rpc, *n), hash, "block {n} was replaced");
        }
        assert!(!log.contains("reorganised"), "the node reorganised:\n{log}");
    }
}

/// Runs `mode` against a one-signer network and checks the four properties.
fn attack(mode: &str, with_key: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 1, 0, 1);
    net.start(0);
    let rpc = net.rpc(0);
    wait_for("the signer to seal block 3", Duration::from_secs(30), || rpc.block_number() >= 3);
    let key_file = with_key.then(|| {
        let path = dir.path().join("liar.key");
        let password = std::fs::read_to_string(dir.path().join("password.txt")).unwrap();
        let keystore = dir.path().join("signer-0").join("keystore.json");
        let signer = alloy_signer_local::PrivateKeySigner::decrypt_keystore(
            keystore,
            password.lines().next().unwrap_or_default(),
        )
        .unwrap();
        let key = alloy_primitives::B256::from_slice(&signer.credential().to_bytes());
        std::fs::write(&path, key.to_string()).unwrap();
        path
    });
    let mut watch = Watch::start(&net, &rpc);
    let liar = Liar::start(net.nodes[0]["p2p"].as_str().expect("p2p address"), mode, key_file.as_deref());

    // The liar connects, lies, is punished and cut off.
    let cut_off = watch.run(&net, &rpc, 30, || liar.count("closed") >= 1);
    let log = std::fs::read_to_string(net.log_path(0)).unwrap();
    assert!(cut_off, "the liar was never cut off; liar: {:?}\nnode log:\n{log}", liar.lines.lock().unwrap());
    assert!(liar.count("answered headers") >= 1, "the node asked the liar for headers");
    // Banned, not just disconnected: it keeps redialling and is never listed again.
    let closed = liar.count("closed");
    let mut listed_again = false;
    watch.run(&net, &rpc, 8, || {
        listed_again |= listed(&rpc, &liar.peer);
        false
    });
    assert!(!listed_again, "the liar was admitted again after its offence");
    assert!(liar.count("closed") >= closed + 2, "the liar kept redialling and was refused each time");
    let log = std::fs::read_to_string(net.log_path(0)).unwrap();
    let offence = log
        .lines()
        .find(|l| l.contains("sync peer misbehaved") && l.contains(&liar.peer))
        .unwrap_or_else(|| panic!("no offence logged for the liar {}:\n{log}", liar.peer));
    assert!(offence.contains("BadBranch"), "{offence}");
    if with_key {
        // The valid header passed the check; the first garbage one after it is the offence.
        let lines = liar.lines.lock().unwrap().clone();
        let valid: Vec<u64> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("valid header "))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        assert!(!valid.is_empty(), "the liar served a valid header: {lines:?}");
        assert!(
            valid.iter().any(|n| offence.contains(&format!("its header {} ", n + 1))),
            "the offence is the header after a valid one {valid:?}: {offence}"
        );
    }

    watch.assert_nothing_reverted(&rpc, &log);
    let growth = watch.rss_max.saturating_sub(watch.rss_before);
    println!(
        "{mode}: VmRSS {} KiB before, at most {} KiB while attacked (growth {growth} KiB, limit {} KiB); \
         {} blocks sealed, longest wait for a block {:?}; offence: {offence}",
        watch.rss_before, watch.rss_max, RSS_GROWTH_LIMIT_KIB, watch.blocks_sealed, watch.longest_stall
    );
    assert!(growth <= RSS_GROWTH_LIMIT_KIB, "VmRSS grew by {growth} KiB");
    assert!(watch.longest_stall < Duration::from_secs(3), "sealing stalled for {:?}", watch.longest_stall);
    assert!(watch.blocks_sealed >= 5, "sealing went on: {} blocks", watch.blocks_sealed);
    assert_eq!(hex_u64(&rpc.call("net_peerCount", json!([]))), 0, "the liar is not a peer");
}

#[test]
fn a_liar_claiming_a_head_a_million_blocks_ahead_and_serving_garbage_is_banned() {
    attack("far-garbage", false);
}

#[test]
fn a_liar_serving_a_valid_header_then_garbage_reverts_nothing_and_is_banned() {
    attack("valid-then-garbage", true);
}

#[test]
fn a_follower_moves_on_from_a_peer_that_stalls() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 1, 1, 1);
    // The signer makes a few blocks, then stops: the follower starts with the liar alone.
    net.start(0);
    wait_for("the signer to seal block 5", Duration::from_secs(30), || net.head(0) >= 5);
    net.kill(0);
    net.start(1);
    let follower = net.rpc(1);
    let liar = Liar::start(net.nodes[1]["p2p"].as_str().expect("p2p address"), "stall", None);
    wait_for("the follower to ask the liar for headers", Duration::from_secs(30), || {
        liar.count("asked headers") >= 1
    });
    let stalled_at = Instant::now();
    net.start(0);
    let target = net.head(0);
    wait_for("the follower to sync from the signer", Duration::from_secs(40), || {
        follower.block_number() >= target
    });
    let caught_up = stalled_at.elapsed();
    let log = std::fs::read_to_string(net.log_path(1)).unwrap();
    println!("the follower caught up {caught_up:?} after the liar stalled its header request");
    // It waited for the stalled request (15 s), not for ever, and then took the honest peer.
    assert!(caught_up >= Duration::from_secs(13), "the stalled request held the sync for {caught_up:?}");
    assert!(caught_up < Duration::from_secs(28), "{caught_up:?}");
    assert!(
        log.lines().any(|l| l.contains("sync peer stalled") && l.contains(&liar.peer)),
        "the follower logs the stall:\n{log}"
    );
    // Within the backoff the liar is not asked again, though it still claims the better chain.
    let asked = liar.count("asked headers");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(liar.count("asked headers"), asked, "the stalling peer was asked again within the backoff");
    assert_eq!(asked, 1);
    // Stalling is no offence: the liar is still a listed peer, with its score intact.
    let peers = follower.call("admin_peers", json!([]));
    let entry = peers.as_array().unwrap().iter().find(|p| p["id"] == liar.peer.as_str()).cloned();
    assert_eq!(entry.map(|p| p["score"].clone()), Some(json!(0)), "{peers}");
    assert!(follower.block_number() > target, "the follower keeps following the signer");
}
