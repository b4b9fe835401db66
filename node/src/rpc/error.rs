//! JSON-RPC errors with EIP-1474 codes.

use alloy_primitives::Bytes;
use serde::Serialize;
use serde_json::Value;

/// A JSON-RPC error object.
#[derive(Debug, Clone, Serialize)]
pub struct RpcError {
    /// EIP-1474 / JSON-RPC 2.0 code.
    pub code: i64,
    /// Human-readable message.
    pub message: String,
    /// Extra data (revert data for code 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }
    /// -32700: the body is not JSON.
    pub fn parse(msg: impl std::fmt::Display) -> Self {
        Self::new(-32700, format!("parse error: {msg}"))
    }
    /// -32600: not a valid request object.
    pub fn invalid_request(msg: impl Into<String>) -> Self {
        Self::new(-32600, msg)
    }
    /// -32601: unknown method.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(-32601, format!("the method {method} does not exist/is not available"))
    }
    /// -32601: a privileged method on a node started without `--rpc-admin`.
    pub fn privileged(method: &str) -> Self {
        Self::new(
            -32601,
            format!(
                "the method {method} is privileged and is served only when the node runs with --rpc-admin \
                 (admin_*, debug_*, clique_propose, clique_discard)"
            ),
        )
    }
    /// -32602: bad parameters.
    pub fn invalid_params(msg: impl Into<String>) -> Self {
        Self::new(-32602, msg)
    }
    /// -32603: the node failed.
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Self::new(-32603, format!("internal error: {msg}"))
    }
    /// -32000: invalid input (geth's code for rejected transactions and failed calls).
    pub fn invalid_input(msg: impl Into<String>) -> Self {
        Self::new(-32000, msg)
    }
    /// -32001: resource not found.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(-32001, msg)
    }
    /// -32003: transaction rejected.
    pub fn tx_rejected(msg: impl Into<String>) -> Self {
        Self::new(-32003, msg)
    }
    /// -32004: method not supported (here).
    pub fn not_supported(msg: impl Into<String>) -> Self {
        Self::new(-32004, msg)
    }
    /// -32005: limit exceeded.
    pub fn limit_exceeded(msg: impl Into<String>) -> Self {
        Self::new(-32005, msg)
    }
    /// Whether this is a limit error (-32005): a time, step, byte or queue limit that ends the
    /// whole request.
    pub fn is_limit(&self) -> bool {
        self.code == -32005
    }
    /// Code 3: execution reverted, with the revert data so clients decode custom errors.
    pub fn reverted(output: &Bytes) -> Self {
        let reason = alloy_sol_types::decode_revert_reason(output);
        let message = match reason {
            Some(r) if !output.is_empty() => format!("execution reverted: {r}"),
            _ => "execution reverted".to_string(),
        };
        Self { code: 3, message, data: Some(Value::String(output.to_string())) }
    }
}

impl From<crate::storage::StorageError> for RpcError {
    fn from(e: crate::storage::StorageError) -> Self {
        Self::internal(e)
    }
}

impl From<crate::state::StateError> for RpcError {
    fn from(e: crate::state::StateError) -> Self {
        match e {
            crate::state::StateError::Pruned(_) => Self::new(-32002, e.to_string()),
            other => Self::internal(other),
        }
    }
}

/// Result of an RPC method.
pub type RpcResult<T = Value> = Result<T, RpcError>;
