//! `debug_trace*` against a real node: `cast run` on a mined transaction, and the JSON shapes of
//! geth's struct logger, `callTracer` and `prestateTracer` (with their options), block traces,
//! `debug_traceCall` with overrides and `txIndex`, and the errors.

use std::process::Command;
use std::time::Duration;

use alloy_consensus::TxEip1559;
use alloy_primitives::{Bytes, TxKind, U256};
use p2pe_tests::harness::{
    dev_key, hex_u64, npm_tool, osaka_fixture, run_ok, sign_raw, workspace_root, NodeProcess, Rpc,
};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(30);
const STORE: &str = "6057361d"; // store(uint256)
const LEADING_ZEROS: &str = "8d9d94e2"; // leadingZeros(uint256)
const TOO_BIG: &str = "0x6ad9cdfc"; // TooBig(uint256,uint256)

fn call_data(selector: &str, v: u128) -> String {
    format!("0x{selector}{v:064x}")
}

fn word(v: u64) -> String {
    format!("0x{v:064x}")
}

fn transact(rpc: &Rpc, from: u32, to: &str, data: &str) -> Value {
    let h =
        rpc.call("eth_sendTransaction", json!([{"from": dev_key(from).address(), "to": to, "data": data}]));
    rpc.wait_receipt(h.as_str().unwrap(), SECS)
}

/// Deploys the Osaka fixture from dev account 0: (contract address, deployment receipt).
fn deploy_fixture(rpc: &Rpc) -> (String, Value) {
    let (creation, _) = osaka_fixture();
    let h = rpc.call("eth_sendTransaction", json!([{"from": dev_key(0).address(), "data": creation}]));
    let receipt = rpc.wait_receipt(h.as_str().unwrap(), SECS);
    assert_eq!(receipt["status"], "0x1", "deployment failed: {receipt}");
    (receipt["contractAddress"].as_str().unwrap().to_string(), receipt)
}

/// A dev node with the Osaka fixture deployed and `store(42)` mined: (node, contract, receipt).
fn node_with_store() -> (NodeProcess, String, Value) {
    let node = NodeProcess::dev(&["--period", "1", "--rpc-admin"]);
    let rpc = node.rpc();
    let (contract, _) = deploy_fixture(&rpc);
    let receipt = transact(&rpc, 0, &contract, &call_data(STORE, 42));
    assert_eq!(receipt["status"], "0x1");
    (node, contract, receipt)
}

/// Runtime code that CALLs `target.leadingZeros(1)` and returns its 32-byte answer.
fn caller_code(target: &str) -> String {
    format!(
        "0x63{LEADING_ZEROS}60e01b60005260016004526020600060246000600073{}5af15060206000f3",
        target.trim_start_matches("0x")
    )
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
    k.sort();
    k
}

#[test]
fn cast_run_traces_a_mined_transaction() {
    let (node, _contract, receipt) = node_with_store();
    let tx = receipt["transactionHash"].as_str().unwrap();
    // `--la` decodes with the fixture's artifacts; cast cannot tell this chain's hardfork from
    // its chain id, so it is told Osaka (the fixture uses CLZ).
    let out = run_ok(
        Command::new(npm_tool("cast")).current_dir(workspace_root().join("tests/fixtures/osaka")).args([
            "run",
            tx,
            "--rpc-url",
            &node.url,
            "--evm-version",
            "osaka",
            "--with-local-artifacts",
        ]),
    );
    assert!(out.contains("Osaka::store(42)"), "cast run names the contract and function:\n{out}");
    assert!(out.contains("emit Stored("), "cast run shows the event:\n{out}");
    assert!(out.contains("Transaction successfully executed"), "{out}");
    assert!(out.contains(&format!("Gas used: {}", hex_u64(&receipt["gasUsed"]))), "{out}");
}

#[test]
fn struct_logger_shape_and_options() {
    let (node, contract, receipt) = node_with_store();
    let rpc = node.rpc();
    let tx = receipt["transactionHash"].clone();
    let trace = rpc.call("debug_traceTransaction", json!([tx]));
    assert_eq!(keys(&trace), ["failed", "gas", "returnValue", "structLogs"], "{trace:#}");
    assert_eq!(trace["failed"], false);
    assert_eq!(trace["gas"].as_u64().expect("gas is a JSON number"), hex_u64(&receipt["gasUsed"]));
    assert_eq!(trace["returnValue"], "0x");
    let logs = trace["structLogs"].as_array().unwrap();
    let first = &logs[0];
    assert_eq!(
        (first["pc"].as_u64(), first["op"].as_str(), first["depth"].as_u64()),
        (Some(0), Some("PUSH1"), Some(1))
    );
    assert!(first["gas"].is_u64() && first["gasCost"].is_u64(), "{first}");
    assert_eq!(first["stack"], json!([]));
    // gas counts down by each step's cost.
    assert_eq!(
        logs[1]["gas"].as_u64().unwrap(),
        first["gas"].as_u64().unwrap() - first["gasCost"].as_u64().unwrap()
    );
    let ops: Vec<&str> = logs.iter().map(|l| l["op"].as_str().unwrap()).collect();
    for op in ["CLZ", "MCOPY", "TSTORE", "TLOAD", "SSTORE", "LOG2", "STOP"] {
        assert!(ops.contains(&op), "{op} in the trace");
    }
    let sstore = logs.iter().find(|l| l["op"] == "SSTORE").unwrap();
    assert_eq!(sstore["storage"][word(0)], word(42), "{sstore}");
    assert!(logs.iter().all(|l| l.get("memory").is_none()), "memory is off by default");
    assert!(
        logs.iter().all(|l| l.get("storage").is_none() || l["op"] == "SSTORE" || l["op"] == "SLOAD"),
        "storage only at SLOAD/SSTORE"
    );
    assert!(logs.iter().all(|l| l["refund"].is_u64()), "refund at every step");

    let no_stack =
        rpc.call("debug_traceTransaction", json!([tx, {"disableStack": true, "disableStorage": true}]));
    let nl = no_stack["structLogs"].as_array().unwrap();
    assert_eq!(nl.len(), logs.len());
    assert!(nl.iter().all(|l| l.get("stack").is_none() && l.get("storage").is_none()));
    let memory = rpc.call("debug_traceTransaction", json!([tx, {"enableMemory": true}]));
    let mlogs = memory["structLogs"].as_array().unwrap();
    // After the first MSTORE (the free memory pointer at 0x40), memory holds three words.
    let mstore = mlogs.iter().position(|l| l["op"] == "MSTORE").unwrap();
    let words = mlogs[mstore + 1]["memory"].as_array().expect("memory words");
    assert_eq!(words.len(), 3, "{}", mlogs[mstore + 1]);
    // execution-apis opcode-tracer.yaml: 0x-prefixed, zero-padded 32-byte words.
    assert_eq!(words[2], word(0x80));
    let limited = rpc.call("debug_traceTransaction", json!([tx, {"limit": 5}]));
    assert_eq!(limited["structLogs"].as_array().unwrap().len(), 5);

    // enableReturnData: after the inner call, each step carries the last call's return data.
    let caller = "0x00000000000000000000000000000000000c0de1";
    let call = json!({"to": caller, "data": "0x"});
    let opts =
        json!({"enableReturnData": true, "stateOverrides": {caller: {"code": caller_code(&contract)}}});
    let t = rpc.call("debug_traceCall", json!([call, "latest", opts]));
    assert_eq!(t["returnValue"], word(0xff), "leadingZeros(1) = 255 is returned");
    let top: Vec<&Value> = t["structLogs"].as_array().unwrap().iter().filter(|l| l["depth"] == 1).collect();
    let pop = top.iter().find(|l| l["op"] == "POP").expect("POP after the CALL");
    assert_eq!(pop["returnData"], word(0xff), "{pop}");
    assert!(t["structLogs"].as_array().unwrap().iter().any(|l| l["depth"] == 2), "the inner call is traced");
}

#[test]
fn call_tracer_shape() {
    let (node, contract, receipt) = node_with_store();
    let rpc = node.rpc();
    let tx = receipt["transactionHash"].clone();
    let from = format!("{:#x}", dev_key(0).address());
    let frame = rpc.call("debug_traceTransaction", json!([tx, {"tracer": "callTracer"}]));
    assert_eq!(keys(&frame), ["from", "gas", "gasUsed", "input", "to", "type", "value"], "{frame:#}");
    assert_eq!(frame["type"], "CALL");
    assert_eq!(frame["from"], from);
    assert_eq!(frame["to"], contract.to_lowercase());
    assert_eq!(frame["input"], call_data(STORE, 42));
    assert_eq!(frame["value"], "0x0");
    assert_eq!(hex_u64(&frame["gasUsed"]), hex_u64(&receipt["gasUsed"]));
    assert!(hex_u64(&frame["gas"]) >= hex_u64(&frame["gasUsed"]));
    let with_log = rpc.call(
        "debug_traceTransaction",
        json!([tx, {"tracer": "callTracer", "tracerConfig": {"withLog": true}}]),
    );
    let log = &with_log["logs"][0];
    assert_eq!(log["address"], contract.to_lowercase());
    assert_eq!(log["topics"].as_array().unwrap().len(), 2);
    assert_eq!(log["data"], format!("{}{:064x}", word(42), 250), "value 42, 250 leading zero bits");
    assert_eq!(log["position"], "0x0");

    // A deployment is a CREATE frame.
    let (created, deployed) = deploy_fixture(&rpc);
    let create =
        rpc.call("debug_traceTransaction", json!([deployed["transactionHash"], {"tracer": "callTracer"}]));
    assert_eq!(create["type"], "CREATE");
    assert_eq!(create["to"], created.to_lowercase());
    assert!(create["output"].as_str().unwrap().len() > 100, "runtime code is the CREATE output");

    // Nested calls through debug_traceCall with a state override, and onlyTopCall.
    let caller = "0x00000000000000000000000000000000000c0de1";
    let call = json!({"from": from, "to": caller});
    let overrides = json!({caller: {"code": caller_code(&contract)}});
    let nested = rpc.call(
        "debug_traceCall",
        json!([call, "latest", {"tracer": "callTracer", "stateOverrides": overrides}]),
    );
    assert_eq!(nested["to"], caller);
    assert_eq!(nested["output"], word(0xff));
    let inner = &nested["calls"][0];
    assert_eq!(inner["type"], "CALL");
    assert_eq!(inner["from"], caller);
    assert_eq!(inner["to"], contract.to_lowercase());
    assert_eq!(inner["input"], call_data(LEADING_ZEROS, 1));
    assert_eq!(inner["output"], word(0xff));
    let top = rpc.call(
        "debug_traceCall",
        json!([call, "latest", {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": true}, "stateOverrides": overrides}]),
    );
    assert!(top.get("calls").is_none(), "{top}");
    assert_eq!(top["output"], word(0xff));

    // A revert reports the error and the revert data (a custom error here).
    let big = call_data(STORE, 10u128.pow(31));
    let reverted = rpc.call(
        "debug_traceCall",
        json!([{"from": from, "to": contract, "data": big}, "latest", {"tracer": "callTracer"}]),
    );
    assert_eq!(reverted["error"], "execution reverted");
    assert!(reverted["output"].as_str().unwrap().starts_with(TOO_BIG), "{reverted}");
}

#[test]
fn prestate_tracer_replays_earlier_transactions_of_the_block() {
    let node = NodeProcess::dev(&["--period", "1", "--rpc-admin"]);
    let rpc = node.rpc();
    let (contract, _) = deploy_fixture(&rpc);
    let key = dev_key(1);
    let sender = format!("{:#x}", key.address());
    let nonce = hex_u64(&rpc.call("eth_getTransactionCount", json!([sender, "latest"])));
    let tx = |n: u64, v: u128| {
        sign_raw(
            &key,
            TxEip1559 {
                chain_id: 1337,
                nonce: n,
                gas_limit: 200_000,
                max_fee_per_gas: 1,
                max_priority_fee_per_gas: 1,
                to: TxKind::Call(contract.parse().unwrap()),
                value: U256::ZERO,
                input: call_data(STORE, v).parse::<Bytes>().unwrap(),
                access_list: Default::default(),
            },
        )
    };
    // The second first: it waits on the nonce gap, so both go into the same block.
    let h2 = rpc.call("eth_sendRawTransaction", json!([tx(nonce + 1, 9)]));
    let h1 = rpc.call("eth_sendRawTransaction", json!([tx(nonce, 7)]));
    let r1 = rpc.wait_receipt(h1.as_str().unwrap(), SECS);
    let r2 = rpc.wait_receipt(h2.as_str().unwrap(), SECS);
    assert_eq!(r1["blockNumber"], r2["blockNumber"], "both in one block");
    assert_eq!(
        (r1["transactionIndex"].as_str(), r2["transactionIndex"].as_str()),
        (Some("0x0"), Some("0x1"))
    );
    let c = contract.to_lowercase();

    let pre = rpc.call("debug_traceTransaction", json!([h2, {"tracer": "prestateTracer"}]));
    assert_eq!(pre[&c]["storage"][word(0)], word(7), "tx 0 of the block was replayed first: {pre:#}");
    assert_eq!(pre[&sender]["nonce"].as_u64(), Some(nonce + 1), "{pre:#}");
    assert!(pre[&sender]["balance"].as_str().unwrap().starts_with("0x"));
    assert!(pre[&c]["code"].as_str().unwrap().len() > 100);
    let pre1 = rpc.call("debug_traceTransaction", json!([h1, {"tracer": "prestateTracer"}]));
    assert_eq!(pre1[&c]["storage"][word(0)], word(0), "slot 0 was empty: {pre1:#}");
    let lean = rpc.call(
        "debug_traceTransaction",
        json!([h2, {"tracer": "prestateTracer", "tracerConfig": {"disableStorage": true, "disableCode": true}}]),
    );
    assert!(lean[&c].get("storage").is_none() && lean[&c].get("code").is_none(), "{lean:#}");

    let diff = rpc.call(
        "debug_traceTransaction",
        json!([h2, {"tracer": "prestateTracer", "tracerConfig": {"diffMode": true}}]),
    );
    assert_eq!(keys(&diff), ["post", "pre"]);
    assert_eq!(diff["pre"][&c]["storage"][word(0)], word(7));
    assert_eq!(diff["post"][&c]["storage"][word(0)], word(9));
    assert_eq!(diff["post"][&sender]["nonce"].as_u64(), Some(nonce + 2));
    assert!(diff["post"][&c].get("code").is_none(), "unchanged code is not in post");

    // The block trace has both, in order, each as {txHash, result}.
    let block = r1["blockNumber"].clone();
    let traces = rpc.call("debug_traceBlockByNumber", json!([block, {"tracer": "prestateTracer"}]));
    let traces = traces.as_array().unwrap();
    assert_eq!(traces.len(), 2);
    assert_eq!(keys(&traces[0]), ["result", "txHash"]);
    assert_eq!((&traces[0]["txHash"], &traces[1]["txHash"]), (&h1, &h2));
    assert_eq!(traces[1]["result"], pre);

    // debug_traceCall with txIndex runs inside the block, before that transaction.
    let read = json!({"to": contract, "data": "0xe582dd31"}); // stored()
    let at = |i: &str| {
        rpc.call("debug_traceCall", json!([read, block, {"tracer": "callTracer", "txIndex": i}]))["output"]
            .clone()
    };
    assert_eq!(at("0x0"), word(0));
    assert_eq!(at("0x1"), word(7));
    assert_eq!(at("0x2"), word(9));
    let e = rpc.try_call("debug_traceCall", json!([read, block, {"txIndex": "0x3"}])).unwrap_err();
    assert_eq!(e.code, -32602, "{e:?}");
}

#[test]
fn block_traces_and_errors() {
    let (node, _contract, receipt) = node_with_store();
    let rpc = node.rpc();
    let number = receipt["blockNumber"].clone();
    let hash = receipt["blockHash"].clone();
    let by_number = rpc.call("debug_traceBlockByNumber", json!([number]));
    let by_hash = rpc.call("debug_traceBlockByHash", json!([hash]));
    assert_eq!(by_number, by_hash);
    let entries = by_number.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["txHash"], receipt["transactionHash"]);
    assert_eq!(entries[0]["result"], rpc.call("debug_traceTransaction", json!([receipt["transactionHash"]])));
    let calls = rpc.call("debug_traceBlockByHash", json!([hash, {"tracer": "callTracer"}]));
    assert_eq!(calls[0]["result"]["type"], "CALL");
    assert_eq!(
        rpc.call("debug_traceBlockByNumber", json!(["0x0"])),
        json!([]),
        "genesis has no transactions"
    );
    // An empty block later on.
    rpc.wait_block(hex_u64(&number) + 2, SECS);
    let empty = rpc.call("eth_getBlockByNumber", json!(["latest", false]));
    if empty["transactions"].as_array().unwrap().is_empty() {
        assert_eq!(rpc.call("debug_traceBlockByHash", json!([empty["hash"]])), json!([]));
    }

    let missing = format!("0x{}", "ab".repeat(32));
    let code = |method: &str, params: Value| rpc.try_call(method, params).unwrap_err().code;
    assert_eq!(code("debug_traceTransaction", json!([missing])), -32001);
    assert_eq!(code("debug_traceBlockByHash", json!([missing])), -32001);
    assert_eq!(code("debug_traceBlockByNumber", json!(["0xffffff"])), -32001);
    let tx = receipt["transactionHash"].clone();
    assert_eq!(code("debug_traceTransaction", json!([tx, {"tracer": "{step: function() {}}"}])), -32602);
    assert_eq!(
        code(
            "debug_traceTransaction",
            json!([tx, {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": "yes"}}])
        ),
        -32602
    );
    assert_eq!(code("debug_traceTransaction", json!([])), -32602);
    assert_eq!(
        code("debug_traceCall", json!([{"to": missing[..42]}, "latest", {"txIndex": "0x01"}])),
        -32602
    );
    // The 4byte and noop tracers come with revm-inspectors too.
    let four = rpc.call("debug_traceTransaction", json!([tx, {"tracer": "4byteTracer"}]));
    assert_eq!(four, json!({"0x6057361d-32": 1}));
    assert_eq!(rpc.call("debug_traceTransaction", json!([tx, {"tracer": "noopTracer"}])), json!({}));
    // timeout is honoured (a Go duration, as in geth); this trace ends well within it.
    let t = rpc.call("debug_traceTransaction", json!([tx, {"tracer": "callTracer", "timeout": "1s"}]));
    assert_eq!(t["type"], "CALL");
}
