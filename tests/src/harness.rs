//! Harness for end-to-end tests: real `p2pe-node` processes on free loopback ports, a blocking
//! JSON-RPC client, and the Foundry binaries installed from npm.
//!
//! The node binary is taken from `P2PE_NODE_BIN`, else `target/{debug,release}/p2pe-node` of
//! this workspace (the test command builds it first). Tool paths come from `tests/node_modules`
//! and `contracts/node_modules`, which the test command installs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The well-known development mnemonic the dev chain funds.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// Root of the workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The newest build of binary `name` (`target/{debug,release}`), or the path in `env_var`.
pub fn find_built(name: &str, env_var: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        return PathBuf::from(p);
    }
    let root = workspace_root();
    let candidates = [root.join("target/debug").join(name), root.join("target/release").join(name)];
    candidates
        .iter()
        .filter(|p| p.exists())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .cloned()
        .unwrap_or_else(|| {
            panic!("{name} is not built: run `cargo build --workspace` first or set {env_var}")
        })
}

/// Path of the `p2pe-node` binary.
pub fn node_bin() -> PathBuf {
    find_built("p2pe-node", "P2PE_NODE_BIN")
}

/// Path of an npm-installed tool (`cast`, `anvil` under tests/, `forge` under contracts/).
pub fn npm_tool(name: &str) -> PathBuf {
    let root = workspace_root();
    for dir in ["tests/node_modules/.bin", "contracts/node_modules/.bin"] {
        let p = root.join(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run ./scripts/test.sh (or npm ci in tests/ and contracts/) first")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running `p2pe-node` process, killed when dropped.
///
/// The process's `TMPDIR` is a directory this value owns and removes when dropped: `dev` without
/// `--datadir` keeps its chain in a temporary directory that only a clean exit removes, and the
/// drop's SIGKILL is not one (CI's disk is shared: hundreds of leaked chains filled it).
pub struct NodeProcess {
    child: Child,
    /// The process's `TMPDIR` (declared after `child`: removed once the process is gone).
    _tmp: tempfile::TempDir,
    /// JSON-RPC URL.
    pub url: String,
    /// Everything the process printed on stdout so far (collected by a thread).
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The JSON log lines of a node started by [`NodeProcess::start_with_logs`] (empty otherwise:
    /// other nodes' stderr is echoed to the test's).
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl NodeProcess {
    /// Starts `p2pe-node <args> --http-addr 127.0.0.1:<free port>` and waits for its RPC line.
    pub fn start(args: &[&str]) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(node_bin());
        cmd.args(args).args(["--http-addr", &addr]).stdout(Stdio::piped()).stderr(Stdio::piped());
        // `run` nodes join the peer network: give each its own loopback port unless told.
        if args.first() == Some(&"run") && !args.iter().any(|a| *a == "--p2p-port" || *a == "--no-p2p") {
            cmd.args(["--p2p-port", &free_port().to_string(), "--p2p-addr", "127.0.0.1"]);
        }
        cmd.env("P2PE_LOG", std::env::var("P2PE_LOG").unwrap_or_else(|_| "warn".into()));
        Self::spawn(cmd, format!("http://{addr}"), false)
    }

    /// As [`NodeProcess::start`], with `P2PE_LOG=FILTER` and `--log-format json`; the log lines
    /// are kept in [`NodeProcess::logs`] (parsed), not echoed. For tests that read the node's own
    /// timing (when it committed each block) rather than when a client noticed.
    pub fn start_with_logs(args: &[&str], filter: &str) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(node_bin());
        cmd.args(["--log-format", "json"]).args(args).args(["--http-addr", &addr]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).env("P2PE_LOG", filter);
        Self::spawn(cmd, format!("http://{addr}"), true)
    }

    /// Starts `p2pe-node ARGS` exactly as given (no flag added), in the working directory `cwd`,
    /// and waits for its RPC line; `url` is where the given flags make it serve JSON-RPC. For the
    /// README's commands, which must work as typed.
    pub fn start_exact(cwd: &Path, args: &[&str], url: &str) -> Self {
        let mut cmd = Command::new(node_bin());
        cmd.args(args).current_dir(cwd).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.env("P2PE_LOG", std::env::var("P2PE_LOG").unwrap_or_else(|_| "warn".into()));
        Self::spawn(cmd, url.to_string(), false)
    }

    fn spawn(mut cmd: Command, url: String, keep_logs: bool) -> Self {
        let tmp = tempfile::Builder::new().prefix("p2pe-test-node-").tempdir().expect("temp dir");
        let mut child = cmd.env("TMPDIR", tmp.path()).spawn().expect("spawn p2pe-node");
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if line.starts_with("JSON-RPC:") {
                        let _ = tx.send(());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    match serde_json::from_str::<Value>(&line) {
                        Ok(v) if keep_logs => logs.lock().unwrap().push(v),
                        _ => eprintln!("[node] {line}"),
                    }
                }
            });
        }
        let mut node = Self { child, _tmp: tmp, url, stdout: lines, logs };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let status = node.child.try_wait();
            panic!("p2pe-node did not start: {status:?}; stdout: {:?}", node.stdout.lock().unwrap());
        }
        node
    }

    /// A dev chain with the given extra arguments.
    pub fn dev(extra: &[&str]) -> Self {
        let mut args = vec!["dev"];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.wait()
    }

    /// Waits for the process to exit (after a signal the test sent).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }

    /// The process's `TMPDIR` (removed when this value is dropped).
    pub fn tmp_dir(&self) -> &Path {
        self._tmp.path()
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A JSON-RPC client for this node.
    pub fn rpc(&self) -> Rpc {
        Rpc::new(&self.url)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A JSON-RPC error returned by the node.
#[derive(Debug, Clone)]
pub struct RpcErr {
    /// Code.
    pub code: i64,
    /// Message.
    pub message: String,
    /// Data.
    pub data: Option<Value>,
}

/// A blocking JSON-RPC client: alloy's RPC client over HTTP, driven by one runtime shared by
/// every client of the test process; [`Rpc::raw`] posts bytes as they are, for the tests of the
/// node's JSON-RPC surface (malformed requests, batches, notifications).
#[derive(Clone)]
pub struct Rpc {
    url: String,
    http: reqwest::Client,
    client: alloy_rpc_client::RpcClient,
}

/// The runtime every [`Rpc`] of this process blocks on (two workers: tests call from many threads).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-rpc")
            .enable_all()
            .build()
            .expect("test RPC runtime")
    })
}

impl Rpc {
    /// A client for `url`.
    pub fn new(url: &str) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let parsed = url.parse().unwrap_or_else(|e| panic!("RPC URL {url}: {e}"));
        let client = alloy_rpc_client::RpcClient::new(
            alloy_transport_http::Http::with_client(http.clone(), parsed),
            true,
        );
        Self { url: url.to_string(), http, client }
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts a raw body and returns the HTTP status and the parsed JSON answer (`Null` when empty).
    pub fn raw(&self, body: &str) -> Result<(u16, Value), String> {
        let post =
            self.http.post(&self.url).header("content-type", "application/json").body(body.to_string());
        runtime().block_on(async move {
            let resp = post.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            if text.is_empty() {
                return Ok((status, Value::Null));
            }
            Ok((status, serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?))
        })
    }

    /// Calls `method` and returns its result or error (code 0: no JSON-RPC answer).
    pub fn try_call(&self, method: &str, params: Value) -> Result<Value, RpcErr> {
        use alloy_transport::RpcError as E;
        let request = self.client.request::<_, Value>(method.to_string(), params);
        match runtime().block_on(request) {
            Ok(v) => Ok(v),
            Err(E::ErrorResp(p)) => Err(RpcErr {
                code: p.code,
                message: p.message.to_string(),
                data: p.data.as_ref().and_then(|d| serde_json::from_str(d.get()).ok()),
            }),
            Err(other) => Err(RpcErr { code: 0, message: other.to_string(), data: None }),
        }
    }

    /// Calls `method`, panicking on an error.
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.try_call(method, params).unwrap_or_else(|e| panic!("{method} failed: {e:?}"))
    }

    /// `eth_blockNumber` as a number.
    pub fn block_number(&self) -> u64 {
        hex_u64(&self.call("eth_blockNumber", json!([])))
    }

    /// Waits for the receipt of `hash`.
    pub fn wait_receipt(&self, hash: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let r = self.call("eth_getTransactionReceipt", json!([hash]));
            if !r.is_null() {
                return r;
            }
            assert!(start.elapsed() < timeout, "no receipt for {hash} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the chain reaches block `n`.
    pub fn wait_block(&self, n: u64, timeout: Duration) {
        let start = Instant::now();
        while self.block_number() < n {
            assert!(start.elapsed() < timeout, "chain did not reach block {n} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until `f` holds, polling every 100 ms; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    wait_some(what, timeout, || f().then_some(()))
}

/// Waits until `f` returns a value, polling every 100 ms, and returns it; panics with `what` after
/// `timeout`.
pub fn wait_some<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether something accepts TCP connections on loopback port `port` (within 200 ms).
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Parses a hex quantity.
pub fn hex_u64(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a hex string: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("bad quantity {s}: {e}"))
}

/// Runs a command, returning stdout; panics with stdout and stderr on failure.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{cmd:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}", out.status);
    stdout
}

/// Runs a command that must fail, returning stderr+stdout.
pub fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{cmd:?} unexpectedly succeeded: {text}");
    text
}

/// Runs a command and returns its exit success and combined stdout+stderr, whatever the status.
pub fn run_any(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Signs a transaction with a local key and returns its EIP-2718 encoding as 0x-hex.
pub fn sign_raw<T>(key: &alloy_signer_local::PrivateKeySigner, tx: T) -> String
where
    T: alloy_consensus::SignableTransaction<alloy_primitives::Signature>,
    alloy_consensus::TxEnvelope: From<alloy_consensus::Signed<T>>,
{
    use alloy_eips::eip2718::Encodable2718;
    use alloy_signer::SignerSync;
    let sig = key.sign_hash_sync(&tx.signature_hash()).expect("sign");
    let env = alloy_consensus::TxEnvelope::from(tx.into_signed(sig));
    format!("0x{}", alloy_primitives::hex::encode(env.encoded_2718()))
}

/// The mosquitto binary: on `PATH`, else Debian's `/usr/sbin/mosquitto` (the bridge's and the
/// simulator's tests start their own brokers).
pub fn mosquitto_bin() -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("mosquitto");
            if p.is_file() {
                return p;
            }
        }
    }
    let p = PathBuf::from("/usr/sbin/mosquitto");
    assert!(p.is_file(), "mosquitto is not installed: apt-get install -y mosquitto (scripts/test.sh does)");
    p
}

/// Development account `i` of [`DEV_MNEMONIC`].
pub fn dev_key(i: u32) -> alloy_signer_local::PrivateKeySigner {
    alloy_signer_local::MnemonicBuilder::<alloy_signer_local::coins_bip39::English>::default()
        .phrase(DEV_MNEMONIC)
        .index(i)
        .expect("index")
        .build()
        .expect("key")
}

/// Builds the Osaka fixture contract with forge and returns (creation code, runtime code).
pub fn osaka_fixture() -> (String, String) {
    let dir = workspace_root().join("tests/fixtures/osaka");
    run_ok(Command::new(npm_tool("forge")).current_dir(&dir).arg("build"));
    let artifact: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/Osaka.sol/Osaka.json")).expect("artifact"),
    )
    .expect("artifact json");
    let code = |k: &str| artifact[k]["object"].as_str().expect("bytecode").to_string();
    (code("bytecode"), code("deployedBytecode"))
}

/// Deploys creation code from dev account `i` and returns the contract address.
pub fn deploy(rpc: &Rpc, i: u32, creation: &str) -> String {
    let from = dev_key(i).address();
    let hash = rpc.call("eth_sendTransaction", json!([{"from": from, "data": creation}]));
    let receipt = rpc.wait_receipt(hash.as_str().unwrap(), Duration::from_secs(30));
    assert_eq!(receipt["status"], "0x1", "deployment failed: {receipt}");
    receipt["contractAddress"].as_str().expect("contract address").to_string()
}
