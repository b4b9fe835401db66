//! Error type of the load generator.

use thiserror::Error;

/// Everything that can go wrong while generating load.
#[derive(Debug, Error)]
pub enum LoadgenError {
    /// The HTTP request itself failed (connection refused, timeout, bad status).
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        /// Endpoint that was called.
        url: String,
        /// Underlying client error.
        #[source]
        source: reqwest::Error,
    },
    /// alloy's transport failed (connection refused, timeout, HTTP error status).
    #[error("JSON-RPC request to {url} failed: {detail}")]
    Transport {
        /// Endpoint that was called.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The node answered a JSON-RPC call with an error object.
    #[error("JSON-RPC {method} returned error {code}: {message}")]
    Rpc {
        /// Method that was called.
        method: String,
        /// JSON-RPC error code.
        code: i64,
        /// Error message from the node.
        message: String,
    },
    /// The node's answer could not be understood.
    #[error("unexpected JSON-RPC response to {method}: {detail}")]
    BadResponse {
        /// Method that was called.
        method: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// Key derivation from the mnemonic failed (the key itself is never shown).
    #[error("key derivation failed: {0}")]
    Keys(String),
    /// Signing a transaction failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A setup step (funding, deployment) did not have the expected effect.
    #[error("setup failed: {0}")]
    Setup(String),
    /// Waiting for receipts took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),
}
