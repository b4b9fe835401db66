//! `admin_` namespace (only with `--rpc-admin`): peer-network introspection and control.
//! Meant for operators on a trusted connection and for tests (partitions, peer scoring).

use alloy_primitives::Bytes;
use libp2p::PeerId;
use serde_json::{json, Value};

use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::RpcContext;
use crate::network::Command;

/// Handles `admin_*` methods.
pub fn call(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    let net = ctx
        .network
        .as_ref()
        .ok_or_else(|| RpcError::not_supported("this node runs without the peer network"))?;
    let peer = |p: &Params| -> RpcResult<PeerId> {
        let s: String = p.req(0)?;
        s.parse().map_err(|e| RpcError::invalid_params(format!("invalid peer id {s}: {e}")))
    };
    match method {
        "admin_nodeInfo" => {
            p.at_most(0)?;
            let addrs: Vec<String> = net.listen_addrs.lock().iter().map(|a| a.to_string()).collect();
            Ok(json!({"id": net.peer_id.to_string(), "listenAddrs": addrs}))
        }
        "admin_peers" => {
            p.at_most(0)?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            if !net.admin_blocking(Command::Scores(tx)) {
                return Err(RpcError::internal("network stopped"));
            }
            let scores = rx.blocking_recv().map_err(|_| RpcError::internal("network stopped"))?;
            Ok(Value::Array(
                scores.into_iter().map(|(id, score)| json!({"id": id.to_string(), "score": score})).collect(),
            ))
        }
        "admin_blockPeer" | "admin_unblockPeer" => {
            p.at_most(1)?;
            let id = peer(&p)?;
            let cmd = if method == "admin_blockPeer" { Command::Block(id) } else { Command::Unblock(id) };
            Ok(json!(net.admin_blocking(cmd)))
        }
        "admin_broadcastRawBlock" => {
            p.at_most(1)?;
            let raw: Bytes = p.req(0)?;
            Ok(json!(net.admin_blocking(Command::BroadcastRawBlock(raw.to_vec()))))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}
