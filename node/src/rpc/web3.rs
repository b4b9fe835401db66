//! `web3_` namespace.

use alloy_primitives::{keccak256, Bytes};
use serde_json::Value;

use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::RpcContext;

/// Handles `web3_*` methods.
pub fn call(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    match method {
        "web3_clientVersion" => {
            p.at_most(0)?;
            Ok(Value::String(ctx.client_version.clone()))
        }
        "web3_sha3" => {
            p.at_most(1)?;
            let data: Bytes = p.req(0)?;
            Ok(Value::String(keccak256(&data).to_string()))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}
