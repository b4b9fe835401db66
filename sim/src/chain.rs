//! The chain seen as any JSON-RPC client sees it: alloy's provider over HTTP for calls, batches,
//! receipts and logs, and signed EIP-1559 transactions at zero fees.
//!
//! Households sign their transactions themselves ([`Account`], one nonce counter per key) and send
//! them raw in JSON-RPC batches of up to [`MAX_BATCH`]: a round sends hundreds of orders at once,
//! which a provider's per-transaction fill-sign-send would turn into hundreds of requests. The
//! operator's keeper, which sends a few transactions per slot, goes through alloy's fillers
//! instead ([`Rpc::signing`]: nonce, chain id, signature).

use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_eips::BlockNumberOrTag;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_provider::{DynProvider, Provider, ProviderBuilder, RootProvider};
use alloy_rpc_client::{ClientBuilder, RpcClient, Waiter};
use alloy_rpc_types_eth::{TransactionReceipt, TransactionRequest};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolCall, SolEvent};
use alloy_transport::layers::{RetryBackoffLayer, RetryPolicy};
use alloy_transport::{RpcError as AlloyRpcError, TransportError, TransportErrorKind};
use serde_json::{json, Value};

/// Most requests sent in one JSON-RPC batch (the node accepts 10,000).
pub const MAX_BATCH: usize = 1_000;
/// Osaka's per-transaction gas cap (EIP-7825).
pub const TX_GAS_CAP: u64 = 16_777_216;

/// How many times a request the node refused as busy is sent again (see [`BusyRetry`]).
pub const BUSY_RETRIES: u32 = 6;
/// The wait before each of those retries, ms.
pub const BUSY_BACKOFF_MS: u64 = 500;

/// alloy's retry layer, for one refusal only: the node's "busy" answers (code -32005 with "waiting
/// for a call worker" or "the node is busy"), given when its call workers (`--rpc-call-workers`,
/// one on a 2-core machine) are all taken and a call waited in their queue for its whole time
/// limit, or the queue is full. On a loaded machine (a browser, a second simulation, a build) the
/// simulator's reads can meet that for a few seconds; a read is safe to send again, and a day
/// should not end there. Other -32005 answers (too many logs: [`Rpc::logs`] halves its range; a
/// call that itself ran past its limit) and every other error are not retried. Sends never meet
/// the call workers, so a batch of them is never replayed.
#[derive(Debug, Clone, Copy)]
pub struct BusyRetry;

impl BusyRetry {
    /// Whether an error answer is the node's "busy, retry later".
    pub fn is_busy(code: i64, message: &str) -> bool {
        code == -32005
            && (message.contains("waiting for a call worker") || message.contains("the node is busy"))
    }
}

impl RetryPolicy for BusyRetry {
    fn should_retry(&self, error: &TransportError) -> bool {
        match error {
            AlloyRpcError::ErrorResp(p) => Self::is_busy(p.code, &p.message),
            _ => false,
        }
    }

    fn backoff_hint(&self, _error: &TransportError) -> Option<Duration> {
        None
    }
}

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

impl From<AlloyRpcError<TransportErrorKind>> for RpcError {
    fn from(e: AlloyRpcError<TransportErrorKind>) -> Self {
        match e {
            AlloyRpcError::ErrorResp(p) => RpcError::Node {
                code: p.code,
                message: p.message.to_string(),
                data: p.data.as_ref().and_then(|d| serde_json::from_str(d.get()).ok()),
            },
            other => RpcError::Transport(other.to_string()),
        }
    }
}

impl From<alloy_contract::Error> for RpcError {
    fn from(e: alloy_contract::Error) -> Self {
        match e {
            alloy_contract::Error::TransportError(t) => t.into(),
            other => RpcError::Transport(other.to_string()),
        }
    }
}

/// A JSON-RPC client: alloy's provider over HTTP.
pub struct Rpc {
    url: String,
    provider: RootProvider,
    client: RpcClient,
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

    /// A mined log (`None` for a pending one, without block or index).
    fn from_rpc(l: &alloy_rpc_types_eth::Log) -> Option<Self> {
        Some(Self {
            address: l.address(),
            topics: l.topics().to_vec(),
            data: l.data().data.clone(),
            block_number: l.block_number?,
            log_index: l.log_index?,
            tx_hash: l.transaction_hash?,
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
    fn from_rpc(r: &TransactionReceipt) -> Option<Self> {
        Some(Self {
            hash: r.transaction_hash,
            success: r.status(),
            block_number: r.block_number?,
            gas_used: r.gas_used,
            logs: r.inner.logs().iter().filter_map(Log::from_rpc).collect(),
        })
    }
}

/// Parses a `0x…` quantity.
pub fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

impl Rpc {
    /// A client for `url` (an http:// URL).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(16).build()?;
        let parsed = url.parse().map_err(|e| anyhow::anyhow!("RPC URL {url}: {e}"))?;
        let client = ClientBuilder::default()
            .layer(RetryBackoffLayer::new_with_policy(BUSY_RETRIES, BUSY_BACKOFF_MS, u64::MAX, BusyRetry))
            .http_with_client(http, parsed);
        let provider = ProviderBuilder::new().disable_recommended_fillers().connect_client(client.clone());
        Ok(Self { url: url.to_string(), provider, client })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// alloy's provider for this node.
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    /// A provider that signs and sends `signer`'s transactions one at a time with alloy's
    /// fillers: the nonce (`SimpleNonceManager`: the node's pending count before every
    /// transaction, so a transaction the node refused or dropped leaves no gap behind), the chain
    /// id and the signature. Gas and the zero fees are set per call. For keepers that send a few
    /// transactions per slot; a round of hundreds of orders is signed by an [`Account`] and sent
    /// in one batch instead.
    pub fn signing(&self, signer: PrivateKeySigner, chain_id: u64) -> DynProvider {
        ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_simple_nonce_management()
            .with_chain_id(chain_id)
            .wallet(signer)
            .connect_client(self.client.clone())
            .erased()
    }

    /// Calls `method` with `params` (a JSON array), for answers the simulator reads as JSON.
    pub async fn call(&self, method: &'static str, params: Value) -> Result<Value, RpcError> {
        Ok(self.client.request::<_, Value>(method, params).await?)
    }

    /// Calls `method` with each of `params` in JSON-RPC batches of at most [`MAX_BATCH`]; answers in
    /// order.
    pub async fn batch<P, R>(
        &self,
        method: &'static str,
        params: Vec<P>,
    ) -> Result<Vec<Result<R, RpcError>>, RpcError>
    where
        P: alloy_json_rpc::RpcSend,
        R: alloy_json_rpc::RpcRecv,
    {
        let mut out = Vec::with_capacity(params.len());
        let mut params = params.into_iter().peekable();
        while params.peek().is_some() {
            let mut batch = self.client.new_batch();
            let waiters: Vec<Waiter<R>> = params
                .by_ref()
                .take(MAX_BATCH)
                .map(|p| batch.add_call(method, &p))
                .collect::<Result<_, _>>()?;
            batch.send().await?;
            for w in waiters {
                out.push(w.await.map_err(RpcError::from));
            }
        }
        Ok(out)
    }

    /// `eth_call` of `call` on `to` at the latest block.
    pub async fn view<C: SolCall>(&self, to: Address, call: &C) -> Result<C::Return, RpcError> {
        let req = TransactionRequest::default().to(to).input(call.abi_encode().into());
        decode_return::<C>(&self.provider.call(req).latest().await?)
    }

    /// Many `eth_call`s in batches; answers in order.
    pub async fn views<C: SolCall>(
        &self,
        calls: &[(Address, C)],
    ) -> Result<Vec<Result<C::Return, RpcError>>, RpcError> {
        let reqs = calls
            .iter()
            .map(|(to, c)| {
                (TransactionRequest::default().to(*to).input(c.abi_encode().into()), BlockNumberOrTag::Latest)
            })
            .collect();
        let answers = self.batch::<_, Bytes>("eth_call", reqs).await?;
        Ok(answers.into_iter().map(|r| r.and_then(|b| decode_return::<C>(&b))).collect())
    }

    /// The latest block's number and timestamp.
    pub async fn head(&self) -> Result<(u64, u64), RpcError> {
        let b = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await?
            .ok_or_else(|| RpcError::Transport("no latest block".into()))?;
        Ok((b.header.number, b.header.timestamp))
    }

    /// The chain id.
    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        Ok(self.provider.get_chain_id().await?)
    }

    /// The pending nonce of `a`.
    pub async fn nonce(&self, a: Address) -> Result<u64, RpcError> {
        Ok(self.provider.get_transaction_count(a).pending().await?)
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
            let filter = json!({"address": address, "topics": topics, "fromBlock": format!("{start:#x}"), "toBlock": format!("{end:#x}")});
            let r = self.client.request::<_, Vec<alloy_rpc_types_eth::Log>>("eth_getLogs", (filter,)).await;
            match r.map_err(RpcError::from) {
                Ok(logs) => {
                    out.extend(logs.iter().filter_map(Log::from_rpc));
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
        self.batch("eth_sendRawTransaction", raws.iter().map(|r| (r.clone(),)).collect()).await
    }

    /// Receipts of `hashes` (None while not included).
    pub async fn receipts(&self, hashes: &[B256]) -> Result<Vec<Option<Receipt>>, RpcError> {
        let answers = self
            .batch::<_, Option<TransactionReceipt>>(
                "eth_getTransactionReceipt",
                hashes.iter().map(|h| (*h,)).collect(),
            )
            .await?;
        Ok(answers.into_iter().map(|r| r.ok().flatten().as_ref().and_then(Receipt::from_rpc)).collect())
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

fn decode_return<C: SolCall>(bytes: &Bytes) -> Result<C::Return, RpcError> {
    C::abi_decode_returns(bytes)
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

    /// The account's key.
    pub fn signer(&self) -> &PrivateKeySigner {
        &self.signer
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
