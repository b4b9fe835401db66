//! The block explorer's methods (`ots_` namespace, `--rpc-explorer`), called the way Otterscan
//! calls them, against a real node, with a contract that makes an internal value transfer,
//! creates a contract from a contract, calls another contract without value or log, and reverts
//! with a custom error (`tests/fixtures/explorer`, built by forge). Expected values come from the
//! standard methods (`eth_getBlockByNumber`, receipts, logs, `debug_traceTransaction`'s
//! `callTracer`) and from the transactions the test sent, not from the explorer's own code.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use alloy_primitives::{keccak256, Address, U256};
use alloy_sol_types::{sol, SolCall, SolError};
use p2pe_tests::harness::{hex_u64, npm_tool, run_ok, workspace_root, NodeProcess, Rpc};
use serde_json::{json, Value};

sol! {
    function forward(address to) external payable;
    function make() external payable returns (address child);
    function fail() external pure;
    function peek(address target) external returns (bool ok);
    error Nope(uint256 code);
}

fn creation_code() -> String {
    let dir = workspace_root().join("tests/fixtures/explorer");
    run_ok(Command::new(npm_tool("forge")).current_dir(&dir).arg("build"));
    let text = std::fs::read_to_string(dir.join("out/Explorer.sol/Explorer.json")).expect("artifact");
    let artifact: Value = serde_json::from_str(&text).expect("artifact json");
    artifact["bytecode"]["object"].as_str().expect("bytecode").to_string()
}

fn send(rpc: &Rpc, from: &str, to: Option<&str>, data: Vec<u8>, value: u64) -> String {
    let mut tx = json!({"from": from, "data": format!("0x{}", alloy_primitives::hex::encode(data)),
                        "value": format!("{value:#x}"), "gas": "0x100000"});
    if let Some(to) = to {
        tx["to"] = json!(to);
    }
    rpc.call("eth_sendTransaction", json!([tx])).as_str().unwrap().to_string()
}

/// What the test sent, with the blocks they landed in.
struct Sent {
    accounts: Vec<String>,
    explorer: String,
    deploy: Value,
    forward: Value,
    make: Value,
    fail: Value,
    /// `peek(child)`: a static call to the child, with no value and no log.
    peek: Value,
    /// The contract `make` created.
    child: Address,
    recipient: Address,
    /// Receipts of four transfers sent at once (at most two blocks of the 1 s dev chain).
    burst: Vec<Value>,
}

fn send_all(rpc: &Rpc) -> Sent {
    let accounts: Vec<String> = rpc
        .call("eth_accounts", json!([]))
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_lowercase())
        .collect();
    let wait = |h: String| rpc.wait_receipt(&h, Duration::from_secs(30));
    let deploy =
        wait(send(rpc, &accounts[1], None, alloy_primitives::hex::decode(creation_code()).unwrap(), 0));
    let explorer = deploy["contractAddress"].as_str().unwrap().to_lowercase();
    let recipient = Address::repeat_byte(0x77);
    let forward =
        wait(send(rpc, &accounts[1], Some(&explorer), forwardCall { to: recipient }.abi_encode(), 1000));
    let make = wait(send(rpc, &accounts[2], Some(&explorer), makeCall {}.abi_encode(), 5));
    let fail = wait(send(rpc, &accounts[1], Some(&explorer), failCall {}.abi_encode(), 0));
    // The child's address, from the Made(address) log of the standard receipt.
    let child = Address::from_slice(
        &alloy_primitives::hex::decode(make["logs"][0]["data"].as_str().unwrap()).unwrap()[12..32],
    );
    let peek = wait(send(rpc, &accounts[7], Some(&explorer), peekCall { target: child }.abi_encode(), 0));
    assert_eq!(
        (forward["status"].as_str(), make["status"].as_str(), fail["status"].as_str()),
        (Some("0x1"), Some("0x1"), Some("0x0"))
    );
    assert_eq!(peek["status"], "0x1");
    assert!(peek["logs"].as_array().unwrap().is_empty(), "peek emits no log");
    let burst: Vec<String> = (3..7)
        .map(|i| send(rpc, &accounts[i], Some(&explorer), forwardCall { to: recipient }.abi_encode(), 1))
        .collect();
    let burst = burst.into_iter().map(wait).collect();
    Sent { accounts, explorer, deploy, forward, make, fail, peek, child, recipient, burst }
}

fn hash(r: &Value) -> String {
    r["transactionHash"].as_str().unwrap().to_string()
}

#[test]
fn otterscan_call_pattern() {
    let node = NodeProcess::dev(&["--rpc-explorer", "--rpc-admin"]);
    let rpc = node.rpc();
    let sent = send_all(&rpc);
    assert_eq!(rpc.call("ots_getApiLevel", json!([])), json!(8));
    blocks(&rpc, &sent);
    traces(&rpc, &sent);
    lookups(&rpc, &sent);
    searches(&rpc, &sent);
}

fn blocks(rpc: &Rpc, sent: &Sent) {
    // The burst's fullest block.
    let number = sent
        .burst
        .iter()
        .map(|r| r["blockNumber"].clone())
        .max_by_key(|n| sent.burst.iter().filter(|r| r["blockNumber"] == *n).count())
        .unwrap();
    let std_block = rpc.call("eth_getBlockByNumber", json!([number, true]));
    assert!(
        std_block["transactions"].as_array().unwrap().len() >= 2,
        "four transfers sent at once share a block"
    );
    let header = rpc.call("erigon_getHeaderByNumber", json!([number]));
    assert_eq!(header["hash"], std_block["hash"]);
    let details = rpc.call("ots_getBlockDetails", json!([number]));
    let txs = std_block["transactions"].as_array().unwrap();
    assert_eq!(details["block"]["transactionCount"], json!(txs.len()));
    assert_eq!(details["block"]["hash"], std_block["hash"]);
    assert!(
        details["block"].get("transactions").is_none() && details["block"]["logsBloom"].is_null(),
        "{details}"
    );
    assert_eq!(
        (details["issuance"]["blockReward"].as_str(), details["totalFees"].as_str()),
        (Some("0x0"), Some("0x0"))
    );
    assert_eq!(
        rpc.call("ots_getBlockDetailsByHash", json!([std_block["hash"]]))["block"]["number"],
        std_block["number"]
    );
    // Pages of one transaction, counted from the block's end, cover the block in order.
    let mut seen = Vec::new();
    for page in 0..txs.len() {
        let r = rpc.call("ots_getBlockTransactions", json!([number, page, 1]));
        let page_txs = r["fullblock"]["transactions"].as_array().unwrap();
        assert_eq!(page_txs.len(), 1);
        assert_eq!(r["fullblock"]["transactionCount"], json!(txs.len()));
        assert!(page_txs[0]["input"].as_str().unwrap().len() <= 10, "input cut to the selector");
        assert!(r["receipts"][0]["logs"].is_null() && r["receipts"][0]["logsBloom"].is_null());
        assert_eq!(r["receipts"][0]["transactionHash"], page_txs[0]["hash"]);
        seen.insert(0, page_txs[0]["hash"].clone());
    }
    let all: Vec<Value> = txs.iter().map(|t| t["hash"].clone()).collect();
    assert_eq!(seen, all);
    let past = rpc.call("ots_getBlockTransactions", json!([number, txs.len(), 1]));
    assert_eq!(past["fullblock"]["transactions"], json!([]));
    assert!(rpc.try_call("ots_getBlockTransactions", json!([number, 0, 0])).is_err(), "page size 0");
    assert!(
        rpc.try_call("ots_getBlockTransactions", json!([number, 0, 1001])).is_err(),
        "page size over 1000"
    );
    rpc.call("ots_getBlockTransactions", json!([number, 0, 1000]));
}

fn traces(rpc: &Rpc, sent: &Sent) {
    let explorer: Address = sent.explorer.parse().unwrap();
    let from: Address = sent.accounts[1].parse().unwrap();
    let trace = rpc.call("ots_traceTransaction", json!([hash(&sent.forward)]));
    let entries: Vec<(String, u64, Address, Address, String)> = trace
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["depth"].as_u64().unwrap(),
                e["from"].as_str().unwrap().parse().unwrap(),
                e["to"].as_str().unwrap().parse().unwrap(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            ("CALL".into(), 0, from, explorer, "0x3e8".into()),
            ("CALL".into(), 1, explorer, sent.recipient, "0x3e8".into())
        ]
    );
    let ops = rpc.call("ots_getInternalOperations", json!([hash(&sent.forward)]));
    assert_eq!(ops, json!([{"type": 0, "from": explorer, "to": sent.recipient, "value": "0x3e8"}]));
    let child = sent.child;
    let ops = rpc.call("ots_getInternalOperations", json!([hash(&sent.make)]));
    assert_eq!(ops, json!([{"type": 2, "from": explorer, "to": child, "value": "0x5"}]));
    let error = rpc.call("ots_getTransactionError", json!([hash(&sent.fail)]));
    let nope = Nope { code: U256::from(42) }.abi_encode();
    assert_eq!(error, json!(format!("0x{}", alloy_primitives::hex::encode(nope))));
    assert_eq!(rpc.call("ots_getTransactionError", json!([hash(&sent.forward)])), json!("0x"));
    assert!(rpc.try_call("ots_traceTransaction", json!([format!("{:#x}", keccak256("none"))])).is_err());
}

fn lookups(rpc: &Rpc, sent: &Sent) {
    let tx = rpc.call("eth_getTransactionByHash", json!([hash(&sent.forward)]));
    let by_nonce = rpc.call("ots_getTransactionBySenderAndNonce", json!([sent.accounts[1], tx["nonce"]]));
    assert_eq!(by_nonce, json!(hash(&sent.forward)));
    assert!(rpc.call("ots_getTransactionBySenderAndNonce", json!([sent.accounts[1], "0x3e8"])).is_null());
    let creator = rpc.call("ots_getContractCreator", json!([sent.explorer]));
    assert_eq!(creator["hash"], json!(hash(&sent.deploy)));
    assert_eq!(creator["creator"].as_str().unwrap().to_lowercase(), sent.accounts[1]);
    // Created by a contract: the creator is that contract (the CREATE frame of the trace).
    let explorer: Address = sent.explorer.parse().unwrap();
    assert_eq!(
        rpc.call("ots_getContractCreator", json!([sent.child])),
        json!({"hash": hash(&sent.make), "creator": explorer})
    );
    assert!(
        rpc.call("ots_getContractCreator", json!([sent.accounts[3]])).is_null(),
        "an account is no contract"
    );
    assert_eq!(rpc.call("ots_hasCode", json!([sent.explorer, "latest"])), json!(true));
    assert_eq!(rpc.call("ots_hasCode", json!([sent.accounts[1], "latest"])), json!(false));
    let before_deploy = hex_u64(&sent.deploy["blockNumber"]) - 1;
    assert_eq!(rpc.call("ots_hasCode", json!([sent.explorer, format!("{before_deploy:#x}")])), json!(false));
}

/// Every address a call of `hash` came from or went to, internal calls included (`callTracer`).
fn call_addresses(rpc: &Rpc, hash: &str) -> Vec<String> {
    fn walk(frame: &Value, out: &mut Vec<String>) {
        for key in ["from", "to"] {
            out.extend(frame[key].as_str().map(str::to_lowercase));
        }
        for call in frame["calls"].as_array().into_iter().flatten() {
            walk(call, out);
        }
    }
    let trace = rpc.call("debug_traceTransaction", json!([hash, {"tracer": "callTracer"}]));
    let mut out = Vec::new();
    walk(&trace, &mut out);
    out
}

/// The reference: every canonical transaction `address` sent, received, created, emitted a log
/// in or was called in (internal calls too), newest first, from the standard methods.
fn reference(rpc: &Rpc, address: &str) -> Vec<String> {
    let head = rpc.block_number();
    let mut out = Vec::new();
    for n in (1..=head).rev() {
        let block = rpc.call("eth_getBlockReceipts", json!([format!("{n:#x}")]));
        for r in block.as_array().unwrap().iter().rev() {
            let lower = |v: &Value| v.as_str().map(str::to_lowercase);
            let hit = lower(&r["from"]).as_deref() == Some(address)
                || lower(&r["to"]).as_deref() == Some(address)
                || lower(&r["contractAddress"]).as_deref() == Some(address)
                || r["logs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| lower(&l["address"]).as_deref() == Some(address))
                || call_addresses(rpc, &hash(r)).iter().any(|a| a == address);
            if hit {
                out.push(hash(r));
            }
        }
    }
    out
}

/// Follows Otterscan's paging with `pageSize` 1 in one direction and returns the hashes.
fn walk(rpc: &Rpc, address: &str, before: bool) -> Vec<String> {
    let (method, mut at) =
        if before { ("ots_searchTransactionsBefore", 0) } else { ("ots_searchTransactionsAfter", 0) };
    let mut pages: Vec<Vec<String>> = Vec::new();
    for i in 0.. {
        assert!(i < 100, "paging does not end");
        let r = rpc.call(method, json!([address, at, 1]));
        let hashes: Vec<String> =
            r["txs"].as_array().unwrap().iter().map(|t| t["hash"].as_str().unwrap().to_string()).collect();
        let blocks: Vec<u64> =
            r["txs"].as_array().unwrap().iter().map(|t| hex_u64(&t["blockNumber"])).collect();
        assert!(blocks.windows(2).all(|w| w[0] >= w[1]), "newest first: {blocks:?}");
        for (t, rc) in r["txs"].as_array().unwrap().iter().zip(r["receipts"].as_array().unwrap()) {
            assert_eq!(t["hash"], rc["transactionHash"]);
            assert!(rc["timestamp"].is_string() && rc["logs"].is_null());
        }
        assert_eq!(r[if before { "firstPage" } else { "lastPage" }], json!(i == 0), "{r}");
        let done = r[if before { "lastPage" } else { "firstPage" }].as_bool().unwrap();
        if hashes.is_empty() {
            assert!(done);
            break;
        }
        at = if before { *blocks.last().unwrap() } else { blocks[0] };
        pages.push(hashes);
        if done {
            break;
        }
    }
    if !before {
        pages.reverse();
    }
    pages.concat()
}

fn searches(rpc: &Rpc, sent: &Sent) {
    let mut expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let (recipient, child) = (format!("{:#x}", sent.recipient), format!("{:#x}", sent.child));
    for address in [sent.accounts[1].as_str(), sent.explorer.as_str(), &recipient, &child] {
        expected.insert(address, reference(rpc, address));
    }
    assert_eq!(expected[sent.accounts[1].as_str()].len(), 3, "deploy, forward, fail");
    assert_eq!(
        expected[sent.explorer.as_str()].len(),
        9,
        "deploy, forward, make, fail, peek, four transfers"
    );
    // Found only through internal calls: no log names them and no transaction is sent to them.
    assert_eq!(expected[recipient.as_str()].len(), 5, "forward and the four transfers (internal)");
    assert_eq!(
        expected[child.as_str()],
        vec![hash(&sent.peek), hash(&sent.make)],
        "peek (a static call), make"
    );
    for (address, want) in &expected {
        assert_eq!(&walk(rpc, address, true), want, "searchTransactionsBefore {address}");
        assert_eq!(&walk(rpc, address, false), want, "searchTransactionsAfter {address}");
    }
    let nobody = format!("{:#x}", Address::repeat_byte(0x55));
    let r = rpc.call("ots_searchTransactionsBefore", json!([nobody, 0, 10]));
    assert_eq!(
        (r["txs"].clone(), r["firstPage"].clone(), r["lastPage"].clone()),
        (json!([]), json!(true), json!(true))
    );
}

#[test]
fn the_explorer_namespace_is_off_by_default() {
    let node = NodeProcess::dev(&[]);
    let err = node.rpc().try_call("ots_getApiLevel", json!([])).unwrap_err();
    assert!(err.message.contains("--rpc-explorer"), "{}", err.message);
}

/// A data directory made before the explorer's indexes existed (simulated by emptying them) is
/// indexed when the node opens it: the benchmark contract's calls are found by search.
#[test]
fn an_older_data_directory_is_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = p2pe_tests::net::Testnet::generate(
        &p2pe_tests::harness::node_bin(),
        &dir.path().join("net"),
        1,
        0,
        1,
    );
    let seeded = p2pe_tests::net::seed_chain(&net, 12, 3);
    {
        let db = rusqlite::Connection::open(net.datadir(0).join("chain.sqlite")).unwrap();
        db.execute_batch(
            "DELETE FROM address_txs; DELETE FROM sender_txs; DELETE FROM contract_creators; DELETE FROM meta WHERE key = 'explorer_index';",
        )
        .unwrap();
    }
    net.start_with(0, &["--rpc-explorer".to_string()]);
    let rpc = net.rpc(0);
    let contract = format!("{:#x}", seeded.contract);
    let r = rpc.call("ots_searchTransactionsBefore", json!([contract, 0, 100]));
    // Block 1 deploys it, and blocks 3, 6, 9 and 12 call it.
    let blocks: Vec<u64> = r["txs"].as_array().unwrap().iter().map(|t| hex_u64(&t["blockNumber"])).collect();
    assert_eq!(blocks, vec![12, 9, 6, 3, 1], "{r}");
    assert_eq!((r["firstPage"].clone(), r["lastPage"].clone()), (json!(true), json!(true)));
    assert!(!rpc.call("ots_getContractCreator", json!([contract])).is_null());
}
