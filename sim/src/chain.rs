//! The chain seen as any JSON-RPC client sees it: calls, batches, signed EIP-1559 transactions at
//! zero fees, receipts and logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolCall, SolEvent};
use serde_json::{json, Value};

/// Most requests sent in one JSON-RPC batch (the node accepts 10,000).
pub const MAX_BATCH: usize = 1_000;
/// Osaka's per-transaction gas cap (EIP-7825).
pub const TX_GAS_CAP: u64 = 16_777_216;

/// Why a JSON-RPC request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// The node could not be reached or answered garbage.
    #[error("transport: {0}")]
    Transport(String),
    /// The node answered with an error object.
    #[error("node error {code}: {message}")]
    Node {
        /// JSON-RPC error code.
        code: i64,
        /// Message.
        message: String,
        /// Data (revert data for code 3).
        data: Option<Value>,
    },
}

/// A JSON-RPC client.
pub struct Rpc {
    url: String,
    client: reqwest::Client,
    next_id: AtomicU64,
}

/// A decoded log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// Emitting contract.
    pub address: Address,
    /// Topics.
    pub topics: Vec<B256>,
    /// Data.
    pub data: Bytes,
    /// Block number.
    pub block_number: u64,
    /// Index of the log in its block.
    pub log_index: u64,
    /// Transaction hash.
    pub tx_hash: B256,
}

impl Log {
    /// Decodes the log as event `E`, if it is one.
    pub fn decode<E: SolEvent>(&self) -> Option<E> {
        if self.topics.first() != Some(&E::SIGNATURE_HASH) {
            return None;
        }
        E::decode_raw_log(self.topics.iter().copied(), &self.data).ok()
    }

    fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            address: v.get("address")?.as_str()?.parse().ok()?,
            topics: v.get("topics")?.as_array()?.iter().filter_map(|t| t.as_str()?.parse().ok()).collect(),
            data: v.get("data")?.as_str()?.parse().ok()?,
            block_number: hex_u64(v.get("blockNumber")?)?,
            log_index: hex_u64(v.get("logIndex")?)?,
            tx_hash: v.get("transactionHash")?.as_str()?.parse().ok()?,
        })
    }
}

/// A transaction receipt.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// Transaction hash.
    pub hash: B256,
    /// Whether it succeeded.
    pub success: bool,
    /// Block it is in.
    pub block_number: u64,
    /// Gas used.
    pub gas_used: u64,
    /// Its logs.
    pub logs: Vec<Log>,
}

impl Receipt {
    fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            hash: v.get("transactionHash")?.as_str()?.parse().ok()?,
            success: v.get("status").and_then(hex_u64) == Some(1),
            block_number: hex_u64(v.get("blockNumber")?)?,
            gas_used: v.get("gasUsed").and_then(hex_u64).unwrap_or(0),
            logs: v.get("logs")?.as_array()?.iter().filter_map(Log::from_json).collect(),
        })
    }
}

/// Parses a `0x…` quantity.
pub fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

fn node_error(e: &Value) -> RpcError {
    RpcError::Node {
        code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: e.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
        data: e.get("data").cloned(),
    }
}

impl Rpc {
    /// A client for `url`.
    pub fn new(url: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(16)
            .build()
            .expect("reqwest client");
        Self { url: url.to_string(), client, next_id: AtomicU64::new(1) }
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn post(&self, body: &Value) -> Result<Value, RpcError> {
        let resp = self
            .client
            .post(&self.url)
            .json(body)
            .send()
            .await
            .map_err(|e| RpcError::Transport(e.to_string()))?;
        let text = resp.text().await.map_err(|e| RpcError::Transport(e.to_string()))?;
        serde_json::from_str(&text)
            .map_err(|e| RpcError::Transport(format!("{e}: {}", &text[..text.len().min(200)])))
    }

    /// Calls `method`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let v = self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        if let Some(e) = v.get("error") {
            return Err(node_error(e));
        }
        v.get("result").cloned().ok_or_else(|| RpcError::Transport(format!("no result: {v}")))
    }

    /// Calls every `(method, params)` in JSON-RPC batches of at most [`MAX_BATCH`]; answers in order.
    pub async fn batch(&self, calls: Vec<(&str, Value)>) -> Result<Vec<Result<Value, RpcError>>, RpcError> {
        let mut out = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(MAX_BATCH) {
            let first = self.next_id.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let body: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(
                    |(i, (m, p))| json!({"jsonrpc": "2.0", "id": first + i as u64, "method": m, "params": p}),
                )
                .collect();
            let v = self.post(&Value::Array(body)).await?;
            let answers = v
                .as_array()
                .ok_or_else(|| RpcError::Transport(format!("batch answer is not an array: {v}")))?;
            let mut by_id: HashMap<u64, &Value> = HashMap::new();
            for a in answers {
                if let Some(id) = a.get("id").and_then(Value::as_u64) {
                    by_id.insert(id, a);
                }
            }
            for i in 0..chunk.len() as u64 {
                out.push(match by_id.get(&(first + i)) {
                    Some(a) => match a.get("error") {
                        Some(e) => Err(node_error(e)),
                        None => Ok(a.get("result").cloned().unwrap_or(Value::Null)),
                    },
                    None => Err(RpcError::Transport(format!("no answer for request {}", first + i))),
                });
            }
        }
        Ok(out)
    }

    /// `eth_call` of `call` on `to` at the latest block.
    pub async fn view<C: SolCall>(&self, to: Address, call: &C) -> Result<C::Return, RpcError> {
        let out = self
            .call("eth_call", json!([{"to": to, "data": Bytes::from(call.abi_encode())}, "latest"]))
            .await?;
        decode_return::<C>(&out)
    }

    /// Many `eth_call`s in batches; answers in order.
    pub async fn views<C: SolCall>(
        &self,
        calls: &[(Address, C)],
    ) -> Result<Vec<Result<C::Return, RpcError>>, RpcError> {
        let reqs = calls
            .iter()
            .map(|(to, c)| ("eth_call", json!([{"to": to, "data": Bytes::from(c.abi_encode())}, "latest"])))
            .collect();
        Ok(self.batch(reqs).await?.into_iter().map(|r| r.and_then(|v| decode_return::<C>(&v))).collect())
    }

    /// The latest block's number and timestamp.
    pub async fn head(&self) -> Result<(u64, u64), RpcError> {
        let b = self.call("eth_getBlockByNumber", json!(["latest", false])).await?;
        let n =
            b.get("number").and_then(hex_u64).ok_or_else(|| RpcError::Transport(format!("bad block {b}")))?;
        let t = b
            .get("timestamp")
            .and_then(hex_u64)
            .ok_or_else(|| RpcError::Transport(format!("bad block {b}")))?;
        Ok((n, t))
    }

    /// The chain id.
    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let v = self.call("eth_chainId", json!([])).await?;
        hex_u64(&v).ok_or_else(|| RpcError::Transport(format!("bad chain id {v}")))
    }

    /// The pending nonce of `a`.
    pub async fn nonce(&self, a: Address) -> Result<u64, RpcError> {
        let v = self.call("eth_getTransactionCount", json!([a, "pending"])).await?;
        hex_u64(&v).ok_or_else(|| RpcError::Transport(format!("bad nonce {v}")))
    }

    /// Logs of `address` with `topics` between blocks `from` and `to`, in queries of at most
    /// `span` blocks (the node caps ranges and result sizes).
    pub async fn logs(
        &self,
        address: Address,
        topics: Value,
        from: u64,
        to: u64,
    ) -> Result<Vec<Log>, RpcError> {
        let mut out = Vec::new();
        let mut start = from;
        let mut span: u64 = 2_000;
        while start <= to {
            let end = (start + span - 1).min(to);
            let r = self
                .call(
                    "eth_getLogs",
                    json!([{"address": address, "topics": topics, "fromBlock": format!("{start:#x}"), "toBlock": format!("{end:#x}")}]),
                )
                .await;
            match r {
                Ok(v) => {
                    let arr = v.as_array().ok_or_else(|| RpcError::Transport(format!("logs: {v}")))?;
                    out.extend(arr.iter().filter_map(Log::from_json));
                    start = end + 1;
                }
                // Too many logs or too wide a range: halve the span and retry.
                Err(RpcError::Node { code: -32005, .. }) | Err(RpcError::Node { code: -32602, .. })
                    if span > 1 =>
                {
                    span = (span / 2).max(1);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Sends signed transactions in batches; the hash or the node's refusal of each, in order.
    pub async fn send_raw(&self, raws: &[Bytes]) -> Result<Vec<Result<B256, RpcError>>, RpcError> {
        let reqs = raws.iter().map(|r| ("eth_sendRawTransaction", json!([r]))).collect();
        Ok(self
            .batch(reqs)
            .await?
            .into_iter()
            .map(|r| {
                r.and_then(|v| {
                    v.as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| RpcError::Transport(format!("bad hash {v}")))
                })
            })
            .collect())
    }

    /// Receipts of `hashes` (None while not included).
    pub async fn receipts(&self, hashes: &[B256]) -> Result<Vec<Option<Receipt>>, RpcError> {
        let reqs = hashes.iter().map(|h| ("eth_getTransactionReceipt", json!([h]))).collect();
        Ok(self.batch(reqs).await?.into_iter().map(|r| r.ok().and_then(|v| Receipt::from_json(&v))).collect())
    }

    /// Waits until every transaction in `hashes` has a receipt, or `timeout` passes (then the
    /// missing ones are None).
    pub async fn wait_receipts(
        &self,
        hashes: &[B256],
        timeout: Duration,
    ) -> Result<Vec<Option<Receipt>>, RpcError> {
        let start = Instant::now();
        let mut got: Vec<Option<Receipt>> = vec![None; hashes.len()];
        loop {
            let missing: Vec<usize> = (0..hashes.len()).filter(|i| got[*i].is_none()).collect();
            if missing.is_empty() {
                return Ok(got);
            }
            let ask: Vec<B256> = missing.iter().map(|i| hashes[*i]).collect();
            for (i, r) in missing.iter().zip(self.receipts(&ask).await?) {
                got[*i] = r;
            }
            if got.iter().all(Option::is_some) || start.elapsed() >= timeout {
                return Ok(got);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

fn decode_return<C: SolCall>(out: &Value) -> Result<C::Return, RpcError> {
    let bytes: Bytes = out
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| RpcError::Transport(format!("bad call output {out}")))?;
    C::abi_decode_returns(&bytes)
        .map_err(|e| RpcError::Transport(format!("cannot decode {}: {e}", C::SIGNATURE)))
}

/// A key with its own nonce counter: signs EIP-1559 transactions at zero fees.
pub struct Account {
    signer: PrivateKeySigner,
    /// The next nonce.
    pub nonce: u64,
}

impl Account {
    /// `signer` starting at `nonce`.
    pub fn new(signer: PrivateKeySigner, nonce: u64) -> Self {
        Self { signer, nonce }
    }

    /// The account's address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Signs a call of `data` to `to` with `gas` on `chain_id` at the next nonce; returns the hash and
    /// the raw transaction.
    pub fn sign(&mut self, chain_id: u64, to: Address, data: Vec<u8>, gas: u64) -> (B256, Bytes) {
        let tx = TxEip1559 {
            chain_id,
            nonce: self.nonce,
            gas_limit: gas.min(TX_GAS_CAP),
            max_fee_per_gas: 0,
            max_priority_fee_per_gas: 0,
            to: TxKind::Call(to),
            value: U256::ZERO,
            access_list: Default::default(),
            input: data.into(),
        };
        let sig = self.signer.sign_hash_sync(&tx.signature_hash()).expect("secp256k1 signing does not fail");
        let signed = tx.into_signed(sig);
        let hash = *signed.hash();
        self.nonce += 1;
        (hash, TxEnvelope::from(signed).encoded_2718().into())
    }

    /// Signs `call` to `to`.
    pub fn sign_call<C: SolCall>(&mut self, chain_id: u64, to: Address, call: &C, gas: u64) -> (B256, Bytes) {
        self.sign(chain_id, to, call.abi_encode(), gas)
    }
}
