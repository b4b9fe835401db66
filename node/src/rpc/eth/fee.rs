//! Fee methods. Fees on this chain are always zero: the base fee is fixed at 0 and no
//! transaction is charged, so every fee figure is 0.

use alloy_eips::BlockNumberOrTag;
use alloy_primitives::U64;
use alloy_rpc_types_eth::FeeHistory;

use super::super::error::{RpcError, RpcResult};
use super::super::params::Params;
use super::super::RpcContext;
use super::q;

/// `eth_gasPrice`, `eth_maxPriorityFeePerGas`, `eth_blobBaseFee`: always 0.
pub fn zero(p: Params) -> RpcResult {
    p.at_most(0)?;
    Ok(q(0))
}

/// Most blocks one `eth_feeHistory` covers (geth's limit).
const MAX_FEE_HISTORY: u64 = 1024;

/// `eth_feeHistory(blockCount, newestBlock, rewardPercentiles?)`: zeros, with real gas ratios.
pub fn fee_history(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(3)?;
    let count: U64 = p.req(0)?;
    let newest: BlockNumberOrTag = p.req(1)?;
    let percentiles: Option<Vec<f64>> = p.opt(2)?;
    if let Some(ps) = &percentiles {
        if ps.iter().any(|x| !(0.0..=100.0).contains(x)) || ps.windows(2).any(|w| w[0] > w[1]) {
            return Err(RpcError::invalid_params("reward percentiles must be ascending values in [0, 100]"));
        }
    }
    let count = count.to::<u64>().min(MAX_FEE_HISTORY);
    let newest = ctx.resolve(Some(newest.into()))?.number;
    if count == 0 {
        return serde_json::to_value(FeeHistory { oldest_block: newest, ..Default::default() })
            .map_err(RpcError::internal);
    }
    let oldest = newest.saturating_sub(count - 1);
    let mut ratios = Vec::new();
    for n in oldest..=newest {
        let header = crate::storage::BlockQuery::canonical_header(ctx.chain.reads(), n)?;
        let ratio =
            header.map(|(h, _)| if h.gas_limit == 0 { 0.0 } else { h.gas_used as f64 / h.gas_limit as f64 });
        ratios.push(ratio.unwrap_or(0.0));
    }
    let blocks = ratios.len();
    let history = FeeHistory {
        base_fee_per_gas: vec![0; blocks + 1],
        gas_used_ratio: ratios,
        base_fee_per_blob_gas: vec![0; blocks + 1],
        blob_gas_used_ratio: vec![0.0; blocks],
        oldest_block: oldest,
        reward: percentiles.map(|ps| vec![vec![0u128; ps.len()]; blocks]),
    };
    serde_json::to_value(history).map_err(RpcError::internal)
}
