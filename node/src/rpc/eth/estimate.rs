//! `eth_estimateGas`: binary search for the least gas with which the call succeeds.

use alloy_eips::BlockId;
use alloy_rpc_types_eth::TransactionRequest;

use super::super::error::{RpcError, RpcResult};
use super::super::params::Params;
use super::super::workers::Work;
use super::super::RpcContext;
use super::call::{call_env, output, request_tx_env, run_with, Overrides};
use super::q;

/// `eth_estimateGas(request, block?)`, on a call worker: every attempt counts against the same
/// time limit. The block defaults to `pending`, the next block's environment on the head state.
///
/// Like geth: run at the cap first (a revert there is reported with its data), try an
/// optimistic guess from the gas used, then bisect. Unlike geth, the search runs to the exact
/// minimum rather than stopping within 1.5%.
pub fn estimate_gas(ctx: &RpcContext, p: Params, work: &Work<'_>) -> RpcResult {
    p.at_most(4)?;
    let req: TransactionRequest = p.req(0)?;
    // Without a block, where the transaction will run: the next block (see `call_env`).
    let block = ctx.resolve(Some(p.opt::<BlockId>(1)?.unwrap_or_else(BlockId::pending)))?;
    let overrides = Overrides::from_params(&p, 2)?;
    let env = call_env(ctx, &block)?;
    let chain_id = ctx.chain.spec().chain_id;
    let hi_cap = req.gas.unwrap_or(env.gas_cap).min(env.gas_cap);
    let budget = &work.budget;
    let gas = ctx.with_state_in(work.reads, block.number, |state| {
        let attempt = |gas: u64| -> RpcResult<Result<u64, alloy_primitives::Bytes>> {
            let tx = request_tx_env(chain_id, &req, gas)?;
            match run_with(ctx, state, &env.header, tx, &overrides, budget).map(|(r, _)| r) {
                Ok(r) if r.is_success() => Ok(Ok(r.tx_gas_used())),
                Ok(r) => Ok(Err(r.output().cloned().unwrap_or_default())),
                // A limit (time) ends the whole estimate.
                Err(e) if e.is_limit() => Err(e),
                // Validation failures (e.g. below intrinsic gas) count as "not enough gas".
                Err(_) => Ok(Err(Default::default())),
            }
        };
        // At the cap: if it fails here, no amount of gas helps; report why.
        let tx = request_tx_env(chain_id, &req, hi_cap)?;
        let (first, _) = run_with(ctx, state, &env.header, tx, &overrides, budget)?;
        if !first.is_success() {
            output(first.clone())?;
            return Err(RpcError::invalid_input(format!("gas required exceeds allowance ({hi_cap})")));
        }
        let used = first.tx_gas_used();
        let refunded = first.gas().inner_refunded();
        let mut lo = used.saturating_sub(1);
        let mut hi = hi_cap;
        let optimistic = ((used + refunded + 2300) * 64 / 63).min(hi);
        if optimistic > lo && optimistic < hi {
            match attempt(optimistic)? {
                Ok(_) => hi = optimistic,
                Err(_) => lo = optimistic,
            }
        }
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            match attempt(mid)? {
                Ok(_) => hi = mid,
                Err(_) => lo = mid,
            }
        }
        Ok(hi)
    })?;
    Ok(q(gas))
}
