//! `kill -9` the bridge three times while meters are publishing: after each restart it continues from
//! its outbox and the broker's persistent session. Counted from chain state at the end: every published
//! reading was recorded exactly once (events), and each was submitted in exactly one successful
//! transaction (block contents).

use std::time::Duration;

use p2pe_mqtt_bridge::outbox::Outbox;
use p2pe_tests::bridge::*;

#[test]
fn kill_9_the_bridge_mid_stream_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n_meters = 5;
    let per_meter = 300u64;
    let meters: Vec<MeterSpec> =
        (0..n_meters).map(|i| MeterSpec::new(&format!("m{i}"), i, "json", "reading")).collect();
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
        max_batch: 40,
        resend_interval_ms: 2000,
        limits: String::new(),
    };
    let (cfg, http) = write_config(dir.path(), &broker, &setup);
    let mut bridge = Bridge::start(&cfg, http);
    wait_for("the bridge to connect", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_mqtt_connected") == 1.0
    });

    let t0 = now_secs() - 2 * per_meter;
    let port = broker.port;
    let publishers: Vec<_> = meters
        .iter()
        .map(|m| {
            let id = m.id.clone();
            std::thread::spawn(move || {
                let msgs: Vec<(String, Vec<u8>)> = (0..per_meter)
                    .map(|k| {
                        (format!("meters/{id}/reading"), json_reading(&id, k, t0 + k, 1000 + 7 * k, 3 * k))
                    })
                    .collect();
                publish_paced(port, &id, &msgs, Some(30.0));
            })
        })
        .collect();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(2500));
        bridge.kill9();
        std::thread::sleep(Duration::from_millis(700));
        bridge.restart();
    }
    for p in publishers {
        p.join().unwrap();
    }
    let total = n_meters as u64 * per_meter;
    wait_for("every reading on chain", Duration::from_secs(180), || {
        (0..n_meters).map(|i| recorded(&rpc, contracts.readings, addrs[i]).len() as u64).sum::<u64>() == total
    });
    for (i, m) in meters.iter().enumerate() {
        let want: Vec<(u64, u64, u64)> = (0..per_meter).map(|k| (1000 + 7 * k, 3 * k, t0 + k)).collect();
        assert_eq!(recorded(&rpc, contracts.readings, addrs[i]), want, "meter {}", m.id);
    }
    let counts = submitted_counts(&rpc, contracts.readings);
    assert_eq!(counts.len() as u64, total);
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "submitted more than once: {twice:?}");
    assert!(Outbox::open(&dir.path().join("outbox.sqlite"))
        .expect("outbox")
        .dead_letters()
        .unwrap()
        .is_empty());
    let log = bridge.log();
    assert_eq!(log.matches("keystores decrypted").count(), 4, "the bridge ran four times");
}
