//! Ethereum JSON-RPC over HTTP and WebSocket, on one port.
//!
//! - [`server`]: warp routes, request and batch handling, limits, WebSocket;
//! - [`access`]: who may call: `Host` (`--http-vhosts`), `Origin` (`--http-corsdomain`), content
//!   type, CORS headers;
//! - [`dispatch`]: method name → namespace handler (and which namespaces need `--rpc-admin`);
//! - [`params`]: positional parameters with strict hex quantities;
//! - one file per namespace: [`eth`] (split by concern), [`net`], [`web3`], [`txpool`],
//!   [`clique`], [`debug`] (tracers in [`trace`]), [`ots`] (the Otterscan explorer's, only with
//!   `--rpc-explorer`), and [`admin`] (only with `--rpc-admin`);
//! - [`filters`]: polling filters (`eth_newFilter` and friends);
//! - [`pubsub`]: WebSocket connections and `eth_subscribe`;
//! - [`ui`]: the embedded dApp;
//! - [`convert`]: consensus types → RPC response objects;
//! - [`error`]: EIP-1474 error codes;
//! - [`workers`]: the bounded pool that runs `eth_call`, `eth_estimateGas`,
//!   `eth_createAccessList` and `debug_trace*` under a time limit.
//!
//! Reads never take the writer's locks: the head comes from the chain's published snapshot
//! ([`crate::blockchain::ChainSnapshot`]) and state from a SQLite read transaction at that
//! block ([`RpcContext::with_state`]).

pub mod access;
pub mod admin;
pub mod clique;
pub mod connections;
pub mod convert;
pub mod debug;
pub mod dispatch;
pub mod error;
pub mod eth;
pub mod filters;
pub mod net;
pub mod ots;
pub mod params;
pub mod pubsub;
pub mod server;
pub mod trace;
pub mod txpool;
pub mod ui;
pub mod web3;
pub mod workers;

use std::sync::Arc;

use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{Address, B256};

use crate::blockchain::Blockchain;
use crate::consensus::clique::confirmation::{finalized_depth, safe_depth};
use crate::crypto::SigningKey;
use crate::state::StateReader;
use crate::storage::{BlockQuery, CachedState, HistoricalState, ReadPool};
use error::{RpcError, RpcResult};

/// Limits and defaults of the RPC server.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// Largest request body in bytes.
    pub max_body_bytes: u64,
    /// Most requests in one batch.
    pub max_batch: usize,
    /// Most bytes of responses one batch answers (the serialized response objects added up);
    /// the calls past it are answered with an error and not run.
    pub max_batch_response_bytes: usize,
    /// Most `eth_subscribe` subscriptions open on one WebSocket connection.
    pub max_subscriptions_per_connection: usize,
    /// Most polling filters installed on the node at once.
    pub max_filters: usize,
    /// Widest block range of one `eth_getLogs`.
    pub max_log_range: u64,
    /// Most logs one `eth_getLogs` returns.
    pub max_logs: usize,
    /// How many blocks behind the head `eth_getProof` serves (`--rpc-proof-window`): a proof at
    /// an older block undoes every later block's changes, so its cost grows with the distance.
    pub proof_window: u64,
    /// Messages queued per WebSocket connection before a slow subscriber is dropped.
    pub ws_queue: usize,
    /// How long an unpolled filter lives.
    pub filter_ttl: std::time::Duration,
    /// Serve the privileged methods ([`dispatch::is_privileged`]: `admin_*`, `debug_*`,
    /// `clique_propose`, `clique_discard`); `--rpc-admin`.
    pub admin: bool,
    /// Hosts and web origins the server answers (`--http-vhosts`, `--http-corsdomain`).
    pub access: access::AccessPolicy,
    /// Where the trading dApp is served (`--ui-port`, `--no-ui`).
    pub ui: ui::UiMode,
    /// Serve the block explorer's `ots_` namespace and `erigon_getHeaderByNumber`
    /// (`--rpc-explorer`).
    pub explorer: bool,
    /// Most open connections, HTTP and WebSocket together (`--rpc-max-connections`); the ones
    /// over it get a 503 answer and are closed.
    pub max_connections: usize,
    /// Time limit, workers and queue of the heavy calls, and the trace limits.
    pub calls: workers::CallLimits,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch: 10_000,
            max_batch_response_bytes: 25_000_000,
            max_subscriptions_per_connection: 1024,
            max_filters: 10_000,
            max_log_range: 10_000,
            max_logs: 20_000,
            proof_window: crate::storage::DEFAULT_STATE_HISTORY,
            ws_queue: 4096,
            filter_ttl: std::time::Duration::from_secs(300),
            admin: false,
            access: access::AccessPolicy::default(),
            ui: ui::UiMode::SamePort,
            explorer: false,
            max_connections: 1000,
            calls: workers::CallLimits::default(),
        }
    }
}

/// Everything a handler can reach.
pub struct RpcContext {
    /// The chain.
    pub chain: Arc<Blockchain>,
    /// Server limits.
    pub config: RpcConfig,
    /// Unlocked development accounts (`eth_accounts`, `eth_sendTransaction`).
    pub dev_accounts: Vec<SigningKey>,
    /// This node's sealing address, if it seals.
    pub signer: Option<Address>,
    /// `web3_clientVersion`.
    pub client_version: String,
    /// Installed polling filters.
    pub filters: filters::FilterManager,
    /// The peer network, if enabled.
    pub network: Option<Arc<crate::network::NetworkHandle>>,
    /// Clique votes this node's signer casts (`clique_propose`), shared with the sealer.
    pub proposals: crate::consensus::clique::Proposals,
    /// The workers of the heavy calls ([`workers::is_heavy`]).
    pub calls: workers::CallPool,
}

/// A block resolved from a block parameter.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedBlock {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Whether the tag was "pending" (state queries then include the pool where it matters).
    pub pending: bool,
}

impl RpcContext {
    /// Resolves a block number, tag, hash or EIP-1898 object to a canonical block.
    pub fn resolve(&self, id: Option<BlockId>) -> RpcResult<ResolvedBlock> {
        let id = id.unwrap_or(BlockId::Number(BlockNumberOrTag::Latest));
        let head = self.chain.head();
        match id {
            BlockId::Number(tag) => {
                let signers = head.snapshot.signers.len();
                let (number, pending) = match tag {
                    BlockNumberOrTag::Latest => (head.header.number, false),
                    BlockNumberOrTag::Safe => (head.header.number.saturating_sub(safe_depth(signers)), false),
                    BlockNumberOrTag::Finalized => {
                        (head.header.number.saturating_sub(finalized_depth(signers)), false)
                    }
                    BlockNumberOrTag::Pending => (head.header.number, true),
                    BlockNumberOrTag::Earliest => (0, false),
                    BlockNumberOrTag::Number(n) => (n, false),
                };
                if number == head.header.number {
                    return Ok(ResolvedBlock { number, hash: head.hash, pending });
                }
                if number > head.header.number {
                    return Err(RpcError::not_found(format!(
                        "block {number} not found (head is {})",
                        head.header.number
                    )));
                }
                let hash = self
                    .chain
                    .reads()
                    .canonical_hash(number)?
                    .ok_or_else(|| RpcError::not_found(format!("block {number} not found")))?;
                Ok(ResolvedBlock { number, hash, pending })
            }
            BlockId::Hash(h) => {
                let (header, _) = self
                    .chain
                    .reads()
                    .header_by_hash(&h.block_hash)?
                    .ok_or_else(|| RpcError::not_found(format!("block {} not found", h.block_hash)))?;
                if h.require_canonical == Some(true) {
                    let canonical = self.chain.reads().canonical_hash(header.number)?;
                    if canonical != Some(h.block_hash) {
                        return Err(RpcError::invalid_input(format!(
                            "block {} is not canonical",
                            h.block_hash
                        )));
                    }
                }
                Ok(ResolvedBlock { number: header.number, hash: h.block_hash, pending: false })
            }
        }
    }

    /// Runs `f` over the state at the end of block `number`, read in one SQLite read
    /// transaction on the chain's read connections (the head's too: no lock of the writer is
    /// taken, and WAL keeps the view fixed while blocks are committed meanwhile).
    ///
    /// At the published head, a cache of the accounts and slots read there sits in front
    /// ([`crate::storage::StateCache`]).
    pub fn with_state<T>(
        &self,
        number: u64,
        f: impl FnOnce(&dyn StateReader) -> RpcResult<T>,
    ) -> RpcResult<T> {
        self.with_state_in(self.chain.reads(), number, f)
    }

    /// [`RpcContext::with_state`] on the given read connections (a call worker's own).
    pub fn with_state_in<T>(
        &self,
        reads: &ReadPool,
        number: u64,
        f: impl FnOnce(&dyn StateReader) -> RpcResult<T>,
    ) -> RpcResult<T> {
        let snapshot = self.chain.snapshot();
        let state = HistoricalState::open(reads, number)?;
        // The cache holds the published head's values: used only when this read transaction
        // sees that very block (not a block a reorg put at its number meanwhile).
        if snapshot.head.header.number == number && state.block_hash()? == Some(snapshot.head.hash) {
            return f(&CachedState::new(state, &snapshot.cache));
        }
        f(&state)
    }
}

pub use server::serve;
