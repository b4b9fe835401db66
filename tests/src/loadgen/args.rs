//! Command-line options shared by `p2pe-loadgen` and `p2pe-netbench`.

use std::time::Duration;

/// The shape of the load: how many transactions, from how many senders, sent how.
/// Flattened into both benches' command lines (`#[command(flatten)]`).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Number of measured transactions.
    #[arg(long, default_value_t = 20_000)]
    pub txs: usize,

    /// Number of sender accounts (the issue-2 bench requires at least 200).
    #[arg(long, default_value_t = 200)]
    pub senders: usize,

    /// eth_sendRawTransaction calls per JSON-RPC batch.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,

    /// Batches in flight at once. Senders are split among the in-flight
    /// queues, so each sender's nonces still arrive in order.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,

    /// Milliseconds between two polls of the head while waiting for the
    /// transactions' blocks (bounds the precision of the end time and of
    /// inclusion latencies).
    #[arg(long, default_value_t = 50)]
    pub poll_ms: u64,
}

impl LoadArgs {
    /// The delay between two head polls.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
}
