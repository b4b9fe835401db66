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

impl Drop for SingleChain {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
