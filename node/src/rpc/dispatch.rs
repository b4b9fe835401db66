//! Routes a method name to its namespace.

use serde_json::Value;

use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::{clique, eth, net, web3, RpcContext};

/// Handles one call.
pub fn call(ctx: &RpcContext, method: &str, params: Option<Value>) -> RpcResult {
    let p = Params::new(params)?;
    match method.split_once('_').map(|(ns, _)| ns) {
        Some("eth") => eth::call(ctx, method, p),
        Some("net") => net::call(ctx, method, p),
        Some("web3") => web3::call(ctx, method, p),
        Some("clique") => clique::call(ctx, method, p),
        _ => Err(RpcError::method_not_found(method)),
    }
}
