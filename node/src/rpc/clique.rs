//! `clique_` namespace, as geth had it.

use alloy_eips::BlockId;

use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::RpcContext;
use crate::consensus::clique::Snapshot;

/// Handles `clique_*` methods.
pub fn call(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    match method {
        "clique_getSigners" => {
            p.at_most(1)?;
            let block = ctx.resolve(p.opt::<BlockId>(0)?)?;
            let snap = snapshot_at(ctx, block.hash)?;
            Ok(serde_json::to_value(snap.signers_sorted()).map_err(RpcError::internal)?)
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

/// The Clique snapshot after block `hash`.
pub fn snapshot_at(ctx: &RpcContext, hash: alloy_primitives::B256) -> RpcResult<Snapshot> {
    let head = ctx.chain.head();
    if head.hash == hash {
        return Ok(head.snapshot);
    }
    let json: Option<String> = ctx.chain.reads().with(|c| {
        use rusqlite::OptionalExtension;
        Ok(c.query_row("SELECT snapshot FROM snapshots WHERE hash = ?1", [hash.as_slice()], |r| r.get(0))
            .optional()?)
    })?;
    let json = json.ok_or_else(|| {
        RpcError::not_found(format!(
            "no Clique snapshot kept for block {hash} (recent blocks and every 1024th are kept)"
        ))
    })?;
    serde_json::from_str(&json).map_err(RpcError::internal)
}
