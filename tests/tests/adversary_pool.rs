//! The pool spammer (SECURITY.md): fees are zero, so anyone can send any number of transactions
//! from throwaway keys. Played against a real `p2pe-node dev` process.
//!
//! - Gapped spam: throwaway keys each send transactions with a nonce gap, which can never execute.
//!   The pool keeps at most `--txpool-max-total` of them (the oldest are evicted first), at most
//!   `--txpool-max-queued-per-sender` per key, and the keeper's, a meter's and a household's
//!   order transactions are still accepted and mined within 2 blocks. The limits are lowered by
//!   flags so that the pool overflows with 6,000 transactions (three times its room);
//!   `P2PE_POOL_SPAM=300000` sends the 300,000 with the default limits instead (slow: every
//!   one is signed here and recovered by the node).
//! - Executable spam that waits for block space (each transaction reserves nearly a whole block's
//!   gas at the smallest gas limit): the shared room fills; a household's transaction is refused with an error naming the limit,
//!   while a meter (a priority sender) is accepted from its reserve and mined within 2 blocks,
//!   ahead of the backlog.

use std::time::{Duration, Instant};

use alloy_consensus::{TxEip1559, TxLegacy};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use p2pe_bindings::{credit_token::CreditToken, energy_market::EnergyMarket, meter_readings::MeterReadings};
use p2pe_tests::harness::{dev_key, hex_u64, sign_raw, NodeProcess, Rpc};
use serde_json::{json, Value};

const CHAIN_ID: u64 = 1337;

/// A zero-fee transfer from `key` at `nonce` that reserves `gas_limit`.
fn transfer_with_gas(key: &PrivateKeySigner, nonce: u64, gas_limit: u64) -> String {
    sign_raw(
        key,
        TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit,
            to: TxKind::Call(key.address()),
            ..Default::default()
        },
    )
}

/// A zero-fee transfer from `key` at `nonce`.
fn transfer(key: &PrivateKeySigner, nonce: u64) -> String {
    transfer_with_gas(key, nonce, 21_000)
}

/// The smallest block gas limit the chain allows (EIP-7825's per-transaction cap).
const MIN_GAS_LIMIT: u64 = 16_777_216;

/// Sends raw transactions in JSON-RPC batches; returns the errors' messages.
fn send_batches(rpc: &Rpc, raws: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    for chunk in raws.chunks(500) {
        let batch: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [r]}))
            .collect();
        let (status, answer) = rpc.raw(&Value::Array(batch).to_string()).expect("batch answered");
        assert_eq!(status, 200);
        for a in answer.as_array().expect("batch answer") {
            if let Some(m) = a["error"]["message"].as_str() {
                errors.push(m.to_string());
            }
        }
    }
    errors
}

fn pool_status(rpc: &Rpc) -> (u64, u64) {
    let s = rpc.call("txpool_status", json!([]));
    (hex_u64(&s["pending"]), hex_u64(&s["queued"]))
}

/// Sends `raw` and asserts it is mined, successfully, within 2 blocks of the head it was sent at.
fn mined_within_two_blocks(rpc: &Rpc, raw: &str, what: &str) {
    let head = rpc.block_number();
    let hash = rpc.call("eth_sendRawTransaction", json!([raw]));
    let r = rpc.wait_receipt(hash.as_str().unwrap(), Duration::from_secs(30));
    assert_eq!(r["status"], json!("0x1"), "{what} reverted: {r}");
    let at = hex_u64(&r["blockNumber"]);
    assert!(at <= head + 2, "{what} sent at head {head} was mined in block {at}, not within 2 blocks");
}

/// Signs a call from dev key `i` at its next nonce.
fn call_from(rpc: &Rpc, i: u32, to: Address, data: Vec<u8>) -> String {
    let key = dev_key(i);
    let nonce = hex_u64(&rpc.call("eth_getTransactionCount", json!([key.address(), "pending"])));
    sign_raw(
        &key,
        TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: 1_000_000,
            to: TxKind::Call(to),
            input: Bytes::from(data),
            ..Default::default()
        },
    )
}

fn contracts(node: &NodeProcess) -> Value {
    reqwest::blocking::get(format!("{}/contracts.json", node.url)).unwrap().json().unwrap()
}

fn addr(c: &Value, k: &str) -> Address {
    c[k].as_str().unwrap().parse().unwrap()
}

#[test]
fn gapped_spam_from_throwaway_keys_cannot_shut_out_the_market() {
    let full: Option<usize> = std::env::var("P2PE_POOL_SPAM").ok().map(|v| v.parse().expect("a number"));
    let (spam, limits): (usize, Vec<&str>) = match full {
        Some(n) => (n, vec![]),
        None => (6_000, vec!["--txpool-max-total", "2000", "--txpool-max-queued-per-sender", "4"]),
    };
    let max_total = if full.is_some() { 200_000 } else { 2_000 };
    let per_key = if full.is_some() { 64 } else { 4 };
    let mut args = vec!["--slot-length", "10"];
    args.extend(&limits);
    let node = NodeProcess::dev(&args);
    let rpc = node.rpc();
    let c = contracts(&node);

    // Throwaway keys, each with `per_key` gapped transactions (nonce 0 never sent), and one key that
    // tries one more than the per-sender limit.
    let keys: Vec<PrivateKeySigner> = (0..spam / per_key).map(|_| PrivateKeySigner::random()).collect();
    let raws: Vec<String> =
        keys.iter().flat_map(|k| (1..=per_key as u64).map(move |n| transfer(k, n))).collect();
    let greedy = PrivateKeySigner::random();
    let over: Vec<String> = (1..=per_key as u64 + 1).map(|n| transfer(&greedy, n)).collect();
    let t = Instant::now();
    let errors = send_batches(&rpc, &raws);
    println!("{} gapped transactions sent in {:?}; {} refused", raws.len(), t.elapsed(), errors.len());
    assert!(errors.is_empty(), "gapped transactions are accepted (older ones evicted): {:?}", &errors[..3]);
    let errors = send_batches(&rpc, &over);
    assert_eq!(errors.len(), 1, "under and at the per-sender queued limit: accepted; over: refused");
    assert!(errors[0].contains("--txpool-max-queued-per-sender"), "{}", errors[0]);
    let (_, queued) = pool_status(&rpc);
    assert_eq!(queued, max_total as u64, "the pool holds exactly its limit of queued transactions");

    // A household's order, from account 1 (no priority): approve, deposit, bid; each mined within 2
    // blocks, each evicting spam to get in.
    let (token, market) = (addr(&c, "token"), addr(&c, "market"));
    let credits = U256::from(10u64).pow(U256::from(18)) * U256::from(10);
    let approve = CreditToken::approveCall { spender: market, value: credits }.abi_encode();
    mined_within_two_blocks(&rpc, &call_from(&rpc, 1, token, approve), "approve");
    let deposit = EnergyMarket::depositCall { amount: credits }.abi_encode();
    mined_within_two_blocks(&rpc, &call_from(&rpc, 1, market, deposit), "deposit");
    let (start, len) = (c["startTime"].as_u64().unwrap(), c["slotLength"].as_u64().unwrap());
    let now = hex_u64(&rpc.call("eth_getBlockByNumber", json!(["latest", false]))["timestamp"]);
    let slot = (now - start) / len + 2; // opened by the keeper, gate well ahead
    let price = U256::from(150u64) * U256::from(10u64).pow(U256::from(15));
    let bid = EnergyMarket::placeBidCall { slot, energyWh: 100, pricePerKWh: price }.abi_encode();
    mined_within_two_blocks(&rpc, &call_from(&rpc, 1, market, bid), "placeBid");

    // The bridge's transaction: a reading signed by account 1's meter key (index 101).
    let ts = hex_u64(&rpc.call("eth_getBlockByNumber", json!(["latest", false]))["timestamp"]);
    let reading = MeterReadings::submitReadingCall { importWh: 10, exportWh: 0, timestamp: ts }.abi_encode();
    mined_within_two_blocks(&rpc, &call_from(&rpc, 101, addr(&c, "readings"), reading), "submitReading");

    // The keeper (index 97) keeps opening slots through the spam.
    let keeper = dev_key(97).address();
    let nonce = |rpc: &Rpc| hex_u64(&rpc.call("eth_getTransactionCount", json!([keeper, "latest"])));
    let before = nonce(&rpc);
    let t = Instant::now();
    while nonce(&rpc) == before {
        assert!(t.elapsed() < Duration::from_secs(25), "the keeper's openSlot was not mined within 2 slots");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, queued) = pool_status(&rpc);
    assert!(queued <= max_total as u64, "still within the limit: {queued}");
}

#[test]
fn executable_spam_fills_the_shared_room_but_not_the_priority_reserve() {
    // Blocks at the smallest gas limit, and spam transfers that each reserve nearly all of it: one
    // spam transfer a block, so 1,500 of them wait for block space far longer than the test runs.
    let min = MIN_GAS_LIMIT.to_string();
    let node = NodeProcess::dev(&["--no-keeper", "--gas-limit", &min, "--txpool-max-total", "1000"]);
    let rpc = node.rpc();
    let c = contracts(&node);
    let keys: Vec<PrivateKeySigner> = (0..1_500).map(|_| PrivateKeySigner::random()).collect();
    let raws: Vec<String> = keys.iter().map(|k| transfer_with_gas(k, 0, MIN_GAS_LIMIT - 20_000)).collect();
    let errors = send_batches(&rpc, &raws);
    assert!(!errors.is_empty(), "over the shared room: refused");
    assert!(errors.iter().all(|e| e.contains("--txpool-max-total")), "{:?}", &errors[..1]);
    let (pending, _) = pool_status(&rpc);
    assert!(pending >= 900, "the room is full of executable spam: {pending}");

    // A household (account 1, no priority) is refused with the reason; nothing was evicted for it.
    let plain = sign_raw(
        &dev_key(1),
        TxLegacy {
            chain_id: Some(CHAIN_ID),
            nonce: 0,
            gas_limit: 21_000,
            to: TxKind::Call(Address::ZERO),
            ..Default::default()
        },
    );
    // Blocks take one spam transfer each, freeing room: the household's transaction goes last in
    // one batch behind 30 more spam transfers, so the room is full when it is handled.
    let top_up: Vec<String> =
        (0..30).map(|_| transfer_with_gas(&PrivateKeySigner::random(), 0, MIN_GAS_LIMIT - 20_000)).collect();
    let batch: Vec<Value> = top_up
        .iter()
        .chain([&plain])
        .enumerate()
        .map(|(i, r)| json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [r]}))
        .collect();
    let (_, answers) = rpc.raw(&Value::Array(batch).to_string()).expect("batch answered");
    let last = &answers.as_array().expect("batch answer")[30];
    let message =
        last["error"]["message"].as_str().unwrap_or_else(|| panic!("the shared room is full: {last}"));
    assert!(message.contains("pool is full"), "{message}");

    // A meter (priority: the dev market's meter keys) gets in from the reserve and is mined ahead of
    // the backlog.
    let ts = hex_u64(&rpc.call("eth_getBlockByNumber", json!(["latest", false]))["timestamp"]);
    let reading = MeterReadings::submitReadingCall { importWh: 10, exportWh: 0, timestamp: ts }.abi_encode();
    mined_within_two_blocks(&rpc, &call_from(&rpc, 101, addr(&c, "readings"), reading), "submitReading");
    let (pending_after, _) = pool_status(&rpc);
    assert!(pending_after > 500, "the backlog is still there: {pending_after}");
}
