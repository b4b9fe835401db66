//! The bridge's systemd unit (`deploy/systemd/p2pe-mqtt-bridge.service`) with the example settings
//! (`deploy/config/bridge.toml`), against a Mosquitto started from the lab guide's broker
//! configuration (`deploy/mosquitto/p2pe.conf` and `p2pe.acl`), the way systemd would start it.
//!
//! The unit's and the broker's absolute paths are mapped into a temporary root; the broker's
//! listeners get free loopback ports, and the example settings this test's broker, node, contracts
//! and one fixture meter (what an operator edits). `systemd-analyze verify` checks the unit; its
//! `ExecStart` runs with the unit's `Environment=` only, from `/`. It shows that the bridge reaches
//! the broker over TLS with its client certificate, a meter's reading published on the meters'
//! plain listener (password and ACL) reaches the chain, and SIGTERM stops the bridge cleanly
//! within `TimeoutStopSec`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use p2pe_tests::bridge::*;

const METER: &str = "plug-07";

fn root_map(root: &Path, text: &str) -> String {
    let bin = bridge_bin().parent().unwrap().to_path_buf();
    text.replace("/usr/local/bin", &bin.to_string_lossy())
        .replace("/etc/", &format!("{}/etc/", root.display()))
        .replace("/var/lib/", &format!("{}/var/lib/", root.display()))
}

fn deploy_file(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(rel)).unwrap()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mosquitto from the guide's files; returns it with the (meters, TLS) ports.
fn start_broker(root: &Path) -> (Killed, u16, u16) {
    let etc = root.join("etc/mosquitto");
    std::fs::create_dir_all(etc.join("certs")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/mosquitto")).unwrap();
    let certs = make_certs(&etc.join("certs"));
    let tls = root.join("etc/p2pe/tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::copy(&certs.ca, tls.join("ca.pem")).unwrap();
    std::fs::copy(&certs.client_cert, tls.join("bridge.pem")).unwrap();
    std::fs::copy(&certs.client_key, tls.join("bridge.key")).unwrap();
    std::fs::write(
        etc.join("p2pe.passwd"),
        format!("bridge:{BRIDGE_PASSWORD}\n{METER}:{}\n", meter_password(METER)),
    )
    .unwrap();
    run(Command::new(mosquitto_passwd_bin()).arg("-U").arg(etc.join("p2pe.passwd")));
    std::fs::write(etc.join("p2pe.acl"), deploy_file("mosquitto/p2pe.acl")).unwrap();
    let (plain, tls_port) = (free_port(), free_port());
    let conf = root_map(root, &deploy_file("mosquitto/p2pe.conf"))
        .replace("listener 8883\n", &format!("listener {tls_port} 127.0.0.1\n"))
        .replace("listener 1883 10.0.1.1\n", &format!("listener {plain} 127.0.0.1\n"))
        .replace("user mosquitto\n", "user root\n");
    assert!(
        conf.contains(&format!("listener {plain} ")) && conf.contains(&format!("listener {tls_port} ")),
        "{conf}"
    );
    std::fs::write(etc.join("p2pe.conf"), conf).unwrap();
    let child = Command::new(mosquitto_bin())
        .arg("-c")
        .arg(etc.join("p2pe.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("mosquitto to listen", Duration::from_secs(20), || port_open(plain) && port_open(tls_port));
    (Killed(child), plain, tls_port)
}

/// The example settings with this test's broker, node, contracts and meter.
fn write_settings(
    root: &Path,
    tls_port: u16,
    node_url: &str,
    readings: alloy_primitives::Address,
    http: u16,
) {
    let keys = root.join("etc/p2pe/keys");
    std::fs::create_dir_all(keys.join("meters")).unwrap();
    std::fs::write(keys.join("broker.pw"), format!("{BRIDGE_PASSWORD}\n")).unwrap();
    std::fs::write(keys.join("meters.pw"), format!("{KEY_PASSWORD}\n")).unwrap();
    std::fs::copy(keystore(0), keys.join(format!("meters/{METER}.json"))).unwrap();
    let mut t: toml::Table = toml::from_str(&root_map(root, &deploy_file("config/bridge.toml"))).unwrap();
    let broker = t["broker"].as_table_mut().unwrap();
    let url = broker["url"].as_str().unwrap().replace("broker.lab:8883", &format!("127.0.0.1:{tls_port}"));
    broker.insert("url".into(), url.into());
    let chain = t["chain"].as_table_mut().unwrap();
    chain.remove("contracts_file");
    chain.insert("rpc_urls".into(), toml::Value::Array(vec![node_url.into()]));
    chain.insert("readings".into(), readings.to_string().into());
    t["http"].as_table_mut().unwrap().insert("listen".into(), format!("127.0.0.1:{http}").into());
    let meter = t["meters"][METER].as_table_mut().unwrap();
    meter.insert("address".into(), meter_addresses()[0].to_string().into());
    meter.insert("format".into(), "json".into());
    meter.insert("topic".into(), format!("meters/{METER}/reading").into());
    std::fs::write(root.join("etc/p2pe/bridge.toml"), toml::to_string(&t).unwrap()).unwrap();
}

/// `systemd-analyze verify` of the mapped unit, then its `ExecStart` and `Environment=`.
fn unit(root: &Path) -> (Vec<String>, Vec<(String, String)>, Duration) {
    let text = root_map(root, &deploy_file("systemd/p2pe-mqtt-bridge.service"));
    let path = root.join("p2pe-mqtt-bridge.service");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Missing dependencies (mosquitto.service, the node's unit) are not installed here: only those
    // warnings are allowed; unknown keys and sections are failures.
    let bad: Vec<&str> =
        stderr.lines().filter(|l| !l.contains("Failed to") && !l.contains("not found")).collect();
    assert!(out.status.success() && bad.is_empty(), "systemd-analyze verify: {stderr}");
    let (mut exec, mut env, mut stop) = (Vec::new(), Vec::new(), Duration::from_secs(90));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match line.split_once('=') {
            Some(("ExecStart", v)) => exec = v.split_whitespace().map(String::from).collect(),
            Some(("Environment", v)) => env.extend(v.split_whitespace().map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })),
            Some(("TimeoutStopSec", v)) => stop = Duration::from_secs(v.parse().unwrap()),
            _ => {}
        }
    }
    (exec, env, stop)
}

#[test]
fn bridge_unit_relays_a_meter_through_the_guides_broker() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_path_buf();
    let (_broker, plain, tls_port) = start_broker(&root);
    let node = Node::start(&root.join("chain"));
    let rpc = node.rpc();
    let contracts = deploy(&rpc, &meter_addresses()[..1]);
    let http = free_port();
    write_settings(&root, tls_port, &node.url, contracts.readings, http);
    std::fs::create_dir_all(root.join("var/lib/p2pe")).unwrap(); // systemd's StateDirectory=p2pe

    let (exec, env, stop_timeout) = unit(&root);
    let mut cmd = Command::new(&exec[0]);
    cmd.args(&exec[1..])
        .current_dir("/")
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut bridge = Killed(cmd.spawn().expect("the unit's ExecStart"));
    let metrics = format!("http://127.0.0.1:{http}/metrics");
    wait_for("the bridge to connect to the broker over TLS", Duration::from_secs(60), || {
        reqwest::blocking::get(&metrics)
            .ok()
            .and_then(|r| r.text().ok())
            .is_some_and(|t| t.lines().any(|l| l == "p2pe_bridge_mqtt_connected 1"))
    });

    let ts = now_secs() - 5;
    publish(plain, METER, &[(format!("meters/{METER}/reading"), json_reading(METER, 1, ts, 1234, 0))]);
    wait_for("the reading on chain", Duration::from_secs(60), || {
        latest_reading(&rpc, contracts.readings, meter_addresses()[0]).0 == 1234
    });

    let _ = Command::new("kill").arg("-TERM").arg(bridge.0.id().to_string()).status();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = bridge.0.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < stop_timeout, "the bridge did not stop within TimeoutStopSec");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the bridge exited with {status} on SIGTERM");
    assert!(root.join("var/lib/p2pe/bridge-outbox.sqlite").is_file(), "the outbox is in the state directory");
}
