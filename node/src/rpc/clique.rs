//! `clique_` namespace, as geth had it (`consensus/clique/api.go`).
//!
//! - `clique_getSigners(block?)`, `clique_getSignersAtHash(hash)`: sorted signer addresses;
//! - `clique_getSnapshot(block?)`, `clique_getSnapshotAtHash(hash)`: geth's snapshot JSON,
//!   `{number, hash, signers: {addr: {}}, recents: {"num": addr}, votes: [{signer, block,
//!   address, authorize}], tally: {addr: {authorize, votes}}}`;
//! - `clique_propose(address, authorize)`, `clique_discard(address)`, `clique_proposals()`: the
//!   votes this node's signer casts (see [`crate::consensus::clique::proposals`]);
//! - `clique_status()`: `{inturnPercent, sealerActivity: {addr: blocks}, numBlocks}` over the
//!   last 64 blocks.

use alloy_eips::BlockId;
use alloy_primitives::{Address, B256};
use serde_json::{json, Map, Value};

use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::RpcContext;
use crate::consensus::clique::{recover_sealer, Snapshot, DIFF_IN_TURN};
use crate::storage::BlockQuery;

/// Blocks `clique_status` looks back over (geth's `numBlocks`).
pub const STATUS_BLOCKS: u64 = 64;

/// Handles `clique_*` methods.
pub fn call(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    match method {
        "clique_getSigners" => {
            p.at_most(1)?;
            let snap = snapshot_for(ctx, p.opt::<BlockId>(0)?)?;
            Ok(signers_json(&snap))
        }
        "clique_getSignersAtHash" => {
            p.at_most(1)?;
            let hash: B256 = p.req(0)?;
            let snap = snapshot_for(ctx, Some(BlockId::from(hash)))?;
            Ok(signers_json(&snap))
        }
        "clique_getSnapshot" => {
            p.at_most(1)?;
            Ok(snapshot_json(&snapshot_for(ctx, p.opt::<BlockId>(0)?)?))
        }
        "clique_getSnapshotAtHash" => {
            p.at_most(1)?;
            let hash: B256 = p.req(0)?;
            Ok(snapshot_json(&snapshot_for(ctx, Some(BlockId::from(hash)))?))
        }
        "clique_propose" => {
            p.at_most(2)?;
            let address: Address = p.req(0)?;
            let authorize: bool = p.req(1)?;
            ctx.proposals.propose(address, authorize);
            Ok(Value::Null)
        }
        "clique_discard" => {
            p.at_most(1)?;
            let address: Address = p.req(0)?;
            ctx.proposals.discard(&address);
            Ok(Value::Null)
        }
        "clique_proposals" => {
            p.at_most(0)?;
            let map: Map<String, Value> =
                ctx.proposals.all().into_iter().map(|(a, auth)| (hex(&a), json!(auth))).collect();
            Ok(Value::Object(map))
        }
        "clique_status" => {
            p.at_most(0)?;
            status(ctx)
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn hex(a: &Address) -> String {
    format!("{a:#x}")
}

fn signers_json(snap: &Snapshot) -> Value {
    json!(snap.signers_sorted())
}

/// geth's JSON form of a snapshot (addresses in lower case, numbers as JSON numbers).
pub fn snapshot_json(snap: &Snapshot) -> Value {
    let signers: Map<String, Value> = snap.signers.iter().map(|a| (hex(a), json!({}))).collect();
    let recents: Map<String, Value> =
        snap.recents.iter().map(|(n, a)| (n.to_string(), json!(hex(a)))).collect();
    let votes: Vec<Value> = snap
        .votes
        .iter()
        .map(|v| {
            json!({
                "signer": hex(&v.signer),
                "block": v.block,
                "address": hex(&v.address),
                "authorize": v.authorize,
            })
        })
        .collect();
    let tally: Map<String, Value> = snap
        .tally
        .iter()
        .map(|(a, t)| (hex(a), json!({"authorize": t.authorize, "votes": t.votes})))
        .collect();
    json!({
        "number": snap.number,
        "hash": snap.hash,
        "signers": signers,
        "recents": recents,
        "votes": votes,
        "tally": tally,
    })
}

/// The snapshot after the block `id` names (the head when absent).
fn snapshot_for(ctx: &RpcContext, id: Option<BlockId>) -> RpcResult<Snapshot> {
    let block = ctx.resolve(id)?;
    snapshot_at(ctx, block.hash)
}

/// The Clique snapshot after block `hash`: the head's, a stored one, or one rebuilt from the
/// nearest stored snapshot below it by applying the canonical headers in between (stored
/// snapshots are the recent ones and every 1024th).
pub fn snapshot_at(ctx: &RpcContext, hash: B256) -> RpcResult<Snapshot> {
    let head = ctx.chain.head();
    if head.hash == hash {
        return Ok(head.snapshot);
    }
    crate::consensus::clique::snapshot_after(ctx.chain.reads(), hash).map_err(|e| match e {
        crate::consensus::clique::SnapshotLookupError::NotFound(what) => RpcError::not_found(what),
        other => RpcError::internal(other),
    })
}

/// `clique_status`: the share of in-turn blocks and the blocks each signer sealed among the last
/// [`STATUS_BLOCKS`] blocks up to the head (the genesis, which nobody sealed, excluded).
///
/// geth counted `head-64 .. head-1` (leaving the head out); this counts the 64 blocks ending at
/// the head, so a just-sealed block shows up.
fn status(ctx: &RpcContext) -> RpcResult {
    let head = ctx.chain.head();
    let end = head.header.number;
    let start = end.saturating_sub(STATUS_BLOCKS - 1).max(1);
    let mut activity: Map<String, Value> = head.snapshot.signers.iter().map(|s| (hex(s), json!(0))).collect();
    let mut in_turn = 0u64;
    let mut counted = 0u64;
    if end >= 1 {
        let headers = ctx.chain.reads().canonical_headers(start, end)?;
        for header in headers {
            let sealer = recover_sealer(&header).map_err(RpcError::internal)?;
            counted += 1;
            if header.difficulty == DIFF_IN_TURN {
                in_turn += 1;
            }
            let n = activity.entry(hex(&sealer)).or_insert(json!(0));
            *n = json!(n.as_u64().unwrap_or(0) + 1);
        }
    }
    let percent = if counted == 0 { 0.0 } else { 100.0 * in_turn as f64 / counted as f64 };
    // Go prints 100 for float64(100); keep whole numbers integral.
    let percent = if percent.fract() == 0.0 { json!(percent as u64) } else { json!(percent) };
    Ok(json!({"inturnPercent": percent, "sealerActivity": activity, "numBlocks": counted}))
}
