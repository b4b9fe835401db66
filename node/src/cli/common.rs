//! Options shared by the commands that run a node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::blockchain::ChainOptions;
use crate::crypto::SigningKey;
use crate::rpc::access::{self, AccessPolicy};
use crate::rpc::ui::UiMode;
use crate::rpc::workers::CallLimits;
use crate::rpc::RpcConfig;
use crate::storage::DEFAULT_STATE_HISTORY;

/// Largest `--rpc-proof-window`: what one `eth_getProof` may undo (see the flag).
pub const MAX_PROOF_WINDOW: u64 = 1024;
use crate::txpool::PoolConfig;

/// JSON-RPC server options.
#[derive(Debug, Clone, Args)]
pub struct RpcArgs {
    /// Address for JSON-RPC over HTTP and WebSocket (same port).
    #[arg(long, default_value = "127.0.0.1:8545", env = "P2PE_HTTP_ADDR")]
    pub http_addr: SocketAddr,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub rpc_max_body: u64,
    /// Most requests in one JSON-RPC batch.
    #[arg(long, default_value_t = 10_000)]
    pub rpc_max_batch: usize,
    /// Most bytes of responses one JSON-RPC batch may answer (the serialized responses added up,
    /// geth's default); the calls past the limit are not run and each answers a -32005 error.
    #[arg(long, default_value_t = 25_000_000)]
    pub rpc_batch_response_max_size: usize,
    /// Most eth_subscribe subscriptions one WebSocket connection may hold open.
    #[arg(long, default_value_t = 1024)]
    pub rpc_max_subscriptions_per_connection: usize,
    /// Most eth_newFilter / eth_newBlockFilter / eth_newPendingTransactionFilter filters
    /// installed on the node at once (expired ones do not count).
    #[arg(long, default_value_t = 10_000)]
    pub rpc_max_filters: usize,
    /// Widest block range one eth_getLogs may cover.
    #[arg(long, default_value_t = 10_000)]
    pub rpc_max_log_range: u64,
    /// Most logs one eth_getLogs may return.
    #[arg(long, default_value_t = 20_000)]
    pub rpc_max_logs: usize,
    /// How many blocks behind the head eth_getProof serves (0: the head only). A proof at an
    /// older block undoes every later block's state changes, so its cost grows with the distance;
    /// beyond it the call answers -32005 naming this flag. It does not keep state: with
    /// --state-history, proofs stop where the kept state does. At most 1024: a proof holds every
    /// account and slot the later blocks changed in memory, up to about 1,500 per full block of
    /// new storage words, so 1024 blocks is about 1.5 million of them.
    #[arg(long, default_value_t = DEFAULT_STATE_HISTORY, value_parser = clap::value_parser!(u64).range(0..=MAX_PROOF_WINDOW))]
    pub rpc_proof_window: u64,
    /// Messages queued per WebSocket connection; a subscriber that falls this far behind is
    /// disconnected with a close reason.
    #[arg(long, default_value_t = 4096)]
    pub ws_max_queue: usize,
    /// Seconds an unpolled eth_newFilter / eth_newBlockFilter filter lives.
    #[arg(long, default_value_t = 300)]
    pub rpc_filter_ttl: u64,
    /// Serve the trading dApp on this port (same host as --http-addr; it answers JSON-RPC there too)
    /// instead of on the JSON-RPC port.
    #[arg(long, conflicts_with = "no_ui")]
    pub ui_port: Option<u16>,
    /// Do not serve the trading dApp (by default it is served on the JSON-RPC port at GET /).
    #[arg(long)]
    pub no_ui: bool,
    /// Serve the privileged methods: admin_* (peers, block/unblock, broadcast), debug_* (raw data,
    /// tracing), clique_propose and clique_discard (this signer's votes). Without it they answer an
    /// error naming this flag. Only where every client that can reach the port is trusted.
    #[arg(long)]
    pub rpc_admin: bool,
    /// Serve the Otterscan block explorer's methods: the ots_ namespace (API level 8) and
    /// erigon_getHeaderByNumber. Address searches read an index kept with every block; the trace
    /// methods (ots_traceTransaction, ots_getInternalOperations, ots_getTransactionError) replay
    /// the transaction's block.
    #[arg(long)]
    pub rpc_explorer: bool,
    /// Web origins whose pages may call JSON-RPC (HTTP and WebSocket), comma-separated or repeated,
    /// e.g. http://localhost:3000; * allows every origin. Requests with another Origin header are
    /// refused with 403 (the node's own dApp origin, and clients that send no Origin, always pass).
    /// MetaMask in Chrome sends chrome-extension://nkbihfbeogaeaoehlefnkodbefgpgknn.
    #[arg(long = "http-corsdomain", value_delimiter = ',', value_parser = access::parse_origin)]
    pub http_corsdomain: Vec<String>,
    /// Host names the server answers (the Host header), comma-separated or repeated; IP addresses
    /// are always answered; * answers every name (and re-opens DNS rebinding). Other hosts get 403.
    #[arg(long = "http-vhosts", value_delimiter = ',', default_value = "localhost", value_parser = access::parse_vhost)]
    pub http_vhosts: Vec<String>,
    /// Most open JSON-RPC connections, HTTP and WebSocket together (on each listening port); a
    /// connection over it is answered 503 with a JSON-RPC error naming this flag and closed.
    #[arg(long, default_value_t = 1000)]
    pub rpc_max_connections: usize,
    /// Wall-clock limit of each eth_call, eth_estimateGas, eth_createAccessList and debug_trace*
    /// call, in seconds (fractions allowed), counted from when its request arrived (the heavy calls
    /// of one batch share one limit): the EVM is stopped there and the call answers -32005
    /// "execution aborted (timeout = ...)". A trace's timeout option may shorten it. 0: no limit.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub rpc_call_timeout: f64,
    /// Threads that run eth_call, eth_estimateGas, eth_createAccessList and debug_trace*, at a
    /// lower CPU priority than sealing. Default: the number of cores less one, at least 1.
    #[arg(long, default_value_t = CallLimits::default_workers())]
    pub rpc_call_workers: usize,
    /// Such calls that may wait for a free worker; when all workers are busy and this many wait,
    /// a call is refused at once with a -32005 error ("the node is busy").
    #[arg(long, default_value_t = CallLimits::default().queue)]
    pub rpc_call_queue: usize,
    /// Most EVM steps one debug_trace* request may run (all its transactions together); 0: no
    /// limit.
    #[arg(long, default_value_t = 10_000_000)]
    pub rpc_trace_max_steps: u64,
    /// Most bytes one debug_trace* request's tracer may record (estimated per step for the
    /// default struct logger, with its stack, memory and return data; per call frame for
    /// callTracer and the others); the response is a small multiple of it. 0: no limit.
    #[arg(long, default_value_t = 128 << 20)]
    pub rpc_trace_max_bytes: u64,
}

/// Parses a non-negative number of seconds.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a number of seconds (0 or more, e.g. 5 or 0.5)")),
    }
}

impl RpcArgs {
    /// Where the dApp is served.
    pub fn ui_mode(&self) -> UiMode {
        match (self.no_ui, self.ui_port) {
            (true, _) => UiMode::Off,
            (false, Some(port)) => UiMode::Port(port),
            (false, None) => UiMode::SamePort,
        }
    }

    /// The server limits and where the dApp is served ([`UiMode`]).
    pub fn config(&self) -> RpcConfig {
        RpcConfig {
            ui: self.ui_mode(),
            explorer: self.rpc_explorer,
            max_body_bytes: self.rpc_max_body,
            max_batch: self.rpc_max_batch,
            max_batch_response_bytes: self.rpc_batch_response_max_size,
            max_subscriptions_per_connection: self.rpc_max_subscriptions_per_connection,
            max_filters: self.rpc_max_filters,
            max_log_range: self.rpc_max_log_range,
            max_logs: self.rpc_max_logs,
            proof_window: self.rpc_proof_window,
            ws_queue: self.ws_max_queue,
            filter_ttl: std::time::Duration::from_secs(self.rpc_filter_ttl),
            admin: self.rpc_admin,
            access: AccessPolicy {
                vhosts: self.http_vhosts.clone(),
                cors_domains: self.http_corsdomain.clone(),
            },
            max_connections: self.rpc_max_connections,
            calls: CallLimits {
                timeout: (self.rpc_call_timeout > 0.0)
                    .then(|| std::time::Duration::from_secs_f64(self.rpc_call_timeout)),
                workers: self.rpc_call_workers.max(1),
                queue: self.rpc_call_queue,
                trace_max_steps: (self.rpc_trace_max_steps > 0).then_some(self.rpc_trace_max_steps),
                trace_max_bytes: (self.rpc_trace_max_bytes > 0).then_some(self.rpc_trace_max_bytes),
            },
        }
    }
}

/// Transaction pool and storage options.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Most transactions one sender may have waiting in the pool.
    #[arg(long, default_value_t = PoolConfig::default().max_per_sender)]
    pub txpool_max_per_sender: usize,
    /// Most transactions in the pool.
    #[arg(long, default_value_t = PoolConfig::default().max_total)]
    pub txpool_max_total: usize,
    /// Largest accepted transaction, in bytes.
    #[arg(long, default_value_t = PoolConfig::default().max_tx_bytes)]
    pub txpool_max_tx_bytes: usize,
    /// Most queued transactions (nonce gap before them) one sender may have waiting.
    #[arg(long, default_value_t = PoolConfig::default().max_queued_per_sender)]
    pub txpool_max_queued_per_sender: usize,
    /// Most bytes (transaction encodings) in the pool's shared room. When it or --txpool-max-total
    /// is reached, the oldest queued transactions are evicted first; executable ones never are.
    #[arg(long, default_value_t = PoolConfig::default().max_bytes)]
    pub txpool_max_bytes: usize,
    /// Seconds a queued transaction may wait for its nonce gap to fill before it is dropped.
    #[arg(long, default_value_t = PoolConfig::default().queued_lifetime.as_secs())]
    pub txpool_queued_lifetime: u64,
    /// A sender with reserved room in the pool (repeatable): its transactions never count against
    /// the shared limits, so spam cannot shut it out. For the operator, keeper, bridge relayer and
    /// meter accounts; `dev` adds the dev market's own accounts, and `run` the keeper's.
    #[arg(long = "txpool-priority", value_name = "ADDR")]
    pub txpool_priority: Vec<alloy_primitives::Address>,
    /// Most transactions of priority senders in the pool (their reserved room).
    #[arg(long, default_value_t = PoolConfig::default().max_priority)]
    pub txpool_max_priority: usize,
    /// Keep the state of every block (otherwise the last --state-history blocks).
    #[arg(long)]
    pub archive: bool,
    /// How many recent blocks' state stays queryable when not --archive.
    #[arg(long, default_value_t = DEFAULT_STATE_HISTORY)]
    pub state_history: u64,
    /// Accounts and storage slots kept in memory in front of the state tables (about 100 bytes
    /// each), once for block execution and once for RPC reads of the head. The state itself
    /// lives on disk, so this bounds the node's memory whatever the state's size; a larger
    /// cache saves SQLite lookups for large working sets.
    #[arg(long, default_value_t = crate::storage::DEFAULT_CACHE_ENTRIES, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u64).range(1024..), |v| v as usize))]
    pub state_cache_entries: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9545): head, head age,
    /// peers, pool, block seal/import/commit times, transactions per block, reorgs, sync, RPC
    /// calls and errors, SQLite commit time. Off by default; keep it off public interfaces.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}

impl NodeArgs {
    /// Pool limits.
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            max_per_sender: self.txpool_max_per_sender,
            max_queued_per_sender: self.txpool_max_queued_per_sender,
            max_total: self.txpool_max_total,
            max_bytes: self.txpool_max_bytes,
            max_tx_bytes: self.txpool_max_tx_bytes,
            queued_lifetime: std::time::Duration::from_secs(self.txpool_queued_lifetime),
            priority: self.txpool_priority.iter().copied().collect(),
            max_priority: self.txpool_max_priority,
        }
    }

    /// Blocks of state history the store keeps (`None`: every block, `--archive`).
    pub fn state_history(&self) -> Option<u64> {
        if self.archive {
            None
        } else {
            Some(self.state_history)
        }
    }

    /// Chain options.
    pub fn chain(&self) -> ChainOptions {
        ChainOptions { read_connections: 4, state_cache_entries: self.state_cache_entries }
    }
}

/// What this node's sealer builds, within the chain's rules.
#[derive(Debug, Clone, Args)]
pub struct SealArgs {
    /// Block gas limit the sealer steers toward: each block it seals moves the gas limit one
    /// step (just under parent/1024, the most a block may change it) toward this value, as geth's
    /// --miner.gaslimit does. At least 16777216 (the chain's minimum). Default: the genesis gas limit.
    #[arg(long)]
    pub gas_limit_target: Option<u64>,
}

/// Reads a keystore password from a file (first line) or from `P2PE_PASSWORD`.
pub fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read password file {}: {e}", path.display()))?;
        return Ok(text.lines().next().unwrap_or("").to_string());
    }
    std::env::var("P2PE_PASSWORD")
        .map_err(|_| anyhow::anyhow!("no keystore password: pass --password-file FILE or set P2PE_PASSWORD"))
}

/// Decrypts a Web3 Secret Storage keystore. The key is never printed or logged.
pub fn load_keystore(path: &Path, password: &str) -> anyhow::Result<SigningKey> {
    // geth's, ethers.js's ("Crypto") and web3.py's keystores alike (p2pe-keystore).
    let signer = p2pe_keystore::decrypt(path, password)?;
    SigningKey::from_bytes(&signer.to_bytes())
        .map_err(|e| anyhow::anyhow!("keystore {}: {e}", path.display()))
}

/// Resolves a path relative to the current directory for messages.
pub fn display(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Ctrl-C (SIGINT) and SIGTERM, listened for from the moment this is made. Make it before the node
/// announces that it serves: a signal sent as soon as it has (by a supervisor or a test) then stops
/// it cleanly, where before the handlers existed SIGTERM's default action would kill it (and leave
/// `dev`'s temporary chain behind).
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the handlers (inside the Tokio runtime).
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let interrupt = signal(SignalKind::interrupt())
                .map_err(|e| anyhow::anyhow!("installing a SIGINT handler: {e}"))?;
            let terminate = signal(SignalKind::terminate())
                .map_err(|e| anyhow::anyhow!("installing a SIGTERM handler: {e}"))?;
            Ok(Self { interrupt, terminate })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for either signal.
    pub async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Peer network options.
#[derive(Debug, Clone, clap::Args)]
pub struct P2pArgs {
    /// TCP port of the peer network (libp2p: TCP + Noise + Yamux).
    #[arg(long, default_value_t = 30303)]
    pub p2p_port: u16,
    /// Address the peer network listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub p2p_addr: std::net::IpAddr,
    /// Peers to connect to at start, as multiaddrs with the peer id, comma-separated, e.g.
    /// /ip4/10.0.0.2/tcp/30303/p2p/12D3KooW...
    #[arg(long, value_delimiter = ',')]
    pub bootnodes: Vec<libp2p::Multiaddr>,
    /// Only these peer ids may connect (comma-separated); default: anyone.
    #[arg(long, value_delimiter = ',')]
    pub p2p_allow: Vec<libp2p::PeerId>,
    /// Most peer connections in total (a peer normally holds one, at most 2); connections
    /// beyond it are refused. Bootnodes are not counted, so the node can always reach them.
    /// The default is geth's --maxpeers.
    #[arg(long, default_value_t = crate::network::swarm::DEFAULT_MAX_PEERS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_peers: u32,
    /// Run without the peer network.
    #[arg(long)]
    pub no_p2p: bool,
}

impl P2pArgs {
    /// The network configuration for a data directory (the identity key lives there).
    pub fn config(&self, datadir: &Path) -> Option<crate::network::NetworkConfig> {
        if self.no_p2p {
            return None;
        }
        let ip = match self.p2p_addr {
            std::net::IpAddr::V4(v4) => libp2p::multiaddr::Protocol::Ip4(v4),
            std::net::IpAddr::V6(v6) => libp2p::multiaddr::Protocol::Ip6(v6),
        };
        let listen =
            libp2p::Multiaddr::empty().with(ip).with(libp2p::multiaddr::Protocol::Tcp(self.p2p_port));
        Some(crate::network::NetworkConfig {
            listen,
            bootnodes: self.bootnodes.clone(),
            allow: (!self.p2p_allow.is_empty()).then(|| self.p2p_allow.iter().copied().collect()),
            identity_file: datadir.join("p2p-identity.key"),
            max_peers: self.max_peers,
        })
    }
}
