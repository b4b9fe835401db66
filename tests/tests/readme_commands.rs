//! The README's node commands, run as a user types them: the binary with exactly the README's flags
//! (default ports included), in a fresh temporary working directory, relative paths as written.
//!
//! - "Development chain": `p2pe-node dev`;
//! - "A real network": `account new`, `genesis`, `init`, `run` with a keystore and a password file;
//! - "A local multi-node network": `testnet --signers 3 --followers 1 --dir D --generate-only`, and the
//!   command lines it writes, started from another working directory;
//! - "The energy market at genesis": `tests/scripts/market-cast.sh RPC_URL CONTRACTS_JSON` against
//!   `p2pe-node dev --slot-length 10`.
//!
//! The simulator's and the bridge's README commands are run by `sim/tests/readme_sim.rs`. The
//! commands use the README's default ports (8545, 30303, …), so the tests here run one at a time.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use p2pe_tests::harness::{hex_u64, node_bin, run_ok, workspace_root, NodeProcess, Rpc};
use serde_json::{json, Value};

/// One test at a time: they share the default ports.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const DEFAULT_URL: &str = "http://127.0.0.1:8545";

fn node(cwd: &Path) -> Command {
    let mut c = Command::new(node_bin());
    c.current_dir(cwd);
    c
}

/// The first `0x` + 40 hex digits in `text`.
fn address_in(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.len() == 42 && w.starts_with("0x") && w[2..].chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no address in {text:?}"))
        .to_string()
}

#[test]
fn dev_chain_with_default_flags() {
    let _s = serial();
    let cwd = tempfile::tempdir().unwrap();
    let dev = NodeProcess::start_exact(cwd.path(), &["dev"], DEFAULT_URL);
    let rpc = dev.rpc();
    rpc.wait_block(2, Duration::from_secs(20));
    assert_eq!(rpc.call("eth_chainId", json!([])), json!("0x539"), "README: chain id 1337");
    let printed = dev.stdout.lock().unwrap().join("\n");
    assert!(printed.contains("Mnemonic: test test test test test test test test test test test junk"));
    assert!(printed.contains("(0) 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"), "{printed}");
    assert!(printed.contains("EnergyMarket  0x24B5F01F29f1fF36C33a5E03e7D1DE924262E9fa"), "{printed}");
    let balance = rpc.call("eth_getBalance", json!(["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "latest"]));
    assert_eq!(balance, json!("0x21e19e0c9bab2400000"), "README: 10,000 ether each");
    // The dApp is served on the same port.
    let page = reqwest::blocking::get(format!("{DEFAULT_URL}/")).unwrap();
    assert_eq!(page.status(), 200);
}

#[test]
fn real_network_account_genesis_init_run() {
    let _s = serial();
    let cwd = tempfile::tempdir().unwrap();
    let dir = cwd.path();
    // P2PE_PASSWORD=... p2pe-node account new --keystore-dir keys --name signer.json
    let out = run_ok(
        node(dir)
            .args(["account", "new", "--keystore-dir", "keys", "--name", "signer.json"])
            .env("P2PE_PASSWORD", "correct horse"),
    );
    let signer = address_in(&out);
    assert!(dir.join("keys/signer.json").is_file(), "account new writes keys/signer.json");
    let keeper = run_ok(
        node(dir)
            .args(["account", "new", "--keystore-dir", "keys", "--name", "keeper.json"])
            .env("P2PE_PASSWORD", "keeper pw"),
    );
    let keeper = address_in(&keeper);
    let funded = "0x00000000000000000000000000000000000000aa";
    // p2pe-node genesis --chain-id 4242 --period 5 --signer … --market-admin … --fund … --out genesis.json
    run_ok(node(dir).args([
        "genesis",
        "--chain-id",
        "4242",
        "--period",
        "5",
        "--signer",
        &signer,
        "--market-admin",
        &signer,
        "--market-admin",
        &keeper,
        "--fund",
        &format!("{funded}=1000000000000000000"),
        "--out",
        "genesis.json",
    ]));
    run_ok(node(dir).args(["init", "--genesis", "genesis.json", "--datadir", "data"]));
    std::fs::write(dir.join("pw.txt"), "correct horse\n").unwrap();
    let run = NodeProcess::start_exact(
        dir,
        &["run", "--datadir", "data", "--keystore", "keys/signer.json", "--password-file", "pw.txt"],
        DEFAULT_URL,
    );
    let rpc = run.rpc();
    assert_eq!(rpc.call("eth_chainId", json!([])), json!(format!("{:#x}", 4242)));
    assert_eq!(rpc.call("net_listening", json!([])), json!(true), "run joins the peer network");
    rpc.wait_block(1, Duration::from_secs(30));
    let block: Value = rpc.call("eth_getBlockByNumber", json!(["0x1", false]));
    assert!(hex_u64(&block["timestamp"]) >= hex_u64(&genesis_timestamp(&rpc)) + 5, "period 5 s");
    assert_eq!(
        rpc.call("eth_getBalance", json!([funded, "latest"])),
        json!("0xde0b6b3a7640000"),
        "--fund credits the account"
    );
}

fn genesis_timestamp(rpc: &Rpc) -> Value {
    rpc.call("eth_getBlockByNumber", json!(["0x0", false]))["timestamp"].clone()
}

#[test]
fn testnet_generate_only_writes_command_lines_that_work_from_anywhere() {
    let _s = serial();
    let cwd = tempfile::tempdir().unwrap();
    let out = run_ok(node(cwd.path()).args([
        "testnet",
        "--signers",
        "3",
        "--followers",
        "1",
        "--dir",
        "D",
        "--generate-only",
    ]));
    assert!(out.contains("testnet.json"), "{out}");
    let nodes: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(cwd.path().join("D/testnet.json")).unwrap()).unwrap();
    assert_eq!(nodes.len(), 4);
    // Started from another folder, exactly as testnet.json says: signer-0 (keystore and password
    // file) and the follower, which syncs the block signer-0 seals.
    let elsewhere = tempfile::tempdir().unwrap();
    let start = |n: &Value| {
        let args: Vec<&str> = n["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        NodeProcess::start_exact(elsewhere.path(), &args, n["rpc"].as_str().unwrap())
    };
    let signer = start(&nodes[0]);
    let follower = start(&nodes[3]);
    assert_eq!(nodes[3]["name"], json!("follower-0"));
    follower.rpc().wait_block(1, Duration::from_secs(30));
    let b1 = follower.rpc().call("eth_getBlockByNumber", json!(["0x1", false]));
    assert_eq!(
        b1["hash"],
        signer.rpc().call("eth_getBlockByNumber", json!(["0x1", false]))["hash"],
        "the follower holds signer-0's block"
    );
}

#[test]
fn market_cast_script_plays_one_slot_against_dev_slot_length_10() {
    let _s = serial();
    let cwd = tempfile::tempdir().unwrap();
    let dev = NodeProcess::start_exact(cwd.path(), &["dev", "--slot-length", "10"], DEFAULT_URL);
    let datadir = dev
        .stdout
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| l.strip_prefix("Data directory: ").map(|r| r.split(' ').next().unwrap().to_string()))
        .expect("dev prints its data directory");
    let contracts = format!("{datadir}/contracts.json");
    // From the workspace root, as the README writes it.
    let out = run_ok(
        Command::new("tests/scripts/market-cast.sh")
            .args([DEFAULT_URL, &contracts])
            .current_dir(workspace_root()),
    );
    assert_eq!(out.lines().last(), Some("OK"), "{out}");
    assert!(out.contains("buyer settled"), "{out}");
}
