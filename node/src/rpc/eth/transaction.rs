//! Sending transactions, and looking up transactions and receipts.

use alloy_primitives::{Bytes, B256};
use serde_json::{json, Value};

use super::super::convert;
use super::super::error::{RpcError, RpcResult};
use super::super::params::Params;
use super::super::RpcContext;
use crate::primitives::RecoveredTx;
use crate::storage::{BlockQuery, StoredTx};
use crate::txpool::{validate_tx, PoolError, TxValidationError};

/// Adds a recovered transaction to the pool, mapping refusals to RPC errors.
pub fn submit(ctx: &RpcContext, tx: RecoveredTx) -> RpcResult<B256> {
    let nonce = ctx.chain.account_nonce(&tx.signer());
    ctx.chain.pool().add(tx, nonce).map_err(|e| match e {
        PoolError::PoolFull(_) | PoolError::SenderFull { .. } | PoolError::QueuedFull { .. } => {
            RpcError::limit_exceeded(e.to_string())
        }
        other => RpcError::invalid_input(other.to_string()),
    })
}

/// Maps a validation failure to an RPC error.
pub fn validation_error(e: TxValidationError) -> RpcError {
    match e {
        TxValidationError::NotAllowed(_) => RpcError::tx_rejected(e.to_string()),
        TxValidationError::Oversized { .. } => RpcError::invalid_input(e.to_string()),
        other => RpcError::invalid_input(other.to_string()),
    }
}

/// `eth_sendRawTransaction(bytes)`.
pub fn send_raw(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(1)?;
    let raw: Bytes = p.req(0)?;
    let tx = validate_tx(&raw, &ctx.chain.validation_context()).map_err(validation_error)?;
    Ok(json!(submit(ctx, tx)?))
}

/// A canonical transaction by hash, read from its own row: O(1) in its block's size, in one read
/// transaction (a reorganisation meanwhile neither hides it nor answers with another one).
fn included(ctx: &RpcContext, hash: &B256) -> RpcResult<Option<StoredTx>> {
    Ok(ctx.chain.reads().canonical_tx(hash)?)
}

/// `eth_getTransactionByHash(hash)`: included or waiting.
pub fn by_hash(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(1)?;
    let hash: B256 = p.req(0)?;
    if let Some(t) = included(ctx, &hash)? {
        let place = convert::BlockPlace::of_stored(&t);
        return Ok(json!(convert::included_transaction(t.tx, t.sender, &place, t.index)));
    }
    match ctx.chain.pool().get(&hash) {
        Some(tx) => Ok(json!(convert::pending_transaction(&tx))),
        None => Ok(Value::Null),
    }
}

/// `eth_getTransactionReceipt(hash)`.
pub fn receipt(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(1)?;
    let hash: B256 = p.req(0)?;
    Ok(match included(ctx, &hash)? {
        Some(t) => {
            json!(convert::receipt_from_parts(
                &convert::ReceiptParts::of_stored(&t),
                &convert::BlockPlace::of_stored(&t)
            ))
        }
        None => Value::Null,
    })
}
