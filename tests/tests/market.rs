//! The energy market end to end on a real dev node, through the Rust bindings: the contracts are
//! at their genesis addresses, dev accounts are registered with credits and meters; a seller and
//! a buyer deposit, order, the slot clears, both meters report (one directly from its key, one
//! EIP-712 signed and relayed), and the slot settles with money conserved.

use std::time::Duration;

use alloy_primitives::{Address, Bytes, U256};
use alloy_signer::SignerSync;
use alloy_sol_types::{SolCall, SolEvent};
use p2pe_bindings::{credit_token::CreditToken, energy_market::EnergyMarket, meter_readings::MeterReadings};
use p2pe_tests::harness::{dev_key, hex_u64, sign_raw, NodeProcess, Rpc};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(60);

struct Chain {
    rpc: Rpc,
    c: Value,
}

impl Chain {
    fn addr(&self, k: &str) -> Address {
        self.c[k].as_str().unwrap().parse().unwrap()
    }
    fn now(&self) -> u64 {
        hex_u64(&self.rpc.call("eth_getBlockByNumber", json!(["latest", false]))["timestamp"])
    }
    fn wait_until(&self, t: u64) {
        let start = std::time::Instant::now();
        while self.now() < t {
            assert!(start.elapsed() < SECS, "chain time did not reach {t}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    fn send(&self, from: u32, to: Address, data: Vec<u8>) -> Value {
        self.send_with_gas(from, to, data, None)
    }
    /// Sends with an explicit gas limit (`None`: the node estimates it). A meter reading's gas
    /// depends on the time it lands (a slot that turns final in between adds work), and the
    /// estimate runs on the latest block, a second before the block that includes it.
    fn send_with_gas(&self, from: u32, to: Address, data: Vec<u8>, gas: Option<u64>) -> Value {
        let mut tx = json!({"from": dev_key(from).address(), "to": to, "data": Bytes::from(data.clone())});
        if let Some(g) = gas {
            tx["gas"] = json!(format!("{g:#x}"));
        }
        let h = self.rpc.call("eth_sendTransaction", json!([tx]));
        let r = self.rpc.wait_receipt(h.as_str().unwrap(), SECS);
        if r["status"] != "0x1" {
            // Replayed on the block's parent state, for the revert reason.
            let parent = format!("{:#x}", hex_u64(&r["blockNumber"]) - 1);
            let call =
                json!([{"from": dev_key(from).address(), "to": to, "data": Bytes::from(data)}, parent]);
            panic!("transaction failed: {r}\nreplayed: {:?}", self.rpc.try_call("eth_call", call));
        }
        r
    }
    fn call<C: SolCall>(&self, to: Address, call: C) -> C::Return {
        let out =
            self.rpc.call("eth_call", json!([{"to": to, "data": Bytes::from(call.abi_encode())}, "latest"]));
        let bytes: Bytes = out.as_str().unwrap().parse().unwrap();
        C::abi_decode_returns(&bytes).expect("decode")
    }
    fn money(&self, market: Address, slot: u64, who: &[Address]) -> U256 {
        who.iter()
            .map(|a| {
                let acct = self.call(market, EnergyMarket::accountOfCall { account: *a });
                let locked = self.call(market, EnergyMarket::lockedOfCall { slot, account: *a });
                acct.free + locked
            })
            .fold(U256::ZERO, |x, y| x + y)
    }
}

fn logs_of<E: SolEvent>(receipt: &Value) -> Vec<E> {
    receipt["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| {
            let topics: Vec<alloy_primitives::B256> =
                l["topics"].as_array()?.iter().map(|t| t.as_str().unwrap().parse().unwrap()).collect();
            let data: Bytes = l["data"].as_str()?.parse().ok()?;
            E::decode_raw_log(topics, &data).ok()
        })
        .collect()
}

#[test]
fn orders_clear_readings_settle_through_the_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("contracts.json");
    let node =
        NodeProcess::dev(&["--period", "1", "--slot-length", "10", "--contracts-out", out.to_str().unwrap()]);
    let c: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let chain = Chain { rpc: node.rpc(), c };
    let (token, market, readings, grid) =
        (chain.addr("token"), chain.addr("market"), chain.addr("readings"), chain.addr("grid"));
    let (start, len) = (chain.c["startTime"].as_u64().unwrap(), chain.c["slotLength"].as_u64().unwrap());
    let seller = dev_key(0).address(); // even: prosumer
    let buyer = dev_key(1).address(); // odd: consumer
    let ether = U256::from(10u64).pow(U256::from(18));
    for i in [0u32, 1, 2] {
        chain.send(
            i,
            token,
            CreditToken::approveCall { spender: market, value: U256::from(100) * ether }.abi_encode(),
        );
        chain.send(i, market, EnergyMarket::depositCall { amount: U256::from(100) * ether }.abi_encode());
    }

    // Baselines before the slot: the seller's meter sends its own transaction (it holds no ether).
    let seller_meter = dev_key(100);
    let buyer_meter = dev_key(101);
    let direct = |imp: u64, exp: u64, ts: u64| {
        let call = MeterReadings::submitReadingCall { importWh: imp, exportWh: exp, timestamp: ts };
        let n =
            hex_u64(&chain.rpc.call("eth_getTransactionCount", json!([seller_meter.address(), "pending"])));
        let tx = alloy_consensus::TxEip1559 {
            chain_id: 1337,
            nonce: n,
            gas_limit: 500_000,
            to: alloy_primitives::TxKind::Call(readings),
            input: call.abi_encode().into(),
            ..Default::default()
        };
        let h = chain.rpc.call("eth_sendRawTransaction", json!([sign_raw(&seller_meter, tx)]));
        let r = chain.rpc.wait_receipt(h.as_str().unwrap(), SECS);
        assert_eq!(r["status"], "0x1", "{r}");
    };
    // The buyer's meter (and account 2's) signs EIP-712 readings that account 2 relays in a batch.
    let relayed_by = |meter: &alloy_signer_local::PrivateKeySigner, imp: u64, exp: u64, ts: u64| {
        let reading = p2pe_bindings::meter_reading::MeterReading {
            meter: meter.address(),
            importWh: imp,
            exportWh: exp,
            timestamp: ts,
        };
        let hash = p2pe_bindings::meter_reading::signing_hash(&reading, 1337, readings);
        let sig = meter.sign_hash_sync(&hash).unwrap();
        let compact = sig.as_erc2098();
        let signed = p2pe_bindings::meter_readings::IMeterReadings::SignedReading {
            meter: reading.meter,
            importWh: imp,
            exportWh: exp,
            timestamp: ts,
            r: compact[..32].try_into().unwrap(),
            vs: compact[32..].try_into().unwrap(),
        };
        let batch = MeterReadings::submitReadingsCall { readings: vec![signed] }.abi_encode();
        chain.send_with_gas(2, readings, batch, Some(500_000));
    };
    let relayed = |imp: u64, exp: u64, ts: u64| relayed_by(&buyer_meter, imp, exp, ts);
    // Account 2 places no order; its meter is bound all the same, so it is settled against the grid.
    let idle = dev_key(2).address();
    let idle_meter = dev_key(102);
    let t0 = chain.now();
    direct(1_000, 5_000, t0);
    relayed(2_000, 0, t0);
    relayed_by(&idle_meter, 300, 0, t0);

    // A slot whose gate is still open, chosen now, with margin for the two orders.
    let slot = (chain.now() + 12 - start) / len + 1;
    let slot_start = start + slot * len;
    let gate =
        hex_u64(&json!(format!("{:#x}", chain.call(market, EnergyMarket::gateClosureTimeCall { slot }))));
    assert!(gate > chain.now(), "gate open");
    // Only the operator opens a slot: the dev node's keeper opens the next slots ahead.
    let t = std::time::Instant::now();
    while chain.call(market, EnergyMarket::slotInfoCall { slot }).status as u8 != 1 {
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "the keeper did not open slot {slot}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Orders.
    let price = |x: u64| U256::from(x) * U256::from(10u64).pow(U256::from(15));
    chain.send(
        0,
        market,
        EnergyMarket::placeAskCall { slot, energyWh: 1_000, pricePerKWh: price(100) }.abi_encode(),
    );
    chain.send(
        1,
        market,
        EnergyMarket::placeBidCall { slot, energyWh: 800, pricePerKWh: price(200) }.abi_encode(),
    );
    let who = [seller, buyer, idle, grid];
    let money_before = chain.money(market, slot, &who);
    let each_before: Vec<U256> = who.iter().map(|a| chain.money(market, slot, &[*a])).collect();
    let buyer_before = chain.money(market, slot, &[buyer]);

    // Clear after gate closure, by anyone.
    chain.wait_until(gate);
    let r = chain.send(3, market, EnergyMarket::clearCall { slot }.abi_encode());
    let cleared = logs_of::<EnergyMarket::SlotCleared>(&r);
    assert_eq!(cleared.len(), 1, "{r}");
    assert_eq!(cleared[0].clearedWh, 800);
    // The ask is only partly filled (800 of 1,000 Wh): its unsold volume pins the uniform price to its
    // limit, the only price at which no rejected order is in the money (contracts/README.md).
    assert_eq!(cleared[0].clearingPricePerKWh, price(100));
    let info = chain.call(market, EnergyMarket::slotInfoCall { slot });
    assert_eq!(info.clearedWh, 800);

    // Delivery inside the slot: the seller exports 800 Wh, the buyer imports 700 Wh. The meters report
    // their counters at the slot's start (the contract interpolates slot boundaries between the readings
    // that bracket them, so a reading at the boundary fixes it exactly) and inside the slot.
    chain.wait_until(slot_start + 1);
    direct(1_000, 5_000, slot_start);
    relayed(2_000, 0, slot_start);
    let t1 = chain.now();
    assert!(t1 < slot_start + len - 1, "still inside the slot");
    direct(1_000, 5_800, t1);
    relayed(2_700, 0, t1);
    relayed_by(&idle_meter, 600, 0, t1);
    let idle_before = chain.money(market, slot, &[idle]);

    // Settle all three after the grace period (issue 14, part 6: a meter without orders is billed too).
    let opens = chain.call(market, EnergyMarket::settlementOpensAtCall { slot });
    chain.wait_until(opens.to::<u64>());
    let r = chain.send(
        4,
        market,
        EnergyMarket::settleCall { slot, participants: vec![seller, buyer, idle] }.abi_encode(),
    );
    let settled = logs_of::<EnergyMarket::ParticipantSettled>(&r);
    assert_eq!(settled.len(), 3, "{r}");
    let s = settled.iter().find(|e| e.account == seller).unwrap();
    let b = settled.iter().find(|e| e.account == buyer).unwrap();
    let i = settled.iter().find(|e| e.account == idle).unwrap();
    assert_eq!((s.soldWh, s.exportWh), (800, 800));
    assert_eq!((b.boughtWh, b.importWh), (800, 700));
    assert_eq!((i.boughtWh, i.soldWh, i.importWh), (0, 0, 300));
    let retail = chain.call(market, EnergyMarket::slotInfoCall { slot }).retailPerKWh;
    assert_eq!(idle_before - chain.money(market, slot, &[idle]), U256::from(300) * retail / U256::from(1000));
    // Money is conserved between the participants and the grid.
    let each_after: Vec<U256> = who.iter().map(|a| chain.money(market, slot, &[*a])).collect();
    assert_eq!(
        chain.money(market, slot, &who),
        money_before,
        "seller, buyer, grid before {each_before:?} after {each_after:?}; settled {s:?} {b:?}"
    );
    // The buyer paid the clearing price for 800 Wh and got its 100 unused Wh back at the feed-in
    // tariff less the long imbalance penalty (0.08 − 0.05 credit/kWh, issue 14).
    let c = cleared[0].clearingPricePerKWh;
    let expect_buyer =
        U256::from(800) * c / U256::from(1000) - U256::from(100) * (price(80) - price(50)) / U256::from(1000);
    assert_eq!(buyer_before - chain.money(market, slot, &[buyer]), expect_buyer);
}

#[test]
fn the_same_slot_with_cast_from_a_shell_script() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("contracts.json");
    let node =
        NodeProcess::dev(&["--period", "1", "--slot-length", "10", "--contracts-out", out.to_str().unwrap()]);
    let script = p2pe_tests::harness::workspace_root().join("tests/scripts/market-cast.sh");
    let stdout =
        p2pe_tests::harness::run_ok(std::process::Command::new("bash").arg(script).arg(&node.url).arg(&out));
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
}
