//! The stored state trie (issue 15, part 2) on real data directories: `p2pe-node check` verifies
//! the stored nodes and names the first one that is wrong; a data directory of schema version 1
//! (before the stored trie) is migrated on open.

use std::process::Command;

use alloy_primitives::{Address, U256};
use p2pe_node::chain::{build_genesis, GenesisParams};
use p2pe_tests::harness::{dev_key, node_bin, run_err, run_ok};
use serde_json::json;

/// A data directory whose genesis holds a contract with `words` storage words (so its storage
/// trie has stored branch nodes) and a funded account.
fn datadir_with_contract(dir: &std::path::Path, words: u64) -> (std::path::PathBuf, Address) {
    let params = GenesisParams {
        chain_id: 77,
        period: 1,
        signers: vec![dev_key(0).address()],
        funded: vec![(dev_key(1).address(), U256::from(10u64).pow(U256::from(20)))],
        ..Default::default()
    };
    let mut genesis = serde_json::to_value(build_genesis(&params)).unwrap();
    let contract = Address::repeat_byte(0xc0);
    let storage: serde_json::Map<String, serde_json::Value> =
        (1..=words).map(|i| (format!("{:#066x}", i), json!(format!("{:#066x}", i * 3)))).collect();
    genesis["alloc"][contract.to_string()] =
        json!({ "balance": "0x0", "code": "0x600160005500", "storage": storage });
    let file = dir.join("genesis.json");
    std::fs::write(&file, serde_json::to_string_pretty(&genesis).unwrap()).unwrap();
    let datadir = dir.join("data");
    run_ok(Command::new(node_bin()).args(["init", "--genesis"]).arg(&file).arg("--datadir").arg(&datadir));
    (datadir, contract)
}

fn sql(datadir: &std::path::Path, statements: &str) {
    let conn = rusqlite::Connection::open(datadir.join("chain.sqlite")).unwrap();
    conn.execute_batch(statements).unwrap();
}

fn check(datadir: &std::path::Path) -> Command {
    let mut cmd = Command::new(node_bin());
    cmd.arg("check").arg("--datadir").arg(datadir);
    cmd
}

/// A stored node changed on disk (one child hash of the contract's storage trie root, then a
/// node of the account trie deleted) is found by `check`, which names the trie and the path.
#[test]
fn check_verifies_the_stored_trie_and_names_the_first_wrong_node() {
    let dir = tempfile::tempdir().unwrap();
    let (datadir, contract) = datadir_with_contract(dir.path(), 600);
    let out = run_ok(&mut check(&datadir));
    assert!(out.contains("stored state trie verified"), "{out}");
    let nodes: i64 = rusqlite::Connection::open(datadir.join("chain.sqlite"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM storage_trie", [], |r| r.get(0))
        .unwrap();
    assert!(nodes > 1, "600 words give a storage trie with stored branch nodes ({nodes})");

    // Replace the last child hash of the storage trie's root node.
    {
        let conn = rusqlite::Connection::open(datadir.join("chain.sqlite")).unwrap();
        let mut node: Vec<u8> =
            conn.query_row("SELECT node FROM storage_trie WHERE path = X''", [], |r| r.get(0)).unwrap();
        let len = node.len();
        node[len - 32..].copy_from_slice(&[0xab; 32]);
        conn.execute("UPDATE storage_trie SET node = ?1 WHERE path = X''", [node]).unwrap();
    }
    let err = run_err(&mut check(&datadir));
    assert!(
        err.contains(&format!("storage trie of {contract}"))
            && err.contains("the stored trie node at the root is"),
        "{err}"
    );
}

/// A node of the account trie that is missing is reported too; a node that does not decode is
/// reported as corrupt, not a crash.
#[test]
fn check_reports_missing_and_undecodable_account_trie_nodes() {
    let dir = tempfile::tempdir().unwrap();
    // 40 funded accounts: the account trie root is a stored branch node.
    let params = GenesisParams {
        chain_id: 78,
        period: 1,
        signers: vec![dev_key(0).address()],
        funded: (1..=40u32).map(|i| (dev_key(i).address(), U256::from(i))).collect(),
        ..Default::default()
    };
    let file = dir.path().join("genesis.json");
    std::fs::write(&file, serde_json::to_string(&build_genesis(&params)).unwrap()).unwrap();
    let datadir = dir.path().join("data");
    run_ok(Command::new(node_bin()).args(["init", "--genesis"]).arg(&file).arg("--datadir").arg(&datadir));
    run_ok(&mut check(&datadir));
    sql(&datadir, "UPDATE account_trie SET node = X'0001' WHERE path = X''");
    let err = run_err(&mut check(&datadir));
    assert!(err.contains("stored trie node: shorter than its masks"), "{err}");
    sql(&datadir, "DELETE FROM account_trie WHERE path = X''");
    let err = run_err(&mut check(&datadir));
    assert!(err.contains("account trie: the stored trie node at the root is none"), "{err}");
}

/// Schema version 1 had no trie tables: such a data directory gets them built on open, and the
/// result checks out.
#[test]
fn a_version_1_data_directory_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (datadir, _) = datadir_with_contract(dir.path(), 300);
    sql(
        &datadir,
        "DROP TABLE hashed_accounts; DROP TABLE hashed_storage; DROP TABLE account_trie; DROP TABLE storage_trie; \
         UPDATE meta SET value = 1 WHERE key = 'schema_version';",
    );
    let out = run_ok(&mut check(&datadir));
    assert!(out.contains("stored state trie verified"), "{out}");
    let conn = rusqlite::Connection::open(datadir.join("chain.sqlite")).unwrap();
    let version: i64 =
        conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 8, "migrated through versions 2 to 7 to 8");
    let words: i64 = conn.query_row("SELECT COUNT(*) FROM hashed_storage", [], |r| r.get(0)).unwrap();
    assert_eq!(words, 300);
    drop(conn);
    // A version the node does not know is refused with the versions named.
    sql(&datadir, "UPDATE meta SET value = 9 WHERE key = 'schema_version';");
    let err = run_err(&mut check(&datadir));
    assert!(err.contains("database schema version 9 is not supported by this node (expects 8)"), "{err}");
}

/// `check` compares the plain state (what execution reads) with the hashed rows the root comes
/// from, row by row: one storage word changed, one removed, or an account's balance changed in
/// the plain tables alone is named.
#[test]
fn check_finds_a_plain_state_that_differs_from_the_hashed_state() {
    let dir = tempfile::tempdir().unwrap();
    let (datadir, contract) = datadir_with_contract(dir.path(), 40);
    let original = dir.path().join("original");
    std::fs::create_dir_all(&original).unwrap();
    std::fs::copy(datadir.join("chain.sqlite"), original.join("chain.sqlite")).unwrap();
    let restore = || std::fs::copy(original.join("chain.sqlite"), datadir.join("chain.sqlite")).unwrap();
    let cases = [
        ("UPDATE storage SET value = X'07' WHERE (address, slot) IN (SELECT address, slot FROM storage LIMIT 1)", "storage"),
        ("DELETE FROM storage WHERE (address, slot) IN (SELECT address, slot FROM storage LIMIT 1)", "storage"),
        ("UPDATE accounts SET balance = X'01'", "account"),
    ];
    for (statement, what) in cases {
        restore();
        sql(&datadir, statement);
        let err = run_err(&mut check(&datadir));
        let named = match what {
            "storage" => err
                .contains(&format!("account {contract}: the hashed storage differs from the plain storage")),
            _ => err.contains("the hashed account row differs from the plain state"),
        };
        assert!(named, "{statement}: {err}");
    }
    restore();
    assert!(run_ok(&mut check(&datadir)).contains("stored state trie verified"));
}
