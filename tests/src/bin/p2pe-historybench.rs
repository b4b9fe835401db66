//! `p2pe-historybench`: the cost of reading state at an old block on an archive node, against the
//! chain's age. See BENCHMARKS.md, "Reads at old blocks on an archive node".
//!
//! For each chain length B, an archive chain is built in-process with the node library: B blocks,
//! each with a transfer to one of 16 recipients and a call that stores the block number in a
//! contract's slot 0, so that every block leaves history rows. Block 2 also writes slot 1, which no
//! later block changes. Then, on the same data directory:
//! - in-process, an account no block changed and slot 1, read at block 1 (the worst case: every
//!   later block is searched) and at the head's parent, through the history's index by key and
//!   with the index dropped (a node keeping a window of 256 blocks or fewer, and every archive
//!   node of schema 8 before the index): median time and history lookups per read;
//! - over JSON-RPC, `p2pe-node run --archive` on the directory and anvil (`anvil_mine` B blocks
//!   after the same two transactions), `eth_getBalance` and `eth_getStorageAt` at block 1: median
//!   latency, side by side, and the ratio.
//!
//! The seal time per block of the build is reported too, for the archive chain (indexed) and for
//! the same blocks on a chain keeping 128 blocks (not indexed): what the index costs a block.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, TxKind, B256, U256};
use clap::Parser;
use p2pe_node::blockchain::{Blockchain, ChainOptions};
use p2pe_node::chain::{build_genesis, ChainSpec, GenesisParams};
use p2pe_node::crypto::SigningKey;
use p2pe_node::state::StateReader;
use p2pe_node::storage::{HistoricalState, Store};
use p2pe_node::txpool::{validate_tx, PoolConfig, TxPool};
use p2pe_tests::harness::{hex_u64, node_bin, npm_tool, sign_raw, Rpc};
use p2pe_tests::single::SingleChain;
use serde_json::json;

/// Reads at an old block against the chain's length.
#[derive(Parser, Debug)]
struct Args {
    /// Chain lengths (blocks), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    blocks: Vec<u64>,
    /// Reads timed per figure (the median is reported).
    #[arg(long, default_value_t = 200)]
    reads: usize,
    /// Do not run anvil side by side (it is run by default: `npm ci --prefix tests`).
    #[arg(long)]
    no_anvil: bool,
}

const CHAIN_ID: u64 = 59;
/// Runtime `NUMBER PUSH1 0 SSTORE` then, if calldata is non-empty, `NUMBER PUSH1 1 SSTORE`.
const RUNTIME: &str = "4360005536600957005b43600155";

fn sender() -> alloy_signer_local::PrivateKeySigner {
    alloy_signer_local::PrivateKeySigner::from_bytes(&B256::repeat_byte(0x51)).unwrap()
}

fn contract() -> Address {
    Address::repeat_byte(0xc0)
}

/// An account no block touches.
fn untouched() -> Address {
    Address::repeat_byte(0x77)
}

fn genesis_json(signer: Address, t0: u64) -> String {
    let params = GenesisParams {
        chain_id: CHAIN_ID,
        period: 1,
        signers: vec![signer],
        funded: vec![(sender().address(), U256::from(10u64).pow(U256::from(24)))],
        timestamp: t0,
        ..Default::default()
    };
    let mut genesis = serde_json::to_value(build_genesis(&params)).unwrap();
    genesis["alloc"][contract().to_string()] = json!({ "balance": "0x0", "code": format!("0x{RUNTIME}") });
    genesis.to_string()
}

/// The two transactions of block `n` (numbered from 1): a transfer, and the contract call (with
/// calldata in block 2, so slot 1 is written once).
fn block_txs(n: u64) -> [alloy_consensus::TxEip1559; 2] {
    let tx = |nonce: u64, to: Address, input: Vec<u8>, value: u64| alloy_consensus::TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit: 100_000,
        max_fee_per_gas: 0,
        to: TxKind::Call(to),
        value: U256::from(value),
        input: input.into(),
        ..Default::default()
    };
    let recipient = Address::with_last_byte(0x10 + (n % 16) as u8);
    [
        tx(2 * (n - 1), recipient, vec![], 1),
        tx(2 * (n - 1) + 1, contract(), if n == 2 { vec![1] } else { vec![] }, 0),
    ]
}

/// Builds a chain of `blocks` blocks in `datadir` keeping `history` blocks (`None`: archive);
/// returns the mean seal time per block.
fn build(datadir: &Path, blocks: u64, history: Option<u64>, signer: &SigningKey, t0: u64) -> Duration {
    let json = genesis_json(signer.address(), t0);
    let spec = ChainSpec::from_json(&json).unwrap();
    let mut store = Store::open(datadir, history).unwrap();
    store.init_genesis(&spec, &json).unwrap();
    let opts = ChainOptions { read_connections: 1, ..Default::default() };
    let chain = Blockchain::open(spec, store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap();
    let mut sealing = Duration::ZERO;
    for n in 1..=blocks {
        for tx in block_txs(n) {
            let raw = alloy_primitives::hex::decode(sign_raw(&sender(), tx)).unwrap();
            let tx = validate_tx(&raw, &chain.validation_context()).unwrap();
            chain.pool().add(tx, chain.account_nonce(&sender().address())).unwrap();
        }
        let start = Instant::now();
        let sealed = chain.seal_next(signer, t0 + n, None).unwrap().expect("in turn");
        sealing += start.elapsed();
        assert_eq!(sealed.block.body.transactions.len(), 2, "block {n}");
    }
    sealing / blocks as u32
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn open_existing(datadir: &Path, history: Option<u64>, signer: &SigningKey, t0: u64) -> Blockchain {
    let spec = ChainSpec::from_json(&genesis_json(signer.address(), t0)).unwrap();
    let store = Store::open(datadir, history).unwrap();
    let opts = ChainOptions { read_connections: 1, ..Default::default() };
    Blockchain::open(spec, store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap()
}

/// Median latency of `eth_getBalance(untouched, 0x1)` and `eth_getStorageAt(contract, 1, 0x1)`
/// over JSON-RPC.
fn read_over_rpc(rpc: &Rpc, reads: usize) -> (Duration, Duration) {
    let mut balance = Vec::with_capacity(reads);
    let mut storage = Vec::with_capacity(reads);
    for _ in 0..reads {
        let start = Instant::now();
        assert_eq!(rpc.call("eth_getBalance", json!([untouched(), "0x1"])), "0x0");
        balance.push(start.elapsed());
        let start = Instant::now();
        let v = rpc.call("eth_getStorageAt", json!([contract(), "0x1", "0x1"]));
        assert_eq!(
            U256::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap(),
            U256::ZERO
        );
        storage.push(start.elapsed());
    }
    (median(balance), median(storage))
}

/// Anvil with the same genesis accounts: blocks 1 and 2 carry the same transactions, then
/// `anvil_mine` makes the chain `blocks` long.
fn anvil_reads(blocks: u64, reads: usize) -> (Duration, Duration) {
    // Anvil keeps a few hundred states in memory and, by default, a few hundred more on disk: it
    // is asked to keep them all on disk, as an archive node does.
    let keep = (blocks + 10).to_string();
    let anvil = SingleChain::anvil(
        &npm_tool("anvil"),
        &["--chain-id", "59", "--no-mining", "--max-persisted-states", &keep],
    );
    let rpc = Rpc::new(&anvil.url);
    rpc.call("anvil_setBalance", json!([sender().address(), "0xd3c21bcecceda1000000"]));
    rpc.call("anvil_setCode", json!([contract(), format!("0x{RUNTIME}")]));
    for n in 1..=2 {
        for tx in block_txs(n) {
            let tx = alloy_consensus::TxEip1559 {
                max_fee_per_gas: 10_000_000_000,
                max_priority_fee_per_gas: 0,
                ..tx
            };
            rpc.call("eth_sendRawTransaction", json!([sign_raw(&sender(), tx)]));
        }
        rpc.call("evm_mine", json!([]));
    }
    // In steps, so that no request runs past the client's timeout.
    let mut mined = 2;
    while mined < blocks {
        let step = (blocks - mined).min(500);
        rpc.call("anvil_mine", json!([format!("{step:#x}")]));
        mined += step;
    }
    assert_eq!(hex_u64(&rpc.call("eth_blockNumber", json!([]))), blocks);
    read_over_rpc(&rpc, reads)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let args = Args::parse();
    let signer = SigningKey::from_bytes(&B256::repeat_byte(0xa1)).unwrap();
    let t0 = p2pe_node::blockchain::unix_now() - 1_000_000;
    println!(
        "| Blocks | Seal per block, archive (indexed) / window 128 | In-process read at block 1, indexed (lookups) | Not indexed (lookups) | At the head's parent, indexed / not | RPC eth_getBalance, eth_getStorageAt at block 1: p2pe-node --archive | anvil | p2pe / anvil |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &blocks in &args.blocks {
        assert!(blocks >= 3, "--blocks: at least 3");
        let dir = tempfile::Builder::new().prefix("p2pe-historybench-").tempdir().unwrap();
        let (archive, window) = (dir.path().join("archive"), dir.path().join("window"));
        eprintln!("building {blocks} blocks, archive");
        let seal_archive = build(&archive, blocks, None, &signer, t0);
        eprintln!("building {blocks} blocks, window of 128");
        let seal_window = build(&window, blocks, Some(128), &signer, t0);
        let chain = open_existing(&archive, None, &signer, t0);
        let indexed = read_pool_reads(chain.reads(), 1, args.reads);
        let indexed_parent = read_pool_reads(chain.reads(), blocks - 1, args.reads);
        drop(chain);
        // The same directory without the index: as a node of schema 8 before it reads.
        let db = rusqlite::Connection::open(archive.join("chain.sqlite")).unwrap();
        db.execute_batch("DROP INDEX account_history_by_key; DROP INDEX storage_history_by_key;").unwrap();
        drop(db);
        let reads = p2pe_node::storage::ReadPool::open(&archive.join("chain.sqlite"), 1).unwrap();
        let plain = read_pool_reads(&reads, 1, args.reads.min(20));
        let plain_parent = read_pool_reads(&reads, blocks - 1, args.reads);
        drop(reads);
        // Over JSON-RPC: the node rebuilds the index as it opens the directory with --archive.
        let node = SingleChain::node_run(&node_bin(), &archive, &["--archive", "--no-p2p"]);
        let ours = read_over_rpc(&Rpc::new(&node.url), args.reads);
        drop(node);
        let anvil = (!args.no_anvil).then(|| anvil_reads(blocks, args.reads));
        let (anvil_text, ratio) = match anvil {
            Some((b, s)) => (
                format!("{}, {}", ms(b), ms(s)),
                format!(
                    "{:.2}x, {:.2}x",
                    ours.0.as_secs_f64() / b.as_secs_f64(),
                    ours.1.as_secs_f64() / s.as_secs_f64()
                ),
            ),
            None => ("not run".into(), "-".into()),
        };
        println!(
            "| {blocks} | {} / {} | {} ({}) | {} ({}) | {} / {} | {}, {} | {anvil_text} | {ratio} |",
            ms(seal_archive),
            ms(seal_window),
            ms(indexed.0),
            indexed.1,
            ms(plain.0),
            plain.1,
            ms(indexed_parent.0),
            ms(plain_parent.0),
            ms(ours.0),
            ms(ours.1),
        );
    }
}

/// In-process reads of the untouched account and slot 1 at `number` on `pool`: median time of
/// the pair, and the history lookups of one pair.
fn read_pool_reads(pool: &p2pe_node::storage::ReadPool, number: u64, reads: usize) -> (Duration, u64) {
    let mut times = Vec::with_capacity(reads);
    let mut lookups = 0;
    for _ in 0..reads {
        let start = Instant::now();
        let state = HistoricalState::open(pool, number).unwrap();
        assert_eq!(state.account(&untouched()).unwrap(), None);
        assert_eq!(
            state.storage(&contract(), &U256::from(1)).unwrap(),
            U256::from(if number >= 2 { 2 } else { 0 })
        );
        lookups = state.lookups();
        drop(state);
        times.push(start.elapsed());
    }
    (median(times), lookups)
}
