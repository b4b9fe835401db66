//! The broker restarts twice: once under a running bridge (it reconnects with its own backoff and
//! resubscribes), and once while the bridge is down with messages queued for its persistent session
//! (Mosquitto persistence keeps them; the bridge gets them when it comes back). Nothing is lost or
//! submitted twice.

use std::time::Duration;

use p2pe_tests::bridge::*;

#[test]
fn broker_restarts_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n_meters = 3;
    let meters: Vec<MeterSpec> =
        (0..n_meters).map(|i| MeterSpec::new(&format!("m{i}"), i, "json", "reading")).collect();
    let users: Vec<String> = meters.iter().map(|m| m.id.clone()).collect();
    let mut broker = Mosquitto::start(dir.path(), &users);
    let node = Node::start(&dir.path().join("chain"));
    let rpc = node.rpc();
    let addrs = meter_addresses();
    let contracts = deploy(&rpc, &addrs[..n_meters]);
    let setup = BridgeSetup {
        tls: true,
        rpc_urls: vec![node.url.clone()],
        readings: contracts.readings,
        meters: meters.clone(),
        max_batch: 100,
        resend_interval_ms: 2000,
        limits: String::new(),
    };
    let (cfg, http) = write_config(dir.path(), &broker, &setup);
    let mut bridge = Bridge::start(&cfg, http);
    wait_for("the bridge to connect", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_mqtt_connected") == 1.0
    });

    let t0 = now_secs() - 1000;
    let msgs = |id: &str, ks: std::ops::Range<u64>| -> Vec<(String, Vec<u8>)> {
        ks.map(|k| (format!("meters/{id}/reading"), json_reading(id, k, t0 + k, 10 * k + 1, 0))).collect()
    };
    let on_chain = |n: u64| {
        wait_for(&format!("{n} readings per meter on chain"), Duration::from_secs(90), || {
            (0..n_meters).all(|i| recorded(&rpc, contracts.readings, addrs[i]).len() as u64 == n)
        })
    };
    // A: normal operation.
    for m in &meters {
        publish(broker.port, &m.id, &msgs(&m.id, 0..50));
    }
    on_chain(50);

    // B: the broker restarts under the running bridge.
    broker.restart();
    wait_for("the bridge to reconnect", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_mqtt_reconnects_total") >= 1.0
            && bridge.metric("p2pe_bridge_mqtt_connected") == 1.0
    });
    for m in &meters {
        publish(broker.port, &m.id, &msgs(&m.id, 50..100));
    }
    on_chain(100);

    // C: the bridge is down; messages queue in its persistent session; the broker restarts; the bridge
    // comes back and receives them.
    bridge.kill9();
    for m in &meters {
        publish(broker.port, &m.id, &msgs(&m.id, 100..150));
    }
    broker.restart();
    bridge.restart();
    on_chain(150);

    for (i, m) in meters.iter().enumerate() {
        let want: Vec<(u64, u64, u64)> = (0..150).map(|k| (10 * k + 1, 0, t0 + k)).collect();
        assert_eq!(recorded(&rpc, contracts.readings, addrs[i]), want, "meter {}", m.id);
    }
    let counts = submitted_counts(&rpc, contracts.readings);
    assert_eq!(counts.len(), 150 * n_meters);
    assert!(counts.values().all(|c| *c == 1), "a reading was submitted twice");
    assert!(bridge.log().contains("session_present=true"), "the session survived the broker restart");
}
