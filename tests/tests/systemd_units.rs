//! The node's systemd units (`deploy/systemd/p2pe-node@.service`) with the example settings
//! (`deploy/config/{signer,follower,keeper}.toml`), started the way systemd would start them.
//!
//! A lab network of three roles on one machine: the unit's `/usr/local/bin`, `/etc/p2pe` and
//! `/var/lib/p2pe` are mapped into a temporary root, and the example settings get free loopback
//! ports and the real peer id of the signer (what an operator edits). Each instance is checked by
//! `systemd-analyze verify`, then its `ExecStart` runs with the unit's `Environment=` only, from
//! `/` (systemd's working directory for system units). It shows that:
//! - the settings file is read (`--config`), with every key a known flag;
//! - the signer seals, the follower and the keeper sync from it over the peer network, and the
//!   keeper opens market slots (its transactions reach the signer);
//! - logs are JSON lines (`--log-format json`);
//! - SIGTERM (the unit's `KillSignal`) stops each node cleanly within `TimeoutStopSec`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2pe_tests::harness::{free_port, node_bin, run_ok, workspace_root, Rpc};
use serde_json::{json, Value};

/// The test's stand-in for `/`: where the unit's absolute paths point.
struct Root {
    _dir: tempfile::TempDir,
    etc: PathBuf,
    var: PathBuf,
    units: PathBuf,
}

impl Root {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc/p2pe");
        let var = dir.path().join("var/lib/p2pe");
        let units = dir.path().join("units");
        for d in [&etc.join("keys"), &var, &units] {
            std::fs::create_dir_all(d).unwrap();
        }
        Self { _dir: dir, etc, var, units }
    }

    /// `text` with the unit's absolute paths mapped into this root.
    fn map(&self, text: &str) -> String {
        let bin = node_bin().parent().unwrap().to_path_buf();
        text.replace("/usr/local/bin", &bin.to_string_lossy())
            .replace("/etc/p2pe", &self.etc.to_string_lossy())
            .replace("/var/lib/p2pe", &self.var.to_string_lossy())
    }
}

/// What systemd would run for one unit instance.
struct Unit {
    exec_start: Vec<String>,
    environment: Vec<(String, String)>,
    stop_timeout: Duration,
}

/// Reads the `[Service]` lines the test relies on. Values are split on whitespace: the units
/// use no quoting, which this check enforces.
fn parse_unit(text: &str) -> Unit {
    let mut unit =
        Unit { exec_start: Vec::new(), environment: Vec::new(), stop_timeout: Duration::from_secs(90) };
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.split_once('=') else { continue };
        assert!(!value.contains('"') && !value.contains('\''), "the units use no quoting: {line}");
        match key {
            "ExecStart" => unit.exec_start = value.split_whitespace().map(String::from).collect(),
            "Environment" => {
                for kv in value.split_whitespace() {
                    let (k, v) = kv.split_once('=').expect("Environment=KEY=VALUE");
                    unit.environment.push((k.into(), v.into()));
                }
            }
            "TimeoutStopSec" => unit.stop_timeout = Duration::from_secs(value.parse().unwrap()),
            _ => {}
        }
    }
    assert!(!unit.exec_start.is_empty(), "no ExecStart in the unit");
    unit
}

/// Writes the template (paths mapped) into the root's unit folder, runs `systemd-analyze verify`
/// on the instance, and returns what the instance runs.
fn instance(root: &Root, name: &str) -> Unit {
    let template =
        std::fs::read_to_string(workspace_root().join("deploy/systemd/p2pe-node@.service")).unwrap();
    std::fs::write(root.units.join("p2pe-node@.service"), root.map(&template)).unwrap();
    let path = root.units.join(format!("p2pe-node@{name}.service"));
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and sections are only warnings for systemd: count them as failures here.
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify {name}: {stderr}");
    parse_unit(&root.map(&template).replace("%i", name))
}

/// A started unit: its process, its stderr lines, and its RPC.
struct Service {
    name: String,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    rpc: Rpc,
    stop_timeout: Duration,
}

impl Service {
    fn start(unit: &Unit, name: &str, rpc_url: &str) -> Self {
        let mut cmd = Command::new(&unit.exec_start[0]);
        cmd.args(&unit.exec_start[1..])
            .current_dir("/")
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &unit.environment {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the unit's ExecStart");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let err = child.stderr.take().unwrap();
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let service =
            Self { name: name.into(), child, logs, rpc: Rpc::new(rpc_url), stop_timeout: unit.stop_timeout };
        service.wait("JSON-RPC to answer", Duration::from_secs(60), |s| {
            s.rpc.try_call("eth_chainId", json!([])).is_ok()
        });
        service
    }

    fn wait(&self, what: &str, timeout: Duration, mut ok: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            assert!(start.elapsed() < timeout, "{}: {what} within {timeout:?}", self.name);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, as systemd's `KillSignal=SIGTERM`, and a clean exit within `TimeoutStopSec`.
    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status} on SIGTERM", self.name);
                return;
            }
            assert!(start.elapsed() < self.stop_timeout, "{} did not stop within TimeoutStopSec", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `p2pe-node account new` into the root's key folder; returns the address.
fn new_account(root: &Root, name: &str) -> String {
    let keys = root.etc.join("keys");
    std::fs::write(keys.join(format!("{name}.pw")), "lab password\n").unwrap();
    let out = run_ok(
        Command::new(node_bin())
            .args(["account", "new", "--light-kdf", "--name"])
            .arg(format!("{name}.json"))
            .arg("--keystore-dir")
            .arg(&keys)
            .arg("--password-file")
            .arg(keys.join(format!("{name}.pw"))),
    );
    out.trim().to_string()
}

/// The example settings file for `role`, paths mapped, with this test's ports and bootnode.
fn write_settings(root: &Root, role: &str, http: u16, p2p: u16, bootnode: Option<&str>) {
    let example =
        std::fs::read_to_string(workspace_root().join(format!("deploy/config/{role}.toml"))).unwrap();
    let mut table: toml::Table = toml::from_str(&root.map(&example)).unwrap();
    table.insert("http-addr".into(), format!("127.0.0.1:{http}").into());
    table.insert("p2p-port".into(), i64::from(p2p).into());
    table.insert("p2p-addr".into(), "127.0.0.1".into());
    match bootnode {
        Some(b) => table.insert("bootnodes".into(), toml::Value::Array(vec![b.into()])),
        None => table.remove("bootnodes"),
    };
    std::fs::write(root.etc.join(format!("{role}.toml")), toml::to_string(&table).unwrap()).unwrap();
}

fn datadir(root: &Root, role: &str) -> PathBuf {
    let settings: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.etc.join(format!("{role}.toml"))).unwrap()).unwrap();
    PathBuf::from(settings["datadir"].as_str().unwrap())
}

fn init(genesis: &Path, datadir: &Path) {
    run_ok(Command::new(node_bin()).arg("init").arg("--genesis").arg(genesis).arg("--datadir").arg(datadir));
}

#[test]
fn node_units_start_a_signer_a_follower_and_the_keeper() {
    let root = Root::new();
    let signer = new_account(&root, "signer");
    let keeper = new_account(&root, "keeper");
    let genesis = root.etc.join("genesis.json");
    run_ok(
        Command::new(node_bin())
            .args([
                "genesis",
                "--chain-id",
                "4243",
                "--period",
                "1",
                "--signer",
                &signer,
                "--market-admin",
                &signer,
                "--market-admin",
                &keeper,
                "--out",
            ])
            .arg(&genesis),
    );

    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    write_settings(&root, "signer", ports[0].0, ports[0].1, None);
    let signer_dir = datadir(&root, "signer");
    init(&genesis, &signer_dir);
    let peer_id =
        run_ok(Command::new(node_bin()).arg("peer-id").arg("--datadir").arg(&signer_dir)).trim().to_string();
    let bootnode = format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer_id}", ports[0].1);
    for (role, (http, p2p)) in ["follower", "keeper"].iter().zip(&ports[1..]) {
        write_settings(&root, role, *http, *p2p, Some(&bootnode));
        init(&genesis, &datadir(&root, role));
    }

    let url = |i: usize| format!("http://127.0.0.1:{}", ports[i].0);
    let s = Service::start(&instance(&root, "signer"), "signer", &url(0));
    let f = Service::start(&instance(&root, "follower"), "follower", &url(1));
    let k = Service::start(&instance(&root, "keeper"), "keeper", &url(2));

    s.wait("seal 3 blocks", Duration::from_secs(30), |s| s.rpc.block_number() >= 3);
    // The keeper opens slots: its transactions, sent to its own node, are sealed by the signer.
    s.wait("include the keeper's openSlot transactions", Duration::from_secs(60), |s| {
        nonce(&s.rpc, &keeper) > 0
    });
    let head = s.rpc.block_number();
    for other in [&f, &k] {
        other.wait("sync the signer's head", Duration::from_secs(30), |o| o.rpc.block_number() >= head);
    }
    let logs = s.logs.lock().unwrap().clone();
    assert!(!logs.is_empty(), "the signer logged nothing");
    for line in &logs {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    for service in [k, f, s] {
        service.stop();
    }
}

fn nonce(rpc: &Rpc, address: &str) -> u64 {
    rpc.try_call("eth_getTransactionCount", json!([address, "latest"]))
        .map(|v| p2pe_tests::harness::hex_u64(&v))
        .unwrap_or(0)
}
