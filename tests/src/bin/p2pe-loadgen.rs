//! `p2pe-loadgen`: pre-signs transactions from many senders, sends them in
//! JSON-RPC batches and measures end-to-end throughput (first send to last
//! receipt). See `tests/bench/README.md`.

use std::process::ExitCode;
use std::time::Duration;

use alloy_primitives::U256;
use clap::Parser;
use p2pe_tests::loadgen::{self, keys, txs::Fees, Config, LoadArgs, Report, Verify, Workload};

/// Load generator for Ethereum JSON-RPC nodes (p2pe-node, anvil, ...).
///
/// Setup (not timed): reads the chain id, derives the sender accounts from
/// the mnemonic (indexes --sender-index-base, +1, ...), funds them from
/// account 0 of the same mnemonic and, for `--workload contract`, deploys a
/// tiny contract whose call writes a storage slot keyed by the caller and
/// emits an event.
///
/// Timed run: every transaction is signed (EIP-1559) and every batch body is
/// serialised before the clock starts. The clock runs from the first
/// eth_sendRawTransaction batch until the block holding the last transaction
/// of every sender is seen (eth_blockNumber + eth_getBlockByNumber). Then the
/// inclusion of every transaction is checked, and the receipts of a sample
/// (or of all, --verify-all) are checked for status 1.
///
/// Progress goes to stderr; the summary (or, with --json, one JSON line) to
/// stdout. Exits with status 1 when a transaction was rejected or failed, 2
/// on any other error.
#[derive(Parser, Debug)]
#[command(name = "p2pe-loadgen", version, verbatim_doc_comment)]
struct Cli {
    /// JSON-RPC HTTP endpoint of the node under test.
    #[arg(long, default_value = "http://127.0.0.1:8545", env = "P2PE_RPC")]
    rpc: String,

    /// Transactions to send: `transfer` = 1-wei transfers between senders,
    /// `contract` = calls that write one storage slot and emit one event.
    #[arg(long, value_enum, default_value_t = Workload::Transfer)]
    workload: Workload,

    #[command(flatten)]
    load: LoadArgs,

    /// BIP-39 mnemonic: account 0 funds the senders, the senders are derived
    /// at indexes --sender-index-base and up. Default: the public test
    /// mnemonic prefunded by anvil and `p2pe-node dev`.
    #[arg(long, default_value = keys::DEFAULT_MNEMONIC, env = "P2PE_FUNDER_MNEMONIC", hide_env_values = true, hide_default_value = true)]
    funder_mnemonic: String,

    /// Derivation index of the first sender (m/44'/60'/0'/0/INDEX).
    #[arg(long, default_value_t = keys::DEFAULT_SENDER_INDEX_BASE)]
    sender_index_base: u32,

    /// Wei given to each sender whose balance is below half of this.
    #[arg(long, default_value = "1000000000000000000")]
    fund_wei: U256,

    /// maxFeePerGas of every transaction, in wei.
    #[arg(long, default_value_t = 0)]
    max_fee: u128,

    /// maxPriorityFeePerGas of every transaction, in wei (≤ --max-fee).
    #[arg(long, default_value_t = 0)]
    priority_fee: u128,

    /// Seconds to wait for the last receipts before giving up.
    #[arg(long, default_value_t = 600)]
    timeout: u64,

    /// Seconds before one HTTP request times out.
    #[arg(long, default_value_t = 120)]
    request_timeout: u64,

    /// Receipts checked after the run besides the last transaction of each
    /// sender (spread evenly over the run). Inclusion of every transaction is
    /// always checked from the blocks' transaction lists.
    #[arg(long, default_value_t = 300)]
    verify_sample: usize,

    /// Check every receipt instead of a sample (slow on anvil, whose receipt
    /// look-ups cost time linear in the block size).
    #[arg(long)]
    verify_all: bool,
    /// Blocks that must follow the last block of the run before receipts are checked (on a
    /// chain with several signers the newest blocks can still be replaced; 0: check at once).
    #[arg(long, default_value_t = 0)]
    confirmations: u64,

    /// Print the summary as one JSON line on stdout.
    #[arg(long)]
    json: bool,
}

fn print_text(r: &Report) {
    println!("workload        {}", r.workload);
    println!(
        "node            {} (chain id {}, {})",
        r.rpc,
        r.chain_id,
        r.client_version.as_deref().unwrap_or("unknown client")
    );
    println!(
        "transactions    {} from {} senders, batches of {}, {} in flight, gas limit {} each",
        r.txs, r.senders, r.batch, r.concurrency, r.gas_limit_per_tx
    );
    println!("send phase      {:.3} s  ({:.0} tx/s), {} rejected", r.send_secs, r.send_tps, r.send_errors);
    for e in &r.first_errors {
        println!("  rejected      {e}");
    }
    println!("end to end      {:.3} s  ({:.0} tx/s)", r.elapsed_secs, r.tps);
    println!(
        "inclusion       p50 {:.2} s, p99 {:.2} s, max {:.2} s (batch sent -> head with its block seen)",
        r.latency_p50_secs, r.latency_p99_secs, r.latency_max_secs
    );
    println!(
        "blocks used     {} (#{}..#{}, at most {} txs in one block)",
        r.blocks_used,
        r.start_block + 1,
        r.last_block,
        r.max_txs_per_block
    );
    println!(
        "mined           {} of {} accepted transactions ({} replaced blocks re-read)",
        r.included, r.accepted, r.reorgs
    );
    println!(
        "receipts        {} checked, {} failed, {} missing, {} late ({}), avg gas used {:.0}",
        r.receipts_checked,
        r.receipts_failed,
        r.receipts_missing,
        r.receipts_late,
        r.verified_with,
        r.avg_gas_used
    );
    println!("result          {}", if r.ok { "OK" } else { "FAILED" });
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = Config {
        rpc: cli.rpc,
        workload: cli.workload,
        txs: cli.load.txs,
        senders: cli.load.senders,
        batch: cli.load.batch,
        concurrency: cli.load.concurrency,
        mnemonic: cli.funder_mnemonic,
        sender_index_base: cli.sender_index_base,
        fund_wei: cli.fund_wei,
        fees: Fees { max_fee_per_gas: cli.max_fee, max_priority_fee_per_gas: cli.priority_fee },
        poll_interval: cli.load.poll_interval(),
        timeout: Duration::from_secs(cli.timeout),
        request_timeout: Duration::from_secs(cli.request_timeout),
        verify: if cli.verify_all { Verify::Full } else { Verify::Sample(cli.verify_sample) },
        confirmations: cli.confirmations,
    };
    match loadgen::run(&cfg).await {
        Ok(report) => {
            if cli.json {
                match serde_json::to_string(&report) {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("p2pe-loadgen: cannot serialise the report: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print_text(&report);
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("p2pe-loadgen: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(2)
        }
    }
}
