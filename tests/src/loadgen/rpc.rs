//! The load generator's node client: alloy's RPC client (calls and batches), plus one raw path.
//!
//! The timed phase posts batches of `eth_sendRawTransaction` whose bodies were serialised before
//! the clock started ([`batch_body`], [`RpcClient::send_batch_body`]), so that only the node's
//! work and the HTTP round trip are measured: that path stays a plain HTTP post of those bytes.

use std::time::Duration;

use alloy_primitives::U256;
use serde::Deserialize;
use serde_json::{json, Value};

use super::LoadgenError;

/// Error object of a JSON-RPC response.
#[derive(Debug, Clone, Deserialize)]
pub struct RpcErrorObject {
    /// JSON-RPC error code.
    pub code: i64,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Optional extra data.
    #[serde(default)]
    pub data: Option<Value>,
}

impl std::fmt::Display for RpcErrorObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)?;
        if let Some(data) = &self.data {
            write!(f, " data {data}")?;
        }
        Ok(())
    }
}

/// Outcome of one call inside a batch.
pub type RpcResult = Result<Value, RpcErrorObject>;

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcErrorObject>,
}

/// A JSON-RPC client bound to one HTTP endpoint.
#[derive(Clone)]
pub struct RpcClient {
    http: reqwest::Client,
    url: String,
    alloy: alloy_rpc_client::RpcClient,
}

impl RpcClient {
    /// Creates a client for `url` with the given per-request timeout.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, LoadgenError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|source| LoadgenError::Http { url: url.to_owned(), source })?;
        let parsed = url.parse().map_err(|e| LoadgenError::Config(format!("RPC URL {url}: {e}")))?;
        let alloy = alloy_rpc_client::RpcClient::new(
            alloy_transport_http::Http::with_client(http.clone(), parsed),
            true,
        );
        Ok(Self { http, url: url.to_owned(), alloy })
    }

    /// One of alloy's errors for `method`: the node's error object as the inner `Err`, anything
    /// else as a [`LoadgenError`].
    fn answer<T>(
        &self,
        method: &str,
        r: Result<T, alloy_transport::RpcError<alloy_transport::TransportErrorKind>>,
    ) -> Result<Result<T, RpcErrorObject>, LoadgenError> {
        use alloy_transport::RpcError as E;
        match r {
            Ok(v) => Ok(Ok(v)),
            Err(E::ErrorResp(p)) => Ok(Err(RpcErrorObject {
                code: p.code,
                message: p.message.to_string(),
                data: p.data.as_ref().and_then(|d| serde_json::from_str(d.get()).ok()),
            })),
            Err(E::Transport(t)) => {
                Err(LoadgenError::Transport { url: self.url.clone(), detail: t.to_string() })
            }
            Err(other) => {
                Err(LoadgenError::BadResponse { method: method.to_owned(), detail: other.to_string() })
            }
        }
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls one method; a JSON-RPC error becomes [`LoadgenError::Rpc`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, LoadgenError> {
        self.try_call(method, params).await?.map_err(|e| LoadgenError::Rpc {
            method: method.to_owned(),
            code: e.code,
            message: e.message,
        })
    }

    /// Calls one method, returning a JSON-RPC error as the inner `Err`.
    pub async fn try_call(&self, method: &str, params: Value) -> Result<RpcResult, LoadgenError> {
        let r = self.alloy.request::<_, Value>(method.to_owned(), params).await;
        self.answer(method, r)
    }

    /// Sends the same method with each of `params` as one batch; the answers
    /// come back in the order of `params`.
    pub async fn batch(&self, method: &str, params: &[Value]) -> Result<Vec<RpcResult>, LoadgenError> {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = self.alloy.new_batch();
        let mut waiters = Vec::with_capacity(params.len());
        for p in params {
            let w = batch.add_call::<_, Value>(method.to_owned(), p);
            waiters.push(
                self.answer(method, w)?.map_err(|e| LoadgenError::BadResponse {
                    method: method.to_owned(),
                    detail: e.message,
                })?,
            );
        }
        self.answer(method, batch.send().await)?.map_err(|e| LoadgenError::Rpc {
            method: format!("batch of {} {method}", params.len()),
            code: e.code,
            message: e.message,
        })?;
        let mut out = Vec::with_capacity(waiters.len());
        for w in waiters {
            out.push(self.answer(method, w.await)?);
        }
        Ok(out)
    }

    /// Posts a pre-serialised batch body of `len` calls with ids `0..len`
    /// (see [`batch_body`]) and returns the answers ordered by id: the timed path, a plain HTTP
    /// post of bytes made before the clock started.
    pub async fn send_batch_body(
        &self,
        method: &str,
        body: Vec<u8>,
        len: usize,
    ) -> Result<Vec<RpcResult>, LoadgenError> {
        let value = self.post(method, body).await?;
        let items = match value {
            Value::Array(items) => items,
            other => {
                // A whole-batch failure is a single error object.
                let resp: Option<Response> = serde_json::from_value(other.clone()).ok();
                return match resp.and_then(|r| r.error) {
                    Some(e) => Err(LoadgenError::Rpc {
                        method: format!("batch of {len} {method}"),
                        code: e.code,
                        message: e.message,
                    }),
                    None => Err(LoadgenError::BadResponse {
                        method: method.to_owned(),
                        detail: format!("expected an array for a batch, got {}", clip(&other)),
                    }),
                };
            }
        };
        let mut out: Vec<Option<RpcResult>> = (0..len).map(|_| None).collect();
        for item in items {
            let resp: Response = serde_json::from_value(item).map_err(|e| LoadgenError::BadResponse {
                method: method.to_owned(),
                detail: format!("bad batch element: {e}"),
            })?;
            let idx = resp.id.as_u64().and_then(|i| usize::try_from(i).ok());
            match idx {
                Some(i) if i < len && out[i].is_none() => out[i] = Some(into_result(resp)),
                _ => {
                    return Err(LoadgenError::BadResponse {
                        method: method.to_owned(),
                        detail: format!("unexpected or duplicate id {} in batch answer", resp.id),
                    })
                }
            }
        }
        Ok(out
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    Err(RpcErrorObject {
                        code: 0,
                        message: format!("no answer for batch element {i}"),
                        data: None,
                    })
                })
            })
            .collect())
    }

    async fn post(&self, method: &str, body: Vec<u8>) -> Result<Value, LoadgenError> {
        let http_err = |source| LoadgenError::Http { url: self.url.clone(), source };
        let resp = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(http_err)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(http_err)?;
        if !status.is_success() {
            return Err(LoadgenError::BadResponse {
                method: method.to_owned(),
                detail: format!(
                    "HTTP status {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                ),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| LoadgenError::BadResponse {
            method: method.to_owned(),
            detail: format!(
                "invalid JSON ({e}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ),
        })
    }
}

/// Serialises a batch calling `method` once per element of `params`, with
/// ids `0..params.len()`.
pub fn batch_body(method: &str, params: &[Value]) -> Result<Vec<u8>, LoadgenError> {
    let calls: Vec<Value> = params
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"jsonrpc": "2.0", "id": i, "method": method, "params": p}))
        .collect();
    serde_json::to_vec(&calls).map_err(|e| LoadgenError::BadResponse {
        method: method.to_owned(),
        detail: format!("cannot serialise request: {e}"),
    })
}

fn into_result(resp: Response) -> RpcResult {
    match (resp.result, resp.error) {
        (_, Some(e)) => Err(e),
        (Some(v), None) => Ok(v),
        // `"result": null` deserialises to None: a valid null answer.
        (None, None) => Ok(Value::Null),
    }
}

fn clip(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

/// Parses a `0x`-prefixed hex quantity into a `u64`.
pub fn parse_u64(v: &Value, what: &str) -> Result<u64, LoadgenError> {
    let s = v.as_str().ok_or_else(|| LoadgenError::BadResponse {
        method: what.to_owned(),
        detail: format!("expected a hex quantity, got {}", clip(v)),
    })?;
    let digits = s.strip_prefix("0x").unwrap_or(s);
    u64::from_str_radix(digits, 16).map_err(|e| LoadgenError::BadResponse {
        method: what.to_owned(),
        detail: format!("bad hex quantity {s:?}: {e}"),
    })
}

/// Parses a `0x`-prefixed hex quantity into a [`U256`].
pub fn parse_u256(v: &Value, what: &str) -> Result<U256, LoadgenError> {
    let s = v.as_str().ok_or_else(|| LoadgenError::BadResponse {
        method: what.to_owned(),
        detail: format!("expected a hex quantity, got {}", clip(v)),
    })?;
    let digits = s.strip_prefix("0x").unwrap_or(s);
    U256::from_str_radix(digits, 16).map_err(|e| LoadgenError::BadResponse {
        method: what.to_owned(),
        detail: format!("bad hex quantity {s:?}: {e}"),
    })
}
