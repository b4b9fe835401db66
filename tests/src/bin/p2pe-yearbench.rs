//! `p2pe-yearbench`: the energy market after a year of operation against a fresh one (issue 15,
//! part 7). See BENCHMARKS.md, "A year of market operation".
//!
//! Two chains are built in-process with the node library, each in its own child process (so that
//! each RSS is its own): both deploy the market at genesis with the same 500 participants (every
//! one registered, funded and with a bound meter) and a market whose slot 0 began a year ago, so
//! the slots traded are about slot 35,040. The "year" chain is then fast-forwarded by direct state
//! seeding: the market and the meter-readings contracts get the storage words a year of 15-minute
//! slots leaves them, at the bounds the contracts keep (the 128 sets of 221 price-level words and
//! 2 × 8,192 slot words of the market; 4,161 words per meter in `MeterReadings`, its 64 reading
//! words and its ring of 4,096 energy words), at random keys as mapping keys are.
//!
//! Then, on each chain, the same blocks are sealed with `Blockchain::seal_next` (execution, the
//! incremental state root, signing, the SQLite commit) and timed, for `--rounds` rounds: a block of
//! one order from each participant (asks from prosumers, bids from consumers, real
//! `EnergyMarket.placeAsk`/`placeBid` calls), a block of one reading from each meter
//! (`MeterReadings.submitReading`), and a block of a single order. Every transaction must succeed.
//! Order latency here is the node's own part of it: validating and pooling the orders, then sealing
//! the block that holds them; over JSON-RPC the wait for the block period (1 s) comes on top, on
//! both chains alike.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_consensus::TxReceipt;
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use clap::Parser;
use p2pe_bindings::{credit_token, energy_market, meter_readings};
use p2pe_node::blockchain::{Blockchain, ChainOptions};
use p2pe_node::chain::{build_genesis, deploy_market, market_addresses, ChainSpec, GenesisParams};
use p2pe_node::chain::{GenesisParticipant, MarketConfig};
use p2pe_node::crypto::SigningKey;
use p2pe_node::metrics::PrometheusHandle;
use p2pe_node::state::AccountInfo;
use p2pe_node::storage::Store;
use p2pe_node::txpool::{validate_tx, PoolConfig, TxPool};
use p2pe_tests::harness::{sign_raw, Rpc};
use p2pe_tests::seed::{count_words, dir_bytes, rss_kb, seed_words};
use p2pe_tests::single::{mine_checked, send_batch, SingleChain};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Fresh market against a market a year old.
#[derive(Parser, Debug)]
struct Args {
    /// Participants (each with a meter): even ones prosumers, odd ones consumers.
    #[arg(long, default_value_t = 500)]
    participants: usize,
    /// Slots of market operation the "year" chain is fast-forwarded through (35,040 = a year of
    /// 15-minute slots). The storage the contracts keep stops growing after 8,192 slots (market)
    /// and 4,096 slots (readings), so fewer slots seed fewer words.
    #[arg(long, default_value_t = 35_040)]
    slots: u64,
    /// Words seeded into the market contract of the second chain on top of what the slots leave,
    /// at random keys (issue 15, part 2: `--participants 1000 --slots 0 --extra-market-words
    /// 10000000` times a block of 1,000 orders against a market of 10,000,000 words). anvil
    /// keeps them all in memory (about 1.3 KB a word): add `--no-anvil` above a few million.
    #[arg(long, default_value_t = 0)]
    extra_market_words: u64,
    /// Timed rounds (orders, readings, a single order each); medians are reported.
    #[arg(long, default_value_t = 3, value_parser = p2pe_tests::seed::at_least_one)]
    rounds: usize,
    /// Do not run anvil side by side (it is run by default: `npm ci --prefix tests`).
    #[arg(long)]
    no_anvil: bool,
    /// Also time the state root of the keys the last orders block and the last readings block
    /// changed (each given a new value on the head's state) on the stored tries and on a copy of the
    /// whole state in memory (`MemoryState`), `--rounds` times each, after the chain has closed:
    /// what the root costs without reading the tables. The copy needs about 150 bytes of memory
    /// per word (1.5 GB at 10,000,000); it is loaded after the RSS figures are taken.
    #[arg(long)]
    in_memory: bool,
    /// Internal: run one chain ("fresh" or "year") and print its figures as one JSON line.
    #[arg(long, hide = true)]
    variant: Option<String>,
    /// Internal: seed a year's words into the initialised data directory DIR and exit (the chain
    /// process runs its seeding in a child, so that its own peak RSS is the node library's alone).
    #[arg(long, hide = true, value_name = "DIR")]
    seed_into: Option<std::path::PathBuf>,
}

const CHAIN_ID: u64 = 58;
const SLOT: u32 = 900;
const YEAR: u64 = 365 * 86_400;
/// The market's bounds (contracts/README.md, "Storage that does not grow with the market's age").
const SLOT_RING: u64 = 128;
const LEVELS: u64 = 221;
const SLOT_WORDS_KEPT: u64 = 8_192;
const ENERGY_RING: u64 = 4_096;
const READING_WORDS: u64 = 64 + 1;

fn key(base: u64, i: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::from(U256::from(base + i as u64))).unwrap()
}
fn participant(i: usize) -> PrivateKeySigner {
    key(10_000, i)
}
fn meter(i: usize) -> PrivateKeySigner {
    key(20_000, i)
}
fn operator() -> PrivateKeySigner {
    key(5, 0)
}
fn credits(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}
fn milli(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(15))
}

/// What one chain measured.
#[derive(Serialize, Deserialize, Debug)]
struct Figures {
    variant: String,
    market_words: u64,
    readings_words: u64,
    seed_s: f64,
    submit_orders_ms: Vec<f64>,
    seal_orders_ms: Vec<f64>,
    seal_readings_ms: Vec<f64>,
    seal_single_ms: Vec<f64>,
    /// The node's own phase timers for each block of orders and of readings (none for anvil).
    #[serde(default)]
    orders_phases: Vec<Phases>,
    #[serde(default)]
    readings_phases: Vec<Phases>,
    rss_kb: u64,
    hwm_kb: u64,
    disk_bytes: u64,
    /// `--in-memory`: the root of the orders block's keys and of the readings block's, medians
    /// in ms as (on the stored tries, in memory).
    #[serde(default)]
    orders_root_ms: Option<(f64, f64)>,
    #[serde(default)]
    readings_root_ms: Option<(f64, f64)>,
}

/// The storage words the second chain gets beyond what genesis holds: the market's level-word ring
/// and its kept slot words after `--slots` slots plus `--extra-market-words`, and each meter's
/// reading and energy words. (Genesis creates no level or slot words; it may create some of each
/// meter's words.)
fn year_words(args: &Args, genesis_readings: u64) -> (u64, u64) {
    let slots = args.slots;
    let market = LEVELS * slots.min(SLOT_RING) + 2 * slots.min(SLOT_WORDS_KEPT) + args.extra_market_words;
    let readings = args.participants as u64 * (READING_WORDS + slots.min(ENERGY_RING));
    (market, readings.saturating_sub(genesis_readings))
}

/// The second chain's name in the table.
fn second_chain(args: &Args) -> String {
    match args.extra_market_words {
        0 => format!("after {} slots", args.slots),
        n => format!("after {} slots and {n} more market words", args.slots),
    }
}

/// A chain the rounds run on: the node library in-process, or anvil over JSON-RPC.
trait Target {
    /// The first of the slots the bench opens (gate open at the bench's block times).
    fn first_slot(&self) -> u64;
    /// Timestamp for a reading sent now (the last block's).
    fn reading_time(&self) -> u64;
    /// Sends signed transactions; returns the time it took.
    fn submit(&mut self, txs: Vec<(PrivateKeySigner, Address, Vec<u8>)>) -> Duration;
    /// Makes the next block of the waiting transactions; checks all `expect` of them succeeded;
    /// returns the time it took.
    fn seal(&mut self, expect: usize, what: &str) -> Duration;
    /// The chain's own phase timers so far (the node's; anvil has none).
    fn phases(&self) -> Option<Phases> {
        None
    }
}

/// Where a block's seal time went, from the node's own timers (ms): the sums of its
/// `p2pe_*_seconds` histograms, as `/metrics` would serve them.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default)]
struct Phases {
    /// Executing the transactions (`p2pe_block_execute_seconds`).
    execute: f64,
    /// The incremental state root (`p2pe_state_root_seconds`).
    root: f64,
    /// Writing the block's rows, the commit without SQLite's COMMIT.
    rows: f64,
    /// SQLite's COMMIT: the log written and fsynced (`p2pe_sqlite_commit_seconds`).
    commit: f64,
    /// The whole seal (`p2pe_block_seal_seconds`).
    seal: f64,
}

impl Phases {
    /// The cumulative sums in the recorder's current exposition.
    fn read(metrics: &PrometheusHandle) -> Self {
        let text = metrics.render();
        let sum = |name: &str| {
            let prefix = format!("{name}_sum ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map_or(0.0, |v| v.trim().parse::<f64>().expect("a histogram sum") * 1e3)
        };
        use p2pe_node::metrics::names;
        let commit = sum(names::SQLITE_COMMIT);
        Self {
            execute: sum(names::BLOCK_EXECUTE),
            root: sum(names::STATE_ROOT),
            rows: sum(names::BLOCK_COMMIT) - commit,
            commit,
            seal: sum(names::BLOCK_SEAL),
        }
    }

    /// The phases of what happened between `before` and `self`.
    fn since(self, before: Self) -> Self {
        Self {
            execute: self.execute - before.execute,
            root: self.root - before.root,
            rows: self.rows - before.rows,
            commit: self.commit - before.commit,
            seal: self.seal - before.seal,
        }
    }
}

/// A signed EIP-1559 transaction (zero fees) as raw bytes.
fn signed(who: &PrivateKeySigner, nonce: u64, to: Address, input: Vec<u8>) -> Vec<u8> {
    let tx = alloy_consensus::TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit: 16_000_000,
        to: TxKind::Call(to),
        input: Bytes::from(input),
        ..Default::default()
    };
    alloy_primitives::hex::decode(sign_raw(who, tx)).unwrap()
}

struct Chain {
    chain: Blockchain,
    metrics: PrometheusHandle,
    signer: SigningKey,
    next_time: u64,
    first_slot: u64,
}

impl Chain {
    /// The next nonce of `who`: the state's, plus what it has waiting in the pool.
    fn nonce(&self, who: &Address) -> u64 {
        self.chain.pool().pending_nonce(who, self.chain.account_nonce(who))
    }
}

impl Target for Chain {
    fn first_slot(&self) -> u64 {
        self.first_slot
    }

    fn reading_time(&self) -> u64 {
        self.next_time - 1
    }

    /// Validates and pools the transactions (signed beforehand, untimed).
    fn submit(&mut self, txs: Vec<(PrivateKeySigner, Address, Vec<u8>)>) -> Duration {
        let mut next: HashMap<Address, u64> = Default::default();
        let signed: Vec<(Address, Vec<u8>)> = txs
            .into_iter()
            .map(|(who, to, input)| {
                let nonce = *next
                    .entry(who.address())
                    .and_modify(|n| *n += 1)
                    .or_insert_with(|| self.nonce(&who.address()));
                (who.address(), signed(&who, nonce, to, input))
            })
            .collect();
        let start = Instant::now();
        for (who, raw) in signed {
            let tx = validate_tx(&raw, &self.chain.validation_context()).expect("a valid transaction");
            let state_nonce = self.chain.account_nonce(&who);
            self.chain.pool().add(tx, state_nonce).expect("pooled");
        }
        start.elapsed()
    }

    /// Seals the next block (execution, state root, signing, commit); checks every transaction
    /// succeeded; returns the seal time.
    fn seal(&mut self, expect: usize, what: &str) -> Duration {
        let mut events = self.chain.subscribe();
        let start = Instant::now();
        let sealed = self.chain.seal_next(&self.signer, self.next_time, None).unwrap().expect("in turn");
        let took = start.elapsed();
        self.next_time += 1;
        assert_eq!(sealed.block.body.transactions.len(), expect, "{what}: every transaction included");
        let event = events.try_recv().expect("the block's event");
        let failed = event.receipts.iter().filter(|r| !r.status()).count();
        assert_eq!(failed, 0, "{what}: {failed} transactions reverted");
        took
    }

    fn phases(&self) -> Option<Phases> {
        Some(Phases::read(&self.metrics))
    }
}

/// `n` words for `contract` at random keys (as mapping keys are), each non-zero.
fn filler(contract: Address, n: u64) -> Vec<(B256, U256)> {
    (0..n).map(|i| (keccak256(format!("year/{contract}/{i}")), U256::from(i + 1))).collect()
}

/// Seeds the storage words a year leaves into the market and readings contracts of `datadir`.
fn seed_year(datadir: &Path, args: &Args) {
    let (_, _, readings, market) = market_addresses();
    let (add_market, add_readings) = year_words(args, count_words(datadir, readings));
    seed_words(
        datadir,
        vec![(market, filler(market, add_market)), (readings, filler(readings, add_readings))],
    );
}

/// anvil started from the same genesis (`--init`, the year's words in its `alloc`), mining only
/// when asked (`evm_mine`), so that a block holds what the node's block holds.
struct Anvil {
    chain: SingleChain,
    rpc: Rpc,
    nonces: HashMap<Address, u64>,
    pending: Vec<B256>,
    first_slot: u64,
    last_time: u64,
}

impl Anvil {
    /// Starts anvil; returns it with the market's and the readings' words and the start-up time.
    fn start(args: &Args, year: bool) -> (Self, u64, u64, f64) {
        let now = p2pe_node::blockchain::unix_now();
        let signer = SigningKey::from_bytes(&B256::repeat_byte(0xa1)).unwrap().address();
        let (mut genesis, start_time) = genesis(args, signer, now);
        let (_, _, readings, market) = market_addresses();
        let words = |g: &alloy_genesis::Genesis, a: &Address| {
            g.alloc.get(a).and_then(|acc| acc.storage.as_ref()).map_or(0, |s| s.len() as u64)
        };
        if year {
            let (add_market, add_readings) = year_words(args, words(&genesis, &readings));
            for (contract, n) in [(market, add_market), (readings, add_readings)] {
                let storage =
                    genesis.alloc.get_mut(&contract).expect("deployed").storage.get_or_insert_default();
                storage.extend(filler(contract, n).into_iter().map(|(k, v)| (k, B256::from(v))));
            }
        }
        let (chain, load_s) = SingleChain::anvil_from_genesis(&genesis);
        let rpc = Rpc::new(&chain.url);
        let first_slot = (p2pe_node::blockchain::unix_now() + 600 - start_time) / u64::from(SLOT) + 1;
        let (m, r) = (words(&genesis, &market), words(&genesis, &readings));
        let a = Self { chain, rpc, nonces: HashMap::new(), pending: vec![], first_slot, last_time: now };
        (a, m, r, load_s)
    }
}

impl Target for Anvil {
    fn first_slot(&self) -> u64 {
        self.first_slot
    }

    fn reading_time(&self) -> u64 {
        self.last_time
    }

    /// Sends the transactions (signed beforehand, untimed) in one JSON-RPC batch.
    fn submit(&mut self, txs: Vec<(PrivateKeySigner, Address, Vec<u8>)>) -> Duration {
        let raws: Vec<Vec<u8>> = txs
            .into_iter()
            .map(|(who, to, input)| {
                let nonce = self.nonces.entry(who.address()).or_insert(0);
                *nonce += 1;
                signed(&who, *nonce - 1, to, input)
            })
            .collect();
        let (hashes, took) = send_batch(&self.rpc, &raws);
        self.pending.extend(hashes);
        took
    }

    /// Mines one block (`evm_mine` at the next second); checks every receipt.
    fn seal(&mut self, expect: usize, what: &str) -> Duration {
        // One second per block, as on the node (anvil would give blocks mined within a second the
        // same timestamp, and a meter's second reading at the same time is refused).
        self.last_time += 1;
        let pending = std::mem::take(&mut self.pending);
        assert_eq!(pending.len(), expect, "{what}: the transactions sent for the block");
        mine_checked(&self.rpc, self.last_time, &pending, what)
    }
}

fn run_anvil(args: &Args, year: bool) -> Figures {
    let (mut a, market_words, readings_words, load_s) = Anvil::start(args, year);
    set_up(&mut a, args);
    let mut f =
        figures(if year { "anvil-year" } else { "anvil-fresh" }, market_words, readings_words, load_s);
    rounds(&mut a, args, &mut f);
    (f.rss_kb, f.hwm_kb) = a.chain.rss_kb();
    f
}

/// The genesis both chains start from: the market deployed, the participants registered with
/// their meters and credits, slot 0 a year before `now`. Returns it with the market's start.
fn genesis(args: &Args, signer: Address, now: u64) -> (alloy_genesis::Genesis, u64) {
    let params = GenesisParams {
        chain_id: CHAIN_ID,
        period: 1,
        gas_limit: 3_000_000_000,
        signers: vec![signer],
        timestamp: now - 10_000,
        ..Default::default()
    };
    let mut genesis = build_genesis(&params);
    let start_time = (now - YEAR) / u64::from(SLOT) * u64::from(SLOT);
    let mut cfg = MarketConfig::new(vec![operator().address()], Address::repeat_byte(0x99), start_time, SLOT);
    for i in 0..args.participants {
        cfg.participants.push(GenesisParticipant {
            account: participant(i).address(),
            prosumer: i.is_multiple_of(2),
            meter: Some(meter(i).address()),
            credits: credits(1_000),
        });
    }
    deploy_market(&mut genesis, &cfg).expect("the market deploys");
    (genesis, start_time)
}

fn open(datadir: &Path, args: &Args, year: bool) -> (Chain, u64, u64, f64) {
    let signer = SigningKey::from_bytes(&B256::repeat_byte(0xa1)).unwrap();
    let now = p2pe_node::blockchain::unix_now();
    let t0 = now - 10_000;
    let (genesis, start_time) = genesis(args, signer.address(), now);
    let json = serde_json::to_string(&genesis).unwrap();
    let spec = ChainSpec::from_json(&json).unwrap();
    let mut store = Store::open(datadir, None).unwrap();
    store.init_genesis(&spec, &json).unwrap();
    drop(store);
    let (_, _, readings, market) = market_addresses();
    let seeding = Instant::now();
    if year {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--seed-into")
            .arg(datadir)
            .args(["--participants", &args.participants.to_string(), "--slots", &args.slots.to_string()])
            .args(["--extra-market-words", &args.extra_market_words.to_string()])
            .args(args.in_memory.then_some("--in-memory"))
            .status()
            .unwrap();
        assert!(status.success(), "seeding failed: {status}");
    }
    let seed_s = seeding.elapsed().as_secs_f64();
    let store = Store::open(datadir, Some(128)).unwrap();
    let pool = PoolConfig { max_per_sender: 10_000, max_total: 1_000_000, ..PoolConfig::default() };
    let opts = ChainOptions { read_connections: 1, ..Default::default() };
    let chain = Blockchain::open(spec, store, Arc::new(TxPool::new(pool)), &opts).unwrap();
    let next_time = t0 + 1;
    // The first slot whose gate is still open at the bench's blocks, with room for them.
    let first_slot = (next_time + 600 - start_time) / u64::from(SLOT) + 1;
    let metrics = p2pe_node::metrics::install_in_process().expect("the process's metrics recorder");
    let c = Chain { chain, metrics, signer, next_time, first_slot };
    (c, count_words(datadir, market), count_words(datadir, readings), seed_s)
}

/// Opens the slots; every participant deposits credits (bids escrow their price, asks the
/// imbalance penalty).
fn set_up(c: &mut dyn Target, args: &Args) {
    let (_, token, _, market) = market_addresses();
    let mut txs = Vec::new();
    for r in 0..2 * args.rounds as u64 {
        let open = energy_market::EnergyMarket::openSlotCall { slot: c.first_slot() + r }.abi_encode();
        txs.push((operator(), market, open));
    }
    c.submit(txs);
    c.seal(2 * args.rounds, "openSlot");
    let mut txs = Vec::new();
    for i in 0..args.participants {
        let approve =
            credit_token::CreditToken::approveCall { spender: market, value: credits(100) }.abi_encode();
        txs.push((participant(i), token, approve));
    }
    let n = txs.len();
    c.submit(txs);
    c.seal(n, "approve");
    let mut txs = Vec::new();
    for i in 0..args.participants {
        let deposit = energy_market::EnergyMarket::depositCall { amount: credits(100) }.abi_encode();
        txs.push((participant(i), market, deposit));
    }
    c.submit(txs);
    c.seal(n, "deposit");
}

fn order(i: usize, slot: u64, salt: usize) -> (PrivateKeySigner, Address, Vec<u8>) {
    let (_, _, _, market) = market_addresses();
    let energy_wh = 100 + ((i * 37 + salt) % 900) as u32;
    let price = milli(80 + ((i * 13 + salt) % 221) as u64);
    let input = if i.is_multiple_of(2) {
        energy_market::EnergyMarket::placeAskCall { slot, energyWh: energy_wh, pricePerKWh: price }
            .abi_encode()
    } else {
        energy_market::EnergyMarket::placeBidCall { slot, energyWh: energy_wh, pricePerKWh: price }
            .abi_encode()
    };
    (participant(i), market, input)
}

/// The timed rounds: a block of one order per participant, a block of one reading per meter, a
/// block of a single order.
fn rounds(c: &mut dyn Target, args: &Args, f: &mut Figures) {
    let (_, _, readings, _) = market_addresses();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for r in 0..args.rounds {
        let slot = c.first_slot() + r as u64;
        let orders = (0..args.participants).map(|i| order(i, slot, r)).collect();
        f.submit_orders_ms.push(ms(c.submit(orders)));
        let before = c.phases();
        f.seal_orders_ms.push(ms(c.seal(args.participants, "orders")));
        f.orders_phases.extend(before.zip(c.phases()).map(|(a, b)| b.since(a)));
        let timestamp = c.reading_time();
        let reads = (0..args.participants)
            .map(|i| {
                let wh = (r as u64 + 1) * 1_000 + i as u64;
                let call = meter_readings::MeterReadings::submitReadingCall {
                    importWh: wh,
                    exportWh: wh / 2,
                    timestamp,
                };
                (meter(i), readings, call.abi_encode())
            })
            .collect();
        c.submit(reads);
        let before = c.phases();
        f.seal_readings_ms.push(ms(c.seal(args.participants, "readings")));
        f.readings_phases.extend(before.zip(c.phases()).map(|(a, b)| b.since(a)));
        c.submit(vec![order(r, c.first_slot() + (args.rounds + r) as u64, 7)]);
        f.seal_single_ms.push(ms(c.seal(1, "single order")));
    }
}

fn figures(variant: &str, market_words: u64, readings_words: u64, seed_s: f64) -> Figures {
    Figures {
        variant: variant.into(),
        market_words,
        readings_words,
        seed_s,
        submit_orders_ms: vec![],
        seal_orders_ms: vec![],
        seal_readings_ms: vec![],
        seal_single_ms: vec![],
        orders_phases: vec![],
        readings_phases: vec![],
        rss_kb: 0,
        hwm_kb: 0,
        disk_bytes: 0,
        orders_root_ms: None,
        readings_root_ms: None,
    }
}

fn run_variant(args: &Args, year: bool) -> Figures {
    let dir = tempfile::Builder::new().prefix("p2pe-yearbench-").tempdir().unwrap();
    let (mut c, market_words, readings_words, seed_s) = open(dir.path(), args, year);
    set_up(&mut c, args);
    let mut f = figures(if year { "year" } else { "fresh" }, market_words, readings_words, seed_s);
    rounds(&mut c, args, &mut f);
    (f.rss_kb, f.hwm_kb) = rss_kb();
    // The database with its write-ahead log copied in and emptied, as the node leaves it when it
    // stops (`Blockchain::close`): what stays on disk.
    let head = c.chain.head_number();
    c.chain.close().expect("the write-ahead log emptied into chain.sqlite");
    drop(c);
    f.disk_bytes = dir_bytes(dir.path());
    if args.in_memory {
        roots_in_memory(dir.path(), head, args.rounds, &mut f);
    }
    f
}

/// `--in-memory`: the state root of the keys the last round's orders block (`head - 2`) and
/// readings block (`head - 1`) changed (read from their undo records), each given a new value on
/// the head's state as the next block of its kind would, on the stored tries and on a copy of the
/// state in memory (each checked to give the same root).
fn roots_in_memory(dir: &Path, head: u64, rounds: usize, f: &mut Figures) {
    let store = Store::open(dir, Some(128)).unwrap();
    let start = Instant::now();
    let memory = p2pe_node::storage::trie::MemoryState::load(store.connection()).unwrap();
    eprintln!(
        "  {} storage words copied into memory in {:.1} s",
        memory.storage_words(),
        start.elapsed().as_secs_f64()
    );
    let ms = |v: Vec<Duration>| median(&v.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>());
    for (number, out) in [(head - 2, &mut f.orders_root_ms), (head - 1, &mut f.readings_root_ms)] {
        let undo = p2pe_node::storage::undo_block(store.connection(), number).unwrap().expect("kept history");
        let mut changes = p2pe_node::state::StateChanges::default();
        for (address, slot, _) in &undo.storage {
            let value = U256::from_be_bytes(keccak256(slot.to_be_bytes::<32>()).0) | U256::from(1);
            changes.storage.entry(*address).or_default().insert(*slot, value);
        }
        for (address, old) in &undo.accounts {
            if let Some(old) = old {
                changes.accounts.insert(*address, Some(AccountInfo { nonce: old.nonce + 1, ..*old }));
            }
        }
        let (tables, in_memory) =
            p2pe_tests::seed::roots_on_tables_and_in_memory(&store, &memory, &changes, rounds);
        *out = Some((ms(tables), ms(in_memory)));
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn main() {
    let args = Args::parse();
    if let Some(dir) = &args.seed_into {
        seed_year(dir, &args);
        return;
    }
    if let Some(v) = &args.variant {
        let f = run_variant(&args, v == "year");
        println!("{}", serde_json::to_string(&f).unwrap());
        return;
    }
    let mut rows = Vec::new();
    for v in ["fresh", "year"] {
        eprintln!("running the {v} chain ({} participants)", args.participants);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--variant", v, "--participants", &args.participants.to_string()])
            .args(["--slots", &args.slots.to_string(), "--rounds", &args.rounds.to_string()])
            .args(["--extra-market-words", &args.extra_market_words.to_string()])
            .args(args.in_memory.then_some("--in-memory"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "the {v} chain failed: {}", out.status);
        let f: Figures = serde_json::from_slice(out.stdout.trim_ascii()).expect("the child's figures");
        eprintln!("  {f:?}");
        rows.push(f);
    }
    let anvil = if args.no_anvil {
        None
    } else {
        let mut peer = Vec::new();
        for year in [false, true] {
            eprintln!("running anvil, {}", if year { "a year on" } else { "fresh" });
            let f = run_anvil(&args, year);
            eprintln!("  {f:?}");
            peer.push(f);
        }
        Some(peer)
    };
    print_table(&args, &rows, anvil.as_deref());
}

/// Prints one table row: a label, a unit and each chain's value.
type Row<'a> = dyn Fn(String, &str, &dyn Fn(&Figures) -> Option<f64>) + 'a;
/// One phase of [`Phases`].
type Part = fn(&Phases) -> f64;

/// The node's phase timers of one kind of block, a row each (median over the rounds; "–" for
/// anvil). The rows written are the commit without SQLite's COMMIT; "other" is the rest of the
/// seal (building the block, signing it, publishing the head).
fn phase_rows(row: &Row<'_>, block: &str, phases: &dyn Fn(&Figures) -> &Vec<Phases>) {
    let parts: [(&str, Part); 5] = [
        ("execution", |p| p.execute),
        ("state root", |p| p.root),
        ("rows written", |p| p.rows),
        ("SQLite COMMIT (log written, fsynced)", |p| p.commit),
        ("other (build, sign, publish)", |p| p.seal - p.execute - p.root - p.rows - p.commit),
    ];
    for (name, part) in parts {
        row(format!("of the {block} block: {name}"), "ms", &|f| {
            let v: Vec<f64> = phases(f).iter().map(part).collect();
            (!v.is_empty()).then(|| median(&v))
        });
    }
}

/// One table: the node fresh and a year on, and anvil the same when it ran.
fn print_table(args: &Args, node: &[Figures], anvil: Option<&[Figures]>) {
    let n = args.participants;
    let chains: Vec<&Figures> = node.iter().chain(anvil.into_iter().flatten()).collect();
    let mut head = format!(
        "| What (median of {} rounds) | node, fresh | node, {} | node: ratio |",
        args.rounds,
        second_chain(args)
    );
    if anvil.is_some() {
        head += &format!(" anvil, fresh | anvil, {} | anvil: ratio |", second_chain(args));
    }
    println!("{head}");
    println!("|---|---|---|---|{}", if anvil.is_some() { "---|---|---|" } else { "" });
    let words: Vec<String> =
        chains.iter().map(|f| format!("{} / {}", f.market_words, f.readings_words)).collect();
    let cells = |w: &[String]| w.chunks(2).map(|p| format!(" {} | {} | |", p[0], p[1])).collect::<String>();
    println!("| storage words: market / meter readings |{}", cells(&words));
    let row = |what: String, unit: &str, value: &dyn Fn(&Figures) -> Option<f64>| {
        let mut line = format!("| {what} |");
        for pair in chains.chunks(2) {
            match (value(pair[0]), value(pair[1])) {
                (Some(a), Some(b)) => line += &format!(" {a:.1} {unit} | {b:.1} {unit} | {:.2}x |", b / a),
                _ => line += " – | – | |",
            }
        }
        println!("{line}");
    };
    let m = |v: &Vec<f64>| Some(median(v));
    row(format!("send {n} orders (node: validate and pool; anvil: one JSON-RPC batch)"), "ms", &|f| {
        m(&f.submit_orders_ms)
    });
    row(format!("seal a block of {n} orders (anvil: evm_mine)"), "ms", &|f| m(&f.seal_orders_ms));
    phase_rows(&row, "orders", &|f| &f.orders_phases);
    row(format!("order latency without the block period ({n} orders: send + seal)"), "ms", &|f| {
        Some(median(&f.submit_orders_ms) + median(&f.seal_orders_ms))
    });
    row(format!("seal a block of {n} meter readings"), "ms", &|f| m(&f.seal_readings_ms));
    phase_rows(&row, "readings", &|f| &f.readings_phases);
    row("seal a block of 1 order".into(), "ms", &|f| m(&f.seal_single_ms));
    if node.iter().any(|f| f.orders_root_ms.is_some()) {
        type Root = fn(&Figures) -> Option<(f64, f64)>;
        let roots: [(&str, Root); 2] =
            [("orders", |f| f.orders_root_ms), ("readings", |f| f.readings_root_ms)];
        for (block, root) in roots {
            let label = format!("root of the {block} block's keys again, stored tries (warm cache)");
            row(label, "ms", &|f| root(f).map(|r| r.0));
            let label = format!("root of the {block} block's keys, the same walk in memory");
            row(label, "ms", &|f| root(f).map(|r| r.1));
        }
    }
    row("RSS after the blocks (VmRSS)".into(), "MB", &|f| Some(f.rss_kb as f64 / 1024.0));
    row("peak RSS (VmHWM)".into(), "MB", &|f| Some(f.hwm_kb as f64 / 1024.0));
    row("disk (data directory, closed; anvil keeps state in memory)".into(), "MB", &|f| {
        (f.disk_bytes > 0).then_some(f.disk_bytes as f64 / 1e6)
    });
    let startup: Vec<String> = chains.iter().map(|f| format!("{:.1} s", f.seed_s)).collect();
    println!("| start-up: seeding the words (node), loading the genesis (anvil) |{}", cells(&startup));
}
