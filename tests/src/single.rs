//! One chain process for the benches, `p2pe-node dev` or anvil, side by side: started on a free
//! port in its own process group (npm's `anvil` is a Node.js launcher whose child is the real
//! anvil), and the whole group killed when dropped.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{free_port, Rpc};

/// A running single-process chain.
pub struct SingleChain {
    child: Child,
    /// Its JSON-RPC URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl SingleChain {
    /// `p2pe-node dev --datadir <temporary> ARGS` from `node_bin`.
    pub fn dev(node_bin: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(node_bin);
        cmd.arg("dev")
            .args(args)
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .arg("--datadir")
            .arg(dir.path())
            .env("P2PE_LOG", "warn");
        Self::spawn(cmd, port, Some(dir), Duration::from_secs(60))
    }

    /// `p2pe-node run --datadir DATADIR ARGS` from `node_bin`, on an initialised directory.
    pub fn node_run(node_bin: &Path, datadir: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let mut cmd = Command::new(node_bin);
        cmd.arg("run")
            .args(args)
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .arg("--datadir")
            .arg(datadir)
            .env("P2PE_LOG", "warn");
        Self::spawn(cmd, port, None, Duration::from_secs(120))
    }

    /// `anvil --port <free> --silent ARGS` from `anvil_bin`.
    pub fn anvil(anvil_bin: &Path, args: &[&str]) -> Self {
        Self::anvil_within(anvil_bin, args, Duration::from_secs(60))
    }

    /// As [`SingleChain::anvil`], waiting up to `startup` for its JSON-RPC (a large `--init`
    /// genesis takes a while to load).
    pub fn anvil_within(anvil_bin: &Path, args: &[&str], startup: Duration) -> Self {
        let port = free_port();
        let mut cmd = Command::new(anvil_bin);
        cmd.args(args).args(["--port", &port.to_string(), "--silent"]);
        Self::spawn(cmd, port, None, startup)
    }

    /// anvil started from `genesis` (`--init`, written to a temporary file), mining only when asked
    /// (`evm_mine`), at zero fees and a 3,000,000,000 block gas limit, as the benches' node chains.
    /// Waits up to 900 s for a large genesis to load; returns anvil and the seconds that took.
    pub fn anvil_from_genesis(genesis: &impl serde::Serialize) -> (Self, f64) {
        let file = tempfile::Builder::new().prefix("p2pe-anvil-genesis-").suffix(".json").tempfile().unwrap();
        serde_json::to_writer(std::io::BufWriter::new(file.as_file()), genesis).expect("write the genesis");
        let started = Instant::now();
        let path = file.path().to_str().expect("a UTF-8 temporary path");
        let flags = [
            "--init",
            path,
            "--no-mining",
            "--base-fee",
            "0",
            "--gas-price",
            "0",
            "--gas-limit",
            "3000000000",
        ];
        let chain = Self::anvil_within(&crate::harness::npm_tool("anvil"), &flags, Duration::from_secs(900));
        (chain, started.elapsed().as_secs_f64())
    }

    /// `VmRSS` and `VmHWM` in kB of the largest process in the chain's process group (for npm's
    /// anvil, the real anvil under its Node.js launcher).
    pub fn rss_kb(&self) -> (u64, u64) {
        let group = self.child.id().to_string();
        let mut best = (0, 0);
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid pgrp ...: the fields after the command's closing parenthesis.
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            if after.split_whitespace().nth(2) != Some(group.as_str()) {
                continue;
            }
            let rss = crate::seed::status_rss_kb(&entry.path().join("status"));
            if rss.0 > best.0 {
                best = rss;
            }
        }
        best
    }

    fn spawn(mut cmd: Command, port: u16, dir: Option<tempfile::TempDir>, startup: Duration) -> Self {
        let child = cmd
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the chain");
        let chain = Self { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        let rpc = Rpc::new(&chain.url);
        let start = Instant::now();
        while rpc.try_call("eth_blockNumber", json!([])).is_err() {
            assert!(start.elapsed() < startup, "{}: no JSON-RPC within {startup:?}", chain.url);
            std::thread::sleep(Duration::from_millis(200));
        }
        chain
    }
}

/// Sends signed transactions (EIP-2718 bytes) in one JSON-RPC batch of `eth_sendRawTransaction`;
/// panics if the chain refuses any. Returns their hashes and the time the batch took.
pub fn send_batch(rpc: &Rpc, raws: &[Vec<u8>]) -> (Vec<alloy_primitives::B256>, Duration) {
    let hashes = raws.iter().map(alloy_primitives::keccak256).collect();
    let batch: Vec<serde_json::Value> = raws
        .iter()
        .enumerate()
        .map(|(id, raw)| {
            let raw = format!("0x{}", alloy_primitives::hex::encode(raw));
            json!({"jsonrpc": "2.0", "id": id, "method": "eth_sendRawTransaction", "params": [raw]})
        })
        .collect();
    let body = serde_json::to_string(&batch).expect("a batch serialises");
    let start = Instant::now();
    let (status, answer) = rpc.raw(&body).expect("the chain answers");
    let took = start.elapsed();
    let errors = answer.as_array().map_or(0, |a| a.iter().filter(|r| r.get("error").is_some()).count());
    assert!(status == 200 && errors == 0, "the chain refused {errors} transactions: {answer}");
    (hashes, took)
}

/// Mines one block at `timestamp` with `evm_mine` (anvil's), then checks that it holds exactly
/// the transactions `hashes` names and that each succeeded. Returns the time `evm_mine` took.
pub fn mine_checked(rpc: &Rpc, timestamp: u64, hashes: &[alloy_primitives::B256], what: &str) -> Duration {
    let start = Instant::now();
    rpc.call("evm_mine", json!([timestamp]));
    let took = start.elapsed();
    let block = rpc.call("eth_getBlockByNumber", json!(["latest", false]));
    assert_eq!(
        block["transactions"].as_array().map(Vec::len),
        Some(hashes.len()),
        "{what}: every transaction mined"
    );
    let batch: Vec<serde_json::Value> = hashes
        .iter()
        .enumerate()
        .map(|(id, h)| json!({"jsonrpc": "2.0", "id": id, "method": "eth_getTransactionReceipt", "params": [h]}))
        .collect();
    let (_, receipts) =
        rpc.raw(&serde_json::to_string(&batch).expect("a batch serialises")).expect("receipts");
    let failed = receipts
        .as_array()
        .map_or(hashes.len(), |a| a.iter().filter(|r| r["result"]["status"] != "0x1").count());
    assert_eq!(failed, 0, "{what}: {failed} transactions failed");
    took
}

impl Drop for SingleChain {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
