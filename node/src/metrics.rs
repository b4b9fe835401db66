//! Prometheus metrics, served with `--metrics ADDR` on their own port (`GET /metrics`).
//!
//! The `metrics` crate's macros record from anywhere in the node; without `--metrics` no
//! recorder is installed and they cost nothing. The exposition format and its HTTP listener are
//! `metrics-exporter-prometheus`'s. Durations are histograms in seconds with fixed buckets, so
//! that Prometheus can aggregate them across nodes (`histogram_quantile`).
//!
//! Gauges that describe a state rather than an event (head age, peers, pool, sync) are sampled
//! once a second by [`spawn_sampler`]. RPC method labels are bounded: a method this node does
//! not serve is counted as `other`, so a client cannot create series at will.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
/// The handle [`install_in_process`] returns.
pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Metric names.
pub mod names {
    /// Head block number.
    pub const HEAD_NUMBER: &str = "p2pe_head_number";
    /// Seconds since the head block's timestamp.
    pub const HEAD_AGE: &str = "p2pe_head_age_seconds";
    /// Connected peers.
    pub const PEERS: &str = "p2pe_peers";
    /// Pool transactions ready to be included.
    pub const POOL_PENDING: &str = "p2pe_txpool_pending";
    /// Pool transactions waiting for a nonce gap to close.
    pub const POOL_QUEUED: &str = "p2pe_txpool_queued";
    /// Time to build, execute and seal a block.
    pub const BLOCK_SEAL: &str = "p2pe_block_seal_seconds";
    /// Time to verify, execute and commit a block from a peer or a file.
    pub const BLOCK_IMPORT: &str = "p2pe_block_import_seconds";
    /// Time to execute a block's transactions (sealed here or imported).
    pub const BLOCK_EXECUTE: &str = "p2pe_block_execute_seconds";
    /// Time to compute a block's state root from the stored trie.
    pub const STATE_ROOT: &str = "p2pe_state_root_seconds";
    /// Time to commit an executed block (state, indexes, head).
    pub const BLOCK_COMMIT: &str = "p2pe_block_commit_seconds";
    /// Transactions per committed block.
    pub const BLOCK_TXS: &str = "p2pe_block_transactions";
    /// Blocks committed (sealed here or imported).
    pub const BLOCKS: &str = "p2pe_blocks_total";
    /// Canonical chain switches.
    pub const REORGS: &str = "p2pe_reorgs_total";
    /// Blocks taken off by each chain switch.
    pub const REORG_DEPTH: &str = "p2pe_reorg_depth";
    /// 1 while a sync at least `SYNCING_THRESHOLD` blocks behind runs, else 0.
    pub const SYNCING: &str = "p2pe_syncing";
    /// The best peer's head during a sync (0 when not syncing).
    pub const SYNC_HIGHEST: &str = "p2pe_sync_highest_block";
    /// The block the running sync started from (0 when not syncing).
    pub const SYNC_STARTING: &str = "p2pe_sync_starting_block";
    /// JSON-RPC calls by method.
    pub const RPC_REQUESTS: &str = "p2pe_rpc_requests_total";
    /// JSON-RPC call latency by method.
    pub const RPC_LATENCY: &str = "p2pe_rpc_request_seconds";
    /// JSON-RPC errors by EIP-1474 code.
    pub const RPC_ERRORS: &str = "p2pe_rpc_errors_total";
    /// Time of one SQLite write transaction's commit.
    pub const SQLITE_COMMIT: &str = "p2pe_sqlite_commit_seconds";
    /// Time of one WAL checkpoint (copying committed pages into the database file).
    pub const SQLITE_CHECKPOINT: &str = "p2pe_sqlite_checkpoint_seconds";
    /// Pages of the write-ahead log not yet copied into the database after the last checkpoint.
    pub const SQLITE_WAL_PAGES: &str = "p2pe_sqlite_wal_pages";
    /// Head-state reads the RPC state cache answered, by `kind` (`account`, `storage`).
    pub const STATE_CACHE_HITS: &str = "p2pe_state_cache_hits_total";
    /// Head-state reads the RPC state cache did not hold (read from SQLite), by `kind`.
    pub const STATE_CACHE_MISSES: &str = "p2pe_state_cache_misses_total";
    /// Gossiped blocks received, by `form` (`full`, `compact`) and, for compact ones, how the
    /// body was found (`rebuilt` from the pool, `fetched` from the sender, `missing`).
    pub const GOSSIP_BLOCKS: &str = "p2pe_gossip_blocks_total";
    /// State-history lookups made by reads of state at blocks older than the head (one per
    /// block after the one asked for, or one per key when the history is indexed by key).
    pub const STATE_HISTORY_LOOKUPS: &str = "p2pe_state_history_lookups_total";
}

/// The `outcome` labels of [`names::GOSSIP_BLOCKS`].
const GOSSIP_OUTCOMES: [(&str, &str); 4] =
    [("full", "received"), ("compact", "rebuilt"), ("compact", "fetched"), ("compact", "missing")];

/// The `kind` labels of the state cache series.
const CACHE_KINDS: [&str; 2] = ["account", "storage"];

/// Buckets of the duration histograms (seconds).
const SECONDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets of the count histograms.
const COUNTS: [f64; 12] = [0.0, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0];

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {reason}")]
pub struct MetricsError {
    addr: SocketAddr,
    reason: String,
}

/// Installs the process's recorder and serves `/metrics` on `addr`. Call once, inside the
/// tokio runtime.
pub fn install(addr: SocketAddr) -> Result<(), MetricsError> {
    let err = |e: &dyn std::fmt::Display| MetricsError { addr, reason: e.to_string() };
    builder().map_err(|e| err(&e))?.with_http_listener(addr).install().map_err(|e| err(&e))?;
    initialise();
    Ok(())
}

/// Installs the process's recorder with no listener and returns its handle, whose
/// [`render`](PrometheusHandle::render) gives the text `/metrics` would serve: for a chain run
/// inside another program (the benches read the node's own phase timers). Call once.
pub fn install_in_process() -> Result<PrometheusHandle, BuildError> {
    let handle = builder()?.install_recorder()?;
    initialise();
    Ok(handle)
}

/// The recorder's configuration: the fixed histogram buckets.
fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)?
        .set_buckets_for_metric(Matcher::Full(names::BLOCK_TXS.into()), &COUNTS)?
        .set_buckets_for_metric(Matcher::Full(names::REORG_DEPTH.into()), &COUNTS)
}

/// Descriptions, and the counters that exist from the start (so that `rate()` and `increase()`
/// see their first events).
fn initialise() {
    describe();
    counter!(names::BLOCKS).absolute(0);
    counter!(names::REORGS).absolute(0);
    counter!(names::STATE_HISTORY_LOOKUPS).absolute(0);
    for (form, outcome) in GOSSIP_OUTCOMES {
        counter!(names::GOSSIP_BLOCKS, "form" => form, "outcome" => outcome).absolute(0);
    }
    for cache in ["writer", "rpc"] {
        for kind in CACHE_KINDS {
            counter!(names::STATE_CACHE_HITS, "cache" => cache, "kind" => kind).absolute(0);
            counter!(names::STATE_CACHE_MISSES, "cache" => cache, "kind" => kind).absolute(0);
        }
    }
}

fn describe() {
    use names::*;
    describe_gauge!(HEAD_NUMBER, "Head block number.");
    describe_gauge!(HEAD_AGE, Unit::Seconds, "Seconds since the head block's timestamp.");
    describe_gauge!(PEERS, "Connected peers.");
    describe_gauge!(POOL_PENDING, "Pool transactions ready to be included.");
    describe_gauge!(POOL_QUEUED, "Pool transactions waiting for an earlier nonce.");
    describe_histogram!(BLOCK_SEAL, Unit::Seconds, "Time to build, execute, seal and commit a block.");
    describe_histogram!(
        BLOCK_IMPORT,
        Unit::Seconds,
        "Time to verify, execute and commit a block from a peer or a file."
    );
    describe_histogram!(BLOCK_EXECUTE, Unit::Seconds, "Time to execute a block's transactions.");
    describe_histogram!(
        STATE_ROOT,
        Unit::Seconds,
        "Time to compute a block's state root from the stored trie."
    );
    describe_histogram!(BLOCK_COMMIT, Unit::Seconds, "Time to commit an executed block.");
    describe_histogram!(BLOCK_TXS, "Transactions per committed block.");
    describe_counter!(BLOCKS, "Blocks committed (sealed here or imported).");
    describe_counter!(REORGS, "Canonical chain switches.");
    describe_histogram!(REORG_DEPTH, "Blocks taken off by a chain switch.");
    describe_gauge!(SYNCING, "1 while a sync runs, else 0.");
    describe_gauge!(SYNC_HIGHEST, "The best peer's head during a sync (0 when not syncing).");
    describe_gauge!(SYNC_STARTING, "The block the running sync started from (0 when not syncing).");
    describe_counter!(RPC_REQUESTS, "JSON-RPC calls by method (methods not served count as `other`).");
    describe_histogram!(RPC_LATENCY, Unit::Seconds, "JSON-RPC call latency by method.");
    describe_counter!(RPC_ERRORS, "JSON-RPC errors by code.");
    describe_histogram!(SQLITE_COMMIT, Unit::Seconds, "Time of one SQLite write transaction's commit.");
    describe_histogram!(
        SQLITE_CHECKPOINT,
        Unit::Seconds,
        "Time of one WAL checkpoint (in the background, or by a commit when the log is over its limit)."
    );
    describe_gauge!(
        SQLITE_WAL_PAGES,
        "Write-ahead log pages not yet copied into the database after the last checkpoint."
    );
    describe_counter!(
        STATE_CACHE_HITS,
        "Head-state reads answered by a state cache, by cache (writer, rpc) and kind."
    );
    describe_counter!(
        GOSSIP_BLOCKS,
        "Gossiped blocks received, by form (full, compact) and outcome (received; compact: rebuilt \
         from the pool, fetched from the sender, missing)."
    );
    describe_counter!(
        STATE_HISTORY_LOOKUPS,
        "State-history lookups by reads at blocks older than the head (per block back, or one per key \
         when the history is indexed by key)."
    );
    describe_counter!(
        STATE_CACHE_MISSES,
        "Head-state reads a state cache did not hold (read from SQLite), by cache and kind."
    );
}

/// Records the time from its creation to its drop in a duration histogram.
pub struct Timer {
    name: &'static str,
    start: Instant,
}

impl Timer {
    /// Starts timing for histogram `name`.
    pub fn start(name: &'static str) -> Self {
        Self { name, start: Instant::now() }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        histogram!(self.name).record(self.start.elapsed().as_secs_f64());
    }
}

/// Records a committed block: head number, transaction count.
pub fn block_committed(number: u64, transactions: usize) {
    gauge!(names::HEAD_NUMBER).set(number as f64);
    histogram!(names::BLOCK_TXS).record(transactions as f64);
    counter!(names::BLOCKS).increment(1);
}

/// Records a gossiped block of `form` (`full`, `compact`) and its `outcome`.
pub fn gossip_block(form: &'static str, outcome: &'static str) {
    counter!(names::GOSSIP_BLOCKS, "form" => form, "outcome" => outcome).increment(1);
}

/// Records a chain switch that took `depth` blocks off.
pub fn reorged(depth: usize) {
    counter!(names::REORGS).increment(1);
    histogram!(names::REORG_DEPTH).record(depth as f64);
}

/// Records one JSON-RPC call: `method` if served (`other` if not), its latency and its error
/// code if it failed.
pub fn rpc_call(method: &str, served: bool, elapsed: Duration, error_code: Option<i64>) {
    let method = if served { method.to_string() } else { "other".to_string() };
    counter!(names::RPC_REQUESTS, "method" => method.clone()).increment(1);
    histogram!(names::RPC_LATENCY, "method" => method).record(elapsed.as_secs_f64());
    if let Some(code) = error_code {
        counter!(names::RPC_ERRORS, "code" => code.to_string()).increment(1);
    }
}

/// Adds one state reader's cache hits and misses, accounts and storage slots apart; `cache` is
/// `writer` (block execution) or `rpc` (reads of the published head).
pub fn state_cache_reads(
    cache: &'static str,
    account_hits: u64,
    account_misses: u64,
    storage_hits: u64,
    storage_misses: u64,
) {
    let [account, storage] = CACHE_KINDS;
    for (name, kind, n) in [
        (names::STATE_CACHE_HITS, account, account_hits),
        (names::STATE_CACHE_MISSES, account, account_misses),
        (names::STATE_CACHE_HITS, storage, storage_hits),
        (names::STATE_CACHE_MISSES, storage, storage_misses),
    ] {
        if n > 0 {
            counter!(name, "cache" => cache, "kind" => kind).increment(n);
        }
    }
}

/// What the once-a-second sampler reads.
pub struct Sources {
    /// The chain (head number and timestamp).
    pub chain: Arc<crate::blockchain::Blockchain>,
    /// The peer network (peers and the running sync), if any.
    pub network: Option<Arc<crate::network::NetworkHandle>>,
}

/// Samples the state gauges once a second, for the life of the runtime.
pub fn spawn_sampler(sources: Sources) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            sample(&sources);
        }
    });
}

fn sample(s: &Sources) {
    let head = s.chain.head();
    gauge!(names::HEAD_NUMBER).set(head.header.number as f64);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    gauge!(names::HEAD_AGE).set((now - head.header.timestamp as f64).max(0.0));
    gauge!(names::PEERS).set(s.network.as_ref().map(|n| n.peer_count()).unwrap_or(0) as f64);
    let pool = s.chain.pool();
    let queued = pool.queued_len();
    let pending = pool.len().saturating_sub(queued);
    gauge!(names::POOL_PENDING).set(pending as f64);
    gauge!(names::POOL_QUEUED).set(queued as f64);
    let sync = s.network.as_ref().and_then(|n| n.sync.get());
    gauge!(names::SYNCING).set(if sync.is_some() { 1.0 } else { 0.0 });
    let (starting, highest) = sync.unwrap_or((0, 0));
    gauge!(names::SYNC_STARTING).set(starting as f64);
    gauge!(names::SYNC_HIGHEST).set(highest as f64);
}
