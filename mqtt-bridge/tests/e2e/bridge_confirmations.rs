//! Confirmation depth, with real nodes (1 s blocks):
//! - with the default `confirmations = 2`, a reading whose transaction is mined in block B is not
//!   counted confirmed while the head is B or B + 1, and is once the head reaches B + 2;
//! - a transaction that was mined but disappears before it is deep enough (here: the node it was
//!   mined on dies and the bridge fails over to another chain, as after a reorg) is sent again,
//!   verbatim, and its reading lands on the chain the bridge now follows.

use std::time::{Duration, Instant};

use p2pe_mqtt_bridge::outbox::Outbox;
use p2pe_mqtt_bridge::outbox::{TX_CONFIRMED, TX_MINED};
use p2pe_tests::bridge::*;
use serde_json::json;

#[test]
fn a_reading_is_confirmed_only_two_blocks_deep() {
    let dir = tempfile::tempdir().unwrap();
    let meters = vec![MeterSpec::new("house-01", 0, "json", "reading")];
    let Rig { broker, node: _node, rpc, contracts, bridge } = Rig::start(dir.path(), meters, "");
    let addrs = meter_addresses();
    let t0 = now_secs() - 60;
    publish(
        broker.port,
        "house-01",
        &[("meters/house-01/reading".into(), json_reading("house-01", 1, t0, 100, 0))],
    );

    // Watch the reading's transaction: (head before, state, block, head after) every 20 ms.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_one_deep_not_confirmed = false;
    let mut mined_block = None;
    loop {
        assert!(Instant::now() < deadline, "never confirmed");
        let before = rpc.block_number();
        let state = Outbox::open(&dir.path().join("outbox.sqlite")).expect("outbox").reading_tx(1).unwrap();
        let after = rpc.block_number();
        match state {
            Some((TX_MINED, Some(b))) => {
                // Under the depth: the head was already B + 1 and the reading is not confirmed.
                if before == b + 1 {
                    seen_one_deep_not_confirmed = true;
                }
                mined_block = Some(b);
            }
            Some((TX_CONFIRMED, Some(b))) => {
                // Confirmed: the head (read after the state) is at least B + 2.
                assert!(after >= b + 2, "confirmed at head {after} < block {b} + 2");
                if let Some(m) = mined_block {
                    assert_eq!(m, b);
                }
                break;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(seen_one_deep_not_confirmed, "the reading was seen not confirmed with the head at B + 1");
    assert_eq!(recorded(&rpc, contracts.readings, addrs[0]), vec![(100, 0, t0)]);
    assert_eq!(bridge.metric("p2pe_bridge_readings_confirmed_total"), 1.0);
}

#[test]
fn a_mined_transaction_that_disappears_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let meters = vec![MeterSpec::new("house-01", 0, "json", "reading")];
    let broker = Mosquitto::start(dir.path(), &["house-01".to_string()]);
    let mut a = Node::start(&dir.path().join("chain-a"));
    let b = Node::start(&dir.path().join("chain-b"));
    let addrs = meter_addresses();
    // The same deployer and nonces on two fresh chains: the same contract addresses.
    let ca = deploy(&a.rpc(), &addrs[..1]);
    let cb = deploy(&b.rpc(), &addrs[..1]);
    assert_eq!(ca.readings, cb.readings);
    let setup = BridgeSetup {
        tls: false,
        rpc_urls: vec![a.url.clone(), b.url.clone()],
        readings: ca.readings,
        meters,
        max_batch: 50,
        resend_interval_ms: 60_000,
        limits: String::new(),
    };
    let (cfg, http) = write_config(dir.path(), &broker, &setup);
    add_chain_keys(&cfg, "confirmations = 30");
    let bridge = Bridge::start(&cfg, http);
    wait_for("the bridge to connect", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_mqtt_connected") == 1.0
    });
    let t0 = now_secs() - 60;
    publish(
        broker.port,
        "house-01",
        &[("meters/house-01/reading".into(), json_reading("house-01", 1, t0, 100, 0))],
    );
    wait_for("the transaction to be mined on chain A", Duration::from_secs(30), || {
        matches!(
            Outbox::open(&dir.path().join("outbox.sqlite")).expect("outbox").reading_tx(1).unwrap(),
            Some((TX_MINED, Some(_)))
        )
    });
    assert_eq!(recorded(&a.rpc(), ca.readings, addrs[0]), vec![(100, 0, t0)]);
    assert!(recorded(&b.rpc(), cb.readings, addrs[0]).is_empty());
    // Chain A goes away before 30 confirmations; the bridge now sees chain B, where the transaction
    // is not: it must be sent again (verbatim: the same hash).
    let hash_a = {
        let sent = Outbox::open(&dir.path().join("outbox.sqlite")).expect("outbox").sent_txs().unwrap();
        assert_eq!(sent.len(), 1);
        sent[0].hash
    };
    a.stop();
    wait_for("the reading on chain B", Duration::from_secs(60), || {
        recorded(&b.rpc(), cb.readings, addrs[0]) == vec![(100, 0, t0)]
    });
    let receipt = b.rpc().call("eth_getTransactionReceipt", json!([format!("{hash_a:#x}")]));
    assert_eq!(receipt["status"], "0x1", "the same transaction, resent verbatim: {receipt}");
    assert!(bridge.metric("p2pe_bridge_txs_reorged_total") >= 1.0);
    assert!(bridge.log().contains("left the canonical chain"));
    assert_eq!(bridge.metric("p2pe_bridge_readings_confirmed_total"), 0.0, "not 30 deep yet");
}
