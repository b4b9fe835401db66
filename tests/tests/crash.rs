//! Crash safety: kill -9 a sealing node at 20 random moments under load. After every kill the
//! data directory re-verifies block by block from genesis (`p2pe-node check`: seals, rules,
//! re-execution, roots) and its state root matches; after every restart the chain continues
//! from the last committed block. And a signer of a network whose block was gossiped before its
//! commit failed, then killed: the others go on, and it takes their chain when it comes back.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, TxKind, U256};
use p2pe_tests::harness::{dev_key, hex_u64, node_bin, run_ok, sign_raw, NodeProcess, Rpc};
use p2pe_tests::net::{block_id, wait_for, Testnet};
use serde_json::json;

const CHAIN: u64 = 777;

/// A small deterministic generator, so a failing run can be replayed from its printed seed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

fn load(url: Arc<std::sync::Mutex<String>>, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let keys: Vec<_> = (0..4).map(dev_key).collect();
    while !stop.load(Ordering::Relaxed) {
        let rpc = Rpc::new(&url.lock().unwrap().clone());
        let mut batch = Vec::new();
        for key in &keys {
            let Ok(n) = rpc.try_call("eth_getTransactionCount", json!([key.address(), "pending"])) else {
                break;
            };
            let n = hex_u64(&n);
            for i in 0..25 {
                let tx = TxEip1559 {
                    chain_id: CHAIN,
                    nonce: n + i,
                    gas_limit: 21_000,
                    to: TxKind::Call(Address::with_last_byte((i % 7) as u8 + 1)),
                    value: U256::from(1),
                    ..Default::default()
                };
                batch.push(json!({"jsonrpc":"2.0","id": batch.len(),"method":"eth_sendRawTransaction","params":[sign_raw(key, tx)]}));
            }
        }
        if batch.is_empty() || rpc.raw(&serde_json::to_string(&batch).unwrap()).is_err() {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A one-signer chain (period 0, four funded dev keys) initialised in `dir/data`: the `run`
/// arguments and the data directory.
fn signer_chain(dir: &std::path::Path) -> (Vec<String>, std::path::PathBuf) {
    let pw = dir.join("pw");
    std::fs::write(&pw, "pw\n").unwrap();
    let signer = run_ok(
        Command::new(node_bin())
            .args(["account", "new", "--light-kdf", "--name", "s.json", "--keystore-dir"])
            .arg(dir)
            .arg("--password-file")
            .arg(&pw),
    );
    let genesis = dir.join("genesis.json");
    let mut gen = Command::new(node_bin());
    gen.args([
        "genesis",
        "--chain-id",
        &CHAIN.to_string(),
        "--period",
        "0",
        "--signer",
        signer.trim(),
        "--out",
    ])
    .arg(&genesis);
    for i in 0..4 {
        gen.arg("--fund").arg(format!("{}=1000000000000000000000", dev_key(i).address()));
    }
    run_ok(&mut gen);
    let datadir = dir.join("data");
    run_ok(Command::new(node_bin()).args(["init", "--genesis"]).arg(&genesis).arg("--datadir").arg(&datadir));
    let args = vec![
        "run".to_string(),
        "--datadir".into(),
        datadir.to_str().unwrap().into(),
        "--keystore".into(),
        dir.join("s.json").to_str().unwrap().into(),
        "--password-file".into(),
        pw.to_str().unwrap().into(),
    ];
    (args, datadir)
}

#[test]
fn kill_dash_nine_twenty_times_under_load() {
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash test seed: {seed} (set CRASH_SEED to replay)");
    let mut rng = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let (args, datadir) = signer_chain(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut node = NodeProcess::start(&args);
    let url = Arc::new(std::sync::Mutex::new(node.url.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let loader = {
        let (url, stop, sent) = (url.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || load(url, stop, sent))
    };
    let mut last_seen = 0;
    for round in 0..20 {
        std::thread::sleep(Duration::from_millis(rng.next(200, 1500)));
        if let Ok(n) = node.rpc().try_call("eth_blockNumber", json!([])) {
            last_seen = last_seen.max(hex_u64(&n));
        }
        node.kill9();
        // Every stored block re-verifies, and the stored state is the state they produce.
        let out = run_ok(Command::new(node_bin()).args(["check", "--datadir"]).arg(&datadir));
        assert!(out.starts_with("OK: "), "round {round}: {out}");
        let stored: u64 = out["OK: ".len()..].split_whitespace().next().unwrap().parse().unwrap();
        assert!(
            stored >= last_seen,
            "round {round}: block {last_seen} was reported but only {stored} survived"
        );
        node = NodeProcess::start(&args);
        *url.lock().unwrap() = node.url.clone();
        let rpc = node.rpc();
        let resumed = rpc.block_number();
        assert!(resumed >= stored, "round {round}: restarted at {resumed}, below the committed {stored}");
        // The chain continues: new blocks are sealed on top of the recovered head.
        let start = Instant::now();
        while rpc.block_number() <= resumed {
            assert!(start.elapsed() < Duration::from_secs(30), "round {round}: chain did not continue");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    let rpc = node.rpc();
    let head = rpc.block_number();
    let mut txs = 0;
    for n in 1..=head {
        txs += rpc
            .call("eth_getBlockTransactionCountByNumber", json!([format!("{n:#x}")]))
            .as_str()
            .map(|s| u64::from_str_radix(&s[2..], 16).unwrap())
            .unwrap_or(0);
    }
    eprintln!(
        "crash test: {head} blocks, {txs} transactions included, {} sent",
        sent.load(Ordering::Relaxed)
    );
    assert!(txs > 100, "the load must have reached the chain ({txs} transactions)");
    node.kill9();
    let out = run_ok(Command::new(node_bin()).args(["check", "--datadir"]).arg(&datadir));
    assert!(out.starts_with("OK: "), "{out}");
}

/// A node stopped with SIGTERM empties its write-ahead log into `chain.sqlite`: the file alone,
/// copied into a new directory, re-verifies up to the head the node reported (README,
/// "Persistence"). Before, the log kept the latest blocks and a copy of the file lacked them.
#[test]
fn a_cleanly_stopped_node_leaves_every_block_in_chain_sqlite_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (args, datadir) = signer_chain(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut node = NodeProcess::start(&args);
    let rpc = node.rpc();
    let key = dev_key(0);
    let mut last = String::new();
    for nonce in 0..20 {
        let tx = TxEip1559 {
            chain_id: CHAIN,
            nonce,
            gas_limit: 21_000,
            to: TxKind::Call(Address::with_last_byte(9)),
            value: U256::from(1),
            ..Default::default()
        };
        last = rpc.call("eth_sendRawTransaction", json!([sign_raw(&key, tx)])).as_str().unwrap().to_string();
    }
    rpc.wait_receipt(&last, Duration::from_secs(30));
    let head = rpc.call("eth_getBlockByNumber", json!(["latest", false]));
    let (number, hash) = (hex_u64(&head["number"]), head["hash"].as_str().unwrap().to_string());
    let wal = datadir.join("chain.sqlite-wal");
    let logged = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(
        logged > 0,
        "the running node's blocks are in its write-ahead log (else this test shows nothing)"
    );

    let status = node.terminate();
    assert!(status.success(), "a clean stop: {status}");
    let left = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "the log ({logged} bytes while running) was emptied into chain.sqlite");

    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(datadir.join("chain.sqlite"), copy.join("chain.sqlite")).unwrap();
    let out = run_ok(Command::new(node_bin()).args(["check", "--datadir"]).arg(&copy));
    assert!(
        out.starts_with("OK: ") && out.contains(&format!("head {hash} (block {number})")),
        "chain.sqlite alone holds block {number}: {out}"
    );
    let mut again = NodeProcess::start(&["run", "--datadir", copy.to_str().unwrap()]);
    let block = again.rpc().call("eth_getBlockByNumber", json!([format!("{number:#x}"), false]));
    assert_eq!(block["hash"].as_str(), Some(hash.as_str()), "the same block {number}");
    again.terminate();
}

/// A follower stopped with SIGTERM while its signer goes on sealing, one block a second: the
/// blocks arriving from the network while it winds down are not written after its final
/// checkpoint (`Blockchain::close`), so its log is empty and `chain.sqlite` alone re-verifies.
#[test]
fn a_network_node_stopped_while_blocks_arrive_leaves_its_blocks_in_chain_sqlite_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 1, 1, 1);
    net.set_log("info");
    net.start(0);
    net.start(1);
    wait_for("the follower to import block 3", Duration::from_secs(60), || net.head(1) >= 3);
    let wal = net.datadir(1).join("chain.sqlite-wal");
    assert!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0, "the imported blocks are in the log");
    let status = net.terminate(1);
    assert!(status.success(), "a clean stop: {status}");
    assert!(!net.log_lines(1, "write-ahead log copied into chain.sqlite").is_empty());
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0, "the log is emptied");
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(net.datadir(1).join("chain.sqlite"), copy.join("chain.sqlite")).unwrap();
    let out = run_ok(Command::new(node_bin()).args(["check", "--datadir"]).arg(&copy));
    assert!(out.starts_with("OK: "), "chain.sqlite alone re-verifies: {out}");
    let number: u64 = out
        .split("(block ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a head block number in: {out}"));
    assert!(number >= 3, "the file alone holds the imported blocks (block {number}): {out}");
    let signer_head = net.head(0);
    assert!(signer_head >= number, "the signer went on sealing (head {signer_head})");
}

/// A signer gossips the block it sealed before its commit ends, so its peers import it while it is
/// written. Here that commit fails (an SQLite trigger on the signer's own database refuses the
/// height, as a full disk would) and the signer is then killed: the other two signers have the block
/// and go on without it; restarted with its storage healthy, the signer takes their chain, the block
/// it never stored included.
#[test]
fn a_signer_whose_commit_fails_after_its_block_was_gossiped_rejoins_the_network_chain() {
    use alloy_rlp::Decodable;
    let dir = tempfile::tempdir().unwrap();
    let mut net = Testnet::generate(&node_bin(), dir.path(), 3, 0, 1);
    for i in 0..3 {
        net.start(i);
    }
    wait_for("the signers to connect", Duration::from_secs(30), || (0..3).all(|i| net.peers(i) >= 2));
    wait_for("block 2", Duration::from_secs(60), || net.head(0) >= 2);
    let victim: Address = net.nodes[0]["signer"].as_str().unwrap().parse().unwrap();
    let mut sorted: Vec<Address> =
        (0..3).map(|i| net.nodes[i]["signer"].as_str().unwrap().parse().unwrap()).collect();
    sorted.sort();
    let mut x = net.head(0) + 4;
    while sorted[(x % 3) as usize] != victim {
        x += 1;
    }
    let db = rusqlite::Connection::open(net.datadir(0).join("chain.sqlite")).unwrap();
    db.execute_batch(&format!(
        "CREATE TRIGGER injected_failure BEFORE INSERT ON canonical WHEN NEW.number = {x} \
         BEGIN SELECT RAISE(ABORT, 'injected storage failure'); END;"
    ))
    .unwrap();
    wait_for("the other signers to build on block x", Duration::from_secs(60), || {
        net.head(1) >= x + 2 && net.head(2) >= x + 2
    });
    let raw = net.rpc(1).call("debug_getRawBlock", json!([format!("{x:#x}")]));
    let bytes = alloy_primitives::hex::decode(raw.as_str().unwrap()).unwrap();
    let block = p2pe_node::primitives::Block::decode(&mut bytes.as_slice()).unwrap();
    assert_eq!(
        p2pe_node::consensus::clique::recover_sealer(&block.header).unwrap(),
        victim,
        "block {x} is the victim's, which its peers got by gossip before its commit failed"
    );
    assert_eq!(net.head(0), x - 1, "the victim never stored block {x}");
    assert!(!net.log_lines(0, "injected storage failure").is_empty());
    let bans: Vec<String> = (0..3).flat_map(|i| net.log_lines(i, "peer banned")).collect();
    assert!(bans.is_empty(), "a local storage failure is no peer's offence: {bans:?}");

    net.kill(0);
    db.execute_batch("DROP TRIGGER injected_failure").unwrap();
    drop(db);
    net.start(0);
    let target = net.head(1) + 2;
    wait_for("the restarted signer to rejoin the chain", Duration::from_secs(60), || net.head(0) >= target);
    for n in [x, target] {
        let id = block_id(&net.rpc(1), n);
        assert_eq!(block_id(&net.rpc(0), n), id, "block {n} on the victim");
        assert_eq!(block_id(&net.rpc(2), n), id, "block {n} on signer 2");
    }
}
