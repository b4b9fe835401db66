//! The bridge's node client: alloy's provider over HTTP, failing over between `chain.rpc_urls`
//! with alloy's fallback transport.
//!
//! Every method the bridge calls is *sequential* for the fallback transport: a request (or a
//! batch) goes to one node at a time, best-ranked first, and to the next only on a transport
//! failure (connection refused, timeout, HTTP error status). Nodes are ranked by their recent
//! successes and latency, so a node that failed drops behind the others and a working one stays
//! in use. JSON-RPC errors returned by a node are not failures of the node: they are returned to
//! the caller ([`RpcError::Node`]).
//!
//! https:// URLs are checked against the system's CA roots, or only against `chain.rpc_ca_file`
//! when it is set (a lab node behind a TLS proxy with its own CA), with rustls and the ring provider
//! as for the broker ([`tls_config`]).
//!
//! Transactions are signed by the submitter and sent raw (they are stored in the outbox before
//! they are sent, and only ever resent verbatim), so the provider has no signer and no fillers.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alloy_provider::{ProviderBuilder, RootProvider};
use alloy_rpc_client::{BatchRequest, RpcClient, Waiter};
use alloy_transport::layers::FallbackLayer;
use alloy_transport::{RpcError as AlloyRpcError, TransportErrorKind};
use alloy_transport_http::Http;
use serde_json::Value;
use tower::Layer;

/// Every JSON-RPC method the bridge calls: all sent to one node at a time.
pub const METHODS: [&str; 7] = [
    "eth_chainId",
    "eth_blockNumber",
    "eth_getTransactionReceipt",
    "eth_getTransactionCount",
    "eth_sendRawTransaction",
    "eth_call",
    "eth_estimateGas",
];

/// A JSON-RPC error object returned by the node.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcErrorObject {
    /// Error code.
    pub code: i64,
    /// Message.
    pub message: String,
    /// Optional data (revert data for code 3).
    pub data: Option<Value>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No node could be reached.
    #[error("no node reachable ({urls}): {reason}")]
    Unreachable {
        /// The configured URLs.
        urls: String,
        /// The last node's failure.
        reason: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("node error {}: {}", .0.code, .0.message)]
    Node(RpcErrorObject),
    /// The node's answer could not be understood.
    #[error("bad answer: {0}")]
    BadAnswer(String),
    /// The TLS configuration for https:// URLs could not be built (`chain.rpc_ca_file`).
    #[error("TLS: {0}")]
    Tls(String),
}

/// The rustls client configuration for https:// node URLs: the certificates of `ca_file` (PEM) as the
/// only roots when it is given, else the system's roots (none found is not an error: http:// URLs need
/// none, and an https:// node then fails its handshake with "UnknownIssuer", which the log shows).
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, RpcError> {
    let roots = match ca_file {
        Some(path) => crate::tls::ca_roots(path)
            .map_err(|e| RpcError::Tls(format!("chain.rpc_ca_file {}: {e}", path.display())))?,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(
                added,
                ignored,
                errors = found.errors.len(),
                "system CA roots for https:// nodes"
            );
            roots
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RpcError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `e` and its sources, `: `-separated (reqwest's own message omits why a connection failed, such as
/// a certificate the node's TLS presented and the roots do not trust).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// alloy's provider over the fallback transport.
pub struct Rpc {
    provider: RootProvider,
    /// The provider's client (for batches).
    client: RpcClient,
    urls: String,
}

impl Rpc {
    /// A client for `urls` (http:// or https://, checked by the configuration) with a
    /// per-request `timeout`; https:// nodes must present a certificate that chains to `ca_file`
    /// (PEM) when given, else to a system root.
    pub fn new(urls: &[String], timeout: Duration, ca_file: Option<&Path>) -> Result<Self, RpcError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(ca_file)?)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| RpcError::BadAnswer(format!("HTTP client: {e}")))?;
        let transports = urls
            .iter()
            .map(|u| {
                let url = u.parse().map_err(|e| RpcError::BadAnswer(format!("RPC URL {u}: {e}")))?;
                Ok(Http::with_client(http.clone(), url))
            })
            .collect::<Result<Vec<_>, RpcError>>()?;
        let count = NonZeroUsize::new(transports.len())
            .ok_or_else(|| RpcError::BadAnswer("no RPC URL configured".into()))?;
        let sequential: HashSet<String> = METHODS.iter().map(|m| m.to_string()).collect();
        let fallback = FallbackLayer::default()
            .with_active_transport_count(count)
            .with_sequential_methods(sequential)
            .layer(transports);
        let client = RpcClient::new(fallback, false);
        let provider = ProviderBuilder::new().disable_recommended_fillers().connect_client(client.clone());
        Ok(Self { provider, client, urls: urls.join(", ") })
    }

    /// The provider.
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    /// The configured URLs, for logs.
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// A new JSON-RPC batch (one HTTP request, to one node).
    pub fn batch(&self) -> BatchRequest<'_> {
        self.client.new_batch()
    }

    /// Sends `batch`; its waiters then hold each answer.
    pub async fn send(&self, batch: BatchRequest<'_>) -> Result<(), RpcError> {
        batch.send().await.map_err(|e| self.error(e))
    }

    /// Adds a call of `method` to `batch`.
    pub fn add<P, R>(
        &self,
        batch: &mut BatchRequest<'_>,
        method: &'static str,
        params: P,
    ) -> Result<Waiter<R>, RpcError>
    where
        P: alloy_json_rpc::RpcSend,
        R: alloy_json_rpc::RpcRecv,
    {
        batch.add_call(method, &params).map_err(|e| self.error(e))
    }

    /// One of alloy's errors as the bridge reports it.
    pub fn error(&self, e: AlloyRpcError<TransportErrorKind>) -> RpcError {
        match e {
            AlloyRpcError::ErrorResp(p) => RpcError::Node(RpcErrorObject {
                code: p.code,
                message: p.message.to_string(),
                data: p.data.as_ref().and_then(|d| serde_json::from_str(d.get()).ok()),
            }),
            AlloyRpcError::Transport(t) => {
                RpcError::Unreachable { urls: self.urls.clone(), reason: with_sources(&t) }
            }
            other => RpcError::BadAnswer(other.to_string()),
        }
    }

    /// The answer of one batch item: its result, or the node's error object for it.
    pub async fn item<R>(&self, waiter: Waiter<R>) -> Result<R, RpcErrorObject>
    where
        R: alloy_json_rpc::RpcRecv,
    {
        waiter.await.map_err(|e| match self.error(e) {
            RpcError::Node(o) => o,
            other => RpcErrorObject { code: 0, message: other.to_string(), data: None },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA file that is not PEM, or holds no certificate, is refused at start naming the key; without
    /// one the system's roots are used and the client builds (also on a system without any).
    #[test]
    fn rpc_ca_file_errors_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = tls_config(Some(&empty)).unwrap_err().to_string();
        assert!(
            e.contains("chain.rpc_ca_file") && e.contains("empty.pem") && e.contains("no certificate"),
            "{e}"
        );
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let e = tls_config(Some(&broken)).unwrap_err().to_string();
        assert!(e.contains("chain.rpc_ca_file") && e.contains("broken.pem"), "{e}");
        let missing = dir.path().join("missing.pem");
        assert!(tls_config(Some(&missing)).unwrap_err().to_string().contains("missing.pem"));
        let urls = vec!["http://127.0.0.1:1".to_string()];
        assert!(Rpc::new(&urls, Duration::from_secs(1), None).is_ok());
    }
}
