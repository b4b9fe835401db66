//! `debug_` namespace: raw encodings of headers, blocks, transactions and receipts, and the
//! geth tracers (in [`super::trace`]).

use alloy_eips::eip2718::Encodable2718;
use alloy_eips::BlockId;
use alloy_primitives::{Bytes, B256};
use alloy_rlp::Encodable;
use serde_json::{json, Value};

use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::RpcContext;
use crate::storage::BlockQuery;

fn block(ctx: &RpcContext, p: &Params) -> RpcResult<Option<crate::primitives::SealedBlock>> {
    let id: BlockId = p.req(0)?;
    let resolved = match ctx.resolve(Some(id)) {
        Ok(b) => b,
        Err(e) if e.code == -32001 => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(ctx.chain.reads().block_by_hash(&resolved.hash)?.map(|(b, _)| b))
}

fn rlp(v: &impl Encodable) -> Value {
    let mut buf = Vec::new();
    v.encode(&mut buf);
    json!(Bytes::from(buf))
}

/// Handles `debug_*` methods.
pub fn call(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    match method {
        "debug_getRawHeader" => {
            p.at_most(1)?;
            Ok(block(ctx, &p)?.map_or(Value::Null, |b| rlp(b.header())))
        }
        "debug_getRawBlock" => {
            p.at_most(1)?;
            Ok(block(ctx, &p)?.map_or(Value::Null, |b| rlp(&b.block)))
        }
        "debug_getRawReceipts" => {
            p.at_most(1)?;
            let Some(b) = block(ctx, &p)? else { return Ok(Value::Null) };
            let receipts = ctx.chain.reads().receipts_by_hash(&b.hash)?.unwrap_or_default();
            Ok(json!(receipts.iter().map(|r| Bytes::from(r.encoded_2718())).collect::<Vec<_>>()))
        }
        "debug_getRawTransaction" => {
            p.at_most(1)?;
            let hash: B256 = p.req(0)?;
            let found = ctx
                .chain
                .reads()
                .block_of_tx(&hash)?
                .and_then(|(b, i)| b.block.body.transactions.get(i).cloned());
            let tx = found.or_else(|| ctx.chain.pool().get(&hash).map(|t| t.inner().clone()));
            Ok(tx.map_or(Value::Null, |t| json!(Bytes::from(t.encoded_2718()))))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}
