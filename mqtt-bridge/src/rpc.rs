//! A small JSON-RPC client over reqwest with failover between node URLs.
//!
//! Requests go to the current URL; on a transport failure (connection refused, timeout, HTTP error
//! status) the next URL is tried, round-robin, until each was tried once. JSON-RPC errors returned
//! by a node are not failures of the node and are returned to the caller.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

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
    #[error("no node reachable: {0}")]
    Unreachable(String),
    /// The node answered with a JSON-RPC error.
    #[error("node error {}: {}", .0.code, .0.message)]
    Node(RpcErrorObject),
    /// The node's answer could not be understood.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

/// JSON-RPC client with failover.
pub struct Rpc {
    urls: Vec<String>,
    current: AtomicUsize,
    client: reqwest::Client,
}

fn parse_error(e: &Value) -> RpcErrorObject {
    RpcErrorObject {
        code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: e.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
        data: e.get("data").cloned(),
    }
}

impl Rpc {
    /// A client for `urls` with a per-request `timeout`.
    pub fn new(urls: Vec<String>, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .expect("reqwest client");
        Self { urls, current: AtomicUsize::new(0), client }
    }

    /// The URL currently in use.
    pub fn current_url(&self) -> &str {
        &self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()]
    }

    async fn post(&self, body: &Value) -> Result<Value, RpcError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for k in 0..self.urls.len() {
            let i = (start + k) % self.urls.len();
            let url = &self.urls[i];
            let res = async {
                let resp = self.client.post(url).json(body).send().await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let text = resp.text().await.map_err(|e| e.to_string())?;
                if !status.is_success() && text.is_empty() {
                    return Err(format!("HTTP {status}"));
                }
                serde_json::from_str::<Value>(&text).map_err(|e| format!("HTTP {status}, not JSON ({e})"))
            }
            .await;
            match res {
                Ok(v) => {
                    if i != start {
                        tracing::warn!(url = %url, "JSON-RPC failed over to this node");
                        self.current.store(i, Ordering::Relaxed);
                    }
                    return Ok(v);
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        Err(RpcError::Unreachable(errors.join("; ")))
    }

    /// Calls `method` with `params`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let v = self.post(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})).await?;
        if let Some(e) = v.get("error") {
            return Err(RpcError::Node(parse_error(e)));
        }
        v.get("result").cloned().ok_or_else(|| RpcError::BadAnswer(format!("no result in {v}")))
    }

    /// Sends a JSON-RPC batch; answers come back in request order, each a result or an error.
    pub async fn batch(
        &self,
        calls: &[(&str, Value)],
    ) -> Result<Vec<Result<Value, RpcErrorObject>>, RpcError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (m, p))| json!({"jsonrpc": "2.0", "id": i, "method": m, "params": p}))
            .collect();
        let v = self.post(&Value::Array(body)).await?;
        let arr = match v {
            Value::Array(a) => a,
            Value::Object(ref o) if o.contains_key("error") => {
                return Err(RpcError::Node(parse_error(&v["error"])))
            }
            other => return Err(RpcError::BadAnswer(format!("batch answer is not an array: {other}"))),
        };
        let mut out: Vec<Option<Result<Value, RpcErrorObject>>> = vec![None; calls.len()];
        for item in arr {
            let Some(id) = item.get("id").and_then(Value::as_u64).map(|i| i as usize) else { continue };
            if id >= calls.len() {
                continue;
            }
            out[id] = Some(match item.get("error") {
                Some(e) => Err(parse_error(e)),
                None => Ok(item.get("result").cloned().unwrap_or(Value::Null)),
            });
        }
        out.into_iter()
            .enumerate()
            .map(|(i, r)| r.ok_or_else(|| RpcError::BadAnswer(format!("no answer for batch item {i}"))))
            .collect()
    }
}

/// Parses a hex quantity (`"0x1a"`).
pub fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}
