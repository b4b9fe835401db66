//! The wider JSON-RPC surface against a real node: WebSocket subscriptions (and dropping a
//! stalled subscriber), polling filters, proofs, call overrides, access lists, signing, the
//! txpool and raw debug methods.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{keccak256, Address, Bytes, Signature, TxKind, B256, U256};
use alloy_rlp::Decodable;
use p2pe_tests::harness::{deploy, dev_key, hex_u64, osaka_fixture, sign_raw, NodeProcess, Rpc};
use serde_json::{json, Value};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

const SECS: Duration = Duration::from_secs(30);
const STORE: &str = "0x6057361d"; // store(uint256)

fn ws(url: &str) -> WebSocket<MaybeTlsStream<TcpStream>> {
    let (socket, _) = tungstenite::connect(url.replace("http://", "ws://")).expect("ws connect");
    if let MaybeTlsStream::Plain(s) = socket.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    socket
}

fn ws_call(sock: &mut WebSocket<MaybeTlsStream<TcpStream>>, id: u64, method: &str, params: Value) -> Value {
    sock.send(Message::text(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string()))
        .unwrap();
    loop {
        let msg = sock.read().expect("ws read");
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if v["id"] == json!(id) {
            return v;
        }
    }
}

fn next_notification(sock: &mut WebSocket<MaybeTlsStream<TcpStream>>, sub: &Value) -> Value {
    loop {
        let msg = sock.read().expect("notification");
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if v["method"] == "eth_subscription" && v["params"]["subscription"] == *sub {
            return v["params"]["result"].clone();
        }
    }
}

fn store_calldata(v: u64) -> String {
    format!("{STORE}{v:064x}")
}

fn transact(rpc: &Rpc, from: u32, to: &str, data: &str) -> Value {
    let h =
        rpc.call("eth_sendTransaction", json!([{"from": dev_key(from).address(), "to": to, "data": data}]));
    rpc.wait_receipt(h.as_str().unwrap(), SECS)
}

#[test]
fn websocket_subscriptions_and_http_methods_over_ws() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    let (creation, _) = osaka_fixture();
    let contract = deploy(&rpc, 0, &creation);
    let mut sock = ws(&node.url);
    assert_eq!(ws_call(&mut sock, 1, "eth_chainId", json!([]))["result"], "0x539");
    let heads = ws_call(&mut sock, 2, "eth_subscribe", json!(["newHeads"]))["result"].clone();
    let head = next_notification(&mut sock, &heads);
    assert!(
        head["number"].is_string() && head["hash"].is_string() && head["baseFeePerGas"] == "0x0",
        "{head}"
    );
    assert_eq!(ws_call(&mut sock, 3, "eth_unsubscribe", json!([heads]))["result"], true);
    let logs =
        ws_call(&mut sock, 4, "eth_subscribe", json!(["logs", {"address": contract}]))["result"].clone();
    let pending = ws_call(&mut sock, 5, "eth_subscribe", json!(["newPendingTransactions"]))["result"].clone();
    let receipt = transact(&rpc, 1, &contract, &store_calldata(42));
    let mut saw_pending = false;
    let mut saw_log = None;
    let start = Instant::now();
    while (saw_log.is_none() || !saw_pending) && start.elapsed() < SECS {
        let msg = sock.read().unwrap();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if v["params"]["subscription"] == pending && v["params"]["result"] == receipt["transactionHash"] {
            saw_pending = true;
        }
        if v["params"]["subscription"] == logs {
            saw_log = Some(v["params"]["result"].clone());
        }
    }
    assert!(saw_pending, "pending transaction notified");
    let log = saw_log.expect("log notified");
    assert_eq!(log["address"].as_str().unwrap().to_lowercase(), contract.to_lowercase());
    assert_eq!(log["transactionHash"], receipt["transactionHash"]);
    assert_eq!(log["logIndex"], "0x0");
    assert_eq!(log["removed"], false);
    let e = rpc.try_call("eth_subscribe", json!(["newHeads"])).unwrap_err();
    assert_eq!(e.code, -32004, "{e:?}");
}

#[test]
fn a_stalled_subscriber_is_dropped_with_a_reason() {
    let node = NodeProcess::dev(&["--period", "1", "--ws-max-queue", "8"]);
    let rpc = node.rpc();
    let mut sock = ws(&node.url);
    let sub =
        ws_call(&mut sock, 1, "eth_subscribe", json!(["newPendingTransactions", true]))["result"].clone();
    assert!(sub.is_string());
    // Flood without reading: fat transactions make the full-transaction notifications large.
    let key = dev_key(2);
    let mut n = 0u64;
    for _ in 0..40 {
        let batch: Vec<Value> = (0..100)
            .map(|i| {
                let tx = TxEip1559 {
                    chain_id: 1337,
                    nonce: n + i,
                    gas_limit: 400_000,
                    to: TxKind::Call(Address::repeat_byte(3)),
                    input: Bytes::from(vec![0xab; 8 * 1024]),
                    ..Default::default()
                };
                json!({"jsonrpc":"2.0","id":i,"method":"eth_sendRawTransaction","params":[sign_raw(&key, tx)]})
            })
            .collect();
        n += 100;
        rpc.raw(&serde_json::to_string(&batch).unwrap()).unwrap();
    }
    let start = Instant::now();
    let reason = loop {
        match sock.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            Ok(_) => {}
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
        assert!(start.elapsed() < Duration::from_secs(120), "not dropped");
    };
    assert!(reason.contains("too slow"), "close reason: {reason}");
    assert_eq!(rpc.call("eth_chainId", json!([])), "0x539", "the node keeps serving");
}

#[test]
fn polling_filters_report_changes_and_expire() {
    let node = NodeProcess::dev(&["--period", "1", "--rpc-filter-ttl", "3"]);
    let rpc = node.rpc();
    let (creation, _) = osaka_fixture();
    let contract = deploy(&rpc, 0, &creation);
    let blocks = rpc.call("eth_newBlockFilter", json!([]));
    let logs = rpc.call("eth_newFilter", json!([{"address": contract}]));
    let pending = rpc.call("eth_newPendingTransactionFilter", json!([]));
    let receipt = transact(&rpc, 1, &contract, &store_calldata(7));
    let changes = rpc.call("eth_getFilterChanges", json!([logs]));
    assert_eq!(changes.as_array().unwrap().len(), 1, "{changes}");
    assert_eq!(changes[0]["transactionHash"], receipt["transactionHash"]);
    assert_eq!(rpc.call("eth_getFilterChanges", json!([logs])), json!([]), "only new logs on the next poll");
    let all = rpc.call("eth_getFilterLogs", json!([logs]));
    assert_eq!(all.as_array().unwrap().len(), 1);
    let hashes = rpc.call("eth_getFilterChanges", json!([blocks]));
    assert!(!hashes.as_array().unwrap().is_empty());
    let ptx = rpc.call("eth_getFilterChanges", json!([pending]));
    assert!(ptx.as_array().unwrap().contains(&receipt["transactionHash"]), "{ptx}");
    assert_eq!(rpc.call("eth_uninstallFilter", json!([blocks])), true);
    assert!(rpc.try_call("eth_getFilterChanges", json!([blocks])).is_err());
    std::thread::sleep(Duration::from_secs(4));
    let e = rpc.try_call("eth_getFilterChanges", json!([logs])).unwrap_err();
    assert!(e.message.contains("expire"), "{e:?}");
    // eth_getLogs: topics with OR-lists and nulls, by block hash.
    let topic0 = receipt["logs"][0]["topics"][0].clone();
    let by_or = rpc.call(
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "topics": [[topic0, format!("0x{}", "11".repeat(32))], null]}]),
    );
    assert_eq!(by_or.as_array().unwrap().len(), 1);
    let by_hash = rpc.call("eth_getLogs", json!([{"blockHash": receipt["blockHash"]}]));
    assert_eq!(by_hash.as_array().unwrap().len(), 1);
    let none =
        rpc.call("eth_getLogs", json!([{"fromBlock": "0x0", "topics": [format!("0x{}", "22".repeat(32))]}]));
    assert_eq!(none, json!([]));
}

fn verify(root: B256, key: B256, value: Option<Vec<u8>>, proof: &Value) {
    let nodes: Vec<Bytes> =
        proof.as_array().unwrap().iter().map(|n| n.as_str().unwrap().parse().unwrap()).collect();
    alloy_trie::proof::verify_proof(root, alloy_trie::Nibbles::unpack(key), value, nodes.iter())
        .unwrap_or_else(|e| panic!("proof does not verify: {e:?}"));
}

#[test]
fn proofs_verify_against_the_block_state_root() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    let (creation, _) = osaka_fixture();
    let contract = deploy(&rpc, 0, &creation);
    let first = transact(&rpc, 1, &contract, &store_calldata(11));
    let second = transact(&rpc, 1, &contract, &store_calldata(22));
    for (receipt, expected) in [(&first, 11u64), (&second, 22u64)] {
        let number = receipt["blockNumber"].clone();
        let block = rpc.call("eth_getBlockByNumber", json!([number, false]));
        let root: B256 = block["stateRoot"].as_str().unwrap().parse().unwrap();
        let slot = format!("0x{}", "00".repeat(32));
        let proof = rpc.call("eth_getProof", json!([contract, [slot], number]));
        let storage_hash: B256 = proof["storageHash"].as_str().unwrap().parse().unwrap();
        let account = alloy_trie::TrieAccount {
            nonce: hex_u64(&proof["nonce"]),
            balance: proof["balance"].as_str().unwrap().parse().unwrap(),
            storage_root: storage_hash,
            code_hash: proof["codeHash"].as_str().unwrap().parse().unwrap(),
        };
        let addr: Address = contract.parse().unwrap();
        verify(root, keccak256(addr), Some(alloy_rlp::encode(account)), &proof["accountProof"]);
        let sp = &proof["storageProof"][0];
        assert_eq!(sp["value"], format!("{expected:#x}"));
        verify(
            storage_hash,
            keccak256(B256::ZERO),
            Some(alloy_rlp::encode(U256::from(expected))),
            &sp["proof"],
        );
    }
    // An absent account proves absence.
    let nobody = Address::repeat_byte(0x77);
    let latest = rpc.call("eth_getBlockByNumber", json!(["latest", false]));
    let proof = rpc.call("eth_getProof", json!([nobody, [], latest["number"]]));
    verify(
        latest["stateRoot"].as_str().unwrap().parse().unwrap(),
        keccak256(nobody),
        None,
        &proof["accountProof"],
    );
}

#[test]
fn overrides_access_lists_signing_txpool_and_raw_methods() {
    let node = NodeProcess::dev(&["--period", "2", "--rpc-admin"]);
    let rpc = node.rpc();
    let (creation, runtime) = osaka_fixture();
    let contract = deploy(&rpc, 0, &creation);
    // State override: code at an empty address; block override: the timestamp.
    let nowhere = Address::repeat_byte(0x55);
    let selector = alloy_primitives::hex::encode(&keccak256("leadingZeros(uint256)")[..4]);
    let lz = rpc.call(
        "eth_call",
        json!([{"to": nowhere, "data": format!("0x{selector}{:064x}", 1)}, "latest", {nowhere.to_string(): {"code": runtime}}]),
    );
    assert_eq!(U256::from_str_radix(&lz.as_str().unwrap()[2..], 16).unwrap(), U256::from(255));
    let clock = "0x425f5260205ff3"; // TIMESTAMP PUSH0 MSTORE PUSH1 32 PUSH0 RETURN
    let t = rpc.call(
        "eth_call",
        json!([{"to": nowhere}, "latest", {nowhere.to_string(): {"code": clock}}, {"time": "0x3039"}]),
    );
    assert_eq!(U256::from_str_radix(&t.as_str().unwrap()[2..], 16).unwrap(), U256::from(12345));
    let diff = rpc.call(
        "eth_call",
        json!([{"to": contract, "data": format!("0x{}", alloy_primitives::hex::encode(&keccak256("stored()")[..4]))}, "latest",
               {contract.clone(): {"stateDiff": {format!("0x{}", "00".repeat(32)): format!("0x{}", "00".repeat(31) + "09")}}}]),
    );
    assert_eq!(U256::from_str_radix(&diff.as_str().unwrap()[2..], 16).unwrap(), U256::from(9));

    // Access list of a storage-writing call names the contract and its slot.
    let al = rpc.call(
        "eth_createAccessList",
        json!([{"from": dev_key(1).address(), "to": contract, "data": store_calldata(3)}]),
    );
    let list = al["accessList"].as_array().unwrap();
    assert!(
        list.iter().any(|i| i["address"].as_str().unwrap().eq_ignore_ascii_case(&contract)
            && !i["storageKeys"].as_array().unwrap().is_empty()),
        "{al}"
    );
    assert!(hex_u64(&al["gasUsed"]) > 21_000);

    // Signing with dev accounts.
    let me = dev_key(0).address();
    let sig = rpc.call("eth_sign", json!([me, "0xdeadbeef"]));
    let sig: Signature = sig.as_str().unwrap().parse().unwrap();
    assert_eq!(sig.recover_address_from_msg([0xde, 0xad, 0xbe, 0xef]).unwrap(), me);
    let sig2 = rpc.call("personal_sign", json!(["0xdeadbeef", me]));
    assert_eq!(sig2.as_str().unwrap().parse::<Signature>().unwrap(), sig);
    let typed = json!({
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
                  "Mail": [{"name": "contents", "type": "string"}]},
        "primaryType": "Mail",
        "domain": {"name": "p2pe", "chainId": 1337},
        "message": {"contents": "hello"}
    });
    let sig3: Signature =
        rpc.call("eth_signTypedData_v4", json!([me, typed])).as_str().unwrap().parse().unwrap();
    let data: alloy_dyn_abi::eip712::TypedData = serde_json::from_value(typed).unwrap();
    assert_eq!(sig3.recover_address_from_prehash(&data.eip712_signing_hash().unwrap()).unwrap(), me);

    // txpool_ with one executable and one gapped transaction.
    let key = dev_key(3);
    let tx = |n| {
        sign_raw(
            &key,
            TxEip1559 {
                chain_id: 1337,
                nonce: n,
                gas_limit: 21_000,
                to: TxKind::Call(Address::repeat_byte(1)),
                ..Default::default()
            },
        )
    };
    let h0 = rpc.call("eth_sendRawTransaction", json!([tx(0)]));
    rpc.call("eth_sendRawTransaction", json!([tx(5)]));
    let status = rpc.call("txpool_status", json!([]));
    assert!(hex_u64(&status["queued"]) >= 1, "{status}");
    let content = rpc.call("txpool_contentFrom", json!([key.address()]));
    assert!(content["queued"]["5"].is_object(), "{content}");
    let inspect = rpc.call("txpool_inspect", json!([]));
    assert!(
        inspect["queued"].as_object().unwrap().values().any(|v| v["5"].as_str().unwrap().contains("gas")),
        "{inspect}"
    );
    let full = rpc.call("txpool_content", json!([]));
    assert!(full["pending"].is_object() && full["queued"].is_object());

    // Raw encodings and lookups by index.
    let receipt = rpc.wait_receipt(h0.as_str().unwrap(), SECS);
    let number = receipt["blockNumber"].clone();
    let raw_block = rpc.call("debug_getRawBlock", json!([number]));
    let bytes: Bytes = raw_block.as_str().unwrap().parse().unwrap();
    let block = alloy_consensus::Block::<alloy_consensus::TxEnvelope>::decode(&mut bytes.as_ref()).unwrap();
    assert_eq!(format!("{:#x}", block.header.hash_slow()), receipt["blockHash"].as_str().unwrap());
    let raw_header: Bytes =
        rpc.call("debug_getRawHeader", json!([number])).as_str().unwrap().parse().unwrap();
    assert_eq!(format!("{:#x}", keccak256(&raw_header)), receipt["blockHash"].as_str().unwrap());
    let raw_tx: Bytes = rpc.call("debug_getRawTransaction", json!([h0])).as_str().unwrap().parse().unwrap();
    assert_eq!(format!("{:#x}", keccak256(&raw_tx)), h0.as_str().unwrap());
    let raw_receipts = rpc.call("debug_getRawReceipts", json!([number]));
    assert_eq!(raw_receipts.as_array().unwrap().len(), block.body.transactions.len());
    let idx = receipt["transactionIndex"].clone();
    let by_index = rpc.call("eth_getTransactionByBlockNumberAndIndex", json!([number, idx]));
    assert_eq!(by_index["hash"], h0);
    let by_hash_index = rpc.call("eth_getTransactionByBlockHashAndIndex", json!([receipt["blockHash"], idx]));
    assert_eq!(by_hash_index["hash"], h0);
    assert_eq!(rpc.call("eth_getUncleCountByBlockNumber", json!([number])), "0x0");
    assert!(rpc.call("eth_getUncleByBlockNumberAndIndex", json!([number, "0x0"])).is_null());
    assert_eq!(rpc.call("web3_sha3", json!(["0x"])), format!("{:#x}", keccak256([])));
    assert_eq!(rpc.call("net_listening", json!([])), false, "the dev chain has no peer network");
    // One signer: no competing branch can exist, so `safe` and `finalized` are the head.
    let before = rpc.block_number();
    let tagged: Vec<u64> = ["safe", "finalized"]
        .iter()
        .map(|t| hex_u64(&rpc.call("eth_getBlockByNumber", json!([t, false]))["number"]))
        .collect();
    let after = rpc.block_number();
    for n in tagged {
        assert!((before..=after).contains(&n), "tag at {n}, head moved from {before} to {after}");
    }
}
