//! The node goes away (SIGKILL: its transaction pool is lost) while readings keep arriving: the bridge
//! keeps committing them to its outbox, reports itself unhealthy, and once the node is back it resends
//! its signed transactions verbatim and submits the backlog in batches. The first RPC URL is dead, so
//! every request also exercises failover. Nothing is lost or submitted twice.
//!
//! The outage lasts `P2PE_NODE_OUTAGE_SECS` seconds (default 8), with one reading per meter arriving
//! every 10 s of it. The hour-long run the bridge is specified to survive is
//! `P2PE_NODE_OUTAGE_SECS=3600 cargo test --release -p p2pe-mqtt-bridge --test e2e bridge_node_outage`.

use std::time::Duration;

use p2pe_tests::bridge::*;

#[test]
fn node_stopped_then_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let n_meters = 3;
    let meters: Vec<MeterSpec> =
        (0..n_meters).map(|i| MeterSpec::new(&format!("m{i}"), i, "json", "reading")).collect();
    let users: Vec<String> = meters.iter().map(|m| m.id.clone()).collect();
    let broker = Mosquitto::start(dir.path(), &users);
    let mut node = Node::start(&dir.path().join("chain"));
    let rpc = node.rpc();
    let addrs = meter_addresses();
    let contracts = deploy(&rpc, &addrs[..n_meters]);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let setup = BridgeSetup {
        tls: false,
        rpc_urls: vec![dead, node.url.clone()],
        readings: contracts.readings,
        meters: meters.clone(),
        max_batch: 100,
        resend_interval_ms: 2000,
        limits: String::new(),
    };
    let (cfg, http) = write_config(dir.path(), &broker, &setup);
    let bridge = Bridge::start(&cfg, http);
    wait_for("the bridge to connect", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_mqtt_connected") == 1.0
    });

    let outage = std::env::var("P2PE_NODE_OUTAGE_SECS")
        .map_or(8, |v| v.parse::<u64>().expect("P2PE_NODE_OUTAGE_SECS"));
    // Readings 0..200 are a fast stream; then one reading per meter every 10 s of the outage.
    let (burst, paced) = (200u64, outage / 10);
    let per_meter = burst + paced;
    let t0 = now_secs() - 2 * burst;
    let msgs = |id: &str, ks: std::ops::Range<u64>| -> Vec<(String, Vec<u8>)> {
        ks.map(|k| (format!("meters/{id}/reading"), json_reading(id, k, t0 + k, 50 + k * 12, k))).collect()
    };
    // Phase 1: a stream, and the node is killed in the middle of it (transactions in flight).
    let port = broker.port;
    let streams: Vec<_> = meters
        .iter()
        .map(|m| {
            let batch = msgs(&m.id, 0..60);
            let id = m.id.clone();
            std::thread::spawn(move || publish_paced(port, &id, &batch, Some(30.0)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    wait_for("a transaction in flight", Duration::from_secs(10), || {
        bridge.metric("p2pe_bridge_txs_in_flight") >= 1.0
    });
    node.stop();
    for s in streams {
        s.join().unwrap();
    }
    let down = std::time::Instant::now();
    // Phase 2: while the node is down, more readings arrive and are committed, not lost.
    for m in &meters {
        publish(broker.port, &m.id, &msgs(&m.id, 60..burst));
    }
    wait_for("the outbox to hold every reading", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_readings_committed_total") as u64 == n_meters as u64 * burst
    });
    wait_for("/health to report the node down", Duration::from_secs(30), || bridge.health().0 == 503);
    assert_eq!(bridge.health().1["rpc_up"], false);
    // The rest of the outage: a reading per meter every 10 s (timestamps stay in the past of t0 + k
    // order: t0 + k < now for every k < per_meter), each committed while the node stays down.
    for k in burst..per_meter {
        let due = down + Duration::from_secs(10 * (k - burst + 1));
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        for m in &meters {
            publish(broker.port, &m.id, &msgs(&m.id, k..k + 1));
        }
        let want = n_meters as u64 * (k + 1);
        wait_for("the outbox to hold the new reading", Duration::from_secs(30), || {
            bridge.metric("p2pe_bridge_readings_committed_total") as u64 == want
        });
        assert_eq!(bridge.health().0, 503, "the node is down {} s into the outage", down.elapsed().as_secs());
    }
    std::thread::sleep(Duration::from_secs(outage).saturating_sub(down.elapsed()));
    assert!(bridge.metric("p2pe_bridge_outbox_depth") > 0.0);
    let total = n_meters as u64 * per_meter;
    eprintln!("node down for {} s; {total} readings committed", down.elapsed().as_secs());

    // Phase 3: the node comes back (same data, empty pool).
    node.restart();
    wait_for("every reading on chain", Duration::from_secs(120), || {
        (0..n_meters).map(|i| recorded(&rpc, contracts.readings, addrs[i]).len() as u64).sum::<u64>() == total
    });
    for (i, m) in meters.iter().enumerate() {
        let want: Vec<(u64, u64, u64)> = (0..per_meter).map(|k| (50 + k * 12, k, t0 + k)).collect();
        assert_eq!(recorded(&rpc, contracts.readings, addrs[i]), want, "meter {}", m.id);
    }
    let counts = submitted_counts(&rpc, contracts.readings);
    assert_eq!(counts.len() as u64, total);
    assert!(counts.values().all(|c| *c == 1), "a reading was submitted twice");
    wait_for("the bridge to be healthy again", Duration::from_secs(30), || bridge.health().0 == 200);
    wait_for("the outbox to drain", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_outbox_depth") == 0.0
    });
    eprintln!(
        "resent: {}, txs: {}, rpc errors: {}",
        bridge.metric("p2pe_bridge_txs_resent_total"),
        bridge.metric("p2pe_bridge_txs_sent_total"),
        bridge.metric("p2pe_bridge_rpc_errors_total")
    );
    assert!(bridge.metric("p2pe_bridge_rpc_errors_total") > 0.0);
    // Signed once, resent verbatim: every transaction the outbox holds as confirmed is on chain under
    // the hash of its stored bytes, and none was signed twice for the same readings (checked above).
    let db = rusqlite::Connection::open(dir.path().join("outbox.sqlite")).unwrap();
    let mut stmt = db.prepare("SELECT hash, sends, state FROM txs").unwrap();
    let txs: Vec<(Vec<u8>, i64, i64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    assert!(!txs.is_empty());
    for (hash, _, state) in &txs {
        assert_eq!(*state, 1, "every transaction confirmed");
        let receipt = rpc.call(
            "eth_getTransactionReceipt",
            serde_json::json!([format!("0x{}", alloy_primitives::hex::encode(hash))]),
        );
        assert_eq!(
            receipt["status"],
            "0x1",
            "stored transaction 0x{} is on chain",
            alloy_primitives::hex::encode(hash)
        );
    }
    eprintln!("transactions sent more than once: {}", txs.iter().filter(|t| t.1 > 1).count());
    // The backlog went in batches: far fewer transactions than readings.
    assert!(bridge.metric("p2pe_bridge_txs_sent_total") < total as f64 / 3.0);
}
