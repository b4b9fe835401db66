//! `debug_traceTransaction`, `debug_traceBlockByNumber/ByHash` and `debug_traceCall`.
//!
//! The tracers are revm-inspectors' geth tracers ([`DebugInspector`]): the default struct
//! logger (`structLogs`), `callTracer` and `prestateTracer`, and also `4byteTracer`,
//! `flatCallTracer`, `muxTracer` and `noopTracer`. JavaScript tracers are refused.
//!
//! Tracing a mined transaction replays its block: the state at the end of the parent block,
//! the block's own environment (the same `block_env` and `EvmConfig` as the executor, so every fee is
//! zero), the earlier transactions of the block executed and committed into a
//! [`StateOverlay`], then the target transaction run under the inspector. Tracing a block does
//! the same with the inspector on every transaction.
//!
//! Every trace runs on a call worker ([`super::workers`]) under a [`Budget`]: the `timeout`
//! option (a Go duration, as in geth, e.g. `"10s"`) shortens `--rpc-call-timeout` (it cannot
//! lengthen it), `--rpc-trace-max-steps` caps the EVM steps of the whole request and
//! `--rpc-trace-max-bytes` what the tracer records (estimated per step for the struct logger, per
//! call frame for the call tracers); the [`Meter`] inspector runs next to the tracer and stops the
//! EVM at the first limit passed, and the request answers a -32005 error naming it. Transactions
//! replayed before the traced one run without a tracer; the time limit is checked between them.
//! The struct logger's `limit` option caps the number of steps recorded.

use std::cell::RefCell;

use alloy_eips::BlockId;
use alloy_primitives::{Address, B256, U256};
use alloy_rpc_types_eth::TransactionRequest;
use alloy_rpc_types_trace::geth::{
    GethDebugTracerType, GethDebugTracingCallOptions, GethDebugTracingOptions, GethTrace, TraceResult,
};
use revm::bytecode::Bytecode;
use revm::context::{BlockEnv, TxEnv};
use revm::context_interface::result::EVMError;
use revm::database_interface::{Database, DatabaseRef};
use revm::state::AccountInfo as RevmAccountInfo;
use revm::{ExecuteCommitEvm, InspectEvm};
use revm_inspectors::tracing::{DebugInspector, DebugInspectorError, TransactionContext};

use super::error::{RpcError, RpcResult};
use super::eth::call::{call_env, request_tx_env, Overrides};
use super::params::Params;
use super::workers::Work;
use super::RpcContext;
use crate::blockchain::block_input;
use crate::execution::budget::{parse_go_duration, Budget, Meter, Recording};
use crate::execution::{block_env, tx_env, EvmConfig, EvmMode};
use crate::primitives::SealedBlock;
use crate::state::{BlockHashes, StateError, StateOverlay, StateReader};
use crate::storage::BlockQuery;

/// Which transactions of a block to trace.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Every transaction.
    All,
    /// Only the one at this index; the block is replayed up to it.
    Index(usize),
}

/// `debug_traceTransaction(hash, options?)`.
pub fn trace_transaction(ctx: &RpcContext, p: Params, work: &Work<'_>) -> RpcResult {
    p.at_most(2)?;
    let hash: B256 = p.req(0)?;
    let opts: GethDebugTracingOptions = p.opt(1)?.unwrap_or_default();
    to_json(&trace_mined(ctx, work, &hash, &opts)?)
}

/// Traces mined transaction `hash` with `opts`, replaying its block up to it, within the
/// request's budget.
pub(crate) fn trace_mined(
    ctx: &RpcContext,
    work: &Work<'_>,
    hash: &B256,
    opts: &GethDebugTracingOptions,
) -> RpcResult<GethTrace> {
    let hash = *hash;
    let budget = trace_budget(work, opts)?;
    let found = ctx.chain.reads().block_of_tx(&hash)?;
    let (block, index) =
        found.ok_or_else(|| RpcError::not_found(format!("transaction {hash} not found in a block")))?;
    let mut traces = trace_block_txs(ctx, work.reads, &block, Target::Index(index), opts, &budget)?;
    match traces.pop() {
        Some(TraceResult::Success { result, .. }) => Ok(result),
        Some(TraceResult::Error { error, .. }) => Err(RpcError::invalid_input(error)),
        None => Err(RpcError::internal(format!("transaction {hash} was not traced"))),
    }
}

/// `debug_traceBlockByNumber(number, options?)` and `debug_traceBlockByHash(hash, options?)`:
/// `[{txHash, result}]` in block order.
pub fn trace_block(ctx: &RpcContext, method: &str, p: Params, work: &Work<'_>) -> RpcResult {
    p.at_most(2)?;
    let id = if method == "debug_traceBlockByHash" {
        BlockId::from(p.req::<B256>(0)?)
    } else {
        BlockId::Number(p.req(0)?)
    };
    let opts: GethDebugTracingOptions = p.opt(1)?.unwrap_or_default();
    let budget = trace_budget(work, &opts)?;
    let resolved = ctx.resolve(Some(id))?;
    let block = ctx
        .chain
        .reads()
        .block_by_hash(&resolved.hash)?
        .map(|(b, _)| b)
        .ok_or_else(|| RpcError::not_found(format!("block {} not found", resolved.hash)))?;
    let traces = trace_block_txs(ctx, work.reads, &block, Target::All, &opts, &budget)?;
    to_json(&traces)
}

/// `debug_traceCall(request, block?, options?)`: runs the request like `eth_call` (over the
/// state at the end of `block`, or, with `txIndex`, before that transaction of the block) under
/// the tracer, with the options' `stateOverrides` and `blockOverrides`.
pub fn trace_call(ctx: &RpcContext, p: Params, work: &Work<'_>) -> RpcResult {
    p.at_most(3)?;
    let req: TransactionRequest = p.req(0)?;
    let resolved = ctx.resolve(p.opt::<BlockId>(1)?)?;
    let opts: GethDebugTracingCallOptions = p.opt(2)?.unwrap_or_default();
    let GethDebugTracingCallOptions { tracing_options, state_overrides, block_overrides, tx_index } = opts;
    check_tracer(&tracing_options)?;
    let budget = trace_budget(work, &tracing_options)?;
    let env = call_env(ctx, &resolved)?;
    let gas = req.gas.unwrap_or(env.gas_cap).min(env.gas_cap);
    let chain_id = ctx.chain.spec().chain_id;
    let tx = request_tx_env(chain_id, &req, gas)?;
    let overrides = Overrides { state: state_overrides, block: block_overrides };

    // With txIndex the call runs inside the block, after its first `txIndex` transactions.
    let (state_number, replay) = match tx_index {
        None => (resolved.number, None),
        Some(i) => {
            let block = ctx
                .chain
                .reads()
                .block_by_hash(&resolved.hash)?
                .map(|(b, _)| b)
                .ok_or_else(|| RpcError::not_found(format!("block {} not found", resolved.hash)))?;
            let count = block.block.body.transactions.len() as u64;
            if i > count {
                return Err(RpcError::invalid_params(format!(
                    "txIndex {i} is past the {count} transactions of block {}",
                    resolved.number
                )));
            }
            let parent = resolved
                .number
                .checked_sub(1)
                .ok_or_else(|| RpcError::invalid_params("txIndex cannot be used on the genesis block"))?;
            (parent, Some((block, i as usize)))
        }
    };
    let mut hashes = hashes_before(ctx, env.header.number)?;
    if let Some(extra) = overrides.block.as_ref().and_then(|b| b.block_hash.clone()) {
        hashes.0.extend(extra);
    }
    let mut block = block_env(&block_input(&env.header));
    overrides.apply_block(&mut block)?;
    let config = EvmConfig::new(chain_id);
    ctx.with_state_in(work.reads, state_number, |state| {
        let mut overlay = StateOverlay::new(state, &hashes);
        if let Some((mined, upto)) = &replay {
            // The block's own transactions run in the block's own environment.
            let mined_env = block_env(&block_input(mined.header()));
            let mut evm = config.evm(&mut overlay, mined_env, EvmMode::Block);
            for t in mined.recovered_txs().take(*upto) {
                check_time(&budget)?;
                evm.transact_commit(tx_env(&t)).map_err(evm_error)?;
            }
        }
        overrides.apply_state(&mut overlay)?;
        let mut tracer =
            Tracer::new(&tracing_options, &mut overlay, block, (config, EvmMode::Call), &budget)?;
        let trace = tracer.trace(tx, None)?;
        to_json(&trace)
    })
}

/// Traces the transactions of `block` selected by `target`, replaying the ones before.
fn trace_block_txs(
    ctx: &RpcContext,
    reads: &crate::storage::ReadPool,
    block: &SealedBlock,
    target: Target,
    opts: &GethDebugTracingOptions,
    budget: &Budget,
) -> RpcResult<Vec<TraceResult>> {
    check_tracer(opts)?;
    let number = block.number();
    let Some(parent) = number.checked_sub(1) else {
        // The genesis block has no transactions.
        return Ok(Vec::new());
    };
    let hashes = hashes_before(ctx, number)?;
    let benv = block_env(&block_input(block.header()));
    let config = (EvmConfig::new(ctx.chain.spec().chain_id), EvmMode::Block);
    ctx.with_state_in(reads, parent, |state| {
        let mut overlay = StateOverlay::new(state, &hashes);
        let mut tracer = Tracer::new(opts, &mut overlay, benv, config, budget)?;
        let mut out = Vec::new();
        for (index, tx) in block.recovered_txs().enumerate() {
            let env = tx_env(&tx);
            let tx_hash = *tx.inner().tx_hash();
            match target {
                Target::Index(i) if index < i => tracer.replay(env)?,
                Target::Index(i) if index > i => break,
                _ => {
                    let tx_ctx = TransactionContext {
                        block_hash: Some(block.hash),
                        tx_index: Some(index),
                        tx_hash: Some(tx_hash),
                    };
                    let result = match tracer.trace(env, Some(tx_ctx)) {
                        Ok(result) => TraceResult::Success { result, tx_hash: Some(tx_hash) },
                        Err(e) if e.code == -32603 || e.code == -32002 || e.is_limit() => return Err(e),
                        Err(e) => TraceResult::Error { error: e.message, tx_hash: Some(tx_hash) },
                    };
                    out.push(result);
                }
            }
        }
        Ok(out)
    })
}

/// An EVM over an overlay with the geth tracer of the options, reused across a block's
/// transactions.
struct Tracer<'o, 's> {
    evm: TracingEvm<'o, 's>,
    block: BlockEnv,
    budget: Budget,
}

/// The meter runs first at every step, so a limit stops the EVM before the tracer records more.
type TracingEvm<'o, 's> = revm::handler::MainnetEvm<
    revm::handler::MainnetContext<&'o mut StateOverlay<'s, dyn StateReader + 's>>,
    (Meter, DebugInspector),
>;

impl<'o, 's> Tracer<'o, 's> {
    fn new(
        opts: &GethDebugTracingOptions,
        overlay: &'o mut StateOverlay<'s, dyn StateReader + 's>,
        block: BlockEnv,
        (config, mode): (EvmConfig, EvmMode),
        budget: &Budget,
    ) -> RpcResult<Self> {
        let inspector = DebugInspector::new(opts.clone()).map_err(tracer_error)?;
        let meter = budget.meter(recording(opts));
        let evm = config.evm_with_inspector(overlay, block.clone(), mode, (meter, inspector));
        Ok(Self { evm, block, budget: *budget })
    }

    /// Executes `tx` without tracing and commits it (after checking the time limit: a replayed
    /// transaction is not metered, and runs at most one block's work).
    fn replay(&mut self, tx: TxEnv) -> RpcResult<()> {
        check_time(&self.budget)?;
        self.evm.transact_commit(tx).map_err(evm_error)?;
        Ok(())
    }

    /// Executes `tx` under the tracer, commits it, and returns its trace.
    fn trace(&mut self, tx: TxEnv, tx_ctx: Option<TransactionContext>) -> RpcResult<GethTrace> {
        let outcome = self.evm.inspect_tx(tx.clone());
        if let Some(exceeded) = self.evm.inspector.0.exceeded() {
            return Err(RpcError::limit_exceeded(exceeded.to_string()));
        }
        let res = outcome.map_err(evm_error)?;
        let trace = {
            // The overlay still holds the state before `tx`: what the prestate tracer reports.
            let evm = &mut self.evm;
            let mut db = OverlayRef(RefCell::new(&mut *evm.ctx.journaled_state.database));
            evm.inspector.1.get_result(tx_ctx, &tx, &self.block, &res, &mut db).map_err(tracer_error)?
        };
        self.evm.inspector.1.fuse().map_err(tracer_error)?;
        self.evm.commit(res.state);
        Ok(trace)
    }
}

/// Read-only access to an overlay, for the tracers that read the state before a transaction.
struct OverlayRef<'r, D>(RefCell<&'r mut D>);

impl<D: Database> DatabaseRef for OverlayRef<'_, D> {
    type Error = D::Error;

    fn basic_ref(&self, address: Address) -> Result<Option<RevmAccountInfo>, Self::Error> {
        self.0.borrow_mut().basic(address)
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.0.borrow_mut().code_by_hash(code_hash)
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.0.borrow_mut().storage(address, index)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        self.0.borrow_mut().block_hash(number)
    }
}

/// The budget of a trace request: the worker's, shortened by the `timeout` option, with the
/// server's trace limits.
fn trace_budget(work: &Work<'_>, opts: &GethDebugTracingOptions) -> RpcResult<Budget> {
    let mut budget = work.budget;
    if let Some(text) = &opts.timeout {
        let timeout = parse_go_duration(text).map_err(RpcError::invalid_params)?;
        budget = budget.narrowed(timeout, "the tracer's timeout option");
    }
    Ok(budget.with_trace_limits(work.limits.trace_max_steps, work.limits.trace_max_bytes))
}

/// What the tracer of `opts` records, for the meter's byte count.
fn recording(opts: &GethDebugTracingOptions) -> Recording {
    let name = opts.tracer.as_ref().map(|t| t.as_str().to_string()).unwrap_or_default();
    match name.as_str() {
        // The struct logger: one record per step.
        "" => Recording::Steps {
            stack: opts.config.is_stack_enabled(),
            memory: opts.config.is_memory_enabled(),
            return_data: opts.config.is_return_data_enabled(),
            limit: opts.config.limit.filter(|l| *l > 0),
        },
        "4byteTracer" | "noopTracer" => Recording::Nothing,
        _ => Recording::Frames,
    }
}

/// A timeout error if the budget's time is up.
fn check_time(budget: &Budget) -> RpcResult<()> {
    match budget.expired() {
        Some(e) => Err(RpcError::limit_exceeded(e.to_string())),
        None => Ok(()),
    }
}

/// Refuses tracers that cannot run here, before any state is read.
fn check_tracer(opts: &GethDebugTracingOptions) -> RpcResult<()> {
    match &opts.tracer {
        Some(GethDebugTracerType::JsTracer(name)) if !name.is_empty() => {
            Err(RpcError::invalid_params(format!(
                "tracer {name:?} is not supported: use the default struct logger, callTracer, \
                 prestateTracer, 4byteTracer, flatCallTracer, muxTracer or noopTracer \
                 (JavaScript tracers are not available)"
            )))
        }
        _ => Ok(()),
    }
}

/// The hashes of the 256 blocks before `number`, for BLOCKHASH.
fn hashes_before(ctx: &RpcContext, number: u64) -> RpcResult<BlockHashes> {
    if number == 0 {
        return Ok(BlockHashes::default());
    }
    let range = ctx.chain.reads().canonical_range(number.saturating_sub(256), number - 1)?;
    Ok(BlockHashes(range.into_iter().collect()))
}

fn evm_error<T: std::fmt::Display>(e: EVMError<StateError, T>) -> RpcError {
    match e {
        EVMError::Database(e) => e.into(),
        EVMError::Transaction(e) => RpcError::invalid_input(e.to_string()),
        EVMError::Header(e) => RpcError::invalid_input(e.to_string()),
        other => RpcError::internal(other),
    }
}

fn tracer_error<E: std::fmt::Display>(e: DebugInspectorError<E>) -> RpcError {
    match e {
        DebugInspectorError::InvalidTracerConfig => {
            RpcError::invalid_params("invalid tracerConfig for this tracer")
        }
        DebugInspectorError::UnsupportedTracer | DebugInspectorError::JsTracerNotEnabled => {
            RpcError::invalid_params(e.to_string())
        }
        DebugInspectorError::MuxInspector(e) => RpcError::invalid_params(format!("muxTracer: {e}")),
        DebugInspectorError::Database(e) => RpcError::internal(e),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> RpcResult {
    serde_json::to_value(v).map_err(RpcError::internal)
}
