//! One block, one hash: the malleated twin of a block's seal (r, n − s, 1 − v), which recovers to
//! the same signer without any key, is refused over gossip and by `p2pe-node import`; and on a
//! full fork-choice tie (two blocks at one height by one signer) the node keeps the one it has; and
//! a signer that gossips blocks with its valid seal over invalid contents stalls no height and is
//! banned.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{hex, B256, U256};
use alloy_rlp::{Decodable, Encodable};
use p2pe_node::blockchain::{Blockchain, ChainOptions};
use p2pe_node::chain::{build_genesis, ChainSpec, GenesisParams};
use p2pe_node::consensus::clique::{fork_choice::Tip, recover_sealer, seal_hash};
use p2pe_node::crypto::{recover_signer_unchecked, SigningKey, SECP256K1N_HALF};
use p2pe_node::primitives::Block;
use p2pe_node::storage::Store;
use p2pe_node::txpool::{PoolConfig, TxPool};
use p2pe_tests::harness::{node_bin, run_err, run_ok, Rpc};
use p2pe_tests::net::{wait_for, Testnet};
use serde_json::{json, Value};

/// The block with its seal replaced by the seal's high-s twin: s → n − s, recovery id flipped.
fn malleate(block: &Block) -> Block {
    let mut twin = block.clone();
    let mut extra = twin.header.extra_data.to_vec();
    let at = extra.len() - 65;
    let order = SECP256K1N_HALF * U256::from(2) + U256::from(1);
    let s = U256::from_be_slice(&extra[at + 32..at + 64]);
    extra[at + 32..at + 64].copy_from_slice(&(order - s).to_be_bytes::<32>());
    extra[at + 64] = 1 - extra[at + 64];
    twin.header.extra_data = extra.into();
    twin
}

fn decode(raw: &Value) -> Block {
    let bytes = hex::decode(raw.as_str().expect("raw block hex")).expect("hex");
    Block::decode(&mut bytes.as_slice()).expect("a block")
}

fn encode(block: &Block) -> Vec<u8> {
    let mut buf = Vec::new();
    block.encode(&mut buf);
    buf
}

/// The twin really is a second seal by the same signer (so refusing it is the rule at work, not
/// a broken signature).
fn assert_is_a_true_twin(block: &Block, twin: &Block) {
    let seal =
        |b: &Block| -> [u8; 65] { b.header.extra_data[b.header.extra_data.len() - 65..].try_into().unwrap() };
    let hash = seal_hash(&block.header).unwrap();
    assert_eq!(seal_hash(&twin.header).unwrap(), hash, "the twin signs the same header");
    assert_eq!(
        recover_signer_unchecked(&seal(twin), &hash).unwrap(),
        recover_sealer(&block.header).unwrap(),
        "the twin's seal recovers to the block's signer"
    );
    assert_ne!(twin.header.hash_slow(), block.header.hash_slow(), "the twin has another hash");
}

fn score_of(rpc: &Rpc, peer: &str) -> Option<i64> {
    let peers = rpc.call("admin_peers", json!([]));
    peers.as_array()?.iter().find(|p| p["id"] == peer).and_then(|p| p["score"].as_i64())
}

#[test]
fn a_high_s_twin_of_a_block_is_refused_over_gossip_and_by_import() {
    let dir = tempfile::tempdir().unwrap();
    let bin = node_bin();
    let mut net = Testnet::generate(&bin, dir.path(), 1, 2, 1);
    // The signer makes blocks 1 and 2, then stops: the followers start from genesis with nobody
    // to sync from, so block 1 reaches them only as the gossip below.
    net.start(0);
    wait_for("block 2", Duration::from_secs(60), || net.head(0) >= 2);
    let block1 = decode(&net.rpc(0).call("debug_getRawBlock", json!(["0x1"])));
    net.kill(0);
    let twin = malleate(&block1);
    assert_is_a_true_twin(&block1, &twin);

    // Node 1 is the victim, node 2 the attacker (any peer can publish raw bytes as a block).
    net.start(1);
    net.start(2);
    let (victim, attacker) = (net.rpc(1), net.rpc(2));
    wait_for("the followers to connect", Duration::from_secs(30), || net.peers(1) >= 1 && net.peers(2) >= 1);
    let attacker_id = net.nodes[2]["peerId"].as_str().unwrap().to_string();
    // Let gossipsub learn the subscriptions before publishing.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(score_of(&victim, &attacker_id), Some(0));
    let publish = |b: &Block| {
        let raw = format!("0x{}", hex::encode(encode(b)));
        assert_eq!(attacker.call("admin_broadcastRawBlock", json!([raw])), json!(true));
    };
    publish(&twin);
    wait_for("the victim to punish the attacker", Duration::from_secs(20), || {
        score_of(&victim, &attacker_id).is_some_and(|s| s < 0)
    });
    assert_eq!(victim.block_number(), 0, "the twin was not imported");
    let log = std::fs::read_to_string(net.log_path(1)).unwrap();
    assert!(log.contains("low-s"), "the victim's log names the rule: {log}");

    // The genuine block, from the same peer, is taken: the refusal was about the seal.
    publish(&block1);
    wait_for("the victim to import block 1", Duration::from_secs(20), || victim.block_number() >= 1);
    let hash = victim.call("eth_getBlockByNumber", json!(["0x1", false]))["hash"].clone();
    assert_eq!(hash, json!(block1.header.hash_slow()));
    net.kill(1);
    net.kill(2);

    // `p2pe-node import` refuses a chain file holding the twin, naming the rule; the genuine
    // block imports.
    let fresh = dir.path().join("fresh");
    let genesis = dir.path().join("genesis.json");
    run_ok(Command::new(&bin).args(["init", "--genesis"]).arg(&genesis).arg("--datadir").arg(&fresh));
    let twin_file = dir.path().join("twin.rlp");
    std::fs::write(&twin_file, encode(&twin)).unwrap();
    let err = run_err(Command::new(&bin).args(["import", "--datadir"]).arg(&fresh).arg(&twin_file));
    assert!(err.contains("block 1") && err.contains("low-s"), "{err}");
    let good_file = dir.path().join("good.rlp");
    std::fs::write(&good_file, encode(&block1)).unwrap();
    let out = run_ok(Command::new(&bin).args(["import", "--datadir"]).arg(&fresh).arg(&good_file));
    assert!(out.contains("Imported 1 blocks"), "{out}");
}

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&B256::repeat_byte(b)).unwrap()
}

/// Two chains of the same genesis (in-process, the node's own chain code) where signer A seals
/// block 1 at different times: a full tie under EIP-3436's rules 1–3. Each keeps its own block
/// whichever hash is lower, and a heavier branch still wins.
#[test]
fn on_a_full_tie_the_node_keeps_the_block_it_saw_first() {
    let (a, b) = (key(0xa1), key(0xb2));
    let t0 = p2pe_node::blockchain::unix_now() - 1_000;
    let params = GenesisParams {
        chain_id: 57,
        signers: vec![a.address(), b.address()],
        timestamp: t0,
        ..Default::default()
    };
    let json = serde_json::to_string(&build_genesis(&params)).unwrap();
    let spec = ChainSpec::from_json(&json).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        let mut store = Store::open(&dir.path().join(name), None).unwrap();
        store.init_genesis(&spec, &json).unwrap();
        let opts = ChainOptions { read_connections: 1, ..Default::default() };
        Blockchain::open(spec.clone(), store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap()
    };
    let (x, y) = (open("x"), open("y"));
    let bx = x.seal_next(&a, t0 + 1, None).unwrap().expect("A may seal block 1");
    let by = y.seal_next(&a, t0 + 2, None).unwrap().expect("A may seal block 1");
    assert_ne!(bx.hash, by.hash);
    let tip = |chain: &Blockchain| {
        let head = chain.head();
        Tip {
            total_difficulty: head.total_difficulty,
            number: head.header.number,
            hash: head.hash,
            signer: recover_sealer(&head.header).unwrap(),
        }
    };
    let (tx, ty) = (tip(&x), tip(&y));
    assert_eq!((tx.total_difficulty, tx.number, tx.signer), (ty.total_difficulty, ty.number, ty.signer));
    assert!(!x.prefers(&ty), "x keeps its block 1 ({} vs {})", tx.hash, ty.hash);
    assert!(!y.prefers(&tx), "y keeps its block 1 ({} vs {})", ty.hash, tx.hash);
    // One more block on y makes it heavier: x would switch.
    y.seal_next(&b, t0 + 3, None).unwrap().expect("B may seal block 2");
    assert!(x.prefers(&tip(&y)));
}

/// The dishonest signer of SECURITY.md's "signer that seals invalid blocks" row, against real node
/// processes. Three signers; the third never runs: its key is the attacker's, played by hostile
/// peers ([`p2pe_tests::probe::Probe`]) that gossip, for each new head, a block on it with the
/// attacker's valid seal and invalid contents. Such a block is announced as arriving while it is
/// imported, and an out-of-turn sealer yields to it, so if that mark outlived the import, the
/// heights where the absent signer is in turn (which the others seal out of turn) would never be
/// sealed. The test shows: the chain goes on through those heights while the attack runs, each
/// attacking peer is banned, and no invalid block is taken.
#[test]
fn a_signer_gossiping_invalid_blocks_stalls_no_height_and_is_banned() {
    use p2pe_node::network::compact::GossipBlock;
    use p2pe_node::network::protocol::blocks_topic;
    use p2pe_tests::probe::Probe;

    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 3, 0, 1);
    net.set_log("warn,p2pe_node::network=warn");
    let keys = net.signer_keys();
    let attacker = keys[2].clone();
    let mut sorted: Vec<_> = keys.iter().map(|k| k.address()).collect();
    sorted.sort();
    let attackers_turn = |n: u64| sorted[(n % 3) as usize] == attacker.address();
    net.start(0);
    net.start(1);
    wait_for("the two honest signers to connect", Duration::from_secs(30), || net.peers(0) >= 1);
    wait_for("block 2", Duration::from_secs(30), || net.head(0) >= 2);
    let rpc = net.rpc(0);
    let genesis: B256 =
        rpc.call("eth_getBlockByNumber", json!(["0x0", false]))["hash"].as_str().unwrap().parse().unwrap();
    let topic = blocks_topic(1338, &genesis);

    // A block on `head` sealed by the attacker: a valid seal over a wrong state root.
    let invalid_on = |head: &Block| {
        let mut header = head.header.clone();
        header.parent_hash = head.header.hash_slow();
        header.number += 1;
        header.timestamp += 1;
        header.difficulty = U256::from(if attackers_turn(header.number) { 2 } else { 1 });
        header.gas_used = 0;
        header.transactions_root = alloy_trie::EMPTY_ROOT_HASH;
        header.receipts_root = alloy_trie::EMPTY_ROOT_HASH;
        header.logs_bloom = Default::default();
        header.state_root = B256::repeat_byte(0xbd);
        header.extra_data = vec![0u8; 32 + 65].into();
        p2pe_node::consensus::clique::sign_header(&mut header, &attacker).unwrap();
        Block {
            header,
            body: alloy_consensus::BlockBody { withdrawals: Some(Default::default()), ..Default::default() },
        }
    };

    let start = net.head(0);
    let mut sent = 0;
    let mut probes = Vec::new();
    // One identity after another, each attacking until it is banned (a banned identity's
    // messages no longer arrive, so the attacker needs a new one).
    for seed in 40..44u8 {
        let probe = Probe::new(seed);
        for i in 0..2 {
            let id: libp2p::PeerId = net.nodes[i]["peerId"].as_str().unwrap().parse().unwrap();
            probe.dial(&net.nodes[i]["p2p"].as_str().unwrap().parse().unwrap(), id);
        }
        probe.subscribe(&topic);
        std::thread::sleep(Duration::from_millis(1_500));
        let until = std::time::Instant::now() + Duration::from_secs(4);
        let mut last = 0;
        while std::time::Instant::now() < until {
            let n = rpc.block_number();
            if n != last {
                last = n;
                let head = decode(&rpc.call("debug_getRawBlock", json!([format!("{n:#x}")])));
                probe.publish(&topic, GossipBlock::Full(invalid_on(&head)).encode());
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        probes.push(probe);
    }
    let end = net.head(0);
    let attacked: Vec<u64> = (start + 1..=end).filter(|n| attackers_turn(*n)).collect();
    assert!(
        attacked.len() >= 3,
        "heights where the absent signer is in turn were sealed out of turn during the attack: \
         {attacked:?} (blocks {start}..={end})"
    );
    assert!(sent >= 8, "the attack sent {sent} blocks");
    for n in &attacked {
        let b = rpc.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]));
        assert_eq!(b["difficulty"], json!("0x1"), "block {n} is an honest out-of-turn block");
        assert_ne!(b["stateRoot"], json!(B256::repeat_byte(0xbd)), "block {n} is not the attacker's");
    }
    // Every attacking identity was banned by both honest signers.
    for i in 0..2 {
        let banned = net.log_lines(i, "peer banned");
        for p in &probes {
            let id = p.peer_id.to_string();
            assert!(
                banned.iter().any(|l| l.contains(&id)),
                "node {i} banned attacker {id}; its bans: {banned:?}"
            );
        }
        assert!(!net.log_lines(i, "invalid block from peer").is_empty());
    }
    wait_for("the chain to go on after the attack", Duration::from_secs(20), || net.head(0) >= end + 3);
    assert!(net.head(0).abs_diff(net.head(1)) <= 1, "the honest signers agree");
}
