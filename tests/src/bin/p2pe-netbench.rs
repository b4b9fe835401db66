//! `p2pe-netbench`: the node-core bench's load generator and workloads against a multi-signer
//! network (issue 5), with inclusion latency and follower lag; and the time a fresh follower
//! takes to sync a long chain. See BENCHMARKS.md, "3-signer network".

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::U256;
use clap::Parser;
use p2pe_tests::harness::{npm_tool, workspace_root, Rpc};
use p2pe_tests::loadgen::{self, keys, percentile, txs::Fees, Config, LoadArgs, Report, Verify, Workload};
use p2pe_tests::net::{block_id, seed_chain, time_follower_sync, wait_for, Testnet};
use p2pe_tests::single::SingleChain;
use serde::Serialize;
use serde_json::json;

/// Load generator against a local Clique network of real `p2pe-node` processes.
///
/// For every round, target and workload a fresh chain is started, `p2pe-loadgen`'s run (same
/// setup, pre-signing, batches and inclusion check) is driven through the first node's
/// JSON-RPC, and end-to-end tx/s and inclusion latency are reported. Targets:
///
///   net    `p2pe-node testnet --generate-only` (--signers, --followers, 1 s blocks), one
///          process per node; load goes to signer-0. The follower's lag behind the signers'
///          head is sampled every --poll-ms: in blocks (best signer head - follower head, per
///          sample) and in seconds (per block: first seen at the follower - first seen at any
///          signer).
///   dev    `p2pe-node dev --period 1 --gas-limit 3000000000` (the single-node bench).
///   anvil  `anvil --base-fee 0 --gas-price 0 --block-time 1 --gas-limit 3000000000`.
///
/// Then (unless --sync-blocks 0) a fresh 3-signer network gets --sync-blocks blocks (sealed
/// in-process by the signers' keys, see `p2pe_tests::net::seed_chain`) and a fresh follower's
/// sync of all of them over libp2p is timed.
#[derive(Parser, Debug)]
#[command(name = "p2pe-netbench", verbatim_doc_comment)]
struct Cli {
    /// Targets, comma-separated: net, dev, anvil.
    #[arg(long, value_delimiter = ',', default_value = "net")]
    targets: Vec<String>,
    /// Workloads, comma-separated: transfer, contract.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "transfer,contract")]
    workloads: Vec<Workload>,
    /// Rounds (each a fresh chain per target and workload); medians are reported.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    #[command(flatten)]
    load: LoadArgs,
    /// Signers of the `net` target.
    #[arg(long, default_value_t = 3)]
    signers: usize,
    /// Followers of the `net` target (lag is measured on the first).
    #[arg(long, default_value_t = 1)]
    followers: usize,
    /// Blocks a fresh follower syncs at the end (0: skip).
    #[arg(long, default_value_t = 10_000)]
    sync_blocks: u64,
    /// Only the follower sync measurement.
    #[arg(long)]
    sync_only: bool,
    /// p2pe-node binary (default: target/release/p2pe-node).
    #[arg(long, env = "P2PE_NODE_BIN")]
    node_bin: Option<PathBuf>,
    /// anvil binary (default: the one `npm ci --prefix tests` installs).
    #[arg(long, env = "ANVIL")]
    anvil: Option<PathBuf>,
    /// Also print each run as one JSON line.
    #[arg(long)]
    json: bool,
    /// Keep the network nodes' logs of every run in this directory
    /// (`<target>-<workload>-<round>/<node>.log`; the level is P2PE_LOG's, `warn` by default).
    #[arg(long)]
    logs: Option<PathBuf>,
}

/// A follower's lag during one run.
#[derive(Debug, Clone, Default, Serialize)]
struct Lag {
    /// Head samples taken.
    samples: usize,
    /// Blocks behind, median / 99th percentile / largest over the samples.
    blocks_p50: f64,
    blocks_p99: f64,
    blocks_max: f64,
    /// Blocks compared for the time lag.
    blocks_timed: usize,
    /// Seconds behind per block, median / 99th percentile / largest.
    secs_p50: f64,
    secs_p99: f64,
    secs_max: f64,
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
struct RunResult {
    target: String,
    round: usize,
    report: Report,
    lag: Option<Lag>,
    /// Reorganisations the network's nodes logged during the run, all nodes together (one fork
    /// is one per node that had taken the losing block), with the deepest.
    node_reorgs: Option<(usize, u64)>,
    /// Compact blocks the network's nodes received: rebuilt from the pool, fetched, not found.
    compact: Option<[usize; 3]>,
}

/// A chain under test: its processes and where to send the load.
enum Chain {
    /// A network; the directory is removed when dropped (after the processes).
    Net { net: Box<Testnet>, _dir: tempfile::TempDir },
    /// One process.
    Single(SingleChain),
}

impl Chain {
    fn url(&self) -> String {
        match self {
            Chain::Net { net, .. } => net.url(0),
            Chain::Single(c) => c.url.clone(),
        }
    }
}

fn start_chain(cli: &Cli, target: &str, node_bin: &Path) -> Chain {
    match target {
        "net" => {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut net = Testnet::generate(node_bin, &dir.path().join("net"), cli.signers, cli.followers, 1);
            // Every reorganisation is logged (at info), and how each compact block's body was
            // found (at debug), whatever else P2PE_LOG asks for.
            let base = std::env::var("P2PE_LOG").unwrap_or_else(|_| "warn".into());
            net.set_log(&format!(
                "{base},p2pe_node::blockchain::reorg=info,p2pe_node::network::compact=debug"
            ));
            let total = cli.signers + cli.followers;
            for i in 0..total {
                net.start(i);
            }
            wait_for("every node to have a peer", Duration::from_secs(60), || {
                (0..total).all(|i| net.peers(i) >= 1)
            });
            wait_for("blocks on every node", Duration::from_secs(60), || {
                (0..total).all(|i| net.head(i) >= 2)
            });
            Chain::Net { net: Box::new(net), _dir: dir }
        }
        "dev" => Chain::Single(SingleChain::dev(node_bin, &["--period", "1", "--gas-limit", "3000000000"])),
        "anvil" => {
            let anvil = cli.anvil.clone().unwrap_or_else(|| npm_tool("anvil"));
            let args =
                ["--base-fee", "0", "--gas-price", "0", "--block-time", "1", "--gas-limit", "3000000000"];
            Chain::Single(SingleChain::anvil(&anvil, &args))
        }
        other => panic!("unknown target {other:?} (net, dev or anvil)"),
    }
}

/// Samples every node's head until `stop`, for the follower lag.
struct LagSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Lag>,
}

impl LagSampler {
    fn start(signer_urls: Vec<String>, follower_url: String, poll: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let signers: Vec<Rpc> = signer_urls.iter().map(|u| Rpc::new(u)).collect();
            let follower = Rpc::new(&follower_url);
            let mut behind: Vec<f64> = Vec::new();
            // Block number -> first seen (any signer, follower).
            let mut first_signer: std::collections::BTreeMap<u64, Instant> = Default::default();
            let mut first_follower: std::collections::BTreeMap<u64, Instant> = Default::default();
            let (mut top_s, mut top_f) = (None::<u64>, None::<u64>);
            let record =
                |map: &mut std::collections::BTreeMap<u64, Instant>, top: &mut Option<u64>, head: u64| {
                    let now = Instant::now();
                    let from = top.map_or(head, |t| t + 1);
                    for n in from..=head {
                        map.insert(n, now);
                    }
                    *top = Some(top.map_or(head, |t| t.max(head)));
                };
            while !flag.load(Ordering::Relaxed) {
                let heads: Vec<u64> = signers.iter().filter_map(head_of).collect();
                if let (Some(&best), Some(f)) = (heads.iter().max(), head_of(&follower)) {
                    record(&mut first_signer, &mut top_s, best);
                    record(&mut first_follower, &mut top_f, f);
                    behind.push(best.saturating_sub(f) as f64);
                }
                std::thread::sleep(poll);
            }
            // The first sample only sets the starting heads.
            let first = first_signer.keys().next().copied().unwrap_or(0);
            let mut secs: Vec<f64> = first_signer
                .iter()
                .filter(|(n, _)| **n > first)
                .filter_map(|(n, s)| {
                    first_follower.get(n).map(|f| f.saturating_duration_since(*s).as_secs_f64())
                })
                .collect();
            behind.sort_by(f64::total_cmp);
            secs.sort_by(f64::total_cmp);
            Lag {
                samples: behind.len(),
                blocks_p50: percentile(&behind, 0.5),
                blocks_p99: percentile(&behind, 0.99),
                blocks_max: behind.last().copied().unwrap_or(0.0),
                blocks_timed: secs.len(),
                secs_p50: percentile(&secs, 0.5),
                secs_p99: percentile(&secs, 0.99),
                secs_max: secs.last().copied().unwrap_or(0.0),
            }
        });
        Self { stop, thread }
    }

    fn finish(self) -> Lag {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("lag sampler")
    }
}

fn head_of(rpc: &Rpc) -> Option<u64> {
    rpc.try_call("eth_blockNumber", json!([]))
        .ok()
        .and_then(|v| v.as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()))
}

/// `confirmations`: blocks on top of the run's last block before its receipts are checked
/// (2 on the network, where the newest blocks can still be replaced; 0 on one node).
fn loadgen_config(cli: &Cli, url: String, workload: Workload, confirmations: u64) -> Config {
    Config {
        rpc: url,
        workload,
        txs: cli.load.txs,
        senders: cli.load.senders,
        batch: cli.load.batch,
        concurrency: cli.load.concurrency,
        mnemonic: keys::DEFAULT_MNEMONIC.to_string(),
        sender_index_base: keys::DEFAULT_SENDER_INDEX_BASE,
        fund_wei: U256::from(10u64).pow(U256::from(18)),
        fees: Fees { max_fee_per_gas: 0, max_priority_fee_per_gas: 0 },
        poll_interval: cli.load.poll_interval(),
        timeout: Duration::from_secs(600),
        request_timeout: Duration::from_secs(120),
        verify: Verify::Sample(300),
        confirmations,
    }
}

fn run_one(
    cli: &Cli,
    rt: &tokio::runtime::Runtime,
    node_bin: &Path,
    target: &str,
    workload: Workload,
    round: usize,
) -> RunResult {
    let chain = start_chain(cli, target, node_bin);
    let sampler = match &chain {
        Chain::Net { net, .. } if net.nodes.len() > net.signers => Some(LagSampler::start(
            (0..net.signers).map(|i| net.url(i)).collect(),
            net.url(net.signers),
            cli.load.poll_interval(),
        )),
        _ => None,
    };
    let report = rt
        .block_on(loadgen::run(&loadgen_config(
            cli,
            chain.url(),
            workload,
            if matches!(chain, Chain::Net { .. }) { 2 } else { 0 },
        )))
        .unwrap_or_else(|e| panic!("{target} {workload}: load generator failed: {e}"));
    let lag = sampler.map(|s| s.finish());
    if let Chain::Net { net, .. } = &chain {
        // Every node ends on the same chain as the one that took the load.
        let top = net.head(0);
        for i in 1..net.nodes.len() {
            wait_for(&format!("{} to reach block {top}", net.name(i)), Duration::from_secs(60), || {
                net.head(i) >= top
            });
            assert_eq!(
                block_id(&net.rpc(i), top),
                block_id(&net.rpc(0), top),
                "{} agrees on block {top}",
                net.name(i)
            );
        }
    }
    if let (Chain::Net { net, .. }, Some(logs)) = (&chain, &cli.logs) {
        keep_logs(net, &logs.join(format!("{target}-{workload}-{round}")));
    }
    let (node_reorgs, compact) = match &chain {
        Chain::Net { net, .. } => (Some(logged_reorgs(net)), Some(logged_compact(net))),
        Chain::Single(_) => (None, None),
    };
    assert!(report.ok, "{target} {workload}: not every transaction was accepted and mined: {report:?}");
    let result = RunResult { target: target.to_string(), round, report, lag, node_reorgs, compact };
    print_run(&result);
    if cli.json {
        println!("{}", serde_json::to_string(&result).expect("serialise"));
    }
    result
}

/// How many reorganisations the nodes of `net` logged, and the deepest.
fn logged_reorgs(net: &Testnet) -> (usize, u64) {
    let lines: Vec<String> = (0..net.nodes.len()).flat_map(|i| net.log_lines(i, "reorganised")).collect();
    let depth = |l: &String| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix("depth="))
            .and_then(|d| d.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (lines.len(), lines.iter().map(depth).max().unwrap_or(0))
}

/// How the nodes of `net` found the bodies of the compact blocks they received: rebuilt from
/// the pool, fetched from the sender, not found.
fn logged_compact(net: &Testnet) -> [usize; 3] {
    let count = |needle: &str| (0..net.nodes.len()).map(|i| net.log_lines(i, needle).len()).sum();
    [
        count("compact block rebuilt from the pool"),
        count("compact block's body fetched"),
        count("compact block not imported"),
    ]
}

/// Copies every node's log of `net` into `dir`.
fn keep_logs(net: &Testnet, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    for i in 0..net.nodes.len() {
        let to = dir.join(format!("{}.log", net.name(i)));
        if let Err(e) = std::fs::copy(net.log_path(i), &to) {
            eprintln!("cannot keep {}'s log in {}: {e}", net.name(i), to.display());
        }
    }
}

fn print_run(r: &RunResult) {
    let rep = &r.report;
    print!(
        "{:<6} {:<9} round {}: {:>6.0} tx/s end to end ({:.2} s, {} blocks, {} reorgs seen, {} receipts late), inclusion p50 {:.2} s p99 {:.2} s max {:.2} s",
        r.target,
        rep.workload,
        r.round,
        rep.tps,
        rep.elapsed_secs,
        rep.blocks_used,
        rep.reorgs,
        rep.receipts_late,
        rep.latency_p50_secs,
        rep.latency_p99_secs,
        rep.latency_max_secs
    );
    if let Some((n, depth)) = r.node_reorgs {
        print!("; {n} reorganisations logged by the nodes (deepest {depth})");
    }
    if let Some([rebuilt, fetched, missing]) = r.compact {
        print!("; compact blocks received: {rebuilt} rebuilt from the pool, {fetched} fetched, {missing} not found");
    }
    if let Some(l) = &r.lag {
        print!(
            "; follower lag blocks p50 {} p99 {} max {} ({} samples), seconds p50 {:.2} p99 {:.2} max {:.2} ({} blocks)",
            l.blocks_p50, l.blocks_p99, l.blocks_max, l.samples, l.secs_p50, l.secs_p99, l.secs_max, l.blocks_timed
        );
    }
    println!();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[(v.len() - 1) / 2]
    }
}

fn summary(cli: &Cli, results: &[RunResult]) {
    println!("\nmedians over {} round(s):", cli.rounds);
    println!("| target | workload | tx/s | inclusion p50 | inclusion p99 | follower lag blocks p50 / p99 / max | follower lag s p50 / p99 / max | reorganisations logged by the nodes [rounds] |");
    println!("|---|---|---|---|---|---|---|---|");
    for target in &cli.targets {
        for w in &cli.workloads {
            let runs: Vec<&RunResult> =
                results.iter().filter(|r| &r.target == target && r.report.workload == *w).collect();
            if runs.is_empty() {
                continue;
            }
            let m = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
            let tps: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.report.tps)).collect();
            let lag = if runs.iter().all(|r| r.lag.is_some()) {
                let l = |f: &dyn Fn(&Lag) -> f64| m(&|r: &RunResult| f(r.lag.as_ref().expect("lag")));
                (
                    format!("{} / {} / {}", l(&|x| x.blocks_p50), l(&|x| x.blocks_p99), l(&|x| x.blocks_max)),
                    format!(
                        "{:.2} / {:.2} / {:.2}",
                        l(&|x| x.secs_p50),
                        l(&|x| x.secs_p99),
                        l(&|x| x.secs_max)
                    ),
                )
            } else {
                ("-".into(), "-".into())
            };
            let reorgs = if runs.iter().all(|r| r.node_reorgs.is_some()) {
                let each: Vec<String> =
                    runs.iter().map(|r| r.node_reorgs.expect("reorgs").0.to_string()).collect();
                format!("[{}]", each.join(" "))
            } else {
                "-".into()
            };
            println!(
                "| {target} | {w} | {:.0} [{}] | {:.2} s | {:.2} s | {} | {} | {reorgs} |",
                m(&|r| r.report.tps),
                tps.join(" "),
                m(&|r| r.report.latency_p50_secs),
                m(&|r| r.report.latency_p99_secs),
                lag.0,
                lag.1
            );
        }
    }
}

fn sync_bench(cli: &Cli, node_bin: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut net = Testnet::generate(node_bin, &dir.path().join("net"), cli.signers, 1, 1);
    let seeded = seed_chain(&net, cli.sync_blocks, 10);
    println!(
        "sync: seeded {} blocks ({} transactions) into {} signers in {:.1} s",
        seeded.head,
        seeded.txs,
        cli.signers,
        seeded.build.as_secs_f64()
    );
    for i in 0..cli.signers {
        net.start(i);
    }
    wait_for("the signers to peer", Duration::from_secs(60), || {
        (0..cli.signers).all(|i| net.peers(i) + 1 >= cli.signers as u64)
    });
    let follower = cli.signers;
    let run = time_follower_sync(&mut net, follower, seeded.head, Duration::from_secs(1800));
    let ours = block_id(&net.rpc(follower), seeded.head);
    assert_eq!(
        ours,
        (seeded.head_hash.to_string(), seeded.state_root.to_string()),
        "the follower's block {} is the signers'",
        seeded.head
    );
    println!(
        "sync: a fresh follower synced {} blocks ({} transactions) from {} signers over libp2p in {:.1} s = {:.0} blocks/s (from process start; hash and state root of block {} match)",
        run.blocks,
        seeded.txs,
        cli.signers,
        run.elapsed.as_secs_f64(),
        run.blocks_per_sec(),
        seeded.head
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let node_bin = cli.node_bin.clone().unwrap_or_else(|| workspace_root().join("target/release/p2pe-node"));
    if !node_bin.exists() {
        eprintln!(
            "p2pe-netbench: {} not found: run `cargo build --release -p p2pe-node` or pass --node-bin",
            node_bin.display()
        );
        return ExitCode::from(2);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("p2pe-netbench: node {}; load average before: {}", node_bin.display(), load.trim());
    if !cli.sync_only {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
        let mut results = Vec::new();
        for round in 1..=cli.rounds {
            for target in &cli.targets {
                for &w in &cli.workloads {
                    results.push(run_one(&cli, &rt, &node_bin, target, w, round));
                }
            }
        }
        summary(&cli, &results);
    }
    if cli.sync_blocks > 0 {
        sync_bench(&cli, &node_bin);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
    ExitCode::SUCCESS
}
