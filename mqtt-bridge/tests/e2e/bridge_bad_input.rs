//! Every kind of bad input is counted, logged with its reason and dead-lettered, and none blocks the
//! stream: a good reading published after all of them still reaches the chain, and a redelivered
//! duplicate is dropped without being submitted again. A reading the contract refuses (meter not bound
//! on chain) is dead-lettered with the contract's error.

use std::time::Duration;

use p2pe_mqtt_bridge::decode::Reason;
use p2pe_mqtt_bridge::outbox::Outbox;
use p2pe_tests::bridge::*;

#[test]
fn bad_input_is_dead_lettered_and_never_blocks_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let meters = vec![
        MeterSpec::new("house-01", 0, "json", "reading"),
        MeterSpec::new("house-12", 1, "tasmota-sml", "tele/SENSOR"),
        MeterSpec::new("plug-07", 2, "tasmota", "tele/SENSOR"),
        // Configured in the bridge but not bound on chain: the contract refuses its readings.
        MeterSpec::new("unbound", 3, "json", "reading"),
    ];
    let mut users: Vec<String> = meters.iter().map(|m| m.id.clone()).collect();
    users.push("stranger".into());
    let broker = Mosquitto::start(dir.path(), &users);
    let node = Node::start(&dir.path().join("chain"));
    let rpc = node.rpc();
    let addrs = meter_addresses();
    let contracts = deploy(&rpc, &addrs[..3]);
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

    let now = now_secs();
    let t0 = now - 300;
    let topic = "meters/house-01/reading".to_string();
    let good1 = json_reading("house-01", 1, t0, 1000, 10);
    let mut msgs: Vec<(String, Vec<u8>)> = vec![
        (topic.clone(), good1.clone()),
        // malformed / truncated JSON
        (topic.clone(), br#"{"meter":"house-01","seq":2,"ts":"#.to_vec()),
        // wrong types
        (
            topic.clone(),
            format!(r#"{{"meter":"house-01","seq":2,"ts":{},"import_wh":"1001","export_wh":10}}"#, t0 + 1)
                .into_bytes(),
        ),
        // timestamps far in the future and far in the past
        (topic.clone(), json_reading("house-01", 2, now + 3600, 1001, 10)),
        (topic.clone(), json_reading("house-01", 2, now - 30 * 86_400, 1001, 10)),
        // counter going backwards
        (topic.clone(), json_reading("house-01", 2, t0 + 10, 999, 10)),
        // same timestamp, other counters
        (topic.clone(), json_reading("house-01", 2, t0, 1001, 10)),
        // another meter's id on this meter's topic
        (topic.clone(), json_reading("house-02", 2, t0 + 10, 1001, 10)),
        // oversize payload
        (topic.clone(), format!(r#"{{"meter":"house-01","pad":"{}"}}"#, "x".repeat(10_000)).into_bytes()),
        // a redelivered duplicate (not a dead letter)
        (topic.clone(), good1.clone()),
    ];
    publish(broker.port, "house-01", &msgs);
    // meter error value (the SML register reads 4294967.295)
    let sml_time = {
        // Tasmota time of t0 + 20 in UTC.
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{}", t0 + 20), "+%Y-%m-%dT%H:%M:%S"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    publish(
        broker.port,
        "house-12",
        &[(
            "meters/house-12/tele/SENSOR".into(),
            format!(r#"{{"Time":"{sml_time}","SML":{{"Total_in":4294967.295,"Total_out":2204.117,"Power_curr":0}}}}"#).into_bytes(),
        )],
    );
    // truncated Tasmota payload (the real sample)
    publish(
        broker.port,
        "plug-07",
        &[(
            "meters/plug-07/tele/SENSOR".into(),
            br#"{"Time":"2026-06-11T12:45:00","ENERGY":{"Total":"n/a","Power":"#.to_vec(),
        )],
    );
    // a topic no meter is configured for (allowed by the ACL for its own user)
    publish(
        broker.port,
        "stranger",
        &[("meters/stranger/reading".into(), json_reading("stranger", 1, t0, 1, 1))],
    );
    // a configured meter that the chain does not know
    publish(
        broker.port,
        "unbound",
        &[("meters/unbound/reading".into(), json_reading("unbound", 1, t0, 5, 5))],
    );
    // and finally a good reading: the stream was not blocked
    msgs.clear();
    publish(broker.port, "house-01", &[(topic.clone(), json_reading("house-01", 2, t0 + 20, 1010, 12))]);

    wait_for("the good readings to be confirmed", Duration::from_secs(60), || {
        bridge.metric("p2pe_bridge_readings_confirmed_total") >= 2.0
    });
    wait_for("the unbound meter's reading to be refused by the contract", Duration::from_secs(60), || {
        bridge.metric("p2pe_bridge_rejected_total{reason=\"reverted\"}") >= 1.0
    });
    assert_eq!(recorded(&rpc, contracts.readings, addrs[0]), vec![(1000, 10, t0), (1010, 12, t0 + 20)]);
    assert_eq!(
        latest_reading(&rpc, contracts.readings, addrs[1]).2,
        0,
        "the error value never reached the chain"
    );

    let expect = [
        (Reason::Malformed, 2),
        (Reason::WrongType, 1),
        (Reason::FutureTimestamp, 1),
        (Reason::PastTimestamp, 1),
        (Reason::CounterBackwards, 1),
        (Reason::Conflicting, 1),
        (Reason::MeterMismatch, 1),
        (Reason::Oversize, 1),
        (Reason::ErrorValue, 1),
        (Reason::UnknownMeter, 1),
        (Reason::Reverted, 1),
        (Reason::OutOfOrder, 0),
    ];
    let dead = Outbox::open(&dir.path().join("outbox.sqlite")).expect("outbox").dead_letters().unwrap();
    for (reason, n) in expect {
        assert_eq!(
            bridge.metric(&format!("p2pe_bridge_rejected_total{{reason=\"{}\"}}", reason.as_str())) as usize,
            n,
            "metric for {reason:?}"
        );
        assert_eq!(
            dead.iter().filter(|d| d.0 == reason.as_str()).count(),
            n,
            "dead letters for {reason:?}: {dead:?}"
        );
    }
    let reverted = dead.iter().find(|d| d.0 == "reverted").unwrap();
    assert_eq!(reverted.1.as_deref(), Some("unbound"));
    assert!(reverted.2.contains("UnknownMeter"), "{reverted:?}");
    assert_eq!(bridge.metric("p2pe_bridge_readings_duplicate_total"), 1.0);
    let log = bridge.log();
    for reason in
        ["malformed", "wrong_type", "oversize", "counter_backwards", "future_timestamp", "unknown_meter"]
    {
        assert!(
            log.contains(&format!("reason=\"{reason}\"")) || log.contains(&format!("reason={reason}")),
            "{reason} not logged"
        );
    }
    let (code, health) = bridge.health();
    assert_eq!(code, 200, "{health}");
    // Nothing was submitted twice.
    assert!(submitted_counts(&rpc, contracts.readings).values().all(|c| *c == 1));
}
