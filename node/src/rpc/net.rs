//! `net_` namespace.

use serde_json::{json, Value};

use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::RpcContext;

/// Handles `net_*` methods.
pub fn call(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    p.at_most(0)?;
    match method {
        "net_version" => Ok(Value::String(ctx.chain.spec().chain_id.to_string())),
        // Listening on the peer network: false with --no-p2p (and on the dev chain, which has none),
        // and until the swarm has bound its first address.
        "net_listening" => Ok(json!(ctx.network.as_ref().is_some_and(|n| !n.listen_addrs.lock().is_empty()))),
        "net_peerCount" => Ok(json!(format!("{:#x}", ctx.network.as_ref().map_or(0, |n| n.peer_count())))),
        _ => Err(RpcError::method_not_found(method)),
    }
}
