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
        "net_listening" => Ok(json!(true)),
        // Peers arrive with the libp2p network; a single node has none.
        "net_peerCount" => Ok(json!("0x0")),
        _ => Err(RpcError::method_not_found(method)),
    }
}
