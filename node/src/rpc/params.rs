//! Positional parameters, decoded one by one so errors name the position.
//!
//! JSON-RPC QUANTITY values must be canonical, as the execution-apis spec requires (`uint`:
//! `^0x(0|[1-9a-f][0-9a-f]*)$`): `"0x01"` and `"0x"` are refused with -32602, like geth's
//! `hexutil` does, while DATA values (hashes, addresses, bytes, storage keys) keep their zeros.
//! alloy's deserializers accept leading zeros, so the check is made by type, before decoding:
//! [`Params::req`] and [`Params::opt`] look the parameter's Rust type up in [`quantity_check`],
//! which knows where the quantities sit in the JSON form of each RPC type that holds some
//! (block numbers, `U64`/`u64`, the fee/gas/value/nonce fields of a transaction request, a
//! filter's block range, state and block overrides, `debug_traceCall` options). Other types,
//! including `U256` (`eth_getStorageAt`'s slot is DATA up to 32 bytes, zeros allowed), are
//! decoded as they are.

use std::any::TypeId;

use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::U64;
use alloy_rpc_types_eth::state::StateOverride;
use alloy_rpc_types_eth::{BlockOverrides, Filter, TransactionRequest};
use alloy_rpc_types_trace::geth::GethDebugTracingCallOptions;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::RpcError;

/// The `params` of a request.
pub struct Params(Vec<Value>);

impl Params {
    /// Wraps a request's `params` (absent, null, or an array).
    pub fn new(v: Option<Value>) -> Result<Self, RpcError> {
        match v {
            None | Some(Value::Null) => Ok(Self(Vec::new())),
            Some(Value::Array(a)) => Ok(Self(a)),
            Some(_) => Err(RpcError::invalid_params("params must be an array")),
        }
    }

    /// Refuses more than `n` parameters.
    pub fn at_most(&self, n: usize) -> Result<(), RpcError> {
        if self.0.len() > n {
            return Err(RpcError::invalid_params(format!(
                "too many arguments, want at most {n}, got {}",
                self.0.len()
            )));
        }
        Ok(())
    }

    /// A required parameter.
    pub fn req<T: DeserializeOwned + 'static>(&self, i: usize) -> Result<T, RpcError> {
        match self.0.get(i) {
            None | Some(Value::Null) => {
                Err(RpcError::invalid_params(format!("missing value for required argument {i}")))
            }
            Some(v) => decode(i, v),
        }
    }

    /// An optional parameter.
    pub fn opt<T: DeserializeOwned + 'static>(&self, i: usize) -> Result<Option<T>, RpcError> {
        match self.0.get(i) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => decode(i, v).map(Some),
        }
    }
}

fn decode<T: DeserializeOwned + 'static>(i: usize, v: &Value) -> Result<T, RpcError> {
    let invalid = |e: &dyn std::fmt::Display| RpcError::invalid_params(format!("invalid argument {i}: {e}"));
    if let Some(check) = quantity_check::<T>() {
        check(v).map_err(|e| invalid(&e))?;
    }
    T::deserialize(v).map_err(|e| invalid(&e))
}

/// A check of the QUANTITY positions in the JSON form of one RPC type.
pub type QuantityCheck = fn(&Value) -> Result<(), String>;

/// The QUANTITY check for parameters of type `T`, if `T` holds quantities.
pub fn quantity_check<T: 'static>() -> Option<QuantityCheck> {
    let t = TypeId::of::<T>();
    let table: [(TypeId, QuantityCheck); 9] = [
        (TypeId::of::<BlockId>(), block_id),
        (TypeId::of::<BlockNumberOrTag>(), block_number),
        (TypeId::of::<U64>(), quantity_value),
        (TypeId::of::<u64>(), quantity_value),
        (TypeId::of::<TransactionRequest>(), transaction_request),
        (TypeId::of::<Filter>(), filter),
        (TypeId::of::<StateOverride>(), state_override),
        (TypeId::of::<BlockOverrides>(), block_overrides),
        (TypeId::of::<GethDebugTracingCallOptions>(), trace_call_options),
    ];
    table.iter().find(|(id, _)| *id == t).map(|(_, check)| *check)
}

/// Checks one QUANTITY string: `0x` then hex digits, no leading zero except `0x0` itself.
pub fn check_quantity(s: &str) -> Result<(), String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| format!("hex string without 0x prefix: {s:?}"))?;
    if digits.is_empty() {
        return Err(format!("hex string {s:?} has no digits"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(format!("hex number with leading zero digits: {s:?}"));
    }
    Ok(())
}

/// A quantity in a JSON value: strings are checked; numbers are left to the decoder.
fn quantity_value(v: &Value) -> Result<(), String> {
    match v {
        Value::String(s) => check_quantity(s),
        _ => Ok(()),
    }
}

fn quantity_fields(v: &Value, names: &[&str]) -> Result<(), String> {
    let Value::Object(m) = v else { return Ok(()) };
    fields(m, names)
}

fn fields(m: &Map<String, Value>, names: &[&str]) -> Result<(), String> {
    for name in names {
        if let Some(f) = m.get(*name) {
            quantity_value(f).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    Ok(())
}

fn is_tag(s: &str) -> bool {
    matches!(s, "latest" | "earliest" | "pending" | "safe" | "finalized")
}

/// A block number or tag.
fn block_number(v: &Value) -> Result<(), String> {
    match v {
        Value::String(s) if is_tag(s) => Ok(()),
        other => quantity_value(other),
    }
}

/// A block number, tag or hash, or an EIP-1898 object; a 32-byte string is a hash (DATA).
fn block_id(v: &Value) -> Result<(), String> {
    match v {
        Value::String(s) if s.len() == 66 => Ok(()),
        Value::Object(m) => fields(m, &["blockNumber"]),
        other => block_number(other),
    }
}

fn transaction_request(v: &Value) -> Result<(), String> {
    quantity_fields(
        v,
        &[
            "gas",
            "gasPrice",
            "maxFeePerGas",
            "maxPriorityFeePerGas",
            "maxFeePerBlobGas",
            "value",
            "nonce",
            "chainId",
            "type",
        ],
    )
}

fn filter(v: &Value) -> Result<(), String> {
    let Value::Object(m) = v else { return Ok(()) };
    for name in ["fromBlock", "toBlock"] {
        if let Some(b) = m.get(name) {
            block_number(b).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    Ok(())
}

fn state_override(v: &Value) -> Result<(), String> {
    let Value::Object(accounts) = v else { return Ok(()) };
    for (address, account) in accounts {
        quantity_fields(account, &["balance", "nonce"]).map_err(|e| format!("{address}: {e}"))?;
    }
    Ok(())
}

fn block_overrides(v: &Value) -> Result<(), String> {
    quantity_fields(v, &["number", "difficulty", "time", "gasLimit", "baseFee", "blobBaseFee"])
}

fn trace_call_options(v: &Value) -> Result<(), String> {
    let Value::Object(m) = v else { return Ok(()) };
    fields(m, &["txIndex"])?;
    if let Some(s) = m.get("stateOverrides") {
        state_override(s).map_err(|e| format!("stateOverrides: {e}"))?;
    }
    if let Some(b) = m.get("blockOverrides") {
        block_overrides(b).map_err(|e| format!("blockOverrides: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Address, Bytes, B256, U256};
    use serde_json::json;

    fn req<T: DeserializeOwned + 'static>(v: Value) -> Result<T, RpcError> {
        Params::new(Some(json!([v]))).unwrap().req(0)
    }

    #[test]
    fn quantity_strings() {
        for ok in ["0x0", "0x1", "0xff", "0x10", "0XAb"] {
            assert!(check_quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["0x", "0x00", "0x01", "0x0001", "1", "", "00x1"] {
            assert!(check_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leading_zeros_refused_at_quantity_positions() {
        let e = req::<BlockNumberOrTag>(json!("0x01")).unwrap_err();
        assert_eq!(e.code, -32602);
        assert!(e.message.contains("leading zero"), "{}", e.message);
        assert!(req::<BlockNumberOrTag>(json!("0x1")).is_ok());
        assert!(req::<BlockNumberOrTag>(json!("latest")).is_ok());
        assert_eq!(req::<BlockId>(json!("0x0001")).unwrap_err().code, -32602);
        assert_eq!(req::<BlockId>(json!({"blockNumber": "0x01"})).unwrap_err().code, -32602);
        assert!(req::<BlockId>(json!({"blockNumber": "0x1"})).is_ok());
        assert_eq!(req::<U64>(json!("0x00")).unwrap_err().code, -32602);
        assert_eq!(req::<U64>(json!("0x")).unwrap_err().code, -32602);
        assert_eq!(req::<U64>(json!("0x0")).unwrap(), U64::ZERO);
        for field in ["gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value", "nonce", "chainId"]
        {
            let e = req::<TransactionRequest>(json!({ field: "0x01" })).unwrap_err();
            assert!(e.message.contains(field), "{field}: {}", e.message);
            assert!(req::<TransactionRequest>(json!({ field: "0x1" })).is_ok(), "{field}");
        }
        assert_eq!(req::<TransactionRequest>(json!({"type": "0x02"})).unwrap_err().code, -32602);
        assert_eq!(req::<Filter>(json!({"fromBlock": "0x01"})).unwrap_err().code, -32602);
        assert_eq!(req::<Filter>(json!({"toBlock": "0x001"})).unwrap_err().code, -32602);
        assert!(req::<Filter>(json!({"fromBlock": "earliest", "toBlock": "0x10"})).is_ok());
        let a = format!("{:#x}", Address::repeat_byte(1));
        assert_eq!(req::<StateOverride>(json!({ a.clone(): {"balance": "0x01"} })).unwrap_err().code, -32602);
        assert_eq!(req::<BlockOverrides>(json!({"number": "0x01"})).unwrap_err().code, -32602);
        assert_eq!(req::<GethDebugTracingCallOptions>(json!({"txIndex": "0x00"})).unwrap_err().code, -32602);
        assert_eq!(
            req::<GethDebugTracingCallOptions>(json!({"blockOverrides": {"time": "0x01"}})).unwrap_err().code,
            -32602
        );
    }

    #[test]
    fn data_keeps_its_zeros() {
        let hash = format!("0x{}", "00".repeat(31) + "01");
        assert!(req::<B256>(json!(hash)).is_ok());
        // A 32-byte string in a block position is a hash, zeros and all.
        assert!(matches!(req::<BlockId>(json!(hash)).unwrap(), BlockId::Hash(_)));
        assert!(req::<Address>(json!("0x0000000000000000000000000000000000000001")).is_ok());
        assert_eq!(req::<Bytes>(json!("0x0001")).unwrap(), Bytes::from(vec![0, 1]));
        // eth_getStorageAt's slot is DATA (bytesMax32): padded slots are fine.
        assert_eq!(req::<U256>(json!(hash)).unwrap(), U256::from(1));
        assert!(req::<TransactionRequest>(json!({"data": "0x0000", "input": "0x0000"})).is_ok());
        assert!(req::<Filter>(json!({"topics": [hash.clone()], "blockHash": hash})).is_ok());
    }
}
