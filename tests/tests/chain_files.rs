//! Chain files: `export` writes geth's format (concatenated RLP blocks); `import` verifies and
//! executes every block exactly as a block from a peer. An invalid block stops the import with an
//! error naming the block and the rule, and the blocks before it stay imported.
//!
//! The valid chain is built in-process with the node library by two signers taking turns; the
//! invalid blocks are that chain's block 4, altered and re-sealed so that exactly one rule breaks.

use std::process::Command;
use std::sync::Arc;

use alloy_primitives::{B256, U256};
use alloy_rlp::Encodable;
use p2pe_node::blockchain::{Blockchain, ChainOptions};
use p2pe_node::chain::{build_genesis, ChainSpec, GenesisParams};
use p2pe_node::consensus::clique::{sign_header, DIFF_IN_TURN, DIFF_NO_TURN};
use p2pe_node::crypto::SigningKey;
use p2pe_node::primitives::Block;
use p2pe_node::storage::{BlockQuery, Store};
use p2pe_node::txpool::{validate_tx, PoolConfig, TxPool};
use p2pe_tests::harness::{dev_key, node_bin, run_any, run_ok, sign_raw};

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&B256::repeat_byte(b)).unwrap()
}

/// A genesis with signers A and B and a funded sender, and 6 valid blocks sealed in turn.
fn valid_chain(dir: &std::path::Path) -> (std::path::PathBuf, Vec<Block>, Vec<SigningKey>) {
    let (a, b) = (key(0xa1), key(0xb2));
    let sender = dev_key(0);
    let t0 = p2pe_node::blockchain::unix_now() - 1_000;
    let params = GenesisParams {
        chain_id: 55,
        period: 1,
        signers: vec![a.address(), b.address()],
        funded: vec![(sender.address(), U256::from(10u64).pow(U256::from(21)))],
        timestamp: t0,
        ..Default::default()
    };
    let json = serde_json::to_string_pretty(&build_genesis(&params)).unwrap();
    let genesis = dir.join("genesis.json");
    std::fs::write(&genesis, &json).unwrap();
    let spec = ChainSpec::from_json(&json).unwrap();
    let mut store = Store::open(&dir.join("producer"), None).unwrap();
    store.init_genesis(&spec, &json).unwrap();
    let opts = ChainOptions { read_connections: 1, ..Default::default() };
    let chain = Blockchain::open(spec, store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap();
    let keys = vec![a, b];
    let mut blocks = Vec::new();
    for n in 1..=6u64 {
        // A transfer in every block, so state roots change.
        let tx = alloy_consensus::TxEip1559 {
            chain_id: 55,
            nonce: n - 1,
            gas_limit: 21_000,
            to: alloy_primitives::TxKind::Call(alloy_primitives::Address::repeat_byte(n as u8)),
            value: U256::from(n),
            ..Default::default()
        };
        let raw = alloy_primitives::hex::decode(sign_raw(&sender, tx)).unwrap();
        let ctx = chain.validation_context();
        let tx = validate_tx(&raw, &ctx).unwrap();
        chain.pool().add(tx, n - 1).unwrap();
        let sealed = keys
            .iter()
            .find_map(|k| chain.seal_next(k, t0 + n, None).unwrap())
            .expect("one of the signers may seal");
        assert_eq!(sealed.block.body.transactions.len(), 1);
        blocks.push(sealed.block.clone());
    }
    let stored = chain.reads().with(|c| c.canonical_hash(6)).unwrap();
    assert_eq!(stored, Some(blocks[5].header.hash_slow()));
    (genesis, blocks, keys)
}

fn write_file(path: &std::path::Path, blocks: &[Block]) {
    let mut buf = Vec::new();
    for b in blocks {
        b.encode(&mut buf);
    }
    std::fs::write(path, buf).unwrap();
}

fn signer_of(block: &Block) -> alloy_primitives::Address {
    p2pe_node::consensus::clique::recover_sealer(&block.header).unwrap()
}

#[test]
fn export_import_round_trip_and_invalid_blocks_stop_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let (genesis, blocks, keys) = valid_chain(dir.path());
    let sealer_of = |b: &Block| keys.iter().find(|k| k.address() == signer_of(b)).unwrap().clone();
    let other_of = |b: &Block| keys.iter().find(|k| k.address() != signer_of(b)).unwrap().clone();

    // The valid file imports whole, and export reproduces it byte for byte.
    let file = dir.path().join("valid.rlp");
    write_file(&file, &blocks);
    let data = dir.path().join("ok");
    run_ok(Command::new(node_bin()).args(["init", "--genesis"]).arg(&genesis).arg("--datadir").arg(&data));
    let out = run_ok(Command::new(node_bin()).arg("import").arg("--datadir").arg(&data).arg(&file));
    assert!(out.contains("Imported 6 blocks"), "{out}");
    let again = run_ok(Command::new(node_bin()).arg("import").arg("--datadir").arg(&data).arg(&file));
    assert!(again.contains("Imported 0 blocks (6 already present)"), "{again}");
    let exported = dir.path().join("exported.rlp");
    run_ok(Command::new(node_bin()).arg("export").arg("--datadir").arg(&data).arg(&exported));
    assert_eq!(std::fs::read(&exported).unwrap(), std::fs::read(&file).unwrap());
    let dumped = run_ok(Command::new(node_bin()).arg("dumpgenesis").arg("--datadir").arg(&data));
    assert_eq!(
        ChainSpec::from_json(&dumped).unwrap().genesis_hash,
        ChainSpec::from_file(&genesis).unwrap().genesis_hash
    );

    // Block 4, broken one rule at a time and re-sealed.
    let reseal = |mut b: Block, k: &SigningKey| {
        sign_header(&mut b.header, k).unwrap();
        b
    };
    let b4 = blocks[3].clone();
    let mut cases: Vec<(&str, Block)> = Vec::new();
    let mut bad_seal = b4.clone();
    let mut extra = bad_seal.header.extra_data.to_vec();
    let n = extra.len();
    extra[n - 65..n - 33].fill(0); // r = 0: no key can have made this signature
    bad_seal.header.extra_data = extra.into();
    cases.push(("invalid seal", bad_seal));
    cases.push(("unauthorized signer", reseal(b4.clone(), &key(0xc3))));
    // Block 3's sealer signing block 4: two in a row with two signers.
    let recent = reseal(b4.clone(), &sealer_of(&blocks[2]));
    assert_ne!(signer_of(&recent), signer_of(&b4));
    cases.push(("signed recently", recent));
    let mut root = b4.clone();
    root.header.state_root = B256::repeat_byte(7);
    cases.push(("stateRoot", reseal(root, &sealer_of(&b4))));
    let mut early = b4.clone();
    early.header.timestamp = blocks[2].header.timestamp;
    cases.push(("earlier than parent timestamp", reseal(early, &sealer_of(&b4))));
    let mut diff = b4.clone();
    diff.header.difficulty = if diff.header.difficulty == DIFF_IN_TURN { DIFF_NO_TURN } else { DIFF_IN_TURN };
    cases.push(("wrong difficulty", reseal(diff, &sealer_of(&b4))));
    let _ = other_of;

    for (rule, bad) in cases {
        let case_dir = dir.path().join(rule.replace(' ', "_"));
        run_ok(
            Command::new(node_bin())
                .args(["init", "--genesis"])
                .arg(&genesis)
                .arg("--datadir")
                .arg(&case_dir),
        );
        let file = case_dir.join("chain.rlp");
        let mut chain = blocks[..3].to_vec();
        chain.push(bad);
        chain.extend_from_slice(&blocks[4..]);
        write_file(&file, &chain);
        let (ok, text) =
            run_any(Command::new(node_bin()).arg("import").arg("--datadir").arg(&case_dir).arg(&file));
        assert!(!ok, "{rule}: the import must fail: {text}");
        assert!(text.contains("block 4"), "{rule}: the error names the block: {text}");
        assert!(text.contains(rule), "{rule}: the error names the rule: {text}");
        assert!(text.contains("3 blocks imported before it"), "{rule}: {text}");
        let check = run_ok(Command::new(node_bin()).arg("check").arg("--datadir").arg(&case_dir));
        assert!(check.starts_with("OK: 3 blocks"), "{rule}: blocks before the bad one stay: {check}");
    }

    // A truncated or garbage file is refused with its position.
    let garbage = dir.path().join("garbage.rlp");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&garbage, bytes).unwrap();
    let fresh = dir.path().join("fresh");
    run_ok(Command::new(node_bin()).args(["init", "--genesis"]).arg(&genesis).arg("--datadir").arg(&fresh));
    let (ok, text) =
        run_any(Command::new(node_bin()).arg("import").arg("--datadir").arg(&fresh).arg(&garbage));
    assert!(!ok && text.contains("truncated"), "{text}");
}
