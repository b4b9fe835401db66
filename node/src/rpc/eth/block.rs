//! Blocks, block receipts and counts.

use alloy_eips::BlockId;
use serde_json::{json, Value};

use super::super::convert;
use super::super::error::{RpcError, RpcResult};
use super::super::params::Params;
use super::super::RpcContext;
use super::q;
use crate::storage::BlockQuery;

/// The block `id` names with its total difficulty, `None` if there is none. Shared: a block read
/// recently (a client polling `latest`) is not decoded again.
pub(crate) fn load(ctx: &RpcContext, id: BlockId) -> RpcResult<Option<crate::storage::CachedBlock>> {
    let block = match ctx.resolve(Some(id)) {
        Ok(b) => b,
        Err(e) if e.code == -32001 => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(ctx.chain.reads().block_shared(&block.hash)?)
}

/// `eth_getBlockByNumber(block, full)` and `eth_getBlockByHash(hash, full)`.
pub fn get_block(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    p.at_most(2)?;
    let id: BlockId = if method == "eth_getBlockByHash" {
        BlockId::from(p.req::<alloy_primitives::B256>(0)?)
    } else {
        BlockId::Number(p.req(0)?)
    };
    let full: bool = p.req(1)?;
    match load(ctx, id)? {
        Some((block, td)) => Ok(json!(convert::block(&block, td, full))),
        None => Ok(Value::Null),
    }
}

/// `eth_getBlockReceipts(block)`.
pub fn block_receipts(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(1)?;
    let id: BlockId = p.req(0)?;
    let Some((block, _)) = load(ctx, id)? else { return Ok(Value::Null) };
    let receipts = ctx
        .chain
        .reads()
        .receipts_by_hash(&block.hash)?
        .ok_or_else(|| RpcError::internal("receipts missing for a stored block"))?;
    let out: Vec<_> = (0..receipts.len()).map(|i| convert::receipt(&block, &receipts, i)).collect();
    Ok(json!(out))
}

/// `eth_getBlockTransactionCountByNumber/ByHash`.
pub fn tx_count(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(1)?;
    let id: BlockId = p.req(0)?;
    Ok(match load(ctx, id)? {
        Some((block, _)) => q(block.block.body.transactions.len() as u64),
        None => Value::Null,
    })
}

/// `eth_getUncleCountByBlockNumber/ByHash`: Clique blocks have no uncles.
pub fn uncle_count(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(1)?;
    let id: BlockId = p.req(0)?;
    Ok(match load(ctx, id)? {
        Some(_) => q(0),
        None => Value::Null,
    })
}

/// `eth_getTransactionByBlockHashAndIndex` / `...ByBlockNumberAndIndex`.
pub fn tx_by_index(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    p.at_most(2)?;
    let id: BlockId = if method == "eth_getTransactionByBlockHashAndIndex" {
        BlockId::from(p.req::<alloy_primitives::B256>(0)?)
    } else {
        BlockId::Number(p.req(0)?)
    };
    let index: alloy_primitives::U64 = p.req(1)?;
    let block = match ctx.resolve(Some(id)) {
        Ok(b) => b,
        Err(e) if e.code == -32001 => return Ok(Value::Null),
        Err(e) => return Err(e),
    };
    // One row, whatever the block's size.
    Ok(match ctx.chain.reads().tx_at(&block.hash, index.to::<u64>())? {
        Some(t) => {
            let place = convert::BlockPlace::of_stored(&t);
            json!(convert::included_transaction(t.tx, t.sender, &place, t.index))
        }
        None => Value::Null,
    })
}

/// `eth_getUncleByBlock*AndIndex`: there are never uncles, so always null.
pub fn uncle(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(2)?;
    let _: Value = p.req(0)?;
    let _: alloy_primitives::U64 = p.req(1)?;
    let _ = ctx;
    Ok(Value::Null)
}
