//! A faulty meter, through a real Mosquitto, a real node and the real bridge process:
//! - a spike faster than the meter's rated power is quarantined and never signed, and the meter's next
//!   genuine readings (judged against its last accepted one) reach the chain again: a reading just over
//!   the limit is quarantined, one exactly at it and one just under it are accepted;
//! - an epoch that flips back to an earlier one is quarantined, and with `max_counter_resets = 2` the
//!   first and second resets are accepted and the third is quarantined;
//! - a Shelly notification whose `src` is not the configured `device_id` is dead-lettered.
//!
//! Quarantined readings are kept in the outbox, counted in `/metrics` and `/health`, and logged.

use std::time::Duration;

use p2pe_mqtt_bridge::decode::Reason;
use p2pe_mqtt_bridge::outbox::Outbox;
use p2pe_tests::bridge::*;

fn json_epoch(meter: &str, seq: u64, ts: u64, import_wh: u64, epoch: &str) -> Vec<u8> {
    format!(
        r#"{{"meter":"{meter}","seq":{seq},"ts":{ts},"import_wh":{import_wh},"export_wh":0,"epoch":"{epoch}"}}"#
    )
    .into_bytes()
}

fn shelly(src: &str, ts: u64, total: f64) -> Vec<u8> {
    format!(
        r#"{{"src":"{src}","dst":"{src}/events","method":"NotifyStatus","params":{{"ts":{ts}.00,"emdata:0":{{"id":0,"total_act":{total},"total_act_ret":0}}}}}}"#
    )
    .into_bytes()
}

#[test]
fn spikes_and_flapping_epochs_are_quarantined_and_the_meter_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // house-01: 16 A on one phase at 230 V = 3,680 W, i.e. at most floor(3680 * s / 3600) + 1 Wh in s seconds.
    let mut house = MeterSpec::new("house-01", 0, "json", "reading");
    house.extra = "rated_current_a = 16\nphases = 1".into();
    let flappy = MeterSpec::new("house-02", 1, "json", "reading");
    let mut pro3em = MeterSpec::new("pro3em", 2, "shelly", "events/rpc");
    pro3em.extra = "device_id = \"shellypro3em-c8f09e8832a4\"".into();
    let meters = vec![house, flappy, pro3em];
    let Rig { broker, node: _node, rpc, contracts, bridge } =
        Rig::start(dir.path(), meters, "max_counter_resets = 2\ncounter_reset_window_secs = 3600");
    let addrs = meter_addresses();

    let t0 = now_secs() - 600;
    let house = "meters/house-01/reading".to_string();
    // 60 s allow floor(3680 * 60 / 3600) + 1 = 62 Wh: +63 is one over.
    // 120 s (since the last accepted reading) allow 123 Wh: +123 is exactly at the limit.
    // Then 60 s allow 62 Wh: +61 is just under.
    publish(
        broker.port,
        "house-01",
        &[
            (house.clone(), json_reading("house-01", 1, t0, 1000, 0)),
            (house.clone(), json_reading("house-01", 2, t0 + 60, 1063, 0)),
            (house.clone(), json_reading("house-01", 3, t0 + 120, 1123, 0)),
            (house.clone(), json_reading("house-01", 4, t0 + 180, 1184, 0)),
        ],
    );
    let flappy = "meters/house-02/reading".to_string();
    publish(
        broker.port,
        "house-02",
        &[
            (flappy.clone(), json_epoch("house-02", 1, t0, 500, "A")),
            (flappy.clone(), json_epoch("house-02", 2, t0 + 10, 10, "B")), // reset 1: accepted
            (flappy.clone(), json_epoch("house-02", 3, t0 + 20, 20, "A")), // back to A: quarantined
            (flappy.clone(), json_epoch("house-02", 4, t0 + 30, 15, "B")), // B goes on
            (flappy.clone(), json_epoch("house-02", 5, t0 + 40, 5, "C")),  // reset 2: at the limit, accepted
            (flappy.clone(), json_epoch("house-02", 6, t0 + 50, 3, "D")),  // reset 3: over it, quarantined
        ],
    );
    let pro = "meters/pro3em/events/rpc".to_string();
    publish(
        broker.port,
        "pro3em",
        &[
            (pro.clone(), shelly("shellypro3em-c8f09e8832a4", t0, 28475.27)),
            (pro.clone(), shelly("shellypro3em-000000000000", t0 + 60, 28480.0)),
            (pro.clone(), shelly("shellypro3em-c8f09e8832a4", t0 + 120, 28490.5)),
        ],
    );

    wait_for("the accepted readings to be confirmed", Duration::from_secs(90), || {
        bridge.metric("p2pe_bridge_readings_confirmed_total") >= 9.0
    });
    assert_eq!(
        recorded(&rpc, contracts.readings, addrs[0]),
        vec![(1000, 0, t0), (1123, 0, t0 + 120), (1184, 0, t0 + 180)],
        "the spike never reached the chain; the meter's next readings did"
    );
    assert_eq!(
        recorded(&rpc, contracts.readings, addrs[1]),
        vec![(500, 0, t0), (510, 0, t0 + 10), (515, 0, t0 + 30), (520, 0, t0 + 40)],
        "resets re-based; the flip back and the third reset were not signed"
    );
    assert_eq!(recorded(&rpc, contracts.readings, addrs[2]), vec![(28475, 0, t0), (28490, 0, t0 + 120)]);

    let ob = Outbox::open(&dir.path().join("outbox.sqlite")).expect("outbox");
    let q = ob.quarantined().unwrap();
    let summary: Vec<(&str, &str, u64, u64)> =
        q.iter().map(|r| (r.reason.as_str(), r.meter.as_str(), r.raw_import, r.timestamp)).collect();
    assert_eq!(
        summary,
        vec![
            ("implausible_rise", "house-01", 1063, t0 + 60),
            ("epoch_flapping", "house-02", 20, t0 + 20),
            ("epoch_flapping", "house-02", 3, t0 + 50),
        ]
    );
    assert!(q[0].detail.contains("at most 62 Wh possible at 3680 W"), "{}", q[0].detail);
    assert!(q[1].detail.contains("returns to an epoch"), "{}", q[1].detail);
    assert!(q[2].detail.contains("limits.max_counter_resets = 2"), "{}", q[2].detail);
    let dead = ob.dead_letters().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, "device_mismatch");
    assert!(dead[0].2.contains("shellypro3em-000000000000") && dead[0].2.contains("device_id"), "{dead:?}");

    assert_eq!(bridge.metric("p2pe_bridge_quarantined_total"), 3.0);
    for (reason, n) in
        [(Reason::ImplausibleRise, 1.0), (Reason::EpochFlapping, 2.0), (Reason::DeviceMismatch, 1.0)]
    {
        assert_eq!(
            bridge.metric(&format!("p2pe_bridge_rejected_total{{reason=\"{}\"}}", reason.as_str())),
            n
        );
    }
    wait_for("the quarantine gauge", Duration::from_secs(10), || {
        bridge.metric("p2pe_bridge_quarantine") == 3.0
    });
    let (code, health) = bridge.health();
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["quarantined"], 3, "{health}");
    let log = bridge.log();
    assert!(log.contains("reading quarantined"), "quarantine is logged");
    assert!(log.contains("implausible_rise") && log.contains("epoch_flapping"));
}
