//! The node over https://: a lab puts a TLS proxy with its own CA before the node's JSON-RPC. While
//! the bridge does not trust that CA (the system's roots), every request fails its handshake, the log
//! says why ("UnknownIssuer"), /health reports the node down and the readings wait in the outbox; once
//! `chain.rpc_ca_file` names the CA, the same outbox reaches the chain, each reading once. A CA file that
//! holds no certificate is refused at start, naming the key.

use std::process::Command;
use std::time::Duration;

use p2pe_tests::bridge::*;
use p2pe_tests::tls_proxy::TlsProxy;

#[test]
fn readings_reach_the_node_over_https_once_its_ca_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let meters = vec![MeterSpec::new("house-01", 0, "json", "reading")];
    let broker = Mosquitto::start(dir.path(), &["house-01".to_string()]);
    let node = Node::start(&dir.path().join("chain"));
    let rpc = node.rpc();
    let addrs = meter_addresses();
    let contracts = deploy(&rpc, &addrs[..1]);
    let upstream = node.url.trim_start_matches("http://").parse().unwrap();
    // The broker's server certificate (CN and IP 127.0.0.1, signed by the test CA) serves the proxy.
    let proxy = TlsProxy::start(&broker.certs.server_cert, &broker.certs.server_key, upstream);
    let setup = BridgeSetup {
        tls: false,
        rpc_urls: vec![proxy.url()],
        readings: contracts.readings,
        meters,
        max_batch: 50,
        resend_interval_ms: 3000,
        limits: String::new(),
    };
    let (cfg, http) = write_config(dir.path(), &broker, &setup);

    // A CA file without a certificate: refused by --check and at start, naming the key and the file.
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let bad_cfg = dir.path().join("bad.toml");
    std::fs::copy(&cfg, &bad_cfg).unwrap();
    add_chain_keys(&bad_cfg, &format!("rpc_ca_file = \"{}\"", not_pem.display()));
    for check in [true, false] {
        let mut cmd = Command::new(bridge_bin());
        cmd.arg("--config").arg(&bad_cfg);
        if check {
            cmd.arg("--check");
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "check={check}: {stderr}");
        assert!(
            stderr.contains("chain.rpc_ca_file")
                && stderr.contains("not-a-ca.pem")
                && stderr.contains("no certificate"),
            "check={check}: {stderr}"
        );
    }

    // Untrusted: the system's roots do not hold the test CA.
    let mut bridge = Bridge::start(&cfg, http);
    wait_for("the bridge to connect", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_mqtt_connected") == 1.0
    });
    let t0 = now_secs() - 300;
    let msgs: Vec<(String, Vec<u8>)> = (0..6)
        .map(|k| {
            ("meters/house-01/reading".to_string(), json_reading("house-01", k, t0 + k * 20, 1000 + k * 7, k))
        })
        .collect();
    publish(broker.port, "house-01", &msgs);
    wait_for("the outbox to hold the readings", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_readings_committed_total") == 6.0
    });
    wait_for("the handshake failure in the log", Duration::from_secs(30), || {
        bridge.log().contains("UnknownIssuer")
    });
    wait_for("/health to report the node down", Duration::from_secs(30), || bridge.health().0 == 503);
    assert!(recorded(&rpc, contracts.readings, addrs[0]).is_empty(), "nothing reached the chain untrusted");
    let log = bridge.log();
    let line = log.lines().find(|l| l.contains("UnknownIssuer")).unwrap();
    assert!(line.contains(&proxy.url()) && line.contains("invalid peer certificate"), "{line}");

    // Trusted: the same outbox is delivered over https://.
    add_chain_keys(&cfg, &format!("rpc_ca_file = \"{}\"", broker.certs.ca.display()));
    bridge.restart();
    wait_for("every reading on chain over https://", Duration::from_secs(60), || {
        recorded(&rpc, contracts.readings, addrs[0]).len() == 6
    });
    let want: Vec<(u64, u64, u64)> = (0..6).map(|k| (1000 + k * 7, k, t0 + k * 20)).collect();
    assert_eq!(recorded(&rpc, contracts.readings, addrs[0]), want);
    wait_for("/health to report the node up", Duration::from_secs(30), || bridge.health().0 == 200);
    let counts = submitted_counts(&rpc, contracts.readings);
    assert!(counts.values().all(|&n| n == 1), "each reading submitted once: {counts:?}");
}
