//! Reorganisations on the real chain code (in-process): three signers make two competing
//! branches; the node switches to the preferred one under EIP-3436, undoes state and indexes,
//! announces the abandoned blocks as removed, returns their transactions to the pool, and
//! restores its chain when a branch turns out invalid.

use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, TxKind, B256, U256};
use p2pe_node::blockchain::{Blockchain, CanonEvent, CanonListener, ChainOptions};
use p2pe_node::chain::{build_genesis, ChainSpec, GenesisParams};
use p2pe_node::consensus::clique::{fork_choice::Tip, recover_sealer, sign_header};
use p2pe_node::crypto::SigningKey;
use p2pe_node::primitives::Block;
use p2pe_node::storage::{BlockQuery, Store};
use p2pe_node::txpool::{validate_tx, PoolConfig, TxPool};
use p2pe_tests::harness::{dev_key, sign_raw};

/// Records the canonical events it hears, as text.
#[derive(Default)]
struct Heard(Mutex<Vec<String>>);

impl Heard {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl CanonListener for Heard {
    fn on_canon(&self, event: &CanonEvent) {
        let line = match event {
            CanonEvent::Committed { number, .. } => format!("committed {number}"),
            CanonEvent::Reorged { depth, orphaned, senders } => {
                let o: Vec<String> =
                    orphaned.iter().map(|(t, n)| format!("{}={n}", t.inner().tx_hash())).collect();
                let s: Vec<String> = senders.iter().map(|(a, n)| format!("{a}={n}")).collect();
                format!("reorged {depth} orphaned [{}] senders [{}]", o.join(", "), s.join(", "))
            }
        };
        self.0.lock().unwrap().push(line);
    }
}

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&B256::repeat_byte(b)).unwrap()
}

struct Net {
    json: String,
    spec: ChainSpec,
    t0: u64,
}

/// A fresh chain of three signers (keys 0xa1.., 0xb2.., 0xc3..) on chain id 56 with 1 s blocks,
/// whose genesis is 1,000 s old (so blocks can be sealed at once), funding `funded`.
fn three_signers(funded: Vec<(Address, U256)>) -> (Net, SigningKey, SigningKey, SigningKey) {
    let (a, b, c) = (key(0xa1), key(0xb2), key(0xc3));
    let t0 = p2pe_node::blockchain::unix_now() - 1_000;
    let params = GenesisParams {
        chain_id: 56,
        period: 1,
        signers: vec![a.address(), b.address(), c.address()],
        funded,
        timestamp: t0,
        ..Default::default()
    };
    let json = serde_json::to_string(&build_genesis(&params)).unwrap();
    (Net { spec: ChainSpec::from_json(&json).unwrap(), json, t0 }, a, b, c)
}

fn open(net: &Net, dir: &std::path::Path) -> Blockchain {
    let mut store = Store::open(dir, None).unwrap();
    store.init_genesis(&net.spec, &net.json).unwrap();
    let opts = ChainOptions { read_connections: 2, ..Default::default() };
    Blockchain::open(net.spec.clone(), store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap()
}

fn add_tx(chain: &Blockchain, from: u32, nonce: u64, value: u64) -> B256 {
    let tx = alloy_consensus::TxEip1559 {
        chain_id: 56,
        nonce,
        gas_limit: 21_000,
        to: TxKind::Call(Address::repeat_byte(0x42)),
        value: U256::from(value),
        ..Default::default()
    };
    let raw = alloy_primitives::hex::decode(sign_raw(&dev_key(from), tx)).unwrap();
    let tx = validate_tx(&raw, &chain.validation_context()).unwrap();
    let hash = *tx.inner().tx_hash();
    chain.pool().add(tx, nonce).unwrap();
    hash
}

fn seal(chain: &Blockchain, keys: &[&SigningKey], t: u64) -> Block {
    keys.iter().find_map(|k| chain.seal_next(k, t, None).unwrap()).expect("someone may seal").block
}

#[test]
fn switches_to_the_preferred_branch_and_restores_on_an_invalid_one() {
    let (net, a, b, c) = three_signers(vec![
        (dev_key(0).address(), U256::from(10u64).pow(U256::from(21))),
        (dev_key(1).address(), U256::from(10u64).pow(U256::from(21))),
    ]);
    let dir = tempfile::tempdir().unwrap();

    // Branch X on the node under test: 1 (A), 2 (B, with tx x), 3 (C).
    let node = open(&net, &dir.path().join("node"));
    let heard = Arc::new(Heard::default());
    node.add_canon_listener(heard.clone());
    let b1 = seal(&node, &[&a], net.t0 + 1);
    let x_tx = add_tx(&node, 0, 0, 5);
    let x2 = seal(&node, &[&b], net.t0 + 2);
    assert_eq!(x2.body.transactions.len(), 1);
    let x3 = seal(&node, &[&c], net.t0 + 3);
    {
        use p2pe_node::storage::ExplorerQuery;
        let sender = dev_key(0).address();
        assert_eq!(node.reads().with(|c| c.tx_by_sender_nonce(&sender, 0)).unwrap(), Some(x_tx));
    }
    let mut events = node.subscribe();

    // Branch Y from block 1 elsewhere: 2' (C, with tx y), 3' (B), 4' (A): longer, more difficulty.
    let other = open(&net, &dir.path().join("other"));
    other.import(b1.clone(), None).unwrap();
    let y_tx = add_tx(&other, 1, 0, 7);
    let y2 = seal(&other, &[&c], net.t0 + 2);
    let y3 = seal(&other, &[&b], net.t0 + 3);
    let y4 = seal(&other, &[&a], net.t0 + 4);
    assert_ne!(y2.header.hash_slow(), x2.header.hash_slow());
    // Extend Y until it is heavier than X (difficulty depends on who was in turn).
    let mut y_rest = Vec::new();
    let mut t = net.t0 + 5;
    while other.head().total_difficulty <= node.head().total_difficulty {
        y_rest.push(seal(&other, &[&c, &b, &a], t));
        t += 1;
    }
    let y_tip = y_rest.last().cloned().unwrap_or_else(|| y4.clone());
    let tip = Tip {
        total_difficulty: other.head().total_difficulty,
        number: y_tip.header.number,
        hash: y_tip.header.hash_slow(),
        signer: recover_sealer(&y_tip.header).unwrap(),
    };
    assert!(node.prefers(&tip), "the longer branch has more difficulty");
    assert!(!other.prefers(&Tip {
        total_difficulty: node.head().total_difficulty,
        number: 3,
        hash: x3.header.hash_slow(),
        signer: c.address()
    }));

    // An invalid branch (block 3' with a wrong state root, properly sealed) is refused and the
    // node keeps branch X.
    let mut bad = y3.clone();
    bad.header.state_root = B256::repeat_byte(9);
    sign_header(&mut bad.header, &b).unwrap();
    let err = node.reorg_to(vec![y2.clone(), bad, y4.clone()], None).unwrap_err().to_string();
    assert!(err.contains("stateRoot"), "{err}");
    assert_eq!(node.head().hash, x3.header.hash_slow());
    assert_eq!(node.head().header.state_root, x3.header.state_root);
    assert_eq!(node.reads().with(|c| c.canonical_hash(2)).unwrap(), Some(x2.header.hash_slow()));
    while events.try_recv().is_ok() {}

    // What the chain's in-process listeners heard: one event per block, none for the refused
    // switch (rolled back whole).
    assert_eq!(heard.take(), vec!["committed 1", "committed 2", "committed 3"]);

    // The valid branch wins.
    let mut branch = vec![y2.clone(), y3.clone(), y4.clone()];
    branch.extend(y_rest.iter().cloned());
    node.reorg_to(branch, None).unwrap();
    assert_eq!(node.head().hash, y_tip.header.hash_slow());
    assert_eq!(node.head().header.state_root, other.head().header.state_root);
    for (n, blk) in [(2, &y2), (3, &y3), (4, &y4)] {
        assert_eq!(node.reads().with(|c| c.canonical_hash(n)).unwrap(), Some(blk.header.hash_slow()));
    }
    // Indexes follow: y's transaction is found, x's is not; x's is back in the pool.
    assert!(node.reads().with(|c| c.tx_location(&y_tx)).unwrap().is_some());
    assert!(node.reads().with(|c| c.tx_location(&x_tx)).unwrap().is_none());
    assert!(node.pool().get(&x_tx).is_some(), "the orphaned transaction is waiting again");
    // The switch as one event: two blocks off, x orphaned (its sender's nonce back to 0), y's
    // sender at nonce 1 on the new head. The pool followed from this event alone.
    let y_sender = format!("{}=1", dev_key(1).address());
    assert_eq!(heard.take(), vec![format!("reorged 2 orphaned [{x_tx}=0] senders [{y_sender}]")]);
    // So do the explorer's indexes (ots_ search and nonce lookup).
    use p2pe_node::storage::ExplorerQuery;
    let (x_from, y_from) = (dev_key(0).address(), dev_key(1).address());
    let found = |who, nonce| node.reads().with(|c| c.tx_by_sender_nonce(&who, nonce)).unwrap();
    assert_eq!((found(x_from, 0), found(y_from, 0)), (None, Some(y_tx)));
    let places = |who| node.reads().with(|c| c.address_txs_before(&who, u64::MAX, 10)).unwrap();
    assert!(places(x_from).is_empty(), "the orphaned transaction left the address index");
    assert_eq!(places(y_from).iter().map(|p| p.number).collect::<Vec<_>>(), vec![2]);
    // State: x's transfer undone, y's applied.
    let state = node.state_at(node.head_number()).unwrap();
    assert_eq!(
        p2pe_node::state::StateReader::account(&state, &dev_key(0).address()).unwrap().unwrap().nonce,
        0
    );
    assert_eq!(
        p2pe_node::state::StateReader::account(&state, &dev_key(1).address()).unwrap().unwrap().nonce,
        1
    );
    drop(state);
    // Subscribers saw 3 then 2 removed, then 2', 3', 4' added.
    let mut seen = Vec::new();
    while let Ok(ev) = events.try_recv() {
        seen.push((ev.block.number(), ev.removed));
    }
    let mut expected = vec![(3, true), (2, true)];
    expected.extend((2..=y_tip.header.number).map(|n| (n, false)));
    assert_eq!(seen, expected);
    // The orphaned transaction is sealed on the new head.
    let next = seal(&node, &[&a, &b, &c], t);
    assert!(next.body.transactions.iter().any(|t| *t.tx_hash() == x_tx));
}

/// A data directory of schema version 5 (the explorer's rows indexed by block number) is
/// migrated on open to per-block address lists, and a reorg afterwards takes the abandoned
/// block's rows out of the explorer's indexes through them.
#[test]
fn explorer_rows_of_a_migrated_data_directory_leave_on_a_reorg() {
    use p2pe_node::storage::ExplorerQuery;
    let rich = U256::from(10u64).pow(U256::from(21));
    let (net, a, b, c) = three_signers(vec![(dev_key(0).address(), rich), (dev_key(1).address(), rich)]);
    let dir = tempfile::tempdir().unwrap();
    let node_dir = dir.path().join("node");
    let node = open(&net, &node_dir);
    let b1 = seal(&node, &[&a], net.t0 + 1);
    add_tx(&node, 0, 0, 5);
    seal(&node, &[&b], net.t0 + 2);
    seal(&node, &[&c], net.t0 + 3);
    drop(node);
    let db = rusqlite::Connection::open(node_dir.join("chain.sqlite")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM explorer_blocks"), 1, "block 2 alone has a transaction");
    db.execute_batch(
        "CREATE INDEX address_txs_number ON address_txs(number); CREATE INDEX sender_txs_number ON sender_txs(number);
         DELETE FROM explorer_blocks; UPDATE meta SET value = 5 WHERE key = 'schema_version';",
    )
    .unwrap();

    let node = open(&net, &node_dir);
    assert_eq!(count("SELECT value FROM meta WHERE key = 'schema_version'"), 8);
    assert_eq!(
        count("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%_txs_number'"),
        0,
        "indexes dropped"
    );
    let list: Vec<u8> =
        db.query_row("SELECT addresses FROM explorer_blocks WHERE number = 2", [], |r| r.get(0)).unwrap();
    let mut expected = [dev_key(0).address(), Address::repeat_byte(0x42)];
    expected.sort();
    assert_eq!(
        list,
        expected.iter().flat_map(|a| a.0 .0).collect::<Vec<u8>>(),
        "sender and recipient, sorted"
    );

    let other = open(&net, &dir.path().join("other"));
    other.import(b1, None).unwrap();
    let y_tx = add_tx(&other, 1, 0, 7);
    let mut branch = vec![
        seal(&other, &[&c], net.t0 + 2),
        seal(&other, &[&b], net.t0 + 3),
        seal(&other, &[&a], net.t0 + 4),
    ];
    let mut t = net.t0 + 5;
    while other.head().total_difficulty <= node.head().total_difficulty {
        branch.push(seal(&other, &[&c, &b, &a], t));
        t += 1;
    }
    node.reorg_to(branch, None).unwrap();
    let (x_from, y_from) = (dev_key(0).address(), dev_key(1).address());
    let found = |who, nonce| node.reads().with(|c| c.tx_by_sender_nonce(&who, nonce)).unwrap();
    assert_eq!((found(x_from, 0), found(y_from, 0)), (None, Some(y_tx)));
    let places = |who| node.reads().with(|c| c.address_txs_before(&who, u64::MAX, 10)).unwrap();
    assert!(places(x_from).is_empty(), "the abandoned transaction left the address index");
    assert_eq!(places(y_from).iter().map(|p| p.number).collect::<Vec<_>>(), vec![2]);
    assert_eq!(places(Address::repeat_byte(0x42)).len(), 1, "the recipient's row of block 2 is y's alone");
    let list: Vec<u8> =
        db.query_row("SELECT addresses FROM explorer_blocks WHERE number = 2", [], |r| r.get(0)).unwrap();
    let mut expected = [y_from, Address::repeat_byte(0x42)];
    expected.sort();
    assert_eq!(list, expected.iter().flat_map(|a| a.0 .0).collect::<Vec<u8>>(), "the new block 2's list");
}

/// Runtime of the test contract: clears slot 0, sets slot 1 to 2.
const RUNTIME: [u8; 11] = [0x60, 0x00, 0x60, 0x00, 0x55, 0x60, 0x02, 0x60, 0x01, 0x55, 0x00];

/// Creation code of the test contract: the constructor sets slot 0 to 1 and returns [`RUNTIME`].
fn creation_code() -> Vec<u8> {
    let n = RUNTIME.len() as u8;
    let mut code =
        vec![0x60, 0x01, 0x60, 0x00, 0x55, 0x60, n, 0x60, 17, 0x60, 0x00, 0x39, 0x60, n, 0x60, 0x00, 0xf3];
    code.extend(RUNTIME);
    code
}

/// Signs a transaction of dev account `from` with `nonce` and adds it to the chain's pool.
fn send(chain: &Blockchain, from: u32, nonce: u64, to: TxKind, input: Vec<u8>, value: u64) -> B256 {
    let tx = alloy_consensus::TxEip1559 {
        chain_id: 56,
        nonce,
        gas_limit: 200_000,
        to,
        value: U256::from(value),
        input: input.into(),
        ..Default::default()
    };
    let raw = alloy_primitives::hex::decode(sign_raw(&dev_key(from), tx)).unwrap();
    let tx = validate_tx(&raw, &chain.validation_context()).unwrap();
    let hash = *tx.inner().tx_hash();
    let state_nonce = chain.account_nonce(&dev_key(from).address());
    chain.pool().add(tx, state_nonce).unwrap();
    hash
}

#[test]
fn a_reorg_away_from_created_accounts_and_storage_leaves_the_state_of_the_new_branch() {
    let ether = U256::from(10u64).pow(U256::from(18));
    let (net, a, b, c) = three_signers((0..4).map(|i| (dev_key(i).address(), ether)).collect());
    let t0 = net.t0;
    let dir = tempfile::tempdir().unwrap();
    let node = open(&net, &dir.path().join("node"));
    let other = open(&net, &dir.path().join("other"));
    let fresh = open(&net, &dir.path().join("fresh"));

    // Common block 1: contract C deployed (its constructor writes slot 0).
    let contract_c = dev_key(2).address().create(0);
    send(&node, 2, 0, TxKind::Create, creation_code(), 0);
    let b1 = seal(&node, &[&a], t0 + 1);
    assert_eq!(b1.body.transactions.len(), 1);
    for chain in [&other, &fresh] {
        chain.import(b1.clone(), None).unwrap();
    }
    let slot = |chain: &Blockchain, addr: &Address, s: u64| {
        chain.with_head_state(|st| st.storage(addr, &U256::from(s))).unwrap().unwrap()
    };
    assert_eq!(slot(&node, &contract_c, 0), U256::from(1));

    // The node's branch X: block 2 creates a plain account F and a contract D (with storage),
    // and calls C (deleting slot 0, creating slot 1); block 3 is empty.
    let new_account = Address::repeat_byte(0x51);
    let contract_d = dev_key(0).address().create(1);
    send(&node, 0, 0, TxKind::Call(new_account), vec![], 5);
    send(&node, 0, 1, TxKind::Create, creation_code(), 0);
    send(&node, 1, 0, TxKind::Call(contract_c), vec![], 0);
    let x2 = seal(&node, &[&b], t0 + 2);
    assert_eq!(x2.body.transactions.len(), 3);
    seal(&node, &[&c], t0 + 3);
    assert!(node.with_head_state(|st| st.account(&new_account)).unwrap().unwrap().is_some());
    assert_eq!(slot(&node, &contract_d, 0), U256::from(1));
    assert_eq!((slot(&node, &contract_c, 0), slot(&node, &contract_c, 1)), (U256::ZERO, U256::from(2)));
    // The history of block 2 records F and D as not existing before it.
    assert_eq!(node.state_at(1).unwrap().state_root(), b1.header.state_root);

    // Branch Y elsewhere: block 2' creates another account G; then empty blocks until heavier.
    let other_account = Address::repeat_byte(0x52);
    send(&other, 3, 0, TxKind::Call(other_account), vec![], 7);
    let mut branch = vec![seal(&other, &[&c], t0 + 2)];
    let mut t = t0 + 3;
    while other.head().total_difficulty <= node.head().total_difficulty {
        branch.push(seal(&other, &[&b, &a, &c], t));
        t += 1;
    }

    // The node switches to Y: what X created is gone, what X deleted is back.
    node.reorg_to(branch.clone(), None).unwrap();
    assert_eq!(node.head().hash, other.head().hash);
    assert_eq!(node.state_at(node.head_number()).unwrap().state_root(), other.head().header.state_root);
    for gone in [new_account, contract_d] {
        assert_eq!(
            node.with_head_state(|st| st.account(&gone)).unwrap().unwrap(),
            None,
            "{gone} existed only on the orphaned branch"
        );
    }
    assert_eq!(slot(&node, &contract_d, 0), U256::ZERO);
    assert_eq!((slot(&node, &contract_c, 0), slot(&node, &contract_c, 1)), (U256::from(1), U256::ZERO));
    assert_eq!(node.state_at(1).unwrap().state_root(), b1.header.state_root);

    // Y's next block makes the same changes X made; the node imports it, and agrees with a node
    // that only ever saw Y.
    send(&other, 0, 0, TxKind::Call(new_account), vec![], 5);
    send(&other, 0, 1, TxKind::Create, creation_code(), 0);
    send(&other, 1, 0, TxKind::Call(contract_c), vec![], 0);
    let next = seal(&other, &[&a, &b, &c], t);
    assert_eq!(next.body.transactions.len(), 3);
    node.import(next.clone(), None).unwrap();
    for blk in branch.iter().chain([&next]) {
        fresh.import(blk.clone(), None).unwrap();
    }
    assert_eq!(node.head().hash, fresh.head().hash);
    assert_eq!(node.head().header.state_root, fresh.head().header.state_root);

    // The plain state on disk agrees too: reopening checks it against the head's state root.
    drop(node);
    let reopened = open(&net, &dir.path().join("node"));
    assert_eq!(reopened.head().hash, next.header.hash_slow());
    assert_eq!(reopened.state_at(1).unwrap().state_root(), b1.header.state_root);
}

/// What `eth_getTransactionReceipt` resolves (rpc/eth/transaction.rs `included`, the same call):
/// the hash of the canonical block holding `tx`, from the transaction's own row with its receipt,
/// found through its index and the canonical block at that height in one read transaction;
/// `None` is what the RPC answers as `null`.
fn receipt_block(chain: &Blockchain, tx: &B256) -> Option<B256> {
    chain.reads().canonical_tx(tx).unwrap().map(|t| t.block_hash)
}

/// Signs `per_sender` transfers for each of `senders` dev accounts (nonces from 0).
fn burst(senders: u32, per_sender: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for from in 0..senders {
        for nonce in 0..per_sender {
            let tx = alloy_consensus::TxEip1559 {
                chain_id: 56,
                nonce,
                gas_limit: 21_000,
                to: TxKind::Call(Address::repeat_byte(0x42)),
                value: U256::from(1),
                ..Default::default()
            };
            out.push(alloy_primitives::hex::decode(sign_raw(&dev_key(from), tx)).unwrap());
        }
    }
    out
}

fn add_raw(chain: &Blockchain, raws: &[Vec<u8>]) -> Vec<B256> {
    raws.iter()
        .map(|raw| {
            let tx = validate_tx(raw, &chain.validation_context()).unwrap();
            let hash = *tx.inner().tx_hash();
            let nonce = chain.account_nonce(&tx.signer());
            chain.pool().add(tx, nonce).unwrap();
            hash
        })
        .collect()
}

/// The bug from the three-signer benchmark: transactions that are in a canonical block before a
/// reorg and again after it (the winning branch includes them too, in the same block height or
/// one later) must stay findable by `eth_getTransactionReceipt` throughout the switch. A reader
/// polls the receipt path while `reorg_to` runs; before the fix the orphaned block's indexes
/// were removed in one SQLite commit and the branch's written in later ones, after executing
/// the branch, so readers saw `null` for the whole time the branch took to import.
#[test]
fn receipts_of_transactions_in_both_branches_stay_visible_during_a_reorg() {
    for delayed in [false, true] {
        let ether = U256::from(10u64).pow(U256::from(18));
        let (net, a, b, c) = three_signers((0..4).map(|i| (dev_key(i).address(), ether)).collect());
        let t0 = net.t0;
        let dir = tempfile::tempdir().unwrap();
        let node = open(&net, &dir.path().join("node"));
        let other = open(&net, &dir.path().join("other"));
        let b1 = seal(&node, &[&a], t0 + 1);
        other.import(b1, None).unwrap();

        let raws = burst(4, 75);
        // The node's branch: block 2 (B) holds the whole burst.
        let hashes = add_raw(&node, &raws);
        let x2 = seal(&node, &[&b], t0 + 2);
        assert_eq!(x2.body.transactions.len(), raws.len());
        // The other branch holds the same transactions in block 2' (or, delayed, in block 3').
        let mut branch = Vec::new();
        let mut t = t0 + 2;
        if delayed {
            branch.push(seal(&other, &[&c], t));
            t += 1;
        }
        add_raw(&other, &raws);
        branch.push(seal(&other, &[&c, &a], t));
        assert_eq!(branch.last().unwrap().body.transactions.len(), raws.len());
        t += 1;
        while other.head().total_difficulty <= node.head().total_difficulty {
            branch.push(seal(&other, &[&a, &b, &c], t));
            t += 1;
        }
        let probe: Vec<B256> = hashes.iter().step_by(50).copied().collect();
        for h in &probe {
            assert_eq!(receipt_block(&node, h), Some(x2.header.hash_slow()));
        }

        let done = std::sync::atomic::AtomicBool::new(false);
        let started = std::sync::Barrier::new(2);
        let (lookups, nulls) = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let (mut lookups, mut nulls) = (0usize, 0usize);
                started.wait();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    for h in &probe {
                        lookups += 1;
                        if receipt_block(&node, h).is_none() {
                            nulls += 1;
                        }
                    }
                }
                (lookups, nulls)
            });
            started.wait();
            node.reorg_to(branch.clone(), None).unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            reader.join().unwrap()
        });
        assert_eq!(node.head().hash, other.head().hash);
        let holder = if delayed { branch[1].header.hash_slow() } else { branch[0].header.hash_slow() };
        for h in &hashes {
            assert_eq!(receipt_block(&node, h), Some(holder), "receipt of {h} after the reorg");
            assert!(node.pool().get(h).is_none(), "{h} is included, not waiting");
        }
        assert!(lookups > 0);
        assert_eq!(
            nulls, 0,
            "delayed={delayed}: {nulls} of {lookups} receipt look-ups during the reorg found nothing"
        );
    }
}
