//! Strict JSON-RPC quantities against a real node: a QUANTITY with leading zeros ("0x01",
//! "0x0001") or without digits ("0x") is refused with -32602 wherever the execution-apis spec
//! puts a quantity (block numbers, indexes, counts, and the quantity fields of transaction
//! requests, filters and overrides), while DATA (hashes, addresses, bytes, storage slots) keeps
//! its zeros.

use p2pe_tests::harness::{dev_key, NodeProcess, Rpc};
use serde_json::{json, Value};

fn code(rpc: &Rpc, method: &str, params: Value) -> i64 {
    match rpc.try_call(method, params.clone()) {
        Ok(v) => panic!("{method} {params} was accepted: {v}"),
        Err(e) => {
            assert_eq!(e.code, -32602, "{method} {params}: {e:?}");
            e.code
        }
    }
}

#[test]
fn quantities_with_leading_zeros_are_refused() {
    let node = NodeProcess::dev(&["--period", "1", "--rpc-admin"]);
    let rpc = node.rpc();
    rpc.wait_block(1, std::time::Duration::from_secs(30));
    let from = format!("{:#x}", dev_key(0).address());
    let to = format!("{:#x}", dev_key(1).address());

    for bad in ["0x01", "0x0001", "0x00", "0x"] {
        code(&rpc, "eth_getBlockByNumber", json!([bad, false]));
        code(&rpc, "eth_getBalance", json!([from, bad]));
        code(&rpc, "eth_getCode", json!([from, {"blockNumber": bad}]));
        code(&rpc, "eth_getTransactionCount", json!([from, bad]));
        code(&rpc, "eth_getBlockTransactionCountByNumber", json!([bad]));
        code(&rpc, "eth_getTransactionByBlockNumberAndIndex", json!(["0x1", bad]));
        code(&rpc, "eth_getUncleByBlockNumberAndIndex", json!(["0x1", bad]));
        code(&rpc, "eth_feeHistory", json!([bad, "latest", []]));
        code(&rpc, "eth_feeHistory", json!(["0x1", bad, []]));
        code(&rpc, "eth_getLogs", json!([{"fromBlock": bad}]));
        code(&rpc, "eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": bad}]));
        code(&rpc, "eth_newFilter", json!([{"fromBlock": bad}]));
        code(&rpc, "debug_getRawHeader", json!([bad]));
        code(&rpc, "debug_traceBlockByNumber", json!([bad]));
        code(&rpc, "clique_getSigners", json!([bad]));
        for field in ["gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value", "nonce", "chainId"]
        {
            let req = json!({"from": from, "to": to, field: bad});
            code(&rpc, "eth_call", json!([req, "latest"]));
            code(&rpc, "eth_estimateGas", json!([req]));
            code(&rpc, "eth_sendTransaction", json!([req]));
            code(&rpc, "debug_traceCall", json!([req, "latest"]));
        }
        code(&rpc, "eth_call", json!([{"to": to, "type": bad}, "latest"]));
        code(&rpc, "eth_call", json!([{"to": to}, "latest", {to.clone(): {"balance": bad}}]));
        code(&rpc, "eth_call", json!([{"to": to}, "latest", null, {"number": bad}]));
    }
    // The same requests with canonical quantities are answered.
    assert!(rpc.call("eth_getBlockByNumber", json!(["0x1", false])).is_object());
    assert!(rpc.call("eth_getBlockByNumber", json!(["0x0", false])).is_object());
    assert!(rpc.call("eth_getBalance", json!([from, "0x1"])).is_string());
    assert!(rpc.call("eth_getCode", json!([from, {"blockNumber": "0x0"}])).is_string());
    assert!(rpc.call("eth_feeHistory", json!(["0x1", "latest", []])).is_object());
    assert!(rpc.call("eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": "latest"}])).is_array());
    let req =
        json!({"from": from, "to": to, "gas": "0x5208", "value": "0x0", "nonce": "0x0", "chainId": "0x539"});
    assert_eq!(rpc.call("eth_call", json!([req, "latest"])), "0x");
    assert_eq!(rpc.call("eth_estimateGas", json!([req])), "0x5208");
}

#[test]
fn data_keeps_its_zeros() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    let from = format!("{:#x}", dev_key(0).address());
    let zero_hash = format!("0x{}01", "00".repeat(31));
    // A storage slot is DATA up to 32 bytes: padded or not.
    let slot = rpc.call("eth_getStorageAt", json!([from, format!("0x{}", "00".repeat(32)), "latest"]));
    assert_eq!(slot, format!("0x{}", "00".repeat(32)));
    assert_eq!(rpc.call("eth_getStorageAt", json!([from, "0x0", "latest"])), slot);
    // Hashes with leading zeros are hashes: not found is null (or not-found), never -32602.
    assert!(rpc.call("eth_getTransactionByHash", json!([zero_hash])).is_null());
    assert!(rpc.call("eth_getBlockByHash", json!([zero_hash, false])).is_null());
    let by_hash = rpc.try_call("eth_getBalance", json!([from, zero_hash]));
    assert_ne!(by_hash.map_err(|e| e.code), Err(-32602), "a 32-byte block position is a hash");
    let logs = rpc.try_call("eth_getLogs", json!([{"blockHash": zero_hash}]));
    assert_ne!(logs.map_err(|e| e.code), Err(-32602), "blockHash is DATA");
    // Addresses and call data keep their zero bytes.
    let zero_addr = "0x0000000000000000000000000000000000000001";
    assert_eq!(rpc.call("eth_call", json!([{"to": zero_addr, "data": "0x0000"}, "latest"])), "0x");
    assert_eq!(rpc.call("eth_getBalance", json!([zero_addr, "latest"])), "0x0");
    assert_ne!(rpc.call("web3_sha3", json!(["0x00"])), rpc.call("web3_sha3", json!(["0x"])));
}
