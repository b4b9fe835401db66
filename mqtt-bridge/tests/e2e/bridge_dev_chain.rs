//! The bridge against `p2pe-node dev` as a developer runs it: the market contracts deployed at
//! genesis, found through `contracts.json` (`chain.contracts_file`), and the dev accounts' meters (keys
//! at mnemonic index 100 + i) already bound. Readings of two meters reach `MeterReadings` and show up
//! in `energyInSlot`.

use std::process::Command;
use std::time::Duration;

use alloy_primitives::Address;
use alloy_sol_types::SolCall;
use p2pe_bindings::meter_readings::MeterReadings;
use p2pe_tests::bridge::*;
use serde_json::json;

#[test]
fn readings_reach_the_dev_chains_genesis_contracts() {
    let dir = tempfile::tempdir().unwrap();
    let contracts_file = dir.path().join("contracts.json");
    let port = free_port();
    let _node = KillOnDrop(spawn_node(
        Command::new(node_bin())
            .args([
                "dev",
                "--period",
                "1",
                "--slot-length",
                "60",
                "--http-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--contracts-out")
            .arg(&contracts_file)
            // A datadir the test removes: killing the node leaves dev's own temporary one behind.
            .arg("--datadir")
            .arg(dir.path().join("chain")),
    ));
    let rpc = Rpc::new(&format!("http://127.0.0.1:{port}"));
    let contracts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&contracts_file).unwrap()).unwrap();
    let readings: Address = contracts["readings"].as_str().unwrap().parse().unwrap();

    // Dev accounts 0 and 1: their meters are fixture keys 0 and 1 (mnemonic 100, 101).
    let meters = vec![
        MeterSpec::new("dev0-meter", 0, "json", "reading"),
        MeterSpec::new("dev1-meter", 1, "json", "reading"),
    ];
    let users: Vec<String> = meters.iter().map(|m| m.id.clone()).collect();
    let broker = Mosquitto::start(dir.path(), &users);
    let setup = BridgeSetup {
        tls: false,
        rpc_urls: vec![format!("http://127.0.0.1:{port}")],
        readings,
        meters,
        max_batch: 50,
        resend_interval_ms: 3000,
        limits: String::new(),
    };
    let (cfg, http) = write_config(dir.path(), &broker, &setup);
    // Use the node's contracts.json instead of the address.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        &format!("readings = \"{readings}\""),
        &format!("contracts_file = \"{}\"", contracts_file.display()),
    );
    assert!(text.contains("contracts_file"));
    std::fs::write(&cfg, text).unwrap();
    let bridge = Bridge::start(&cfg, http);
    wait_for("the bridge to connect", Duration::from_secs(30), || {
        bridge.metric("p2pe_bridge_mqtt_connected") == 1.0
    });

    let addrs = meter_addresses();
    // Both of dev0's readings (4 s apart) in one slot: with a slot boundary between them, the
    // contract splits the 42 Wh across the two slots in proportion to time (seen in CI as 11 Wh).
    // `slotAt` reverts for a time before the market's first slot, which dev puts at the start of
    // the minute the node started in: a node started in a minute's first 4 s would otherwise fail
    // here (seen in CI as "arithmetic underflow").
    let slot_at = |timestamp: u64| -> Option<u64> {
        let call = MeterReadings::slotAtCall { timestamp }.abi_encode();
        let to = json!({"to": readings, "data": format!("0x{}", alloy_primitives::hex::encode(call))});
        let out = rpc.try_call("eth_call", json!([to, "latest"])).ok()?;
        Some(
            MeterReadings::slotAtCall::abi_decode_returns(
                &alloy_primitives::hex::decode(out.as_str().unwrap()).unwrap(),
            )
            .unwrap(),
        )
    };
    let mut now = now_secs();
    while slot_at(now - 4).is_none() || slot_at(now - 4) != slot_at(now) {
        std::thread::sleep(Duration::from_millis(500));
        now = now_secs();
    }
    publish(
        broker.port,
        "dev0-meter",
        &[
            ("meters/dev0-meter/reading".into(), json_reading("dev0-meter", 1, now - 4, 5000, 0)),
            ("meters/dev0-meter/reading".into(), json_reading("dev0-meter", 2, now, 5042, 0)),
        ],
    );
    publish(
        broker.port,
        "dev1-meter",
        &[("meters/dev1-meter/reading".into(), json_reading("dev1-meter", 1, now - 1, 0, 777))],
    );
    wait_for("the readings on chain", Duration::from_secs(60), || {
        recorded(&rpc, readings, addrs[0]).len() == 2 && recorded(&rpc, readings, addrs[1]).len() == 1
    });
    assert_eq!(latest_reading(&rpc, readings, addrs[0]), (5042, 0, now, false));
    assert_eq!(latest_reading(&rpc, readings, addrs[1]), (0, 777, now - 1, false));
    // The slot of both readings holds dev0's 42 Wh.
    let slot = slot_at(now).expect("the readings' slot has started");
    let call = MeterReadings::energyInSlotCall { meter: addrs[0], slot }.abi_encode();
    let e = rpc.call(
        "eth_call",
        json!([{"to": readings, "data": format!("0x{}", alloy_primitives::hex::encode(call))}, "latest"]),
    );
    let e = MeterReadings::energyInSlotCall::abi_decode_returns(
        &alloy_primitives::hex::decode(e.as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(e.hasReading);
    assert_eq!((e.importWh, e.exportWh), (42, 0));
}
