//! Development accounts: `eth_accounts` and `eth_sendTransaction`.

use alloy_consensus::{SignableTransaction, TxEnvelope, TxType};

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
            // Dev accounts only: estimated on this thread, under the same time limit as on a
            // call worker.
            let limits = ctx.calls.limits();
            let budget = crate::execution::budget::Budget::new(limits.timeout, "--rpc-call-timeout");
            let work = super::super::workers::Work { reads: ctx.chain.reads(), budget, limits };
            let value = super::estimate::estimate_gas(ctx, Params::new(Some(json!([est])))?, &work)?;
            let s = value.as_str().unwrap_or("0x0");
            u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(RpcError::internal)?
        }
    };
    // The transaction is of the type the request asks for, as geth's TransactionArgs build it:
    // an explicit `type`, else 7702 with an authorization list, 2930 with an access list and
    // a gas price, legacy with a gas price, EIP-1559 otherwise. Fees not given are 0.
    let ty = match req.transaction_type {
        Some(t) => TxType::try_from(t)
            .map_err(|_| RpcError::invalid_params(format!("unknown transaction type {t}")))?,
        None => req.preferred_type(),
    };
    let mut req = req;
    if req.chain_id.is_some_and(|c| c != chain_id) {
        return Err(RpcError::invalid_input(format!("chainId must be {chain_id} on this chain")));
    }
    req.chain_id = Some(chain_id);
    req.nonce = Some(nonce);
    req.gas = Some(gas_limit);
    req.to = Some(req.to.unwrap_or(TxKind::Create));
    let conflict =
        |what: &str| RpcError::invalid_params(format!("{what} does not fit a type {} transaction", ty as u8));
    let signed_envelope = |tx: alloy_consensus::TypedTransaction| -> TxEnvelope {
        let sig = key.sign_hash(&tx.signature_hash());
        match tx {
            alloy_consensus::TypedTransaction::Legacy(t) => t.into_signed(sig).into(),
            alloy_consensus::TypedTransaction::Eip2930(t) => t.into_signed(sig).into(),
            alloy_consensus::TypedTransaction::Eip1559(t) => t.into_signed(sig).into(),
            alloy_consensus::TypedTransaction::Eip7702(t) => t.into_signed(sig).into(),
            alloy_consensus::TypedTransaction::Eip4844(t) => t.into_signed(sig).into(),
        }
    };
    let built = match ty {
        TxType::Legacy | TxType::Eip2930 => {
            if req.max_fee_per_gas.is_some() || req.max_priority_fee_per_gas.is_some() {
                return Err(conflict("maxFeePerGas/maxPriorityFeePerGas"));
            }
            req.gas_price.get_or_insert(0);
            if ty == TxType::Legacy {
                if req.access_list.is_some() {
                    return Err(conflict("accessList"));
                }
                req.build_legacy().map(Into::into)
            } else {
                req.access_list.get_or_insert_with(Default::default);
                req.build_2930().map(Into::into)
            }
        }
        TxType::Eip1559 | TxType::Eip7702 => {
            if req.gas_price.is_some() {
                return Err(conflict("gasPrice"));
            }
            req.max_fee_per_gas.get_or_insert(0);
            req.max_priority_fee_per_gas.get_or_insert(0);
            if ty == TxType::Eip1559 {
                if req.authorization_list.is_some() {
                    return Err(conflict("authorizationList"));
                }
                req.build_1559().map(Into::into)
            } else {
                req.authorization_list.get_or_insert_with(Default::default);
                req.build_7702().map(Into::into)
            }
        }
        TxType::Eip4844 => {
            return Err(RpcError::invalid_input("blob transactions are not accepted on this chain"))
        }
    }
    .map_err(|e: alloy_consensus::error::ValueError<TransactionRequest>| {
        RpcError::invalid_params(e.to_string())
    })?;
    let envelope = signed_envelope(built);
    let recovered = validate_envelope(envelope, &ctx.chain.validation_context()).map_err(validation_error)?;
    debug_assert_eq!(recovered.signer(), from);

    Ok(json!(submit(ctx, recovered)?))
}
