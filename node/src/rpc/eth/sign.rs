//! Signing with development accounts: `eth_sign`, `personal_sign`, `eth_signTypedData_v4`.

use alloy_dyn_abi::eip712::TypedData;
use alloy_primitives::{eip191_hash_message, Address, Bytes, B256};
use serde_json::{json, Value};

use super::super::error::{RpcError, RpcResult};
use super::super::params::Params;
use super::super::RpcContext;
use crate::crypto::SigningKey;

fn key<'a>(ctx: &'a RpcContext, address: &Address) -> RpcResult<&'a SigningKey> {
    ctx.dev_accounts.iter().find(|k| k.address() == *address).ok_or_else(|| {
        RpcError::invalid_input(format!("unknown account {address}: not an unlocked development account"))
    })
}

fn sign(key: &SigningKey, hash: &B256) -> Value {
    // Wallet convention: r ‖ s ‖ v with v = 27 or 28.
    json!(Bytes::from(key.sign_hash(hash).as_bytes().to_vec()))
}

/// `eth_sign(address, data)` and `personal_sign(data, address)`: EIP-191 personal messages.
pub fn personal(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    p.at_most(if method == "personal_sign" { 3 } else { 2 })?;
    let (address, data): (Address, Bytes) =
        if method == "personal_sign" { (p.req(1)?, p.req(0)?) } else { (p.req(0)?, p.req(1)?) };
    Ok(sign(key(ctx, &address)?, &eip191_hash_message(&data)))
}

/// `eth_signTypedData_v4(address, typedData)`: EIP-712.
pub fn typed_data(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(2)?;
    let address: Address = p.req(0)?;
    // Wallets accept the typed data as an object or as a JSON string.
    let raw: Value = p.req(1)?;
    let data: TypedData = match raw {
        Value::String(s) => serde_json::from_str(&s),
        other => serde_json::from_value(other),
    }
    .map_err(|e| RpcError::invalid_params(format!("invalid typed data: {e}")))?;
    let hash = data
        .eip712_signing_hash()
        .map_err(|e| RpcError::invalid_params(format!("invalid typed data: {e}")))?;
    Ok(sign(key(ctx, &address)?, &hash))
}
