//! Polling filters: `eth_newFilter`, `eth_newBlockFilter`, `eth_newPendingTransactionFilter`,
//! `eth_getFilterChanges`, `eth_getFilterLogs`, `eth_uninstallFilter`.
//!
//! A filter remembers the last block it reported; a poll answers what came after it. Filters
//! not polled for the filter TTL (`--rpc-filter-ttl`, default 300 s) expire, and at most
//! `--rpc-max-filters` (default 10,000) exist at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an unpolled filter lives by default (geth's default).
pub const DEFAULT_FILTER_TTL: Duration = Duration::from_secs(300);

use alloy_primitives::B256;
use alloy_rpc_types_eth::Filter;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::convert;
use super::error::{RpcError, RpcResult};
use super::eth::logs::to_query;
use super::params::Params;
use super::RpcContext;
use crate::storage::BlockQuery;

/// Most block hashes one poll of a block filter returns.
const MAX_BLOCKS_PER_POLL: u64 = 10_000;

enum Kind {
    Blocks,
    Logs(Box<Filter>),
    Pending(broadcast::Receiver<B256>),
}

struct Installed {
    kind: Kind,
    /// Last block whose contents were reported.
    cursor: u64,
    last_poll: Instant,
}

/// The filters installed on this node.
#[derive(Default)]
pub struct FilterManager {
    filters: Mutex<HashMap<String, Installed>>,
}

impl FilterManager {
    fn install(&self, kind: Kind, cursor: u64, ttl: Duration, max: usize) -> RpcResult<String> {
        let mut filters = self.filters.lock();
        filters.retain(|_, f| f.last_poll.elapsed() < ttl);
        if filters.len() >= max {
            return Err(RpcError::limit_exceeded(format!(
                "too many filters installed: the limit is {max} (--rpc-max-filters); uninstall filters with eth_uninstallFilter"
            )));
        }
        let id = format!("{:#x}", rand::random::<u128>());
        filters.insert(id.clone(), Installed { kind, cursor, last_poll: Instant::now() });
        Ok(id)
    }
}

fn not_found(id: &str, ttl: Duration) -> RpcError {
    RpcError::invalid_input(format!(
        "filter {id} not found (filters expire after {} s without polling)",
        ttl.as_secs()
    ))
}

/// Handles the filter methods.
pub fn call(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    let fm = &ctx.filters;
    let ttl = ctx.config.filter_ttl;
    let max = ctx.config.max_filters;
    let head = ctx.chain.head_number();
    match method {
        "eth_newFilter" => {
            p.at_most(1)?;
            let filter: Filter = p.req(0)?;
            // Validate the range now so a bad filter fails at creation.
            to_query(ctx, &filter)?;
            let start = match filter.get_from_block() {
                Some(n) if n > 0 => n - 1,
                _ => head,
            };
            Ok(json!(fm.install(Kind::Logs(Box::new(filter)), start.min(head), ttl, max)?))
        }
        "eth_newBlockFilter" => {
            p.at_most(0)?;
            Ok(json!(fm.install(Kind::Blocks, head, ttl, max)?))
        }
        "eth_newPendingTransactionFilter" => {
            p.at_most(1)?;
            Ok(json!(fm.install(Kind::Pending(ctx.chain.pool().subscribe()), head, ttl, max)?))
        }
        "eth_uninstallFilter" => {
            p.at_most(1)?;
            let id: String = p.req(0)?;
            Ok(json!(fm.filters.lock().remove(&id).is_some()))
        }
        "eth_getFilterChanges" => {
            p.at_most(1)?;
            let id: String = p.req(0)?;
            let mut filters = fm.filters.lock();
            filters.retain(|_, f| f.last_poll.elapsed() < ttl);
            let f = filters.get_mut(&id).ok_or_else(|| not_found(&id, ttl))?;
            f.last_poll = Instant::now();
            match &mut f.kind {
                Kind::Blocks => {
                    let to = head.min(f.cursor + MAX_BLOCKS_PER_POLL);
                    let from = f.cursor + 1;
                    f.cursor = to;
                    drop(filters);
                    let mut hashes = Vec::new();
                    for n in from..=to {
                        if let Some(h) = ctx.chain.reads().canonical_hash(n)? {
                            hashes.push(h);
                        }
                    }
                    Ok(json!(hashes))
                }
                Kind::Pending(rx) => {
                    let mut hashes = Vec::new();
                    loop {
                        match rx.try_recv() {
                            Ok(h) => hashes.push(h),
                            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                            Err(_) => break,
                        }
                    }
                    Ok(json!(hashes))
                }
                Kind::Logs(filter) => {
                    let mut ranged = (**filter).clone();
                    let from = f.cursor + 1;
                    let upper = ranged.get_to_block().map_or(head, |t| t.min(head));
                    if from > upper {
                        return Ok(json!([]));
                    }
                    let to = upper.min(from + ctx.config.max_log_range - 1);
                    ranged = ranged.from_block(from).to_block(to);
                    f.cursor = to;
                    drop(filters);
                    logs(ctx, &ranged)
                }
            }
        }
        "eth_getFilterLogs" => {
            p.at_most(1)?;
            let id: String = p.req(0)?;
            let filter = {
                let mut filters = fm.filters.lock();
                let f = filters.get_mut(&id).ok_or_else(|| not_found(&id, ttl))?;
                f.last_poll = Instant::now();
                match &f.kind {
                    Kind::Logs(filter) => (**filter).clone(),
                    _ => return Err(RpcError::invalid_input(format!("filter {id} is not a log filter"))),
                }
            };
            logs(ctx, &filter)
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn logs(ctx: &RpcContext, filter: &Filter) -> RpcResult {
    let query = to_query(ctx, filter)?;
    if query.from > query.to {
        return Ok(json!([]));
    }
    let logs = ctx.chain.reads().logs(&query, ctx.config.max_logs)?;
    if logs.len() > ctx.config.max_logs {
        return Err(RpcError::limit_exceeded(format!(
            "more than {} logs; narrow the filter",
            ctx.config.max_logs
        )));
    }
    Ok(Value::Array(logs.iter().map(|l| json!(convert::log(l, false))).collect()))
}
