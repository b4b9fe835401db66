//! Peer-to-peer hygiene (issue 12, part 5), against real node processes, with
//! [`p2pe_tests::probe::Probe`] as the hostile or new peer: connection limits in total and per
//! peer, the allowlist applied before anything is served, per-peer rate limits on sync requests,
//! blocks from the near future deferred (and further ones refused) without punishing the sender,
//! and the pool given to a new peer alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{hex, Address, TxKind, B256};
use alloy_rlp::Encodable;
use libp2p::{Multiaddr, PeerId};
use p2pe_node::blockchain::{unix_now, Blockchain, ChainOptions};
use p2pe_node::chain::ChainSpec;
use p2pe_node::network::protocol::{blocks_topic, txs_topic, SyncRequest, SyncResponse};
use p2pe_node::network::txgossip::decode_batch;
use p2pe_node::storage::{Store, DEFAULT_STATE_HISTORY};
use p2pe_node::txpool::{PoolConfig, TxPool};
use p2pe_tests::harness::{hex_u64, node_bin, sign_raw, Rpc};
use p2pe_tests::net::{seed_chain, wait_for, Testnet};
use p2pe_tests::probe::{probe_key, Probe};
use serde_json::json;

/// The tests here each run node processes; one at a time, so that they never compete for cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Node `i`'s peer id and peer-network address.
fn addr(net: &Testnet, i: usize) -> (PeerId, Multiaddr) {
    let id = net.nodes[i]["peerId"].as_str().expect("peerId").parse().expect("a peer id");
    let addr = net.nodes[i]["p2p"].as_str().expect("p2p").parse().expect("a multiaddr");
    (id, addr)
}

fn peer_count(rpc: &Rpc) -> u64 {
    hex_u64(&rpc.call("net_peerCount", json!([])))
}

/// `peer`'s score on node `rpc`, if it is connected there.
fn score_of(rpc: &Rpc, peer: &str) -> Option<i64> {
    let peers = rpc.call("admin_peers", json!([]));
    peers.as_array()?.iter().find(|p| p["id"] == peer).and_then(|p| p["score"].as_i64())
}

fn is_status(r: &Result<SyncResponse, String>) -> bool {
    matches!(r, Ok(SyncResponse::Status { .. }))
}

/// Dials and asks for the node's status (the first answer may wait for the connection).
fn connect(probe: &Probe, net: &Testnet, i: usize) -> Result<SyncResponse, String> {
    let (id, a) = addr(net, i);
    probe.dial(&a, id);
    std::thread::sleep(Duration::from_millis(300));
    probe.request(id, SyncRequest::Status)
}

fn genesis_hash(rpc: &Rpc) -> B256 {
    rpc.call("eth_getBlockByNumber", json!(["0x0", false]))["hash"].as_str().unwrap().parse().unwrap()
}

#[test]
fn connections_over_the_limit_are_refused_in_total_and_per_peer() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 1, 0, 1);
    net.nodes[0]["args"].as_array_mut().unwrap().extend([json!("--max-peers"), json!("3")]);
    net.start(0);
    let rpc = net.rpc(0);
    let (node, a) = addr(&net, 0);

    // In total: just under (2), at (3) and over (4) the limit of 3.
    let probes: Vec<Probe> = (1..=4).map(Probe::new).collect();
    for (k, p) in probes[..3].iter().enumerate() {
        assert!(is_status(&connect(p, &net, 0)), "probe {} within the limit is served", k + 1);
        wait_for("the node to count the peer", Duration::from_secs(10), || peer_count(&rpc) == k as u64 + 1);
    }
    let over = connect(&probes[3], &net, 0);
    assert!(!is_status(&over), "a fourth connection over --max-peers 3 is refused: {over:?}");
    wait_for("the refused connection to close", Duration::from_secs(10), || probes[3].log().open == 0);
    assert_eq!(peer_count(&rpc), 3);
    // A freed place can be taken.
    let mut probes = probes;
    drop(probes.remove(0));
    wait_for("a place to free", Duration::from_secs(10), || peer_count(&rpc) == 2);
    let late = Probe::new(4);
    assert!(is_status(&connect(&late, &net, 0)), "a connection within the limit again is served");
    drop(late);

    // Per peer: one identity opening one, two (the limit) and three connections, while the total
    // stays under its limit of 3 (no other probe is connected).
    drop(probes);
    wait_for("the probes to leave", Duration::from_secs(10), || peer_count(&rpc) == 0);
    let many = Probe::new(9);
    for n in 1..=3 {
        many.dial(&a, node);
        // The third may be closed before or after the probe sees it established.
        wait_for("the connection", Duration::from_secs(10), || {
            let log = many.log();
            log.established + log.failed_dials == n
        });
    }
    std::thread::sleep(Duration::from_secs(1));
    let log = many.log();
    assert_eq!(log.open, 2, "two connections per peer stay, the third is closed: {log:?}");
    assert!(is_status(&many.request(node, SyncRequest::Status)), "the peer is still served");
}

#[test]
fn a_peer_not_on_the_allow_list_is_served_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 1, 0, 1);
    let allowed_id = probe_key(1).public().to_peer_id();
    net.nodes[0]["args"]
        .as_array_mut()
        .unwrap()
        .extend([json!("--p2p-allow"), json!(allowed_id.to_string())]);
    net.start(0);
    let rpc = net.rpc(0);
    let topic = blocks_topic(1338, &genesis_hash(&rpc));
    let (allowed, stranger) = (Probe::new(1), Probe::new(2));
    for p in [&allowed, &stranger] {
        p.subscribe(&topic);
    }
    // The allowed probe is served and hears new blocks: the check below can tell.
    assert!(is_status(&connect(&allowed, &net, 0)));
    wait_for("blocks gossiped to the allowed probe", Duration::from_secs(20), || {
        allowed.log().gossip.iter().any(|(t, _)| *t == topic)
    });
    // The stranger gets nothing: no status, no block, no request, no open connection.
    let answer = connect(&stranger, &net, 0);
    assert!(!is_status(&answer), "a peer not on --p2p-allow got a status: {answer:?}");
    let h = net.head(0);
    wait_for("two more blocks", Duration::from_secs(20), || net.head(0) >= h + 2);
    let log = stranger.log();
    assert!(log.gossip.is_empty() && log.pool_batches.is_empty(), "gossip reached a stranger: {log:?}");
    assert_eq!((log.sync_requests, log.open), (0, 0), "{log:?}");
    assert_eq!(peer_count(&rpc), 1);
}

/// Counts of a burst's answers: (blocks served, refused by the rate limit, failed).
fn tally(answers: &[Result<SyncResponse, String>]) -> (usize, usize, usize) {
    let served = answers.iter().filter(|a| matches!(a, Ok(SyncResponse::Blocks(_)))).count();
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Ok(SyncResponse::Error(e)) if e.contains("rate limit") || e.contains("busy")))
        .count();
    (served, refused, answers.len() - served - refused)
}

#[test]
fn a_peer_flooding_sync_requests_is_refused_while_sync_and_sealing_go_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 1, 1, 1);
    let seeded = seed_chain(&net, 300, 0);
    net.start(0);
    let signer = net.rpc(0);
    let node = addr(&net, 0).0;

    // Just under the limit: 10 requests a second for 2 s, all served.
    let honest = Probe::new(1);
    assert!(is_status(&connect(&honest, &net, 0)));
    for _ in 0..20 {
        let r = honest.request(node, SyncRequest::Blocks { from: 1, count: 64 });
        assert!(matches!(r, Ok(SyncResponse::Blocks(ref b)) if b.len() == 64), "{r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The flood: bursts of 60 range requests, as fast as answers come, for 8 s; meanwhile the
    // follower syncs 300 blocks from the same node and the signer seals.
    let flooder = Probe::new(2);
    assert!(is_status(&connect(&flooder, &net, 0)));
    let flooder_id = flooder.peer_id.to_string();
    let h0 = net.head(0);
    let started = Instant::now();
    let flood = std::thread::spawn(move || {
        let mut totals = (0, 0, 0);
        while started.elapsed() < Duration::from_secs(8) {
            let (s, r, f) = tally(&flooder.burst(node, SyncRequest::Blocks { from: 1, count: 16 }, 60));
            totals = (totals.0 + s, totals.1 + r, totals.2 + f);
            if s + r == 0 {
                // Banned: every request fails at once; do not spin.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        (totals, flooder)
    });
    net.start(1);
    let ((served, refused, failed), flooder) = flood.join().unwrap();
    eprintln!("flood: {served} served, {refused} refused, {failed} failed (banned) in 8 s");
    assert!(refused > 0, "the flood was refused in part");
    assert!(served <= 40 + 20 * 9, "at most the allowance (40 at once, 20 a second) was served: {served}");
    // Refused more than twice its allowance a second: banned.
    wait_for("the flooder to be banned", Duration::from_secs(10), || {
        score_of(&signer, &flooder_id).is_none()
    });
    assert!(!is_status(&flooder.request(node, SyncRequest::Status)), "a banned peer is not served");
    assert!(!is_status(&connect(&flooder, &net, 0)), "nor can it connect again");
    // Sealing went on and the follower caught up.
    assert!(net.head(0) >= h0 + 4, "the signer kept sealing during the flood");
    wait_for("the follower to sync", Duration::from_secs(40), || net.head(1) >= seeded.head);
    // The honest probe was never punished.
    assert_eq!(score_of(&signer, &honest.peer_id.to_string()), Some(0));
}

/// Seals block `head + 1` on a copy of `net`'s signer-0 database, at timestamp `timestamp`, with
/// signer 0's key: the block a signer whose clock reads `timestamp` would make.
fn seal_at(net: &Testnet, timestamp: u64) -> Vec<u8> {
    let sealed = LocalSealer::new(net).seal_at(&[], timestamp);
    assert_eq!(sealed.header.timestamp, timestamp);
    let mut buf = Vec::new();
    sealed.encode(&mut buf);
    buf
}

#[test]
fn a_block_from_the_near_future_is_deferred_then_imported_and_one_too_far_ahead_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 1, 2, 1);
    // Signer 0 never runs as a process: its blocks are sealed here, with a skewed clock. Both
    // followers start with its first 3 blocks.
    seed_chain(&net, 3, 0);
    for i in 1..=2 {
        for f in ["chain.sqlite", "chain.sqlite-wal", "chain.sqlite-shm"] {
            let (from, to) = (net.datadir(0).join(f), net.datadir(i).join(f));
            let _ = std::fs::remove_file(&to);
            if from.exists() {
                std::fs::copy(&from, &to).unwrap();
            }
        }
    }
    net.start(1);
    net.start(2);
    let (victim, relay) = (net.rpc(1), net.rpc(2));
    let relay_id = net.nodes[2]["peerId"].as_str().unwrap().to_string();
    wait_for("the followers to connect", Duration::from_secs(20), || peer_count(&victim) == 1);
    assert_eq!(net.head(1), 3);
    let broadcast =
        |raw: &[u8]| relay.call("admin_broadcastRawBlock", json!([format!("0x{}", hex::encode(raw))]));

    // Too far ahead (20 s, over the 5 s tolerance): refused, the relay not punished.
    broadcast(&seal_at(&net, unix_now() + 20));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(net.head(1), 3, "a block 20 s ahead is not imported");
    assert_eq!(score_of(&victim, &relay_id), Some(0), "nor is its sender punished");

    // A forged block (its seal's r altered) 3 s ahead is not deferred: invalid, the relay pays.
    let mut forged = decode_block(&seal_at(&net, unix_now() + 3));
    let mut extra = forged.header.extra_data.to_vec();
    extra[32 + 7] ^= 1;
    forged.header.extra_data = extra.into();
    let mut raw = Vec::new();
    forged.encode(&mut raw);
    broadcast(&raw);
    wait_for("the relay of a forged block punished", Duration::from_secs(10), || {
        score_of(&victim, &relay_id).is_some_and(|s| s < 0)
    });
    let punished = score_of(&victim, &relay_id).unwrap();
    assert!((-60..=-59).contains(&punished), "one invalid block (−60, decaying): {punished}");

    // Within the tolerance (4 s ahead): deferred, then imported when its time comes.
    let ts = unix_now() + 4;
    let raw = seal_at(&net, ts);
    broadcast(&raw);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(net.head(1), 3, "a block 4 s ahead is not imported before its time");
    wait_for("the deferred block", Duration::from_secs(15), || net.head(1) == 4);
    assert!(unix_now() + 1 >= ts, "imported no earlier than consensus allows");
    let b = victim.call("eth_getBlockByNumber", json!(["0x4", false]));
    assert_eq!(b["hash"].as_str().unwrap(), format!("{:#x}", block_hash(&raw)));
    let after = score_of(&victim, &relay_id).expect("the relay is still connected");
    assert!(after >= punished, "the relay of a deferred block is not punished ({punished} then {after})");
    assert_eq!(peer_count(&victim), 1);
}

fn decode_block(raw: &[u8]) -> p2pe_node::primitives::Block {
    use alloy_rlp::Decodable;
    p2pe_node::primitives::Block::decode(&mut &raw[..]).unwrap()
}

fn block_hash(raw: &[u8]) -> B256 {
    decode_block(raw).header.hash_slow()
}

fn transfer(seed: u8) -> (String, B256) {
    let key = alloy_signer_local::PrivateKeySigner::from_bytes(&alloy_primitives::keccak256([seed])).unwrap();
    let raw = sign_raw(
        &key,
        TxEip1559 {
            chain_id: 1338,
            gas_limit: 21_000,
            to: TxKind::Call(Address::repeat_byte(7)),
            ..Default::default()
        },
    );
    let hash = alloy_primitives::keccak256(hex::decode(&raw).unwrap());
    (raw, hash)
}

/// Whether any of `batches` (transaction batches) holds the transaction `hash`.
fn holds(batches: &[Vec<u8>], hash: B256) -> bool {
    batches
        .iter()
        .any(|b| decode_batch(b).is_ok_and(|txs| txs.iter().any(|t| alloy_primitives::keccak256(t) == hash)))
}

#[test]
fn the_pool_is_given_to_a_new_peer_alone() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 1, 1, 1);
    // Only the follower runs: nothing is sealed, the pool keeps what it gets.
    net.start(1);
    let rpc = net.rpc(1);
    let topic = txs_topic(1338, &genesis_hash(&rpc));
    let early = Probe::new(1);
    early.subscribe(&topic);
    assert!(is_status(&connect(&early, &net, 1)));
    std::thread::sleep(Duration::from_secs(2)); // the subscription reaches the node
    let gossiped = |p: &Probe| -> Vec<Vec<u8>> {
        p.log().gossip.into_iter().filter(|(t, _)| *t == topic).map(|(_, d)| d).collect()
    };
    // Two transactions, gossiped in two batches to the connected probe.
    let (tx1, h1) = transfer(1);
    rpc.call("eth_sendRawTransaction", json!([tx1]));
    wait_for("tx1 gossiped", Duration::from_secs(10), || holds(&gossiped(&early), h1));
    let (tx2, h2) = transfer(2);
    rpc.call("eth_sendRawTransaction", json!([tx2]));
    wait_for("tx2 gossiped", Duration::from_secs(10), || holds(&gossiped(&early), h2));
    let before = gossiped(&early).len();

    // A new peer gets the pool by request, alone.
    let late = Probe::new(2);
    late.subscribe(&topic);
    assert!(is_status(&connect(&late, &net, 1)));
    wait_for("the pool given to the new peer", Duration::from_secs(10), || {
        let b = late.log().pool_batches;
        holds(&b, h1) && holds(&b, h2)
    });
    // Two ticks of the node's 3 s timer: nothing is gossiped again to anyone.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(gossiped(&early).len(), before, "the old peer got the pool again by gossip");
    let late_gossip = gossiped(&late);
    assert!(!holds(&late_gossip, h1) && !holds(&late_gossip, h2), "the pool was gossiped to the new peer");
    // The early probe got no pool announcement of its own: it connected to an empty pool.
    assert!(early.log().pool_batches.is_empty());
}

/// A chain copied from signer 0's database, on which blocks are sealed here with signer 0's key
/// (signer 0 never runs as a process), each on the previous one.
struct LocalSealer {
    _dir: tempfile::TempDir,
    chain: Blockchain,
    key: p2pe_node::crypto::SigningKey,
}

impl LocalSealer {
    fn new(net: &Testnet) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for f in ["chain.sqlite", "chain.sqlite-wal", "chain.sqlite-shm"] {
            let from = net.datadir(0).join(f);
            if from.exists() {
                std::fs::copy(&from, dir.path().join(f)).unwrap();
            }
        }
        let spec =
            ChainSpec::from_json(&std::fs::read_to_string(net.dir.join("genesis.json")).unwrap()).unwrap();
        let store = Store::open(dir.path(), Some(DEFAULT_STATE_HISTORY)).unwrap();
        let opts = ChainOptions { read_connections: 1, ..Default::default() };
        let chain =
            Blockchain::open(spec, store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap();
        Self { _dir: dir, chain, key: net.signer_keys()[0].clone() }
    }

    /// Seals the next block holding the raw transactions `txs` (hex), now.
    fn seal(&self, txs: &[&str]) -> p2pe_node::primitives::Block {
        self.seal_at(txs, unix_now())
    }

    /// Seals the next block holding the raw transactions `txs` (hex), at `timestamp`.
    fn seal_at(&self, txs: &[&str], timestamp: u64) -> p2pe_node::primitives::Block {
        for raw in txs {
            let bytes = hex::decode(raw.trim_start_matches("0x")).unwrap();
            let tx = p2pe_node::txpool::validate_tx(&bytes, &self.chain.validation_context()).unwrap();
            self.chain.pool().add(tx, 0).unwrap();
        }
        let sealed = self.chain.seal_next(&self.key, timestamp, None).unwrap().expect("signer 0 may seal");
        assert_eq!(sealed.block.body.transactions.len(), txs.len());
        sealed.block
    }
}

/// Compact blocks (issue 15, part 6) between real processes: a follower rebuilds a gossiped
/// compact block from its pool when it holds the transactions, fetches the whole block from the
/// sender when it does not (and takes nothing when the sender cannot serve it, without punishing
/// it), and judges a rebuilt block by its header: hashes that are not the header's transactions
/// make an invalid block, whatever the pool holds.
#[test]
fn a_compact_block_is_rebuilt_from_the_pool_or_fetched_from_its_sender() {
    use p2pe_node::network::compact::{CompactBlock, GossipBlock};
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 1, 1, 1);
    seed_chain(&net, 3, 0);
    for f in ["chain.sqlite", "chain.sqlite-wal", "chain.sqlite-shm"] {
        let (from, to) = (net.datadir(0).join(f), net.datadir(1).join(f));
        let _ = std::fs::remove_file(&to);
        if from.exists() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    net.start(1);
    let victim = net.rpc(1);
    assert_eq!(net.head(1), 3);
    let topic = blocks_topic(1338, &genesis_hash(&victim));
    let probe = Probe::new(31);
    probe.subscribe(&topic);
    assert!(is_status(&connect(&probe, &net, 1)));
    std::thread::sleep(Duration::from_secs(2)); // the gossip mesh forms
    let probe_id = probe.peer_id.to_string();
    let sealer = LocalSealer::new(&net);
    let publish = |b: &GossipBlock| probe.publish(&topic, b.encode());

    // The follower's pool lacks the transaction: it asks the sender for the block by hash.
    let (t1, _) = transfer(51);
    let b4 = sealer.seal(&[&t1]);
    let mut raw = Vec::new();
    b4.encode(&mut raw);
    probe.serve_block(b4.header.hash_slow().0, raw);
    publish(&GossipBlock::of(&b4));
    wait_for("block 4, fetched", Duration::from_secs(20), || net.head(1) == 4);
    assert_eq!(probe.log().block_requests, vec![b4.header.hash_slow().0], "one request, for block 4");

    // The transaction waits in the follower's pool: rebuilt without a request.
    let (t2, h2) = transfer(52);
    victim.call("eth_sendRawTransaction", json!([format!("0x{}", t2.trim_start_matches("0x"))]));
    wait_for("t2 in the follower's pool", Duration::from_secs(10), || {
        !victim.call("eth_getTransactionByHash", json!([h2])).is_null()
    });
    let b5 = sealer.seal(&[&t2]);
    publish(&GossipBlock::of(&b5));
    wait_for("block 5, rebuilt", Duration::from_secs(20), || net.head(1) == 5);
    assert_eq!(probe.log().block_requests.len(), 1, "no request for block 5");
    assert_eq!(score_of(&victim, &probe_id), Some(0), "nothing to punish so far");

    // The sender cannot serve the body: nothing imported, nobody punished (sync finds it later).
    let (t3, _) = transfer(53);
    let b6 = sealer.seal(&[&t3]);
    publish(&GossipBlock::of(&b6));
    wait_for("the request for block 6", Duration::from_secs(20), || probe.log().block_requests.len() == 2);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(net.head(1), 5, "a body nobody served is not made up");
    assert_eq!(score_of(&victim, &probe_id), Some(0), "an unserved body is nobody's offence");

    // Hashes that are not the header's: a pooled transaction (t4) named in block 6's place.
    let (t4, h4) = transfer(54);
    victim.call("eth_sendRawTransaction", json!([format!("0x{}", t4.trim_start_matches("0x"))]));
    wait_for("t4 in the follower's pool", Duration::from_secs(10), || {
        !victim.call("eth_getTransactionByHash", json!([h4])).is_null()
    });
    let lie = CompactBlock { header: b6.header.clone(), tx_hashes: vec![h4] };
    publish(&GossipBlock::Compact(lie));
    wait_for("the sender of a false compact block punished", Duration::from_secs(20), || {
        score_of(&victim, &probe_id).is_some_and(|s| s < 0)
    });
    assert_eq!(net.head(1), 5);
    assert_eq!(probe.log().block_requests.len(), 2, "rebuilt from the pool, then refused by its header");
}
