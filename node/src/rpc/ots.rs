//! The `ots_` namespace (API level 8) and `erigon_getHeaderByNumber`: what the Otterscan block
//! explorer calls, as Erigon, reth and anvil serve it. Served only with `--rpc-explorer`.
//!
//! - blocks: `ots_getBlockDetails(ByHash)` (no transaction list, `logsBloom` null, issuance and
//!   fees, all zero on this chain), `ots_getBlockTransactions(number, page, pageSize)` (pages
//!   counted from the block's end, as Erigon and reth do; inputs cut to the selector, receipts
//!   without logs);
//! - address history: `ots_searchTransactionsBefore/After(address, block, pageSize)` from the
//!   `address_txs` index ([`crate::storage::ExplorerQuery`]), never a scan of the chain; a page
//!   is completed to the end of its last block, newest first;
//! - `ots_getTransactionBySenderAndNonce`, `ots_getContractCreator` from their indexes (a contract
//!   created by another contract: its creator from the creating transaction's call trace);
//! - traces: `ots_traceTransaction`, `ots_getInternalOperations`, `ots_getTransactionError` from
//!   the call tracer (`debug_traceTransaction`'s replay);
//! - `ots_hasCode(address, block)`.

use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rpc_types_eth::TransactionReceipt;
use alloy_rpc_types_trace::geth::{
    CallFrame, GethDebugBuiltInTracerType, GethDebugTracingOptions, GethTrace,
};
use alloy_rpc_types_trace::otterscan::{
    BlockDetails, ContractCreator, InternalOperation, OperationType, OtsBlock, OtsBlockTransactions,
    OtsReceipt, OtsTransactionReceipt, TraceEntry, TransactionsWithReceipts,
};
use serde_json::{json, Value};

use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::workers::Work;
use super::{convert, eth, trace, RpcContext};
use crate::primitives::SealedBlock;
use crate::storage::{BlockQuery, ExplorerQuery, TxPlace};

/// The Otterscan API level served.
pub const API_LEVEL: u64 = 8;

/// Most transactions one search page or block page asks for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Handles `ots_*` and `erigon_getHeaderByNumber`.
pub fn call(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    match method {
        "ots_getApiLevel" => {
            p.at_most(0)?;
            Ok(json!(API_LEVEL))
        }
        "erigon_getHeaderByNumber" => header_by_number(ctx, p),
        "ots_getBlockDetails" | "ots_getBlockDetailsByHash" => block_details(ctx, method, p),
        "ots_getBlockTransactions" => block_transactions(ctx, p),
        "ots_searchTransactionsBefore" => search(ctx, p, Direction::Before),
        "ots_searchTransactionsAfter" => search(ctx, p, Direction::After),
        "ots_getTransactionBySenderAndNonce" => {
            p.at_most(2)?;
            let (sender, nonce): (Address, alloy_primitives::U64) = (p.req(0)?, p.req(1)?);
            Ok(json!(ctx.chain.reads().tx_by_sender_nonce(&sender, nonce.to::<u64>())?))
        }
        "ots_hasCode" => has_code(ctx, p),
        _ => Err(RpcError::method_not_found(method)),
    }
}

/// The trace methods, on a call worker within the request's time and trace limits (they replay
/// the transaction's block as `debug_traceTransaction` does).
pub fn heavy(ctx: &RpcContext, method: &str, p: Params, work: &Work<'_>) -> RpcResult {
    match method {
        "ots_traceTransaction" => Ok(json!(flatten(&call_frame(ctx, p, work)?, 0, Vec::new()))),
        "ots_getInternalOperations" => {
            Ok(json!(internal_operations(&call_frame(ctx, p, work)?, 0, Vec::new())))
        }
        "ots_getContractCreator" => contract_creator(ctx, p, work),
        "ots_getTransactionError" => {
            let frame = call_frame(ctx, p, work)?;
            let output = if frame.error.is_some() { frame.output.unwrap_or_default() } else { Bytes::new() };
            Ok(json!(output))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn block(ctx: &RpcContext, id: BlockId) -> RpcResult<crate::storage::CachedBlock> {
    eth::block::load(ctx, id)?.ok_or_else(|| RpcError::not_found(format!("block {id} not found")))
}

/// `erigon_getHeaderByNumber(number)`: the block without its transactions, or null.
fn header_by_number(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(1)?;
    let number: BlockNumberOrTag = p.req(0)?;
    Ok(match eth::block::load(ctx, BlockId::Number(number))? {
        Some((b, td)) => json!(convert::block(&b, td, false)),
        None => Value::Null,
    })
}

fn block_details(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    p.at_most(1)?;
    let id = if method == "ots_getBlockDetailsByHash" {
        BlockId::from(p.req::<B256>(0)?)
    } else {
        BlockId::Number(p.req(0)?)
    };
    let (b, td) = block(ctx, id)?;
    // No fees and no block reward on this chain: issuance and fees are zero.
    let mut details = json!(BlockDetails::new(convert::block(&b, td, false), Default::default(), U256::ZERO));
    details["block"]["logsBloom"] = Value::Null;
    Ok(details)
}

/// A receipt as Otterscan lists it: no logs, no bloom.
fn ots_receipt(r: TransactionReceipt, timestamp: Option<u64>) -> OtsTransactionReceipt {
    let receipt = r.map_inner(|env| OtsReceipt {
        status: env.status(),
        cumulative_gas_used: env.cumulative_gas_used(),
        logs: None,
        logs_bloom: None,
        r#type: env.tx_type() as u8,
    });
    OtsTransactionReceipt { receipt, timestamp }
}

fn page_size(p: &Params, i: usize) -> RpcResult<usize> {
    let size: alloy_primitives::U64 = p.req(i)?;
    let size = size.to::<u64>();
    if size == 0 || size > MAX_PAGE_SIZE as u64 {
        return Err(RpcError::invalid_params(format!("page size must be 1 to {MAX_PAGE_SIZE}, got {size}")));
    }
    Ok(size as usize)
}

/// `ots_getBlockTransactions(number, pageNumber, pageSize)`.
fn block_transactions(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(3)?;
    let number: BlockNumberOrTag = p.req(0)?;
    let page: alloy_primitives::U64 = p.req(1)?;
    let size = page_size(&p, 2)?;
    let (b, td) = block(ctx, BlockId::Number(number))?;
    let receipts = ctx.chain.reads().receipts_by_hash(&b.hash)?.unwrap_or_default();
    let count = b.block.body.transactions.len();
    let end = count.saturating_sub((page.to::<u64>() as usize).saturating_mul(size));
    let start = end.saturating_sub(size);
    let mut full = convert::block(&b, td, true);
    if let alloy_rpc_types_eth::BlockTransactions::Full(txs) = &mut full.transactions {
        *txs = txs.drain(start..end).collect();
    }
    let receipts = (start..end).map(|i| ots_receipt(convert::receipt(&b, &receipts, i), None)).collect();
    let mut fullblock = OtsBlock::from(full);
    fullblock.transaction_count = count;
    let mut out = json!(OtsBlockTransactions { fullblock, receipts });
    out["fullblock"]["logsBloom"] = Value::Null;
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Before,
    After,
}

/// `ots_searchTransactionsBefore/After(address, blockNumber, pageSize)`.
fn search(ctx: &RpcContext, p: Params, dir: Direction) -> RpcResult {
    p.at_most(3)?;
    let address: Address = p.req(0)?;
    let from: alloy_primitives::U64 = p.req(1)?;
    let size = page_size(&p, 2)?;
    let from = from.to::<u64>();
    let (places, more) =
        ctx.chain.reads().address_txs_page(&address, from, size, dir == Direction::Before)?;
    let (first_page, last_page) = match dir {
        Direction::Before => (from == 0, !more),
        Direction::After => (!more, from == 0),
    };
    let mut places = places;
    places.sort_by_key(|p| std::cmp::Reverse((p.number, p.index)));
    let (txs, receipts) = load_places(ctx, &places)?;
    Ok(json!(TransactionsWithReceipts { txs, receipts, first_page, last_page }))
}

/// The transactions and receipts (with their block's timestamp) at `places`.
fn load_places(
    ctx: &RpcContext,
    places: &[TxPlace],
) -> RpcResult<(Vec<alloy_rpc_types_eth::Transaction>, Vec<OtsTransactionReceipt>)> {
    let mut txs = Vec::with_capacity(places.len());
    let mut receipts = Vec::with_capacity(places.len());
    let mut cached: Option<(u64, SealedBlock, Vec<alloy_consensus::ReceiptEnvelope>)> = None;
    for place in places {
        if cached.as_ref().map(|c| c.0) != Some(place.number) {
            let loaded = ctx.chain.reads().canonical_block_with_receipts(place.number)?;
            let (b, r) = loaded
                .ok_or_else(|| RpcError::internal(format!("indexed block {} is missing", place.number)))?;
            cached = Some((place.number, b, r));
        }
        let (_, b, r) = cached.as_ref().expect("loaded above");
        let i = place.index as usize;
        if i >= b.block.body.transactions.len() || i >= r.len() {
            return Err(RpcError::internal(format!("index points past block {}", place.number)));
        }
        txs.push(convert::transaction(b, i));
        receipts.push(ots_receipt(convert::receipt(b, r, i), Some(b.header().timestamp)));
    }
    Ok((txs, receipts))
}

/// `ots_hasCode(address, block)`.
fn has_code(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(2)?;
    let address: Address = p.req(0)?;
    let at = ctx.resolve(p.opt::<BlockId>(1)?)?;
    let has = ctx.with_state(at.number, |s| {
        Ok(s.account(&address)?.is_some_and(|a| a.code_hash != revm::primitives::KECCAK_EMPTY))
    })?;
    Ok(json!(has))
}

/// The call tracer's frame tree of the transaction named by the first parameter.
fn call_frame(ctx: &RpcContext, p: Params, work: &Work<'_>) -> RpcResult<CallFrame> {
    p.at_most(1)?;
    trace_frame(ctx, &p.req(0)?, work)
}

/// The call tracer's frame of mined transaction `hash`.
fn trace_frame(ctx: &RpcContext, hash: &B256, work: &Work<'_>) -> RpcResult<CallFrame> {
    let opts = GethDebugTracingOptions::default().with_tracer(GethDebugBuiltInTracerType::CallTracer.into());
    match trace::trace_mined(ctx, work, hash, &opts)? {
        GethTrace::CallTracer(frame) => Ok(frame),
        other => Err(RpcError::internal(format!("the call tracer returned another trace: {other:?}"))),
    }
}

/// `ots_getContractCreator`: the creating transaction and the account that ran the creation (the
/// sender for a creation transaction; the contract that ran `CREATE`/`CREATE2` otherwise, read
/// from the transaction's trace). On a call worker because of that trace.
fn contract_creator(ctx: &RpcContext, p: Params, work: &Work<'_>) -> RpcResult {
    p.at_most(1)?;
    let address: Address = p.req(0)?;
    if let Some((hash, creator)) = work.reads.contract_creator(&address)? {
        return Ok(json!(ContractCreator { hash, creator }));
    }
    let Some(hash) = work.reads.internal_creation(&address)? else { return Ok(Value::Null) };
    let frame = trace_frame(ctx, &hash, work)?;
    match creator_in(&frame, &address) {
        Some(creator) => Ok(json!(ContractCreator { hash, creator })),
        None => Err(RpcError::internal(format!("the trace of {hash} does not create {address}"))),
    }
}

/// The account whose `CREATE`/`CREATE2` frame in `frame` made `address`.
fn creator_in(frame: &CallFrame, address: &Address) -> Option<Address> {
    if matches!(frame.typ.as_str(), "CREATE" | "CREATE2") && frame.to == Some(*address) {
        return Some(frame.from);
    }
    frame.calls.iter().find_map(|c| creator_in(c, address))
}

/// Every frame, depth first, as `ots_traceTransaction` lists them.
fn flatten(frame: &CallFrame, depth: u32, mut out: Vec<TraceEntry>) -> Vec<TraceEntry> {
    out.push(TraceEntry {
        r#type: frame.typ.clone(),
        depth,
        from: frame.from,
        to: frame.to.unwrap_or_default(),
        value: frame.value,
        input: frame.input.clone(),
        output: frame.output.clone().unwrap_or_default(),
    });
    frame.calls.iter().fold(out, |out, c| flatten(c, depth + 1, out))
}

/// Value transfers, creations and self-destructs below the top call.
fn internal_operations(
    frame: &CallFrame,
    depth: u32,
    mut out: Vec<InternalOperation>,
) -> Vec<InternalOperation> {
    if depth > 0 {
        let value = frame.value.unwrap_or_default();
        let kind = match frame.typ.as_str() {
            "CALL" | "CALLCODE" if !value.is_zero() => Some(OperationType::OpTransfer),
            "CREATE" => Some(OperationType::OpCreate),
            "CREATE2" => Some(OperationType::OpCreate2),
            "SELFDESTRUCT" => Some(OperationType::OpSelfDestruct),
            _ => None,
        };
        if let Some(r#type) = kind {
            out.push(InternalOperation { r#type, from: frame.from, to: frame.to.unwrap_or_default(), value });
        }
    }
    frame.calls.iter().fold(out, |out, c| internal_operations(c, depth + 1, out))
}
