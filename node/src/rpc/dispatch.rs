//! Routes a method name to its namespace.

use std::sync::Arc;

use serde_json::Value;

use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::pubsub::WsConnection;
use super::workers::{self, Work};
use super::{admin, clique, debug, eth, filters, net, ots, pubsub, trace, txpool, web3, RpcContext};

/// Whether `method` is privileged, served only with `--rpc-admin`: it changes what this node does
/// (`clique_propose` and `clique_discard` cast this signer's votes; `admin_*` blocks peers and
/// broadcasts blocks) or costs much (`debug_trace*` replays blocks). The read-only `clique_`
/// methods (`getSigners*`, `getSnapshot*`, `proposals`, `status`) stay public, as the chain data
/// they describe is public.
pub fn is_privileged(method: &str) -> bool {
    matches!(method, "clique_propose" | "clique_discard")
        || method.starts_with("admin_")
        || method.starts_with("debug_")
}

/// Handles one call; `conn` is the WebSocket connection it came on, if any; `arrived` is when
/// its request body arrived: the heavy calls of one body (a batch) share one time limit from then.
/// Counted and timed per method in the node's metrics.
pub fn call(
    ctx: &Arc<RpcContext>,
    method: &str,
    params: Option<Value>,
    conn: Option<&Arc<WsConnection>>,
    arrived: std::time::Instant,
) -> RpcResult {
    let start = std::time::Instant::now();
    let result = route(ctx, method, params, conn, arrived);
    let code = result.as_ref().err().map(|e| e.code);
    crate::metrics::rpc_call(method, code != Some(-32601), start.elapsed(), code);
    result
}

fn route(
    ctx: &Arc<RpcContext>,
    method: &str,
    params: Option<Value>,
    conn: Option<&Arc<WsConnection>>,
    arrived: std::time::Instant,
) -> RpcResult {
    if is_privileged(method) && !ctx.config.admin {
        return Err(RpcError::privileged(method));
    }
    if (method.starts_with("ots_") || method.starts_with("erigon_")) && !ctx.config.explorer {
        return Err(RpcError::not_supported(format!(
            "{method} belongs to the block explorer's namespace, served only when the node runs with --rpc-explorer"
        )));
    }
    let p = Params::new(params)?;
    if workers::is_heavy(method) {
        let (worker_ctx, method) = (ctx.clone(), method.to_string());
        return ctx.calls.run(arrived, move |work| heavy(&worker_ctx, &method, p, work));
    }
    match method {
        "eth_subscribe" | "eth_unsubscribe" => {
            return match conn {
                Some(conn) => pubsub::call(ctx, conn, method, p),
                None => Err(RpcError::not_supported(format!("{method} needs a WebSocket connection"))),
            }
        }
        "eth_newFilter"
        | "eth_newBlockFilter"
        | "eth_newPendingTransactionFilter"
        | "eth_uninstallFilter"
        | "eth_getFilterChanges"
        | "eth_getFilterLogs" => return filters::call(ctx, method, p),
        _ => {}
    }
    match method.split_once('_').map(|(ns, _)| ns) {
        Some("eth") => eth::call(ctx, method, p),
        Some("net") => net::call(ctx, method, p),
        Some("web3") => web3::call(ctx, method, p),
        Some("clique") => clique::call(ctx, method, p),
        Some("txpool") => txpool::call(ctx, method, p),
        Some("admin") => admin::call(ctx, method, p),
        Some("debug") => debug::call(ctx, method, p),
        Some("ots") => ots::call(ctx, method, p),
        Some("erigon") if method == "erigon_getHeaderByNumber" => ots::call(ctx, method, p),
        Some("personal") if method == "personal_sign" => eth::sign::personal(ctx, method, p),
        _ => Err(RpcError::method_not_found(method)),
    }
}

/// The heavy methods ([`workers::is_heavy`]), on a call worker.
fn heavy(ctx: &RpcContext, method: &str, p: Params, work: &Work<'_>) -> RpcResult {
    match method {
        "eth_call" => eth::call::eth_call(ctx, p, work),
        "eth_estimateGas" => eth::estimate::estimate_gas(ctx, p, work),
        "eth_createAccessList" => eth::access_list::create_access_list(ctx, p, work),
        "debug_traceTransaction" => trace::trace_transaction(ctx, p, work),
        "debug_traceBlockByNumber" | "debug_traceBlockByHash" => trace::trace_block(ctx, method, p, work),
        "debug_traceCall" => trace::trace_call(ctx, p, work),
        m if m.starts_with("ots_") => ots::heavy(ctx, method, p, work),
        _ => Err(RpcError::method_not_found(method)),
    }
}
