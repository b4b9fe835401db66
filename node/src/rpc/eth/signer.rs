//! Development accounts: `eth_accounts` and `eth_sendTransaction`.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};

use alloy_primitives::{Address, TxKind};
use alloy_rpc_types_eth::TransactionRequest;
use serde_json::json;

use super::super::error::{RpcError, RpcResult};
use super::super::params::Params;
use super::super::RpcContext;
use super::transaction::{submit, validation_error};
use crate::txpool::validate_envelope;

/// `eth_accounts`: the unlocked development accounts.
pub fn accounts(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(0)?;
    let list: Vec<Address> = ctx.dev_accounts.iter().map(|k| k.address()).collect();
    Ok(json!(list))
}

/// `eth_sendTransaction(request)`: signs with a development account and submits.
pub fn send_transaction(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(1)?;
    let req: TransactionRequest = p.req(0)?;
    let from = req.from.ok_or_else(|| RpcError::invalid_params("\"from\" is required"))?;
    let key = ctx.dev_accounts.iter().find(|k| k.address() == from).ok_or_else(|| {
        RpcError::invalid_input(format!("unknown account {from}: not an unlocked development account"))
    })?;
    let chain_id = ctx.chain.spec().chain_id;
    let nonce = match req.nonce {
        Some(n) => n,
        None => ctx.chain.pool().pending_nonce(&from, ctx.chain.account_nonce(&from)),
    };
    let gas_limit = match req.gas {
        Some(g) => g,
        None => {
            let mut est = req.clone();
            est.nonce = Some(nonce);
            let value = super::estimate::estimate_gas(ctx, Params::new(Some(json!([est])))?)?;
            let s = value.as_str().unwrap_or("0x0");
            u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(RpcError::internal)?
        }
    };
    let input = req.input.input().cloned().unwrap_or_default();
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: 0,
        max_priority_fee_per_gas: 0,
        to: req.to.unwrap_or(TxKind::Create),
        value: req.value.unwrap_or_default(),
        access_list: req.access_list.clone().unwrap_or_default(),
        input,
    };
    let sig = key.sign_hash(&tx.signature_hash());
    let envelope = TxEnvelope::from(tx.into_signed(sig));
    let recovered = validate_envelope(envelope, &ctx.chain.validation_context()).map_err(validation_error)?;
    debug_assert_eq!(recovered.signer(), from);

    Ok(json!(submit(ctx, recovered)?))
}
