//! `eth_call`: run a transaction request on a kept state without committing it.

use alloy_eips::BlockId;
use alloy_primitives::{Bytes, TxKind};
use alloy_rpc_types_eth::TransactionRequest;
use revm::context::TxEnv;
use revm::context_interface::either::Either;
use revm::context_interface::result::{EVMError, ExecutionResult};
use revm::InspectEvm;
use serde_json::json;

use super::super::error::{RpcError, RpcResult};
use super::super::params::Params;
use super::super::workers::Work;
use super::super::RpcContext;
use crate::blockchain::block_input;
use crate::chain::TX_GAS_LIMIT_CAP;
use crate::execution::budget::{Budget, Recording};
use crate::execution::{block_env, EvmConfig, EvmMode};
use crate::state::{bytecode, AccountInfo, StateOverlay, StateReader};
use crate::storage::BlockQuery;
use alloy_rpc_types_eth::state::StateOverride;
use alloy_rpc_types_eth::BlockOverrides;
use revm::primitives::KECCAK_EMPTY;

/// The execution environment of a call: its block and the gas it may use.
pub struct CallEnv {
    /// The block header the call runs on top of.
    pub header: alloy_consensus::Header,
    /// Gas cap: the block gas limit, bounded by the EIP-7825 cap.
    pub gas_cap: u64,
}

/// Builds the environment for calls at a resolved block. For `pending` that is the block a
/// transaction sent now lands in: the head's child, at the earliest time it can be sealed
/// (`max(now, head + period)`), on the head's state (the pool's transactions are not applied).
/// What a call costs can depend on the block (a meter reading does more work once a slot turns
/// final), so an estimate for a transaction must run where the transaction will.
pub fn call_env(ctx: &RpcContext, block: &super::super::ResolvedBlock) -> RpcResult<CallEnv> {
    let head = ctx.chain.head();
    let header = if head.hash == block.hash && block.pending {
        let period = ctx.chain.spec().clique.period;
        alloy_consensus::Header {
            parent_hash: head.hash,
            number: head.header.number + 1,
            timestamp: crate::blockchain::unix_now().max(head.header.timestamp + period),
            ..head.header
        }
    } else if head.hash == block.hash {
        head.header
    } else {
        ctx.chain
            .reads()
            .header_by_hash(&block.hash)?
            .map(|(h, _)| h)
            .ok_or_else(|| RpcError::not_found(format!("block {} not found", block.hash)))?
    };
    let gas_cap = header.gas_limit.min(TX_GAS_LIMIT_CAP);
    Ok(CallEnv { header, gas_cap })
}

/// Translates a request into a revm transaction. Fees are zero, as for real transactions.
pub fn request_tx_env(chain_id: u64, req: &TransactionRequest, gas: u64) -> RpcResult<TxEnv> {
    let data: Bytes = match (&req.input.input, &req.input.data) {
        (Some(a), Some(b)) if a != b => {
            return Err(RpcError::invalid_params("both \"data\" and \"input\" are set and not equal"))
        }
        (Some(a), _) => a.clone(),
        (None, Some(b)) => b.clone(),
        (None, None) => Bytes::new(),
    };
    let auths = req.authorization_list.clone().unwrap_or_default();
    let access_list = req.access_list.clone().unwrap_or_default();
    let tx_type = if !auths.is_empty() {
        4
    } else if req.max_fee_per_gas.is_some() || req.max_priority_fee_per_gas.is_some() {
        2
    } else if !access_list.0.is_empty() {
        1
    } else {
        0
    };
    Ok(TxEnv {
        tx_type,
        caller: req.from.unwrap_or_default(),
        gas_limit: gas,
        gas_price: 0,
        kind: req.to.unwrap_or(TxKind::Create),
        value: req.value.unwrap_or_default(),
        data,
        nonce: req.nonce.unwrap_or(0),
        chain_id: Some(chain_id),
        access_list,
        gas_priority_fee: if tx_type >= 2 { Some(0) } else { None },
        blob_hashes: Vec::new(),
        max_fee_per_blob_gas: 0,
        authorization_list: auths.into_iter().map(Either::Left).collect(),
    })
}

/// State and block overrides of `eth_call` / `eth_estimateGas` (geth's third and fourth
/// parameters).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Per-account overrides.
    pub state: Option<StateOverride>,
    /// Block field overrides.
    pub block: Option<BlockOverrides>,
}

impl Overrides {
    /// Reads parameters `i` (state) and `i + 1` (block).
    pub fn from_params(p: &Params, i: usize) -> RpcResult<Self> {
        Ok(Self { state: p.opt(i)?, block: p.opt(i + 1)? })
    }

    pub(crate) fn apply_state<R: StateReader + ?Sized>(
        &self,
        overlay: &mut StateOverlay<'_, R>,
    ) -> RpcResult<()> {
        let Some(state) = &self.state else { return Ok(()) };
        for (addr, o) in state {
            if o.state.is_some() && o.state_diff.is_some() {
                return Err(RpcError::invalid_params(format!(
                    "account {addr}: both state and stateDiff are set"
                )));
            }
            if o.move_precompile_to.is_some() {
                return Err(RpcError::invalid_params("movePrecompileToAddress is not supported"));
            }
            let mut info = overlay
                .account(addr)?
                .unwrap_or(AccountInfo { code_hash: KECCAK_EMPTY, ..Default::default() });
            if let Some(b) = o.balance {
                info.balance = b;
            }
            if let Some(n) = o.nonce {
                info.nonce = n;
            }
            if let Some(code) = &o.code {
                info.code_hash =
                    if code.is_empty() { KECCAK_EMPTY } else { overlay.set_code(bytecode(code.clone())) };
            }
            overlay.set_account(*addr, Some(info));
            if let Some(full) = &o.state {
                overlay.wipe_storage(*addr);
                for (k, v) in full {
                    overlay.set_storage(*addr, (*k).into(), (*v).into());
                }
            }
            if let Some(diff) = &o.state_diff {
                for (k, v) in diff {
                    overlay.set_storage(*addr, (*k).into(), (*v).into());
                }
            }
        }
        Ok(())
    }

    pub(crate) fn apply_block(&self, env: &mut revm::context::BlockEnv) -> RpcResult<()> {
        let Some(b) = &self.block else { return Ok(()) };
        if let Some(n) = b.number {
            env.number = n;
        }
        if let Some(d) = b.difficulty {
            env.difficulty = d;
        }
        if let Some(t) = b.time {
            env.timestamp = alloy_primitives::U256::from(t);
        }
        if let Some(g) = b.gas_limit {
            env.gas_limit = g;
        }
        if let Some(c) = b.coinbase {
            env.beneficiary = c;
        }
        if let Some(r) = b.random {
            env.prevrandao = Some(r);
        }
        if let Some(f) = b.base_fee {
            if !f.is_zero() {
                return Err(RpcError::invalid_params(
                    "baseFee override: the base fee on this chain is always 0",
                ));
            }
        }
        Ok(())
    }
}

/// Runs `tx` over `state` on top of `header` with `overrides`, under `budget` (the EVM is stopped
/// at its time limit); returns the result and the touched state (for access lists). Nonces are
/// not checked, as in geth's `eth_call`.
pub fn run_with(
    ctx: &RpcContext,
    state: &dyn StateReader,
    header: &alloy_consensus::Header,
    tx: TxEnv,
    overrides: &Overrides,
    budget: &Budget,
) -> RpcResult<(ExecutionResult, revm::state::EvmState)> {
    let hashes = match overrides.block.as_ref().and_then(|b| b.block_hash.clone()) {
        Some(extra) => {
            let mut h = ctx.chain.block_hashes();
            h.0.extend(extra);
            h
        }
        None => ctx.chain.block_hashes(),
    };
    let mut overlay = StateOverlay::new(state, &hashes);
    overrides.apply_state(&mut overlay)?;
    let mut block = block_env(&block_input(header));
    overrides.apply_block(&mut block)?;
    let meter = budget.meter(Recording::Nothing);
    let mut evm =
        EvmConfig::new(ctx.chain.spec().chain_id).evm_with_inspector(overlay, block, EvmMode::Call, meter);
    let outcome = evm.inspect_tx(tx);
    if let Some(exceeded) = evm.inspector.exceeded() {
        return Err(RpcError::limit_exceeded(exceeded.to_string()));
    }
    match outcome {
        Ok(r) => Ok((r.result, r.state)),
        Err(EVMError::Transaction(e)) => Err(RpcError::invalid_input(e.to_string())),
        Err(EVMError::Header(e)) => Err(RpcError::invalid_input(e.to_string())),
        Err(EVMError::Database(e)) => Err(e.into()),
        Err(e) => Err(RpcError::internal(e)),
    }
}

/// Maps a call result to the RPC answer: the output, or a revert (code 3) / halt error.
pub fn output(result: ExecutionResult) -> RpcResult<Bytes> {
    match result {
        ExecutionResult::Success { output, .. } => Ok(output.into_data()),
        ExecutionResult::Revert { output, .. } => Err(RpcError::reverted(&output)),
        ExecutionResult::Halt { reason, .. } => {
            Err(RpcError::invalid_input(format!("execution halted: {reason:?}")))
        }
    }
}

/// `eth_call(request, block?)`, on a call worker.
pub fn eth_call(ctx: &RpcContext, p: Params, work: &Work<'_>) -> RpcResult {
    p.at_most(4)?;
    let req: TransactionRequest = p.req(0)?;
    let block = ctx.resolve(p.opt::<BlockId>(1)?)?;
    let overrides = Overrides::from_params(&p, 2)?;
    let env = call_env(ctx, &block)?;
    let gas = req.gas.unwrap_or(env.gas_cap).min(env.gas_cap);
    let tx = request_tx_env(ctx.chain.spec().chain_id, &req, gas)?;
    let (result, _) = ctx.with_state_in(work.reads, block.number, |s| {
        run_with(ctx, s, &env.header, tx, &overrides, &work.budget)
    })?;
    Ok(json!(output(result)?))
}
