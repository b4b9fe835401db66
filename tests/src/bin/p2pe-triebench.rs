//! `p2pe-triebench`: seal time of a block of order-shaped transactions against a contract that
//! already holds N storage words (issue 15, part 2). See BENCHMARKS.md, "State root at any
//! state size".
//!
//! For each N, a fresh chain is built in-process with the node library: a contract whose every
//! call writes four words (as a market order writes its escrow, position and price-level words)
//! and funded senders. The N words are seeded straight into the state tables (a bench-only
//! path: plain and hashed storage rows in key order, then the stored tries rebuilt, and the genesis header's state root
//! patched to match), then blocks of `--txs` transactions are sealed with `Blockchain::seal_next`
//! (execution, the incremental state root, signing, and the SQLite commit) and timed. Seeding runs
//! in a child process, so the VmRSS reported after each size is the node library's own.
//!
//! anvil runs side by side (unless `--no-anvil`) for every size up to `--anvil-max-words`: started
//! with `--init` on the same genesis, the N words in the contract's `alloc` storage, it gets the
//! same signed transactions in one JSON-RPC batch per block and mines each block with `evm_mine`
//! (timed), every receipt checked. Above that size anvil is not run: it keeps the whole state in
//! memory (about 6 GB for 2,000,000 words in the year bench), which this machine cannot hold at
//! 10,000,000.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use clap::Parser;
use p2pe_node::blockchain::{Blockchain, ChainOptions};
use p2pe_node::chain::{build_genesis, ChainSpec, GenesisParams};
use p2pe_node::crypto::SigningKey;
use p2pe_node::storage::Store;
use p2pe_node::txpool::{validate_tx, PoolConfig, TxPool};
use p2pe_tests::harness::{sign_raw, Rpc};
use p2pe_tests::single::{mine_checked, send_batch, SingleChain};

/// Seal time against the size of one contract's storage.
#[derive(Parser, Debug)]
struct Args {
    /// Storage words seeded into the contract before the timed blocks, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,100000,1000000")]
    words: Vec<u64>,
    /// Transactions per block (each writes four words of the contract).
    #[arg(long, default_value_t = 1_000)]
    txs: usize,
    /// Timed blocks per size (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = p2pe_tests::seed::at_least_one)]
    blocks: usize,
    /// Each transaction overwrites a random group of four consecutive seeded words instead of
    /// writing four new ones (the steady state of the market's bounded rings, whose words are
    /// rewritten slot after slot). Every size in `--words` must then be at least 4.
    #[arg(long)]
    overwrite: bool,
    /// Idle time after each block, not timed (a node sealing at a 1 s period has the rest of the
    /// period for its background WAL checkpoint; 0 seals back to back).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Keep every block's state history, as `p2pe-node --archive` (indexed by key) instead of the
    /// default 128 blocks.
    #[arg(long, conflicts_with = "state_history")]
    archive: bool,
    /// Blocks of state history kept, as `p2pe-node --state-history` (over 256 the history is also
    /// indexed by key, and the prune every 32 blocks deletes from those indexes too).
    #[arg(long, default_value_t = 128)]
    state_history: u64,
    /// Do not run anvil side by side (it runs by default: `npm ci --prefix tests`).
    #[arg(long)]
    no_anvil: bool,
    /// Largest size (words) anvil runs at; larger sizes run on the node alone. anvil keeps the whole
    /// state in memory: about 6 GB for 2,000,000 words.
    #[arg(long, default_value_t = 2_000_000)]
    anvil_max_words: u64,
    /// Also time the state root alone against a copy of the whole state in memory, the same walk
    /// and the same changes (`--root-rounds` blocks' worth, each checked to give the stored
    /// tries' root), in a child process per size: what the root costs without reading the tables.
    /// The copy needs about 150 bytes of memory per word (1.5 GB at 10,000,000).
    #[arg(long)]
    in_memory: bool,
    /// Blocks' worth of changes timed by `--in-memory`, on the tables and in memory (medians).
    #[arg(long, default_value_t = 5, value_parser = p2pe_tests::seed::at_least_one)]
    root_rounds: usize,
    /// Internal: the `--in-memory` timing for the data directory DIR (a child process, so that
    /// the copy's memory is not counted in the bench's own RSS).
    #[arg(long, value_name = "DIR", hide = true)]
    root_in_memory: Option<std::path::PathBuf>,
    /// Internal: seed WORDS words into the initialised data directory DIR and exit (the
    /// benchmark runs its seeding in a child process, so that its own RSS is the node's alone).
    #[arg(long, num_args = 2, value_names = ["DIR", "WORDS"], hide = true)]
    seed_into: Option<Vec<String>>,
}

const CHAIN_ID: u64 = 57;
const SENDERS: usize = 100;
/// The contract: `sstore(base + i, number + 1)` for i in 0..4, with `base` the first calldata word.
const RUNTIME: &str = "600035436001018155436001018160010155436001018160020155436001018160030155500000";

fn sender(i: usize) -> alloy_signer_local::PrivateKeySigner {
    alloy_signer_local::PrivateKeySigner::from_bytes(&B256::from(U256::from(1_000 + i))).unwrap()
}

fn contract() -> Address {
    Address::repeat_byte(0xc0)
}

/// Inserts `words` storage words into the contract, rebuilds the stored trie and makes the
/// genesis header carry the new root.
fn seed(datadir: &Path, words: u64) {
    let rows = (0..words).map(|i| (B256::from(seeded_slot(i)), U256::from(i + 1))).collect();
    p2pe_tests::seed::seed_words(datadir, vec![(contract(), rows)]);
}

/// The genesis both chains start from: the signer, the funded senders and the contract (no words).
fn genesis(signer: Address, t0: u64) -> serde_json::Value {
    let params = GenesisParams {
        chain_id: CHAIN_ID,
        period: 1,
        gas_limit: 3_000_000_000,
        signers: vec![signer],
        funded: (0..SENDERS).map(|i| (sender(i).address(), U256::from(10u64).pow(U256::from(20)))).collect(),
        timestamp: t0,
        ..Default::default()
    };
    let mut genesis = serde_json::to_value(build_genesis(&params)).unwrap();
    genesis["alloc"][contract().to_string()] =
        serde_json::json!({ "balance": "0x0", "code": format!("0x{RUNTIME}") });
    genesis
}

fn open_chain(datadir: &Path, words: u64, signer: &SigningKey, history: Option<u64>) -> (Blockchain, u64) {
    let t0 = p2pe_node::blockchain::unix_now() - 100_000;
    let json = genesis(signer.address(), t0).to_string();
    let spec = ChainSpec::from_json(&json).unwrap();
    let mut store = Store::open(datadir, None).unwrap();
    store.init_genesis(&spec, &json).unwrap();
    drop(store);
    let seeding = Instant::now();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--seed-into")
        .arg(datadir)
        .arg(words.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "seeding failed: {status}");
    let store = Store::open(datadir, history).unwrap();
    let pool = PoolConfig { max_per_sender: 10_000, max_total: 1_000_000, ..PoolConfig::default() };
    let opts = ChainOptions { read_connections: 1, ..Default::default() };
    let chain = Blockchain::open(spec, store, Arc::new(TxPool::new(pool)), &opts).unwrap();
    eprintln!("  {words} words seeded and loaded in {:.1} s", seeding.elapsed().as_secs_f64());
    (chain, t0)
}

/// The slot of seeded word `i`: groups of four consecutive slots (what one call writes) at
/// random places, as a mapping's structs are.
fn seeded_slot(i: u64) -> U256 {
    U256::from_be_bytes(keccak256(U256::from(i / 4).to_be_bytes::<32>()).0).wrapping_add(U256::from(i % 4))
}

/// The first of the four words a transaction writes: a random new place, or with `overwrite`
/// the first of a random group of four seeded words (`words` ≥ 4).
fn first_word(seed: &str, overwrite: Option<u64>) -> U256 {
    let random = U256::from_be_bytes(keccak256(seed.as_bytes()).0);
    match overwrite {
        Some(words) => seeded_slot((random % U256::from(words / 4)).to::<u64>() * 4),
        None => random,
    }
}

/// Block `block`'s transactions, signed: `txs` calls of the contract, each writing four words.
fn block_txs(txs: usize, block: usize, overwrite: Option<u64>) -> Vec<Vec<u8>> {
    let per_sender = txs.div_ceil(SENDERS);
    (0..txs)
        .map(|i| {
            let (who, k) = (i % SENDERS, i / SENDERS);
            let base = first_word(&format!("{block}/{i}"), overwrite);
            let tx = alloy_consensus::TxEip1559 {
                chain_id: CHAIN_ID,
                nonce: (block * per_sender + k) as u64,
                gas_limit: 200_000,
                to: TxKind::Call(contract()),
                input: Bytes::from(base.to_be_bytes::<32>().to_vec()),
                ..Default::default()
            };
            alloy_primitives::hex::decode(sign_raw(&sender(who), tx)).unwrap()
        })
        .collect()
}

fn fill_pool(chain: &Blockchain, txs: &[Vec<u8>]) {
    for raw in txs {
        let tx = validate_tx(raw, &chain.validation_context()).unwrap();
        let state_nonce = chain.account_nonce(&tx.signer());
        chain.pool().add(tx, state_nonce).unwrap();
    }
}

/// anvil's figures at one size: median and (p99, max) `evm_mine` time, (VmRSS, VmHWM) after.
type AnvilRow = (Duration, (Duration, Duration), (u64, u64));

/// anvil on the same genesis with `words` words in the contract's `alloc`, mining the same blocks.
fn run_anvil(args: &Args, words: u64, signer: Address) -> AnvilRow {
    let t0 = p2pe_node::blockchain::unix_now() - 100_000;
    let mut genesis = genesis(signer, t0);
    let storage: serde_json::Map<String, serde_json::Value> = (0..words)
        .map(|i| (B256::from(seeded_slot(i)).to_string(), B256::from(U256::from(i + 1)).to_string().into()))
        .collect();
    genesis["alloc"][contract().to_string()]["storage"] = storage.into();
    let (anvil, load_s) = SingleChain::anvil_from_genesis(&genesis);
    drop(genesis);
    eprintln!("  anvil: {words} words loaded in {load_s:.1} s");
    let rpc = Rpc::new(&anvil.url);
    let overwrite = args.overwrite.then_some(words);
    let mut times = Vec::new();
    for block in 0..args.blocks {
        let (hashes, _) = send_batch(&rpc, &block_txs(args.txs, block, overwrite));
        let took = mine_checked(&rpc, t0 + block as u64 + 1, &hashes, "anvil");
        eprintln!(
            "  anvil, {words} words, block {}: {} txs mined in {:.0} ms",
            block + 1,
            args.txs,
            ms(took)
        );
        times.push(took);
        std::thread::sleep(Duration::from_millis(args.pause_ms));
    }
    let rss = anvil.rss_kb();
    times.sort();
    (times[times.len() / 2], (times[times.len() * 99 / 100], times[times.len() - 1]), rss)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The state root alone for a block's worth of changes (`txs` × 4 words of the contract, new ones
/// or with `overwrite` seeded ones, and the senders' nonces), computed from the stored trie on a
/// second connection in one read transaction (as the node does); nothing written.
fn time_root_only(datadir: &Path, txs: usize, overwrite: Option<u64>, history: Option<u64>) -> Duration {
    let store = Store::open(datadir, history).unwrap();
    let changes = root_changes(txs, overwrite, "root-only");
    let start = Instant::now();
    // In one read transaction, as the node computes a block's root.
    store.in_read_transaction(|conn| p2pe_node::storage::trie::state_root(conn, &changes)).unwrap();
    start.elapsed()
}

/// A block's worth of changes for the root alone: `txs` × 4 words of the contract (new ones, or
/// with `overwrite` seeded ones; `tag` picks which) and the senders' nonces.
fn root_changes(txs: usize, overwrite: Option<u64>, tag: &str) -> p2pe_node::state::StateChanges {
    let mut changes = p2pe_node::state::StateChanges::default();
    let slots = changes.storage.entry(contract()).or_default();
    for i in 0..txs as u64 * 4 {
        slots.insert(first_word(&format!("{tag}/{i}"), overwrite), U256::from(i + 1));
    }
    for i in 0..SENDERS {
        let info = p2pe_node::state::AccountInfo {
            nonce: 1_000,
            balance: U256::from(1),
            code_hash: alloy_trie::KECCAK_EMPTY,
        };
        changes.accounts.insert(sender(i).address(), Some(info));
    }
    changes
}

/// One size's figures: words, median seal time, (p99, max) seal time, root alone, (VmRSS, VmHWM
/// of this process, where the node library ran), and anvil's when it ran at that size.
type Row = (u64, Duration, (Duration, Duration), Duration, (u64, u64), Option<AnvilRow>);

fn main() {
    let args = Args::parse();
    if let Some(seed_args) = &args.seed_into {
        seed(Path::new(&seed_args[0]), seed_args[1].parse().expect("WORDS is a number"));
        return;
    }
    if let Some(dir) = &args.root_in_memory {
        root_in_memory(&args, dir);
        return;
    }
    if args.overwrite && args.words.iter().any(|w| *w < 4) {
        eprintln!("error: --overwrite rewrites seeded words: every size in --words must be at least 4");
        std::process::exit(2);
    }
    let signer = SigningKey::from_bytes(&B256::repeat_byte(0xa1)).unwrap();
    let mut rows: Vec<Row> = Vec::new();
    let mut memory_rows: Vec<(u64, MemoryRow)> = Vec::new();
    for &words in &args.words {
        let dir = tempfile::Builder::new().prefix("p2pe-triebench-").tempdir().unwrap();
        let history = (!args.archive).then_some(args.state_history);
        let (chain, t0) = open_chain(dir.path(), words, &signer, history);
        let overwrite = args.overwrite.then_some(words);
        let mut times = Vec::new();
        for block in 0..args.blocks {
            fill_pool(&chain, &block_txs(args.txs, block, overwrite));
            let start = Instant::now();
            let sealed = chain.seal_next(&signer, t0 + block as u64 + 1, None).unwrap().expect("in turn");
            let took = start.elapsed();
            let n = sealed.block.body.transactions.len();
            assert_eq!(n, args.txs, "every transaction was included");
            if args.overwrite {
                let now = p2pe_tests::seed::count_words(dir.path(), contract());
                assert_eq!(now, words, "--overwrite rewrote words and added none");
            }
            eprintln!(
                "  {words} words, block {}: {n} txs sealed in {:.0} ms",
                block + 1,
                took.as_secs_f64() * 1e3
            );
            times.push(took);
            std::thread::sleep(Duration::from_millis(args.pause_ms));
        }
        times.sort();
        let tail = (times[times.len() * 99 / 100], times[times.len() - 1]);
        let root = time_root_only(dir.path(), args.txs, overwrite, history);
        eprintln!(
            "  {words} words: state root alone for {} {} words: {:.0} ms",
            args.txs * 4,
            if args.overwrite { "overwritten" } else { "new" },
            root.as_secs_f64() * 1e3
        );
        let rss = p2pe_tests::seed::rss_kb();
        eprintln!("  {words} words: node process VmRSS {} kB, peak VmHWM {} kB", rss.0, rss.1);
        drop(chain);
        if args.in_memory {
            memory_rows.push((words, run_root_in_memory(dir.path(), words, &args)));
        }
        rows.push((words, times[times.len() / 2], tail, root, rss, None));
    }
    // anvil after every node size: its genesis (all the words, as JSON) is built in this process,
    // which would otherwise count in the node's peak RSS (VmHWM) of the sizes after it.
    for row in rows.iter_mut() {
        if !args.no_anvil && row.0 <= args.anvil_max_words {
            row.5 = Some(run_anvil(&args, row.0, signer.address()));
        }
    }
    print_table(&args, &rows);
    if args.in_memory {
        print_memory_table(&args, &memory_rows);
    }
}

/// `--in-memory` at one size: the medians of the state root on the stored tries and on the copy
/// in memory, the copy's load time and this child's VmRSS with it.
type MemoryRow = (Duration, Duration, Duration, u64);

/// Runs the `--in-memory` child for one data directory and reads its result line.
fn run_root_in_memory(dir: &Path, words: u64, args: &Args) -> MemoryRow {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.arg("--root-in-memory").arg(dir).arg("--txs").arg(args.txs.to_string());
    cmd.arg("--root-rounds").arg(args.root_rounds.to_string()).arg("--words").arg(words.to_string());
    if args.overwrite {
        cmd.arg("--overwrite");
    }
    if args.archive {
        cmd.arg("--archive");
    } else {
        cmd.arg("--state-history").arg(args.state_history.to_string());
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "the in-memory root failed: {}", out.status);
    let line = String::from_utf8(out.stdout).unwrap();
    let (label, figures) = line.trim().split_once(' ').unwrap_or_default();
    assert_eq!(label, "in-memory", "the in-memory child's line: {line}");
    let f: Vec<u64> = figures.split(' ').map(|x| x.parse().expect("a whole number")).collect();
    assert_eq!(f.len(), 4, "the in-memory child's line: {line}");
    (Duration::from_nanos(f[0]), Duration::from_nanos(f[1]), Duration::from_nanos(f[2]), f[3])
}

/// The child of `--in-memory`: copies the state of `dir` into memory, then for each round times
/// the same changes' root on the stored tries and on the copy (alternating which goes first),
/// checks both roots agree, and prints one line: `in-memory DB_NS MEMORY_NS LOAD_NS RSS_KB`.
fn root_in_memory(args: &Args, dir: &Path) {
    let words = args.words.first().copied().unwrap_or(0);
    let overwrite = args.overwrite.then_some(words);
    let store = Store::open(dir, (!args.archive).then_some(args.state_history)).unwrap();
    let start = Instant::now();
    let memory = p2pe_node::storage::trie::MemoryState::load(store.connection()).unwrap();
    let load = start.elapsed();
    let stored = p2pe_tests::seed::count_words(dir, contract());
    assert_eq!(memory.storage_words() as u64, stored, "the copy holds every word of the contract");
    let (mut on_tables, mut in_memory) = (Vec::new(), Vec::new());
    for round in 0..args.root_rounds {
        let changes = root_changes(args.txs, overwrite, &format!("in-memory/{round}"));
        let (t, m) = p2pe_tests::seed::roots_on_tables_and_in_memory(&store, &memory, &changes, 1);
        eprintln!(
            "  {words} words, round {}: root on the tables {:.1} ms, in memory {:.1} ms",
            round + 1,
            ms(t[0]),
            ms(m[0])
        );
        on_tables.extend(t);
        in_memory.extend(m);
    }
    on_tables.sort();
    in_memory.sort();
    let median = |v: &[Duration]| v[v.len() / 2].as_nanos();
    let rss = p2pe_tests::seed::rss_kb().0;
    println!("in-memory {} {} {} {rss}", median(&on_tables), median(&in_memory), load.as_nanos());
}

/// The `--in-memory` figures: the state root alone on the stored tries and in memory, each
/// against its own first row, and their ratio at each size.
fn print_memory_table(args: &Args, rows: &[(u64, MemoryRow)]) {
    let Some((_, (db0, mem0, _, _))) = rows.first() else { return };
    println!();
    println!(
        "| Words in the contract | State root alone on the stored tries, {} words changed, median of {} | vs first row | The same walk in memory | vs first row | tables / memory | The copy: load time, VmRSS |",
        args.txs * 4,
        args.root_rounds
    );
    println!("|---|---|---|---|---|---|---|");
    for (words, (db, mem, load, rss)) in rows {
        println!(
            "| {words} | {:.1} ms | {:.2}x | {:.1} ms | {:.2}x | {:.2}x | {:.1} s, {} MB |",
            ms(*db),
            db.as_secs_f64() / db0.as_secs_f64(),
            ms(*mem),
            mem.as_secs_f64() / mem0.as_secs_f64(),
            db.as_secs_f64() / mem.as_secs_f64(),
            load.as_secs_f64(),
            rss / 1024
        );
    }
}

/// The figures as a Markdown table: the node's, then anvil's where it ran, each against its own
/// first row, and the node's seal time against anvil's at the same size.
fn print_table(args: &Args, rows: &[Row]) {
    let first = rows.first().expect("at least one size");
    let (base, base_root) = (first.1.as_secs_f64(), first.3.as_secs_f64());
    let anvil_base = first.5.map(|a| a.0.as_secs_f64());
    println!(
        "| Words in the contract | Seal time, median of {} blocks of {} txs | vs first row | p99 / max | State root alone, {} words changed | vs first row | VmRSS after (peak so far) | anvil: `evm_mine`, median | anvil: vs first row | anvil: p99 / max | anvil: VmRSS (peak) | node / anvil |",
        args.blocks,
        args.txs,
        args.txs * 4
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (words, time, (p99, max), root, (rss, hwm), anvil) in rows {
        let (t, r) = (time.as_secs_f64(), root.as_secs_f64());
        let anvil_cells = match anvil {
            Some((a, (ap99, amax), (arss, ahwm))) => format!(
                "{:.0} ms | {} | {:.0} / {:.0} ms | {} MB ({} MB) | {:.2}x",
                ms(*a),
                anvil_base.map_or("-".to_string(), |b| format!("{:.2}x", a.as_secs_f64() / b)),
                ms(*ap99),
                ms(*amax),
                arss / 1024,
                ahwm / 1024,
                t / a.as_secs_f64()
            ),
            None if args.no_anvil => "not run (--no-anvil) | | | |".to_string(),
            None => format!("not run (over --anvil-max-words {}) | | | |", args.anvil_max_words),
        };
        println!(
            "| {words} | {:.0} ms | {:.2}x | {:.0} / {:.0} ms | {:.0} ms | {:.2}x | {} MB ({} MB) | {anvil_cells} |",
            t * 1e3,
            t / base,
            ms(*p99),
            ms(*max),
            r * 1e3,
            r / base_root,
            rss / 1024,
            hwm / 1024
        );
    }
}
