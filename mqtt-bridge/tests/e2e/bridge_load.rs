//! Many meters publishing at once: zero readings lost and zero submitted twice, counted from chain
//! state; and the benchmark figures (readings/s and latency from publish to on-chain confirmation).
//!
//! Size: `P2PE_BRIDGE_METERS` meters × `P2PE_BRIDGE_PER_METER` readings (default 20 × 250 = 5,000, so
//! that debug builds stay quick in CI); `P2PE_BRIDGE_FULL=1` runs the 100 meters × 1,000 =
//! 100,000 readings. `P2PE_BRIDGE_RATE` paces publishing at that many readings/s in total (default: as
//! fast as the publishers go). The benchmark command is in BENCHMARKS.md ("MQTT bridge").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};
use alloy_sol_types::SolEvent;
use p2pe_bindings::meter_readings::MeterReadings;
use p2pe_mqtt_bridge::outbox::Outbox;
use p2pe_tests::bridge::*;
use serde_json::json;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Watches new blocks and records when each (meter, timestamp) reading is first seen on chain.
fn watch_confirmations(
    rpc: Rpc,
    readings: Address,
    meters: Vec<Address>,
    total: usize,
    timeout: Duration,
) -> std::thread::JoinHandle<HashMap<(Address, u64), Instant>> {
    std::thread::spawn(move || {
        let mut seen = HashMap::with_capacity(total);
        let mut next = rpc.block_number() + 1;
        let start = Instant::now();
        while seen.len() < total && start.elapsed() < timeout {
            let head = rpc.block_number();
            if head < next {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            // Block by block; a block with more logs than the node returns at once is read per meter.
            let mut logs: Vec<serde_json::Value> = Vec::new();
            for b in next..=head {
                let query = |topics: Vec<String>| {
                    rpc.try_call(
                        "eth_getLogs",
                        json!([{"address": readings, "fromBlock": format!("0x{b:x}"), "toBlock": format!("0x{b:x}"), "topics": topics}]),
                    )
                };
                let sig = format!("{:#x}", MeterReadings::ReadingRecorded::SIGNATURE_HASH);
                match query(vec![sig.clone()]) {
                    Ok(v) => logs.extend(v.as_array().unwrap().iter().cloned()),
                    Err(_) => {
                        for m in &meters {
                            let v = query(vec![sig.clone(), format!("{:#x}", m.into_word())])
                                .expect("eth_getLogs per meter");
                            logs.extend(v.as_array().unwrap().iter().cloned());
                        }
                    }
                }
            }
            let now = Instant::now();
            for l in &logs {
                let topics: Vec<B256> = l["topics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().parse().unwrap())
                    .collect();
                let data = alloy_primitives::hex::decode(l["data"].as_str().unwrap()).unwrap();
                let ev = MeterReadings::ReadingRecorded::decode_raw_log(topics, &data).unwrap();
                seen.entry((ev.meter, ev.timestamp)).or_insert(now);
            }
            next = head + 1;
        }
        seen
    })
}

#[test]
fn many_meters_zero_lost_zero_duplicated() {
    let full = std::env::var("P2PE_BRIDGE_FULL").is_ok_and(|v| v == "1");
    let n_meters = env_u64("P2PE_BRIDGE_METERS").unwrap_or(if full { 100 } else { 20 }) as usize;
    let per_meter = env_u64("P2PE_BRIDGE_PER_METER").unwrap_or(if full { 1000 } else { 250 });
    let rate = env_u64("P2PE_BRIDGE_RATE").map(|r| r as f64);
    assert!(n_meters <= FIXTURE_METERS, "at most {FIXTURE_METERS} meters (fixture keys)");
    let total = n_meters * per_meter as usize;

    let dir = tempfile::tempdir().unwrap();
    let meters: Vec<MeterSpec> =
        (0..n_meters).map(|i| MeterSpec::new(&format!("m{i:03}"), i, "json", "reading")).collect();
    let users: Vec<String> = meters.iter().map(|m| m.id.clone()).collect();
    let broker = Mosquitto::start(dir.path(), &users);
    let node = Node::start(&dir.path().join("chain"));
    let rpc = node.rpc();
    let addrs = meter_addresses();
    let contracts = deploy(&rpc, &addrs[..n_meters]);
    let setup = BridgeSetup {
        tls: false,
        rpc_urls: vec![node.url.clone()],
        readings: contracts.readings,
        meters: meters.clone(),
        max_batch: 200,
        resend_interval_ms: 5000,
        limits: String::new(),
    };
    let (cfg, http) = write_config(dir.path(), &broker, &setup);
    let bridge = Bridge::start(&cfg, http);
    wait_for("the bridge to connect", Duration::from_secs(60), || {
        bridge.metric("p2pe_bridge_mqtt_connected") == 1.0
    });

    let t0 = now_secs() - per_meter - 60;
    let timeout = Duration::from_secs(env_u64("P2PE_BRIDGE_TIMEOUT_SECS").unwrap_or(900));
    let watcher =
        watch_confirmations(rpc.clone(), contracts.readings, addrs[..n_meters].to_vec(), total, timeout);
    let published: Arc<Mutex<HashMap<(Address, u64), Instant>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(total)));
    let port = broker.port;
    let per_meter_rate = rate.map(|r| r / n_meters as f64);
    let started = Instant::now();
    let publishers: Vec<_> = meters
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let id = m.id.clone();
            let addr = addrs[i];
            let published = published.clone();
            std::thread::spawn(move || {
                let msgs: Vec<(String, Vec<u8>)> = (0..per_meter)
                    .map(|k| {
                        (format!("meters/{id}/reading"), json_reading(&id, k, t0 + k, 10_000 + 13 * k, 2 * k))
                    })
                    .collect();
                let times = publish_paced(port, &id, &msgs, per_meter_rate);
                let mut p = published.lock().unwrap();
                for (k, t) in times.into_iter().enumerate() {
                    p.insert((addr, t0 + k as u64), t);
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let confirmed = watcher.join().unwrap();
    let published = published.lock().unwrap();
    for m in [
        "p2pe_bridge_readings_received_total",
        "p2pe_bridge_readings_committed_total",
        "p2pe_bridge_readings_submitted_total",
        "p2pe_bridge_readings_confirmed_total",
        "p2pe_bridge_txs_sent_total",
        "p2pe_bridge_txs_resent_total",
        "p2pe_bridge_txs_reverted_total",
        "p2pe_bridge_outbox_depth",
    ] {
        println!("{m} {}", bridge.metric(m));
    }
    if std::env::var("P2PE_BRIDGE_KEEP").is_ok() {
        println!("kept test directory {}", dir.keep().display());
        return;
    }
    assert_eq!(confirmed.len(), total, "confirmed {} of {total} within {timeout:?}", confirmed.len());

    // Figures.
    let first_publish = published.values().min().copied().unwrap();
    let last_confirm = confirmed.values().max().copied().unwrap();
    let span = last_confirm.duration_since(first_publish).as_secs_f64();
    let mut lat: Vec<f64> = published
        .iter()
        .map(|(k, t)| confirmed.get(k).expect("confirmed").saturating_duration_since(*t).as_secs_f64())
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "BRIDGE-BENCH meters={n_meters} readings={total} offered_rate={} publish_secs={publish_secs:.2} span_secs={span:.2} \
         throughput={:.0}/s p50={:.3}s p99={:.3}s max={:.3}s txs={} profile={}",
        rate.map(|r| format!("{r:.0}/s")).unwrap_or_else(|| "unpaced".into()),
        total as f64 / span,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().unwrap(),
        bridge.metric("p2pe_bridge_txs_sent_total"),
        if cfg!(debug_assertions) { "debug" } else { "release" },
    );

    // Zero lost: every published reading is recorded on chain, in order, with its counters.
    for (i, m) in meters.iter().enumerate() {
        let want: Vec<(u64, u64, u64)> = (0..per_meter).map(|k| (10_000 + 13 * k, 2 * k, t0 + k)).collect();
        assert_eq!(recorded(&rpc, contracts.readings, addrs[i]), want, "meter {}", m.id);
    }
    // Zero duplicated: each reading is in exactly one successful transaction.
    let counts = submitted_counts(&rpc, contracts.readings);
    assert_eq!(counts.len(), total);
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).take(10).collect();
    assert!(twice.is_empty(), "submitted more than once: {twice:?}");
    // The bridge counts a reading confirmed once the head is `confirmations` blocks past its
    // block, so its count may trail what the chain shows by those blocks.
    wait_for("the bridge to count every reading confirmed", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_readings_confirmed_total") as usize == total
    });
    assert_eq!(bridge.metric("p2pe_bridge_txs_reverted_total"), 0.0, "no batch ran out of gas or reverted");
    assert!(Outbox::open(&dir.path().join("outbox.sqlite"))
        .expect("outbox")
        .dead_letters()
        .unwrap()
        .is_empty());
}
