//! `p2pe-lookupbench`: single-transaction lookups in a large block against a small one
//! (issue 15, part 3), `p2pe-node dev` and anvil side by side. See BENCHMARKS.md, "Lookups
//! independent of block size".

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use alloy_primitives::U256;
use clap::Parser;
use p2pe_tests::harness::{hex_u64, node_bin, npm_tool, Rpc};
use p2pe_tests::loadgen::{self, keys, percentile, txs::Fees, Config, Verify, Workload};
use p2pe_tests::single::SingleChain;
use serde_json::{json, Value};

/// Times `eth_getTransactionReceipt`, `eth_getTransactionByHash` and
/// `eth_getTransactionByBlockNumberAndIndex` of transactions in the largest block a burst of
/// --txs transfers made, and of the one transaction of a small block, and
/// `eth_getBlockByNumber(number, false)` of both blocks, on each target:
///
///   node   `p2pe-node dev --period P --gas-limit 3000000000` (the newest build in target/)
///   anvil  `anvil --base-fee 0 --gas-price 0 --block-time P --gas-limit 3000000000`
///
/// The period P is long enough for the whole burst to arrive before the next block, so the
/// burst lands in one or two blocks. Each call is sent --calls times over one kept-alive HTTP
/// connection, one after the other; medians and 99th percentiles are printed in ms.
#[derive(Parser, Debug)]
#[command(name = "p2pe-lookupbench", verbatim_doc_comment)]
struct Cli {
    /// Targets, comma-separated: node, anvil.
    #[arg(long, value_delimiter = ',', default_value = "node,anvil")]
    targets: Vec<String>,
    /// Transfers in the burst.
    #[arg(long, default_value_t = 30_000)]
    txs: usize,
    /// Senders of the burst.
    #[arg(long, default_value_t = 300)]
    senders: usize,
    /// Block period (seconds) of both targets.
    #[arg(long, default_value_t = 60)]
    period: u64,
    /// Calls timed per method and block.
    #[arg(long, default_value_t = 300)]
    calls: usize,
    /// anvil binary (default: the one `npm ci --prefix tests` installs).
    #[arg(long)]
    anvil: Option<PathBuf>,
}

/// Median and 99th percentile of one method in one block, in ms.
#[derive(Debug, Clone, Copy)]
struct Timing {
    p50: f64,
    p99: f64,
}

/// The lookups timed; the last reads the whole block (with hashes), as a client polling the
/// head does: the same block asked for again and again.
const METHODS: [&str; 4] = [
    "eth_getTransactionReceipt",
    "eth_getTransactionByHash",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getBlockByNumber",
];

fn burst(rt: &tokio::runtime::Runtime, url: &str, txs: usize, senders: usize) -> loadgen::Report {
    let cfg = Config {
        rpc: url.to_string(),
        workload: Workload::Transfer,
        txs,
        senders,
        batch: 500,
        concurrency: 2,
        mnemonic: keys::DEFAULT_MNEMONIC.to_string(),
        sender_index_base: keys::DEFAULT_SENDER_INDEX_BASE,
        fund_wei: U256::from(10u64).pow(U256::from(18)),
        fees: Fees { max_fee_per_gas: 0, max_priority_fee_per_gas: 0 },
        poll_interval: Duration::from_millis(200),
        timeout: Duration::from_secs(1200),
        request_timeout: Duration::from_secs(300),
        verify: Verify::Sample(10),
        confirmations: 0,
    };
    let report =
        rt.block_on(loadgen::run(&cfg)).unwrap_or_else(|e| panic!("{url}: load generator failed: {e}"));
    assert!(report.ok, "{url}: not every transaction was accepted and mined: {report:?}");
    report
}

/// The block in `from..=to` with the most transactions, and its hashes.
fn largest_block(rpc: &Rpc, from: u64, to: u64) -> (u64, Vec<Value>) {
    (from..=to)
        .map(|n| {
            let b = rpc.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]));
            (n, b["transactions"].as_array().cloned().unwrap_or_default())
        })
        .max_by_key(|(_, t)| t.len())
        .expect("a block")
}

/// Times each method on `calls` transactions of `hashes` (cycling), in block `number`.
fn time_methods(rpc: &Rpc, number: u64, hashes: &[Value], calls: usize) -> Vec<Timing> {
    METHODS
        .iter()
        .map(|method| {
            let mut ms: Vec<f64> = (0..calls)
                .map(|i| {
                    let k = (i * 7919) % hashes.len();
                    let params = match *method {
                        "eth_getTransactionByBlockNumberAndIndex" => {
                            json!([format!("{number:#x}"), format!("{k:#x}")])
                        }
                        "eth_getBlockByNumber" => json!([format!("{number:#x}"), false]),
                        _ => json!([hashes[k]]),
                    };
                    let t = Instant::now();
                    let answer = rpc.call(method, params);
                    let took = t.elapsed().as_secs_f64() * 1e3;
                    assert!(!answer.is_null(), "{method} of a mined transaction answered null");
                    took
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            Timing { p50: percentile(&ms, 0.5), p99: percentile(&ms, 0.99) }
        })
        .collect()
}

/// One target's figures.
struct Figures {
    /// Transactions in the large block.
    size: usize,
    /// Per method, in the large block.
    large: Vec<Timing>,
    /// Per method, in the 1-transaction block.
    small: Vec<Timing>,
}

/// Starts `target`, makes its large and small blocks and times the lookups.
fn measure(cli: &Cli, rt: &tokio::runtime::Runtime, target: &str) -> Figures {
    let period = cli.period.to_string();
    let chain = match target {
        "node" => {
            SingleChain::dev(&node_bin(), &["--period", &period, "--gas-limit", "3000000000", "--no-keeper"])
        }
        "anvil" => {
            let anvil = cli.anvil.clone().unwrap_or_else(|| npm_tool("anvil"));
            let args =
                ["--base-fee", "0", "--gas-price", "0", "--block-time", &period, "--gas-limit", "3000000000"];
            SingleChain::anvil(&anvil, &args)
        }
        other => panic!("unknown target {other:?} (node or anvil)"),
    };
    let rpc = Rpc::new(&chain.url);
    eprintln!("[lookupbench] {target}: a burst of {} transfers", cli.txs);
    let big = burst(rt, &chain.url, cli.txs, cli.senders);
    let (big_n, big_hashes) = largest_block(&rpc, big.start_block + 1, big.last_block);
    eprintln!(
        "[lookupbench] {target}: block {big_n} holds {} transactions; one more transfer",
        big_hashes.len()
    );
    let small = burst(rt, &chain.url, 1, 1);
    let (small_n, small_hashes) = largest_block(&rpc, small.last_block, small.last_block);
    assert!(hex_u64(&rpc.call("eth_blockNumber", json!([]))) >= small_n);
    let large = time_methods(&rpc, big_n, &big_hashes, cli.calls);
    let small = time_methods(&rpc, small_n, &small_hashes, cli.calls);
    Figures { size: big_hashes.len(), large, small }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let results: Vec<(String, Figures)> =
        cli.targets.iter().map(|t| (t.clone(), measure(&cli, &rt, t))).collect();
    println!("| target | method | large block (txs) p50 / p99 ms | 1-tx block p50 / p99 ms | large / small (p50) |");
    println!("|---|---|---|---|---|");
    for (target, Figures { size, large, small }) in &results {
        for (i, m) in METHODS.iter().enumerate() {
            println!(
                "| {target} | {m} | ({size}) {:.2} / {:.2} | {:.2} / {:.2} | {:.2}× |",
                large[i].p50,
                large[i].p99,
                small[i].p50,
                small[i].p99,
                large[i].p50 / small[i].p50
            );
        }
    }
    if let (Some((_, node)), Some((_, anvil))) =
        (results.iter().find(|(t, _)| t == "node"), results.iter().find(|(t, _)| t == "anvil"))
    {
        for (i, m) in METHODS.iter().enumerate() {
            println!(
                "node/anvil {m} in the large block (p50): {:.2}×",
                node.large[i].p50 / anvil.large[i].p50
            );
        }
    }
    ExitCode::SUCCESS
}
