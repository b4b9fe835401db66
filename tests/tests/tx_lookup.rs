//! Transactions and receipts by hash and by block and index (issue 15, part 3) read one row each
//! (`block_txs`), on real `p2pe-node` processes:
//!
//! - in a block of many transactions with logs, `eth_getTransactionReceipt` of each one equals
//!   the entry of `eth_getBlockReceipts` (which is still built from the whole block), so gas used
//!   and log indexes agree between the two paths, and `eth_getTransactionByHash` equals
//!   `eth_getTransactionByBlockNumberAndIndex`;
//! - a data directory of schema version 2 (no per-transaction rows, and the blocks table of
//!   versions 2 and 3 with the total difficulty after the body) is migrated on open through
//!   version 3 to 4 (small columns ahead of the body) and answers the same; an index past the
//!   block's end is `null`.

use std::process::Command;
use std::time::Duration;

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_sol_types::SolCall;
use p2pe_bindings::credit_token::CreditToken;
use p2pe_tests::harness::{dev_key, hex_u64, run_ok, sign_raw, NodeProcess, Rpc};
use serde_json::{json, Value};

/// `approve` calls on the credit token from dev accounts 1..=n, each with an `Approval` log,
/// sent in one batch so that they share blocks; returns their hashes.
fn approvals(rpc: &Rpc, token: Address, n: u32) -> Vec<String> {
    let batch: Vec<Value> = (1..=n)
        .map(|i| {
            let key = dev_key(i);
            let data =
                CreditToken::approveCall { spender: Address::with_last_byte(i as u8), value: U256::from(i) };
            let raw = sign_raw(
                &key,
                TxEip1559 {
                    chain_id: 1337,
                    nonce: hex_u64(&rpc.call("eth_getTransactionCount", json!([key.address(), "pending"]))),
                    gas_limit: 100_000,
                    to: TxKind::Call(token),
                    input: Bytes::from(data.abi_encode()),
                    ..Default::default()
                },
            );
            json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw]})
        })
        .collect();
    let (_, answers) = rpc.raw(&Value::Array(batch).to_string()).expect("batch");
    answers
        .as_array()
        .expect("batch answer")
        .iter()
        .map(|a| a["result"].as_str().unwrap_or_else(|| panic!("refused: {a}")).to_string())
        .collect()
}

/// Everything the lookups answer for `hashes`: by hash, by block and index, and the receipt.
fn lookups(rpc: &Rpc, hashes: &[String]) -> Vec<(Value, Value, Value)> {
    hashes
        .iter()
        .map(|h| {
            let tx = rpc.call("eth_getTransactionByHash", json!([h]));
            let by_index = rpc.call(
                "eth_getTransactionByBlockNumberAndIndex",
                json!([tx["blockNumber"], tx["transactionIndex"]]),
            );
            let by_block_hash = rpc.call(
                "eth_getTransactionByBlockHashAndIndex",
                json!([tx["blockHash"], tx["transactionIndex"]]),
            );
            assert_eq!(by_index, by_block_hash);
            (tx, by_index, rpc.call("eth_getTransactionReceipt", json!([h])))
        })
        .collect()
}

#[test]
fn lookups_read_one_row_and_survive_the_migrations_from_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("data");
    let datadir_arg = datadir.to_str().unwrap();
    let node = NodeProcess::dev(&["--period", "2", "--datadir", datadir_arg, "--no-keeper"]);
    let rpc = node.rpc();
    let contracts: Value =
        reqwest::blocking::get(format!("{}/contracts.json", node.url)).unwrap().json().unwrap();
    let token: Address = contracts["token"].as_str().unwrap().parse().unwrap();
    let hashes = approvals(&rpc, token, 12);
    for h in &hashes {
        rpc.wait_receipt(h, Duration::from_secs(30));
    }
    let before = lookups(&rpc, &hashes);
    let mut blocks: Vec<u64> = before.iter().map(|(t, _, _)| hex_u64(&t["blockNumber"])).collect();
    blocks.dedup();
    for (tx, by_index, receipt) in &before {
        assert_eq!(tx, by_index, "by hash and by block and index");
        assert_eq!(receipt["status"], "0x1");
        assert_eq!(receipt["logs"].as_array().unwrap().len(), 1, "one Approval log each");
        // The block's receipts are built from the whole block: the same object, log indexes
        // counted across the block's transactions.
        let all = rpc.call("eth_getBlockReceipts", json!([tx["blockNumber"]]));
        let index = hex_u64(&tx["transactionIndex"]) as usize;
        assert_eq!(&all[index], receipt);
        assert_eq!(receipt["logs"][0]["logIndex"], json!(format!("{index:#x}")));
    }
    assert!(blocks.len() < hashes.len(), "several transactions share a block: {blocks:?}");
    let last = &before.last().unwrap().0;
    let count = hex_u64(&rpc.call("eth_getBlockTransactionCountByNumber", json!([last["blockNumber"]])));
    let past = rpc
        .call("eth_getTransactionByBlockNumberAndIndex", json!([last["blockNumber"], format!("{count:#x}")]));
    assert_eq!(past, Value::Null, "an index past the block's end");
    drop(node);

    // Back to schema version 2: no per-transaction rows, and the blocks table of versions 2 and 3
    // (total difficulty after the body). The node migrates on open, through versions 3 to 7 to 8.
    let conn = rusqlite::Connection::open(datadir.join("chain.sqlite")).unwrap();
    assert_eq!(block_columns(&conn), ["hash", "number", "td", "header", "block", "senders", "receipts"]);
    conn.execute_batch(
        "CREATE TABLE blocks_v3 (hash BLOB PRIMARY KEY, number INTEGER NOT NULL, header BLOB NOT NULL,
             block BLOB NOT NULL, senders BLOB NOT NULL, receipts BLOB NOT NULL, td BLOB NOT NULL) WITHOUT ROWID;
         INSERT INTO blocks_v3 SELECT hash, number, header, block, senders, receipts, td FROM blocks;
         DROP TABLE blocks;
         ALTER TABLE blocks_v3 RENAME TO blocks;
         CREATE INDEX blocks_number ON blocks(number);
         DELETE FROM block_txs; UPDATE meta SET value = 2 WHERE key = 'schema_version';",
    )
    .unwrap();
    assert_eq!(block_columns(&conn)[6], "td");
    drop(conn);
    run_ok(Command::new(p2pe_tests::harness::node_bin()).args(["check", "--datadir", datadir_arg]));
    let conn = rusqlite::Connection::open(datadir.join("chain.sqlite")).unwrap();
    let version: i64 =
        conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
    let rows: i64 = conn.query_row("SELECT COUNT(*) FROM block_txs", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 8);
    assert!(rows >= hashes.len() as i64, "{rows} rows");
    assert_eq!(
        block_columns(&conn),
        ["hash", "number", "td", "header", "block", "senders", "receipts"],
        "versions 4 and 5 keep a block's small columns ahead of its body"
    );
    let table: String =
        conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'blocks'", [], |r| r.get(0)).unwrap();
    assert!(!table.contains("WITHOUT ROWID"), "version 5 finds blocks through a hash index: {table}");
    let indexed: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'blocks_number'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexed, 1, "the index by number is rebuilt");
    drop(conn);
    let node = NodeProcess::start(&["run", "--datadir", datadir_arg, "--no-p2p"]);
    assert_eq!(lookups(&node.rpc(), &hashes), before, "the same answers after the migration");
}

/// The columns of the `blocks` table, in their stored order.
fn block_columns(conn: &rusqlite::Connection) -> Vec<String> {
    let mut st = conn.prepare("SELECT name FROM pragma_table_info('blocks') ORDER BY cid").unwrap();
    st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}
