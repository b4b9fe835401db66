//! `eth_getLogs`.

use alloy_rpc_types_eth::{Filter, FilterBlockOption};
use serde_json::json;

use super::super::convert;
use super::super::error::{RpcError, RpcResult};
use super::super::params::Params;
use super::super::RpcContext;
use crate::storage::{BlockQuery, LogFilterQuery};

/// Turns an RPC filter into a storage query over a resolved range, enforcing the range cap.
pub fn to_query(ctx: &RpcContext, filter: &Filter) -> RpcResult<LogFilterQuery> {
    let (from, to) = match &filter.block_option {
        FilterBlockOption::AtBlockHash(hash) => {
            let (header, _) = ctx
                .chain
                .reads()
                .header_by_hash(hash)?
                .ok_or_else(|| RpcError::not_found(format!("block {hash} not found")))?;
            (header.number, header.number)
        }
        FilterBlockOption::Range { from_block, to_block } => {
            let head = ctx.chain.head_number();
            let resolve = |b: &Option<alloy_eips::BlockNumberOrTag>| -> u64 {
                match b {
                    None => head,
                    Some(t) => match t.as_number() {
                        Some(n) => n,
                        None if t.is_earliest() => 0,
                        None => head,
                    },
                }
            };
            let (from, to) = (resolve(from_block), resolve(to_block).min(head));
            if from > to && from <= head {
                return Err(RpcError::invalid_params(format!(
                    "invalid block range: fromBlock {from} > toBlock {to}"
                )));
            }
            (from, to)
        }
    };
    if to >= from && to - from >= ctx.config.max_log_range {
        return Err(RpcError::limit_exceeded(format!(
            "block range {from}..{to} is wider than the {} blocks one query may cover",
            ctx.config.max_log_range
        )));
    }
    let mut topics: [Vec<_>; 4] = Default::default();
    for (i, t) in filter.topics.iter().enumerate() {
        topics[i] = t.iter().copied().collect();
    }
    Ok(LogFilterQuery { from, to, addresses: filter.address.iter().copied().collect(), topics })
}

/// `eth_getLogs(filter)`.
pub fn get_logs(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(1)?;
    let filter: Filter = p.req(0)?;
    let query = to_query(ctx, &filter)?;
    if query.from > query.to {
        return Ok(json!([]));
    }
    let logs = ctx.chain.reads().logs(&query, ctx.config.max_logs)?;
    if logs.len() > ctx.config.max_logs {
        return Err(RpcError::limit_exceeded(format!(
            "query returned more than {} results; narrow the block range or filters",
            ctx.config.max_logs
        )));
    }
    Ok(json!(logs.iter().map(|l| convert::log(l, false)).collect::<Vec<_>>()))
}
