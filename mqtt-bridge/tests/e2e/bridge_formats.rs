//! Every payload format end to end, over the broker's TLS listener (CA, client certificate and key,
//! user name and password): publish → bridge → signed transaction → reading on chain. Also a Tasmota
//! counter reset (re-based, reported, never negative) and Shelly power messages (monitoring only).

use std::time::Duration;

use p2pe_mqtt_bridge::outbox::Outbox;
use p2pe_tests::bridge::*;

/// (importWh, exportWh, timestamp) as recorded on chain.
type Reading = (u64, u64, u64);

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a unix time, as Tasmota prints it.
fn tasmota_time(ts: u64) -> String {
    let days = (ts / 86_400) as i64;
    let secs = ts % 86_400;
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[test]
fn every_format_reaches_the_chain_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut meters = vec![
        MeterSpec::new("house-01", 0, "json", "reading"),
        MeterSpec::new("plug-07", 1, "tasmota", "tele/SENSOR"),
        MeterSpec::new("house-12", 2, "tasmota-sml", "tele/SENSOR"),
        MeterSpec::new("pro3em", 3, "shelly", "events/rpc"),
        MeterSpec::new("proem", 4, "shelly", "events/rpc"),
        MeterSpec::new("plugs", 5, "shelly", "events/rpc"),
    ];
    meters[5].channel = 1; // switch:1
    let users: Vec<String> = meters.iter().map(|m| m.id.clone()).collect();
    let broker = Mosquitto::start(dir.path(), &users);
    let node = Node::start(&dir.path().join("chain"));
    let rpc = node.rpc();
    let addrs = meter_addresses();
    let contracts = deploy(&rpc, &addrs[..6]);
    let setup = BridgeSetup {
        tls: true,
        rpc_urls: vec![node.url.clone()],
        readings: contracts.readings,
        meters: meters.clone(),
        max_batch: 50,
        resend_interval_ms: 3000,
        limits: String::new(),
    };
    let (cfg, http) = write_config(dir.path(), &broker, &setup);
    let bridge = Bridge::start(&cfg, http);
    wait_for("the bridge to connect over TLS", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_mqtt_connected") == 1.0
    });

    let t0 = now_secs() - 600;
    let pub1 = |id: &str, suffix: &str, payload: String| {
        publish(broker.port, id, &[(format!("meters/{id}/{suffix}"), payload.into_bytes())]);
    };
    // Round 1: one reading per format.
    pub1(
        "house-01",
        "reading",
        String::from_utf8(json_reading("house-01", 1, t0, 15_453_806, 2_204_117)).unwrap(),
    );
    pub1(
        "plug-07",
        "tele/SENSOR",
        format!(
            r#"{{"Time":"{}","ENERGY":{{"TotalStartTime":"2025-10-21T22:15:00","Total":3.705,"Yesterday":0.028,"Today":0.026,"Period":1,"Power":5,"ApparentPower":5,"ReactivePower":0,"Factor":1.00,"Voltage":233,"Current":0.021}}}}"#,
            tasmota_time(t0)
        ),
    );
    pub1(
        "house-12",
        "tele/SENSOR",
        format!(
            r#"{{"Time":"{}","SML":{{"Total_in":15453.806,"Total_out":2204.117,"Power_curr":-1834}}}}"#,
            tasmota_time(t0)
        ),
    );
    pub1(
        "pro3em",
        "events/rpc",
        format!(
            r#"{{"src":"shellypro3em-c8f09e8832a4","dst":"shellypro3em-c8f09e8832a4/events","method":"NotifyStatus","params":{{"ts":{t0}.21,"emdata:0":{{"id":0,"a_total_act_energy":1204.06,"a_total_act_ret_energy":0,"b_total_act_energy":981.77,"b_total_act_ret_energy":0,"c_total_act_energy":26289.44,"c_total_act_ret_energy":131881.85,"total_act":28475.27,"total_act_ret":131881.85}}}}}}"#
        ),
    );
    pub1(
        "proem",
        "events/rpc",
        format!(
            r#"{{"src":"shellyproem50-08f9e0e5a1b2","dst":"shellyproem50-08f9e0e5a1b2/events","method":"NotifyStatus","params":{{"ts":{t0}.00,"em1data:0":{{"id":0,"total_act_energy":48213.5,"total_act_ret_energy":9120.25}}}}}}"#
        ),
    );
    pub1(
        "plugs",
        "events/rpc",
        format!(
            r#"{{"src":"shellyplusplugs-80646fe1a0b2","dst":"shellyplusplugs-80646fe1a0b2/events","method":"NotifyStatus","params":{{"ts":{t0}.00,"switch:1":{{"id":1,"apower":12.5,"aenergy":{{"total":14532.118,"by_minute":[0.0,12.5,11.9],"minute_ts":{t0}}}}}}}}}"#
        ),
    );
    // Monitoring only: Shelly instantaneous power.
    pub1(
        "pro3em",
        "events/rpc",
        format!(
            r#"{{"src":"shellypro3em-c8f09e8832a4","dst":"shellypro3em-c8f09e8832a4/events","method":"NotifyStatus","params":{{"ts":{}.08,"em:0":{{"id":0,"a_act_power":212.4,"b_act_power":0,"c_act_power":-2318.0,"total_act_power":-2105.6,"total_current":10.531}}}}}}"#,
            t0 + 5
        ),
    );

    // Round 2: the counters move on; Tasmota's counter is reset (TotalStartTime changes, Total restarts).
    let t1 = t0 + 60;
    pub1(
        "house-01",
        "reading",
        String::from_utf8(json_reading("house-01", 2, t1, 15_454_000, 2_204_500)).unwrap(),
    );
    pub1(
        "plug-07",
        "tele/SENSOR",
        format!(
            r#"{{"Time":"{}","ENERGY":{{"TotalStartTime":"2025-10-21T22:15:00","Total":3.731,"Power":5}}}}"#,
            tasmota_time(t1)
        ),
    );
    pub1(
        "plug-07",
        "tele/SENSOR",
        format!(
            r#"{{"Time":"{}","ENERGY":{{"TotalStartTime":"{}","Total":0.004,"Yesterday":0.0,"Today":0.004,"Period":0,"Power":5}}}}"#,
            tasmota_time(t1 + 60),
            tasmota_time(t1 + 30)
        ),
    );
    pub1(
        "house-12",
        "tele/SENSOR",
        format!(
            r#"{{"Time":"{}","SML":{{"Total_in":15454.001,"Total_out":2204.617,"Power_curr":-1500}}}}"#,
            tasmota_time(t1)
        ),
    );
    pub1(
        "pro3em",
        "events/rpc",
        format!(
            r#"{{"method":"NotifyStatus","params":{{"ts":{t1}.5,"emdata:0":{{"id":0,"total_act":28500.99,"total_act_ret":131990.0}}}}}}"#
        ),
    );
    pub1(
        "proem",
        "events/rpc",
        format!(
            r#"{{"method":"NotifyStatus","params":{{"ts":{t1},"em1data:0":{{"id":0,"total_act_energy":48300.0,"total_act_ret_energy":9120.25}}}}}}"#
        ),
    );
    pub1(
        "plugs",
        "events/rpc",
        format!(
            r#"{{"method":"NotifyStatus","params":{{"ts":{t1},"switch:1":{{"id":1,"aenergy":{{"total":14600.9}}}}}}}}"#
        ),
    );

    // Expected on-chain readings per meter: (import, export, ts), in order.
    let expected: Vec<(usize, Vec<Reading>)> = vec![
        (0, vec![(15_453_806, 2_204_117, t0), (15_454_000, 2_204_500, t1)]),
        // 3705 Wh, 3731 Wh, then the reset: 4 Wh since the reset continue from 3731 -> 3735, never negative.
        (1, vec![(3705, 0, t0), (3731, 0, t1), (3735, 0, t1 + 60)]),
        (2, vec![(15_453_806, 2_204_117, t0), (15_454_001, 2_204_617, t1)]),
        (3, vec![(28_475, 131_881, t0), (28_500, 131_990, t1)]),
        (4, vec![(48_213, 9120, t0), (48_300, 9120, t1)]),
        (5, vec![(14_532, 0, t0), (14_600, 0, t1)]),
    ];
    let total: usize = expected.iter().map(|(_, v)| v.len()).sum();
    wait_for("every reading to be confirmed", Duration::from_secs(90), || {
        bridge.metric("p2pe_bridge_readings_confirmed_total") as usize >= total
    });
    for (k, want) in &expected {
        let got = recorded(&rpc, contracts.readings, addrs[*k]);
        assert_eq!(&got, want, "meter {} ({})", meters[*k].id, meters[*k].format);
        let last = want.last().unwrap();
        let latest = latest_reading(&rpc, contracts.readings, addrs[*k]);
        assert_eq!((latest.0, latest.1, latest.2), *last);
    }
    // Each reading was submitted exactly once, attested by its own meter key.
    let counts = submitted_counts(&rpc, contracts.readings);
    assert_eq!(counts.len(), total, "{counts:?}");
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");

    assert_eq!(bridge.metric("p2pe_bridge_counter_resets_total"), 1.0);
    assert_eq!(bridge.metric("p2pe_bridge_monitoring_messages_total"), 1.0);
    assert_eq!(bridge.metric("p2pe_bridge_meter_power_watts{meter=\"pro3em\"}"), -2105.6);
    assert_eq!(bridge.metric("p2pe_bridge_readings_committed_total") as usize, total);
    assert_eq!(bridge.metric("p2pe_bridge_readings_received_total") as usize, total + 1);
    let resets = Outbox::open(&dir.path().join("outbox.sqlite")).expect("outbox").counter_resets().unwrap();
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0].0, "plug-07");
    assert_eq!(resets[0].1, "epoch");
    let (code, health) = bridge.health();
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert!(
        !bridge.log().contains(&alloy_primitives::hex::encode(meter_signer(0).credential().to_bytes())),
        "a key was logged"
    );
}

/// Regenerates the committed keystores (`-- --ignored regenerate_keystore_fixtures`).
#[test]
#[ignore]
fn regenerate_keystore_fixtures() {
    regenerate_keystores();
}
