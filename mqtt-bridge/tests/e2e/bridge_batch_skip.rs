//! A relayed batch in which the contract refuses some readings: the contract skips exactly those (a
//! `ReadingSkipped` event each) instead of reverting the batch, and the bridge dead-letters exactly the
//! skipped readings with the contract's reason, confirms the others, and resends nothing.

use std::time::Duration;

use p2pe_mqtt_bridge::outbox::Outbox;
use p2pe_tests::bridge::*;

#[test]
fn skipped_batch_items_are_dead_lettered_and_the_rest_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let meters = vec![
        MeterSpec::new("house-01", 0, "json", "reading"),
        // Configured in the bridge but not bound on chain: the contract refuses its readings.
        MeterSpec::new("unbound", 3, "json", "reading"),
    ];
    let users: Vec<String> = meters.iter().map(|m| m.id.clone()).collect();
    let broker = Mosquitto::start(dir.path(), &users);
    let mut node = Node::start(&dir.path().join("chain"));
    let rpc = node.rpc();
    let addrs = meter_addresses();
    let contracts = deploy(&rpc, &addrs[..1]);
    let setup = BridgeSetup {
        tls: false,
        rpc_urls: vec![node.url.clone()],
        readings: contracts.readings,
        meters,
        max_batch: 50,
        resend_interval_ms: 3000,
        limits: "max_payload_bytes = 4096\nmax_future_secs = 30\nmax_past_secs = 86400".into(),
    };
    let (cfg, http) = write_config(dir.path(), &broker, &setup);
    let bridge = Bridge::start(&cfg, http);
    wait_for("the bridge to connect", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_mqtt_connected") == 1.0
    });

    // With the node down the readings pile up in the outbox, so that the first round after it is back
    // sends all five in one `submitReadings` batch.
    node.stop();
    let now = now_secs();
    // Ten hours old: its slot is final (the test deployment's finality is 26,040 s), the bridge's own
    // window (one day) lets it through.
    let old = now - 36_000;
    publish(
        broker.port,
        "house-01",
        &[
            ("meters/house-01/reading".into(), json_reading("house-01", 1, old, 1000, 10)),
            ("meters/house-01/reading".into(), json_reading("house-01", 2, now - 120, 1100, 11)),
            ("meters/house-01/reading".into(), json_reading("house-01", 3, now - 60, 1200, 12)),
        ],
    );
    publish(
        broker.port,
        "unbound",
        &[
            ("meters/unbound/reading".into(), json_reading("unbound", 1, now - 100, 5, 5)),
            ("meters/unbound/reading".into(), json_reading("unbound", 2, now - 50, 6, 6)),
        ],
    );
    wait_for("the five readings to be committed", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_readings_committed_total") >= 5.0
    });
    node.restart();

    wait_for("the batch to be confirmed", Duration::from_secs(90), || {
        bridge.metric("p2pe_bridge_readings_confirmed_total") >= 2.0
            && bridge.metric("p2pe_bridge_rejected_total{reason=\"reverted\"}") >= 3.0
    });
    assert_eq!(
        recorded(&rpc, contracts.readings, addrs[0]),
        vec![(1100, 11, now - 120), (1200, 12, now - 60)],
        "the valid items of the batch are on chain"
    );
    assert_eq!(bridge.metric("p2pe_bridge_readings_confirmed_total"), 2.0, "exactly the others confirmed");
    assert_eq!(bridge.metric("p2pe_bridge_rejected_total{reason=\"reverted\"}"), 3.0, "exactly the skipped");
    assert_eq!(bridge.metric("p2pe_bridge_txs_reverted_total"), 0.0, "the batch did not revert");

    let outbox = Outbox::open(&dir.path().join("outbox.sqlite")).expect("outbox");
    let dead = outbox.dead_letters().unwrap();
    assert_eq!(dead.len(), 3, "{dead:?}");
    for d in &dead {
        assert_eq!(d.0, "reverted", "{d:?}");
        assert!(d.2.contains("skipped by the contract in batch"), "the batch path reported it: {d:?}");
    }
    let final_slot: Vec<_> = dead.iter().filter(|d| d.2.contains("SlotFinal")).collect();
    assert_eq!(final_slot.len(), 1, "{dead:?}");
    assert_eq!(final_slot[0].1.as_deref(), Some("house-01"));
    let unknown: Vec<_> = dead.iter().filter(|d| d.2.contains("UnknownMeter")).collect();
    assert_eq!(unknown.len(), 2, "{dead:?}");
    assert!(unknown.iter().all(|d| d.1.as_deref() == Some("unbound")), "{dead:?}");
    let depth = outbox.depth().unwrap();
    assert_eq!((depth.pending, depth.in_flight), (0, 0), "nothing left to send: {depth:?}");
    // One transaction carried all five readings, and nothing was submitted twice.
    let counts = submitted_counts(&rpc, contracts.readings);
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    let log = bridge.log();
    let skipped: Vec<&str> =
        log.lines().filter(|l| l.contains("reading skipped by the contract in a batch")).collect();
    assert_eq!(skipped.len(), 3, "each skipped reading is logged:\n{log}");
    // With the contract's reason: an operator reading the log sees why, not only that.
    assert_eq!(skipped.iter().filter(|l| l.contains("SlotFinal")).count(), 1, "{skipped:#?}");
    assert_eq!(skipped.iter().filter(|l| l.contains("UnknownMeter")).count(), 2, "{skipped:#?}");
}
