//! Readings that cost more gas than the bridge's static allowance (a meter back after a long
//! silence: its next reading spreads the energy over every slot in between; a backlog of such
//! readings relayed in one batch) are sent with the node's gas estimate plus headroom, and all of
//! them are recorded, none dead-lettered. (A batch signed while the node is down gets the static
//! allowance and may revert out of gas; its readings are then sent one per transaction, each
//! estimated, so they are recorded all the same.) A single reading that runs out of gas because the
//! node gave no estimate (busy, or down) is sent again with the per-transaction cap, not
//! dead-lettered: on a loaded machine the estimate timed out and such a reading was lost.

use std::time::Duration;

use alloy_primitives::Address;
use p2pe_mqtt_bridge::outbox::Outbox;
use p2pe_mqtt_bridge::submit::{GAS_BATCH_BASE, GAS_CAP, GAS_PER_READING, GAS_SINGLE};
use p2pe_tests::bridge::*;
use serde_json::json;

/// Every successful transaction to `to`, in chain order: (sender, gas limit, gas used).
fn successful_txs_to(rpc: &Rpc, to: Address) -> Vec<(Address, u64, u64)> {
    let mut out = Vec::new();
    for n in 1..=rpc.block_number() {
        let block = rpc.call("eth_getBlockByNumber", json!([format!("{n:#x}"), true]));
        for t in block["transactions"].as_array().unwrap() {
            if t["to"].as_str().and_then(|a| a.parse::<Address>().ok()) != Some(to) {
                continue;
            }
            let r = rpc.call("eth_getTransactionReceipt", json!([t["hash"]]));
            if r["status"] != "0x1" {
                continue;
            }
            out.push((
                t["from"].as_str().unwrap().parse().unwrap(),
                hex_u64(&t["gas"]),
                hex_u64(&r["gasUsed"]),
            ));
        }
    }
    out
}

#[test]
fn readings_dearer_than_the_static_allowance_are_sent_with_the_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let meters: Vec<MeterSpec> =
        (0..3).map(|i| MeterSpec::new(&format!("m{i}"), i, "json", "reading")).collect();
    let limits = "max_payload_bytes = 4096\nmax_future_secs = 30\nmax_past_secs = 86400";
    let Rig { broker, mut node, rpc, contracts, bridge } = Rig::start(dir.path(), meters, limits);
    let addrs = meter_addresses();
    let now = now_secs();
    // 25 slots of 900 s ago: inside the test deployment's finality window (26,040 s).
    let then = now - 25 * 900;
    let reading = |id: &str, seq, ts, wh| (format!("meters/{id}/reading"), json_reading(id, seq, ts, wh, 0));

    // Meter m0 alone: a reading, then (once it is on chain) one 25 slots later, sent by the meter itself.
    publish(broker.port, "m0", &[reading("m0", 1, then, 1_000)]);
    wait_for("m0's first reading", Duration::from_secs(60), || {
        bridge.metric("p2pe_bridge_readings_confirmed_total") >= 1.0
    });
    publish(broker.port, "m0", &[reading("m0", 2, now - 30, 9_000)]);

    // Meters m1 and m2 with the node down: both readings of each pile up and go as one relayed batch.
    wait_for("m0's second reading", Duration::from_secs(60), || {
        bridge.metric("p2pe_bridge_readings_confirmed_total") >= 2.0
    });
    node.stop();
    for id in ["m1", "m2"] {
        publish(broker.port, id, &[reading(id, 1, then, 2_000), reading(id, 2, now - 20, 8_000)]);
    }
    wait_for("the four readings to be committed", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_readings_committed_total") >= 6.0
    });
    node.restart();
    wait_for("every reading confirmed", Duration::from_secs(120), || {
        bridge.metric("p2pe_bridge_readings_confirmed_total") >= 6.0
    });

    for (i, m) in addrs[..3].iter().enumerate() {
        assert_eq!(recorded(&rpc, contracts.readings, *m).len(), 2, "meter m{i}: both readings recorded");
    }
    let dead = Outbox::open(&dir.path().join("outbox.sqlite")).unwrap().dead_letters().unwrap();
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    let txs = successful_txs_to(&rpc, contracts.readings);
    eprintln!("successful readings transactions (sender, gas limit, gas used): {txs:?}");
    // The three readings after the silence cost more than a single reading's static allowance: they went
    // through (in the batch, or alone after a batch signed while the node was down reverted) with limits
    // from the estimates. (The relayer's key is also m0's in the fixtures, so senders do not tell them apart.)
    let dear = txs.iter().filter(|(_, _, used)| *used > GAS_SINGLE).count();
    assert!(dear >= 2, "readings dearer than {GAS_SINGLE} went through: {txs:?}");
    let allowance = GAS_BATCH_BASE + 4 * GAS_PER_READING;
    if bridge.metric("p2pe_bridge_txs_reverted_total") == 0.0 {
        assert!(
            txs.iter().any(|(_, _, used)| *used > allowance),
            "the batch cost more than its static {allowance}: {txs:?}"
        );
    }
}

/// A node that answers no estimate (every call times out after 1 µs, as a busy node's do after
/// the bridge's 3 s): a reading dearer than the static allowance runs out of gas with it, and is
/// sent again, alone, with the cap, then recorded; one revert, nothing dead-lettered.
#[test]
fn a_reading_out_of_gas_for_want_of_an_estimate_is_sent_again_with_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let meters = vec![MeterSpec::new("m0", 0, "json", "reading")];
    let limits = "max_payload_bytes = 4096\nmax_future_secs = 30\nmax_past_secs = 86400";
    let Rig { broker, mut node, rpc, contracts, bridge } = Rig::start(dir.path(), meters, limits);
    let m0 = meter_addresses()[0];
    let now = now_secs();
    let then = now - 25 * 900;
    publish(broker.port, "m0", &[("meters/m0/reading".into(), json_reading("m0", 1, then, 1_000, 0))]);
    wait_for("m0's first reading", Duration::from_secs(60), || {
        bridge.metric("p2pe_bridge_readings_confirmed_total") >= 1.0
    });

    node.restart_with(&["--rpc-call-timeout", "0.000001"]);
    // 25 slots later: it spreads the energy over every slot in between (about 670,000 gas).
    publish(broker.port, "m0", &[("meters/m0/reading".into(), json_reading("m0", 2, now - 30, 9_000, 0))]);
    wait_for("the reading sent again with the cap and confirmed", Duration::from_secs(90), || {
        bridge.metric("p2pe_bridge_readings_confirmed_total") >= 2.0
    });
    // Exactly one revert: the static allowance, out of gas (with an estimate there is none).
    assert_eq!(bridge.metric("p2pe_bridge_txs_reverted_total"), 1.0, "one revert: out of gas");

    node.restart_with(&[]);
    assert_eq!(recorded(&rpc, contracts.readings, m0).len(), 2, "both readings recorded");
    let dead = Outbox::open(&dir.path().join("outbox.sqlite")).unwrap().dead_letters().unwrap();
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    let txs = successful_txs_to(&rpc, contracts.readings);
    let (_, limit, used) = *txs.last().unwrap();
    assert_eq!(limit, GAS_CAP, "sent again with the cap: {txs:?}");
    assert!(used > GAS_SINGLE, "it needed more than the static allowance: {txs:?}");
}
