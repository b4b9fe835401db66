//! A real Prometheus (Debian's `prometheus`) scrapes a 3-signer testnet plus a follower
//! (`p2pe-node run --metrics`) and the MQTT bridge (`/metrics`), and PromQL over its HTTP API
//! returns what operators look at: every node's head increasing, a peer count of 3 on each of the
//! four nodes, RPC calls and errors by method and code, the bridge connected with a reading
//! confirmed, and the state cache's hits rising on a node that answers repeated `eth_getBalance`
//! and `eth_call` reads. Every query of the committed Grafana dashboard (`deploy/grafana/`) is valid PromQL
//! and its series exist (except those only an event creates, listed below).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use p2pe_tests::bridge::*;
use p2pe_tests::net::Testnet;
use serde_json::{json, Value};

/// Series that only an event creates (a reorg, a monitoring message).
const EVENT_ONLY: [&str; 2] = ["p2pe_reorg_depth_bucket", "p2pe_bridge_meter_power_watts"];

struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, nodes: &[String], bridge: &str) -> Self {
        let list = |t: &[String]| t.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [{}]\n  - job_name: bridge\n    static_configs:\n      - targets: [{}]\n",
            list(nodes),
            list(&[bridge.to_string()])
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/test.sh installs it)");
        let p = Self { child, url: format!("http://127.0.0.1:{port}") };
        wait_for("prometheus to be ready", Duration::from_secs(30), || {
            reqwest::blocking::get(format!("{}/-/ready", p.url)).is_ok_and(|r| r.status().is_success())
        });
        p
    }

    /// An instant query's result vector (`status` must be success).
    fn query(&self, q: &str) -> Vec<Value> {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/api/v1/query", self.url), &[("query", q)]).unwrap();
        let r: Value =
            reqwest::blocking::get(url).and_then(|r| r.json()).unwrap_or_else(|e| panic!("query {q}: {e}"));
        assert_eq!(r["status"], "success", "query {q}: {r}");
        r["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of a query returning one sample, or `None`.
    fn scalar(&self, q: &str) -> Option<f64> {
        self.query(q).first().map(|s| s["value"][1].as_str().unwrap().parse().unwrap())
    }

    fn names(&self) -> Vec<String> {
        let r: Value = reqwest::blocking::get(format!("{}/api/v1/label/__name__/values", self.url))
            .unwrap()
            .json()
            .unwrap();
        r["data"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    }
}

/// `{instance → value}` of a per-node query.
fn by_instance(samples: &[Value]) -> std::collections::BTreeMap<String, f64> {
    samples
        .iter()
        .map(|s| {
            (
                s["metric"]["instance"].as_str().unwrap().to_string(),
                s["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn prometheus_scrapes_a_testnet_and_the_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path(), vec![MeterSpec::new("m0", 0, "json", "reading")], "");
    let mut net = Testnet::generate(&p2pe_tests::harness::node_bin(), &dir.path().join("net"), 3, 1, 1);
    let mut targets = Vec::new();
    for i in 0..4 {
        let addr = format!("127.0.0.1:{}", free_port());
        net.start_with(i, &["--metrics".to_string(), addr.clone()]);
        targets.push(addr);
    }
    let bridge = rig.bridge.http.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(dir.path(), &targets, &bridge);

    // RPC traffic: a served method and one that does not exist (-32601).
    let rpc = net.rpc(0);
    rpc.call("eth_blockNumber", json!([]));
    assert!(rpc.try_call("eth_noSuchMethod", json!([])).is_err());
    // A reading through the bridge.
    publish(
        rig.broker.port,
        "m0",
        &[("meters/m0/reading".into(), json_reading("m0", 1, now_secs() - 2, 500, 0))],
    );

    wait_for("a peer count of 3 on each of the 4 nodes", Duration::from_secs(60), || {
        prom.scalar("count(p2pe_peers{job=\"node\"} == 3)") == Some(4.0)
    });
    let before = by_instance(&prom.query("p2pe_head_number{job=\"node\"}"));
    assert_eq!(before.len(), 4, "{before:?}");
    wait_for("every node's head to increase", Duration::from_secs(30), || {
        let now = by_instance(&prom.query("p2pe_head_number{job=\"node\"}"));
        before.iter().all(|(i, b)| now.get(i).is_some_and(|n| n > b))
    });
    wait_for("the RPC calls to be scraped", Duration::from_secs(20), || {
        prom.scalar("sum(p2pe_rpc_requests_total{method=\"eth_blockNumber\"})").is_some_and(|v| v >= 1.0)
            && prom.scalar("sum(p2pe_rpc_errors_total{code=\"-32601\"})").is_some_and(|v| v >= 1.0)
            && prom.scalar("sum(p2pe_rpc_requests_total{method=\"other\"})").is_some_and(|v| v >= 1.0)
    });
    assert!(
        prom.query("p2pe_rpc_requests_total{method=\"eth_noSuchMethod\"}").is_empty(),
        "unknown methods get no series of their own"
    );
    wait_for("the bridge connected with the reading confirmed", Duration::from_secs(60), || {
        prom.scalar("p2pe_bridge_mqtt_connected{job=\"bridge\"}") == Some(1.0)
            && prom.scalar("p2pe_bridge_readings_confirmed_total").is_some_and(|v| v >= 1.0)
    });
    assert!(prom.scalar("max(p2pe_head_age_seconds)").is_some_and(|age| age < 10.0));
    check_state_cache(&prom, &net, &targets[0]);

    check_dashboard(&prom);
    drop(net);
}

/// Repeated head-state reads on node 0 (`instance`) raise its RPC state cache's hit counters (the
/// writer's cache is counted apart, under `cache="writer"`): five
/// `eth_getBalance` of one account (accounts) and five `eth_call`s of the token's `totalSupply()`
/// (a storage slot). The first read of each misses; a block committed between two reads carries
/// the entry over unless it changed it, so at least one later read of each kind hits.
fn check_state_cache(prom: &Prometheus, net: &Testnet, instance: &str) {
    use alloy_sol_types::SolCall;
    let series = |name: &str, kind: &str| {
        format!("{name}{{job=\"node\",instance=\"{instance}\",cache=\"rpc\",kind=\"{kind}\"}}")
    };
    let hits = |kind: &str| prom.scalar(&series("p2pe_state_cache_hits_total", kind));
    let misses = |kind: &str| prom.scalar(&series("p2pe_state_cache_misses_total", kind));
    let before = (hits("account").expect("account hits exported from the start"), hits("storage").unwrap());
    let writer = format!("p2pe_state_cache_misses_total{{job=\"node\",instance=\"{instance}\",cache=\"writer\",kind=\"account\"}}");
    assert!(prom.scalar(&writer).is_some(), "the writer's cache is counted apart");
    let genesis: Value =
        serde_json::from_str(&std::fs::read_to_string(net.dir.join("genesis.json")).unwrap()).unwrap();
    let token =
        genesis["config"]["p2pe"]["market"]["token"].as_str().expect("the testnet has a market").to_string();
    let data = format!(
        "0x{}",
        alloy_primitives::hex::encode(p2pe_bindings::CreditToken::totalSupplyCall {}.abi_encode())
    );
    let rpc = net.rpc(0);
    let account = "0x00000000000000000000000000000000000c4c4e";
    for _ in 0..5 {
        rpc.call("eth_getBalance", json!([account, "latest"]));
        let supply = rpc.call("eth_call", json!([{ "to": token, "data": data }, "latest"]));
        assert_ne!(supply, json!("0x"), "totalSupply() answered");
    }
    wait_for("the state cache's hits to be scraped", Duration::from_secs(20), || {
        hits("account").is_some_and(|h| h > before.0)
            && hits("storage").is_some_and(|h| h > before.1)
            && misses("account").is_some_and(|m| m >= 1.0)
            && misses("storage").is_some_and(|m| m >= 1.0)
    });
}

/// Every panel query of the dashboard runs, and the series it names exist.
fn check_dashboard(prom: &Prometheus) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/p2pe-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let names = prom.names();
    let mut queries = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            prom.query(expr);
            queries += 1;
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("p2pe_"))
            {
                assert!(
                    names.iter().any(|n| n == name) || EVENT_ONLY.contains(&name),
                    "panel {:?}: no series {name}",
                    panel["title"]
                );
            }
        }
    }
    assert!(queries >= 20, "the dashboard has {queries} queries");
}
