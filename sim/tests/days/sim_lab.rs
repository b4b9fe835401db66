//! The lab path (`--lab`, no simulated meters): two households mapped to "real" meters that this
//! test plays itself — JSON and Tasmota SML payloads published every second to a real Mosquitto by
//! an MQTT client of the test, with counters the test alone knows. The simulator must register the
//! households with those meters, run the bridge for them, trade, and settle against what the meters
//! reported; the test then checks the settled energy against its own counters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_signer_local::PrivateKeySigner;
use p2pe_sim::config::SimConfig;
use p2pe_sim::lab::LabConfig;
use rumqttc::{AsyncClient, MqttOptions, QoS};

use p2pe_tests::bridge::PlainMosquitto as Mosquitto;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Cumulative counters of a meter at unix time `t`: a constant flow from a fixed origin.
fn counters(import_per_s: u64, export_per_s: u64, t: u64) -> (u64, u64) {
    let dt = t - 1_700_000_000;
    (5_000_000 + import_per_s * dt, 1_000_000 + export_per_s * dt)
}

#[test]
fn lab_meters_drive_settlement() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let keys: Vec<PrivateKeySigner> = (0..2).map(|_| PrivateKeySigner::random()).collect();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("pw.txt"), "lab-secret\n").unwrap();
    for (i, k) in keys.iter().enumerate() {
        p2pe_sim::keys::write_keystore(&dir.path().join(format!("keys/m{i}.json")), k, "lab-secret").unwrap();
    }
    let lab = format!(
        r#"
[broker]
url = "mqtt://127.0.0.1:{port}"

[keys]
password_file = "pw.txt"

[[households]]
id = "flat-a"
meter_address = "{a0:#x}"
meter_keystore = "keys/m0.json"
meter_format = "json"
meter_topic = "lab/flat-a/energy"
annual_kwh = 4000
# The test's meters run fast (20 Wh/s, 72 kW) so that a 5-second slot holds trades: their rated
# current must say so, or the bridge quarantines the readings as implausible (default 63 A).
meter_rated_current_a = 200

[[households]]
id = "roof-b"
meter_address = "{a1:#x}"
meter_keystore = "keys/m1.json"
meter_format = "tasmota-sml"
meter_topic = "tele/roof-b/SENSOR"
utc_offset = "+01:00"
annual_kwh = 2000
pv_kwp = 8.0
meter_rated_current_a = 2000
"#,
        port = broker.port,
        a0 = keys[0].address(),
        a1 = keys[1].address(),
    );
    let lab_path = dir.path().join("lab.toml");
    std::fs::write(&lab_path, lab).unwrap();

    let mut cfg = SimConfig::defaults();
    cfg.lab = Some(LabConfig::load(&lab_path).unwrap());
    cfg.first_slot = 12 * 4;
    cfg.slots = 4;
    // Readings reach the chain a few seconds after their slot: its boundaries are final a grace period
    // after it ends (MeterReadings), so the grace must cover the bridge's batching and one block.
    cfg.grace_period = 5;
    cfg.out = dir.path().join("out");
    cfg.quiet = true;

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(0u64));
    // The lab's meters: flat-a imports 20 Wh/s; roof-b exports 300 Wh/s and imports nothing.
    let publisher = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let port = broker.port;
        rt.spawn(async move {
            let mut opts = MqttOptions::new("lab-meters", "127.0.0.1", port);
            opts.set_keep_alive(Duration::from_secs(30));
            let (client, mut el) = AsyncClient::new(opts, 100);
            tokio::spawn(async move { while el.poll().await.is_ok() {} });
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = now().floor() as u64;
                let (ia, ea) = counters(20, 0, t);
                seq += 1;
                let json = format!(r#"{{"meter":"flat-a","seq":{seq},"ts":{t},"import_wh":{ia},"export_wh":{ea}}}"#);
                let (ib, eb) = counters(0, 300, t);
                let local = p2pe_sim::calendar::format_local(t as i64, 3600);
                let sml = format!(
                    r#"{{"Time":"{local}","SML":{{"Total_in":{:.3},"Total_out":{:.3},"Power_curr":-10800}}}}"#,
                    ib as f64 / 1000.0,
                    eb as f64 / 1000.0
                );
                client.publish("lab/flat-a/energy", QoS::AtLeastOnce, false, json).await.unwrap();
                client.publish("tele/roof-b/SENSOR", QoS::AtLeastOnce, false, sml).await.unwrap();
                *sent.lock().unwrap() += 2;
                let next = (t + 1) as f64 + 0.3;
                tokio::time::sleep(Duration::from_secs_f64((next - now()).max(0.0))).await;
            }
        })
    };
    let f = rt.block_on(p2pe_sim::simulate(cfg)).expect("lab run");
    stop.store(true, Ordering::Relaxed);
    rt.block_on(publisher).unwrap();
    println!("{}", f.table);

    assert_eq!(f.summary["simulated_meters"], false);
    assert!(f.checks.clearing.passed, "{:?}", f.checks.clearing.failures);
    assert!(f.checks.no_regret.passed, "{:?}", f.checks.no_regret.failures);
    assert!(f.checks.money.passed, "{:?}", f.checks.money.failures);
    assert!(f.checks.energy.passed, "{:?}", f.checks.energy.failures);
    assert_eq!(f.summary["meter_messages"]["published"], 0, "no simulated meter published");
    assert!(*sent.lock().unwrap() > 20);
    assert_eq!(f.summary["bridge"]["dead_letters"], 0, "{}", f.summary["bridge"]);

    // Settled energy = the lab meters' flows over each slot (slot length 5 s), read from the chain.
    let slot_len = f.summary["slot_seconds"].as_u64().unwrap();
    let a = &f.households[0];
    let b = &f.households[1];
    assert_eq!(a.id, "flat-a");
    assert_eq!(b.id, "roof-b");
    let slots = f.slots.len() as u64;
    // Every slot: flat-a imported 20 Wh per second, roof-b exported 300 Wh per second.
    assert_eq!(a.import_wh, 20 * slot_len * slots, "{a:?}");
    assert_eq!(a.export_wh, 0);
    assert_eq!(b.export_wh, 300 * slot_len * slots, "{b:?}");
    assert_eq!(b.import_wh, 0);
    // The agents traded (roof-b forecasts a midday PV surplus, flat-a a deficit), every slot was
    // settled with the lab meters' energy, and flat-a's bill is its import at grid and market prices.
    assert!(a.bought_wh > 0 && b.sold_wh > 0, "{a:?} {b:?}");
    assert_eq!(a.slots_traded as u64, slots, "{a:?}");
    for s in &f.slots {
        assert_eq!(s.metered_import_wh, 20 * slot_len, "slot {}", s.time);
        assert_eq!(s.metered_export_wh, 300 * slot_len, "slot {}", s.time);
    }
    assert!(a.bill_platform > 0, "{a:?}");
    assert!(b.bill_platform < 0, "roof-b earns: {b:?}");
}
