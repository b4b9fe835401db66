//! Account state: balance, code, storage, nonce, at any kept block.

use alloy_eips::BlockId;
use alloy_primitives::{Address, B256, U256};
use serde_json::json;

use super::super::error::RpcResult;
use super::super::params::Params;
use super::super::RpcContext;
use super::q;

fn account_args(ctx: &RpcContext, p: &Params) -> RpcResult<(Address, super::super::ResolvedBlock)> {
    p.at_most(2)?;
    let address: Address = p.req(0)?;
    let block = ctx.resolve(p.opt::<BlockId>(1)?)?;
    Ok((address, block))
}

/// `eth_getBalance(address, block?)`.
pub fn balance(ctx: &RpcContext, p: Params) -> RpcResult {
    let (address, block) = account_args(ctx, &p)?;
    ctx.with_state(block.number, |s| Ok(json!(s.account(&address)?.map(|a| a.balance).unwrap_or_default())))
}

/// `eth_getCode(address, block?)`.
pub fn code(ctx: &RpcContext, p: Params) -> RpcResult {
    let (address, block) = account_args(ctx, &p)?;
    ctx.with_state(block.number, |s| {
        let Some(acct) = s.account(&address)? else { return Ok(json!("0x")) };
        let code = s.code(&acct.code_hash)?.map(|c| c.original_bytes()).unwrap_or_default();
        Ok(json!(code))
    })
}

/// `eth_getStorageAt(address, slot, block?)`.
pub fn storage_at(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(3)?;
    let address: Address = p.req(0)?;
    let slot: U256 = p.req(1)?;
    let block = ctx.resolve(p.opt::<BlockId>(2)?)?;
    ctx.with_state(block.number, |s| Ok(json!(B256::from(s.storage(&address, &slot)?))))
}

/// `eth_getTransactionCount(address, block?)`; "pending" counts waiting transactions.
pub fn transaction_count(ctx: &RpcContext, p: Params) -> RpcResult {
    let (address, block) = account_args(ctx, &p)?;
    let nonce = ctx.with_state(block.number, |s| Ok(s.account(&address)?.map(|a| a.nonce).unwrap_or(0)))?;
    if block.pending {
        return Ok(q(ctx.chain.pool().pending_nonce(&address, nonce)));
    }
    Ok(q(nonce))
}
