//! The chain side: turns pending readings into signed transactions and follows them to a receipt.
//!
//! Each round:
//! 1. **Receipts** of every transaction that is not final are fetched in one JSON-RPC batch with the
//!    head block number. Success confirms its readings once the head is `chain.confirmations` blocks
//!    past the receipt's block; until then the receipt is checked again every round, and a transaction
//!    whose receipt disappeared (reorg) is resent verbatim. The contract skips a batch's invalid readings
//!    instead of reverting it, with a `ReadingSkipped(index, meter, timestamp, reason)` event each: at
//!    confirmation exactly those readings are dead-lettered with the contract's error and the rest are
//!    confirmed. A batch that reverts all the same (out of gas) sends its readings back to be submitted one
//!    per transaction; a revert of a single reading dead-letters it with the contract's error (found by
//!    replaying the call). Gas limits are the node's estimate with headroom where it exceeds the static
//!    allowance ([`gas_limit`]): a reading after a long silence spreads energy over every slot since and
//!    can cost several times the allowance.
//! 2. **Resend**: a transaction without a receipt after `resend_interval_ms` is sent again, byte for byte
//!    (node restarted, pool lost, ...). A transaction whose nonce was used by another one (the key was
//!    used elsewhere) is dropped and its readings go back to pending.
//! 3. **Build**: pending readings of meters with nothing in flight are grouped, oldest first. At most one
//!    transaction per meter is ever in flight, so a meter's readings reach the contract in timestamp
//!    order whatever the sender (the contract also accepts a late reading while its slot is open, so the
//!    order only saves work).
//!    A group of one reading is sent by the meter itself (`submitReading`); a backlog goes as
//!    `submitReadings` batches of EIP-712 signed readings relayed by the relayer key. Each transaction is
//!    signed once (EIP-1559, zero fees), stored raw with its nonce in the outbox **before** it is sent,
//!    and then only ever resent verbatim.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{hex, Address, Bytes, TxKind, B256, U256, U64};
use alloy_provider::Provider;
use alloy_rpc_types_eth::{TransactionReceipt, TransactionRequest};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolCall, SolEvent, SolInterface};
use p2pe_bindings::meter_reading::{signing_hash, MeterReading};
use p2pe_bindings::meter_readings::{IMeterReadings, MeterReadings};
use serde_json::Value;
use tokio::sync::Notify;

use crate::config::ChainConfig;
use crate::decode::{Reason, Rejection};
use crate::metrics::Metrics;
use crate::outbox::{NewTx, Outbox, PendingReading, SentTx};
use crate::rpc::{Rpc, RpcError};

/// Gas limit of a `submitReading` transaction: a meter's first reading costs about 100k; a late reading
/// that re-splits a segment over the contract's widest window (31 slots) about 160k.
pub const GAS_SINGLE: u64 = 300_000;
/// Gas limit of a `submitReadings` transaction: base plus this per reading.
pub const GAS_BATCH_BASE: u64 = 100_000;
/// Per-reading gas limit of a batch: a meter's first reading writes three fresh storage words (its
/// meta word, a ring word and the slot's energy word: about 84k gas with the signature check, the
/// per-item call, the registry call and calldata); a reading that opens a new slot about 60k until the
/// meter's ring of 64 words has wrapped. 120k leaves room; a transaction carries at most
/// [`MAX_PER_TX`] readings so that it stays under the per-transaction cap. Fees are zero, so an
/// over-estimate costs nothing.
pub const GAS_PER_READING: u64 = 120_000;
/// Osaka's per-transaction gas cap (EIP-7825).
pub const GAS_CAP: u64 = 16_777_216;
/// Longest a round waits for its gas estimates before it signs with the static allowances.
pub const ESTIMATE_TIMEOUT: Duration = Duration::from_secs(3);
/// Most readings in one `submitReadings` transaction: as many as [`GAS_PER_READING`] allows under
/// [`GAS_CAP`] (138), whatever `max_batch` says.
pub const MAX_PER_TX: usize = ((GAS_CAP - GAS_BATCH_BASE) / GAS_PER_READING) as usize;

/// Milliseconds since the unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A meter's key as the submitter uses it.
pub struct MeterKey {
    /// On-chain meter address.
    pub address: Address,
    /// The decrypted key (never logged).
    pub signer: PrivateKeySigner,
}

/// Errors of a submitter round.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// JSON-RPC failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(String),
    /// The node is on another chain than configured.
    #[error("node reports chain id {got}, config says {want}")]
    WrongChain {
        /// From the node.
        got: u64,
        /// From the config.
        want: u64,
    },
}

/// The submitter task's state.
pub struct Submitter {
    cfg: ChainConfig,
    rpc: Rpc,
    outbox: Arc<Mutex<Outbox>>,
    meters: HashMap<String, Arc<MeterKey>>,
    relayer: Arc<PrivateKeySigner>,
    chain_id: Option<u64>,
    nonces: HashMap<Address, u64>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
}

/// Runs a closure on the outbox on a blocking thread.
async fn db<T: Send + 'static>(
    outbox: &Arc<Mutex<Outbox>>,
    f: impl FnOnce(&mut Outbox) -> crate::outbox::Result<T> + Send + 'static,
) -> crate::outbox::Result<T> {
    let o = outbox.clone();
    tokio::task::spawn_blocking(move || f(&mut o.lock().expect("outbox lock")))
        .await
        .expect("outbox task panicked")
}

/// A transaction built this round.
struct Built {
    new: NewTx,
    readings: usize,
}

/// A group of readings to sign into one transaction.
struct SignJob {
    group: Vec<PendingReading>,
    keys: Vec<Arc<MeterKey>>,
    sender: PrivateKeySigner,
    nonce: u64,
}

/// Signs an EIP-1559 transaction with zero fees to `to` and returns (hash, EIP-2718 bytes).
fn sign_tx(
    signer: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    gas: u64,
    to: Address,
    input: Vec<u8>,
) -> Result<(B256, Vec<u8>), SubmitError> {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: gas,
        max_fee_per_gas: 0,
        max_priority_fee_per_gas: 0,
        to: TxKind::Call(to),
        value: U256::ZERO,
        access_list: Default::default(),
        input: input.into(),
    };
    let sig = signer.sign_hash_sync(&tx.signature_hash()).map_err(|e| SubmitError::Sign(e.to_string()))?;
    let signed = tx.into_signed(sig);
    let hash = *signed.hash();
    Ok((hash, TxEnvelope::from(signed).encoded_2718()))
}

impl SignJob {
    /// The call and its static gas allowance. One reading: `submitReading` sent by the meter
    /// itself. Several: EIP-712 signatures of each meter, relayed in `submitReadings`.
    fn call(&self, chain_id: u64, readings: Address) -> Result<(u64, Vec<u8>), SubmitError> {
        Ok(if self.group.len() == 1 {
            let r = &self.group[0];
            let call = MeterReadings::submitReadingCall {
                importWh: r.import_wh,
                exportWh: r.export_wh,
                timestamp: r.timestamp,
            };
            (if r.at_cap { GAS_CAP } else { GAS_SINGLE }, call.abi_encode())
        } else {
            let mut signed = Vec::with_capacity(self.group.len());
            for (r, key) in self.group.iter().zip(&self.keys) {
                let reading = MeterReading {
                    meter: key.address,
                    importWh: r.import_wh,
                    exportWh: r.export_wh,
                    timestamp: r.timestamp,
                };
                let digest = signing_hash(&reading, chain_id, readings);
                let sig = key.signer.sign_hash_sync(&digest).map_err(|e| SubmitError::Sign(e.to_string()))?;
                let compact = sig.as_erc2098();
                signed.push(IMeterReadings::SignedReading {
                    meter: key.address,
                    importWh: r.import_wh,
                    exportWh: r.export_wh,
                    timestamp: r.timestamp,
                    r: B256::from_slice(&compact[..32]),
                    vs: B256::from_slice(&compact[32..]),
                });
            }
            let gas = (GAS_BATCH_BASE + GAS_PER_READING * self.group.len() as u64).min(GAS_CAP);
            (gas, MeterReadings::submitReadingsCall { readings: signed }.abi_encode())
        })
    }

    /// Signs the transaction of `input` with `gas`.
    fn sign(&self, chain_id: u64, readings: Address, gas: u64, input: Vec<u8>) -> Result<Built, SubmitError> {
        let ids: Vec<i64> = self.group.iter().map(|r| r.id).collect();
        let (hash, raw) = sign_tx(&self.sender, chain_id, self.nonce, gas, readings, input)?;
        Ok(Built {
            new: NewTx { sender: self.sender.address(), nonce: self.nonce, hash, raw, reading_ids: ids },
            readings: self.group.len(),
        })
    }
}

/// The gas limit of a transaction whose static allowance is `allowance` and whose estimate by the
/// node (in the next block's environment) is `estimate`: the allowance, or the estimate with a
/// quarter and 50,000 gas of headroom where that is more, within the per-transaction cap. A reading
/// that spreads a meter's energy over many slots (after a silence, or a backlog) costs far more than
/// the allowance, which a fixed figure cannot cover; fees are zero, so headroom costs nothing.
pub fn gas_limit(allowance: u64, estimate: Option<u64>) -> u64 {
    let padded = estimate.map_or(0, |e| e.saturating_add(e / 4).saturating_add(50_000));
    allowance.max(padded).min(GAS_CAP)
}

impl Submitter {
    /// A submitter for `cfg`. `relayer` relays batches; `meters` maps meter ids to keys.
    pub fn new(
        cfg: ChainConfig,
        outbox: Arc<Mutex<Outbox>>,
        meters: HashMap<String, Arc<MeterKey>>,
        relayer: Arc<PrivateKeySigner>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Result<Self, RpcError> {
        let rpc = Rpc::new(
            &cfg.rpc_urls,
            Duration::from_millis(cfg.request_timeout_ms),
            cfg.rpc_ca_file.as_deref(),
        )?;
        Ok(Self { cfg, rpc, outbox, meters, relayer, chain_id: None, nonces: HashMap::new(), metrics, wake })
    }

    /// Runs forever: one round per `poll_interval_ms`, or sooner when woken by new readings.
    pub async fn run(mut self) {
        let interval = Duration::from_millis(self.cfg.poll_interval_ms);
        let mut failures: u32 = 0;
        loop {
            match self.round().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(urls = self.rpc.urls(), "node reachable again");
                    }
                    failures = 0;
                    self.metrics.rpc_up.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.metrics.rpc_up.store(false, Ordering::Relaxed);
                    if matches!(e, SubmitError::Rpc(_)) {
                        self.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    // Log the first failure and then every 50th, so an hour of downtime stays readable.
                    if failures == 1 || failures % 50 == 0 {
                        tracing::warn!(error = %e, failures, "submitter round failed; readings stay in the outbox");
                    }
                    // Nonces may be stale after errors: ask the chain again.
                    self.nonces.clear();
                }
            }
            if let Ok(d) = db(&self.outbox, |o| o.depth()).await {
                self.metrics.set_depth(d);
            }
            let pause = if failures == 0 { interval } else { interval * failures.min(10) };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified(), if failures == 0 => {}
            }
        }
    }

    async fn chain_id(&mut self) -> Result<u64, SubmitError> {
        if let Some(id) = self.chain_id {
            return Ok(id);
        }
        let id = self.rpc.provider().get_chain_id().await.map_err(|e| self.rpc.error(e))?;
        if let Some(want) = self.cfg.chain_id {
            if want != id {
                return Err(SubmitError::WrongChain { got: id, want });
            }
        }
        tracing::info!(chain_id = id, urls = self.rpc.urls(), "connected to the node");
        self.chain_id = Some(id);
        Ok(id)
    }

    /// One round: receipts, resends, new transactions.
    pub async fn round(&mut self) -> Result<(), SubmitError> {
        let chain_id = self.chain_id().await?;
        self.follow_sent().await?;
        self.build_and_send(chain_id).await
    }

    /// Follows every transaction that is not final: one JSON-RPC batch of the head block number and
    /// all receipts. A successful receipt counts only once the head is `confirmations` blocks past its
    /// block; before that the transaction is `mined` and checked again each round, and if its receipt
    /// disappears (its block left the canonical chain) it is sent again, verbatim.
    async fn follow_sent(&mut self) -> Result<(), SubmitError> {
        let sent = db(&self.outbox, |o| o.sent_txs()).await?;
        if sent.is_empty() {
            return Ok(());
        }
        let mut batch = self.rpc.batch();
        let head = self.rpc.add::<_, U64>(&mut batch, "eth_blockNumber", ())?;
        let mut receipts = Vec::with_capacity(sent.len());
        for t in &sent {
            receipts.push(self.rpc.add::<_, Option<TransactionReceipt>>(
                &mut batch,
                "eth_getTransactionReceipt",
                (t.hash,),
            )?);
        }
        self.rpc.send(batch).await?;
        let head = self
            .rpc
            .item(head)
            .await
            .map_err(|e| RpcError::BadAnswer(format!("eth_blockNumber: {}", e.message)))?
            .to::<u64>();
        let now = now_ms();
        let mut resend: Vec<&SentTx> = Vec::new();
        for (t, r) in sent.iter().zip(receipts) {
            let receipt = match self.rpc.item(r).await {
                Ok(Some(receipt)) => receipt,
                Ok(None) => {
                    if let Some(block) = t.mined_block {
                        tracing::warn!(tx = %t.hash, block, head, "a mined transaction left the canonical chain before it was confirmed; resending it");
                        self.metrics.txs_reorged.fetch_add(1, Ordering::Relaxed);
                        let id = t.id;
                        db(&self.outbox, move |o| o.unmine(id)).await?;
                        resend.push(t);
                    } else if now - t.last_sent_ms >= self.cfg.resend_interval_ms as i64 {
                        resend.push(t);
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(tx = %t.hash, code = e.code, message = %e.message, "eth_getTransactionReceipt failed");
                    continue;
                }
            };
            let block = receipt.block_number.unwrap_or(0);
            if receipt.status() {
                self.on_mined(t, &receipt, block, head, now).await?;
            } else {
                self.metrics.txs_reverted.fetch_add(1, Ordering::Relaxed);
                self.handle_revert(t, block, receipt.gas_used).await?;
            }
        }
        if !resend.is_empty() {
            self.resend(&resend).await?;
        }
        Ok(())
    }

    /// A successful receipt in `block` with the chain at `head`: confirmed when deep enough, else noted.
    /// At confirmation, the readings the contract skipped (`ReadingSkipped` logs) are dead-lettered and
    /// only the others confirmed.
    async fn on_mined(
        &mut self,
        t: &SentTx,
        receipt: &TransactionReceipt,
        block: u64,
        head: u64,
        now: i64,
    ) -> Result<(), SubmitError> {
        let id = t.id;
        if head < block.saturating_add(self.cfg.confirmations) {
            if t.mined_block != Some(block) {
                tracing::debug!(tx = %t.hash, block, head, "mined; waiting for confirmations");
                db(&self.outbox, move |o| o.mark_mined(id, block)).await?;
            }
            return Ok(());
        }
        let skipped = if t.readings > 1 { self.skipped_readings(t, receipt).await? } else { Vec::new() };
        // The contract's reason per skipped reading, for the log (the outbox keeps it as well).
        let reasons: HashMap<i64, String> =
            skipped.iter().map(|(id, rej)| (*id, rej.detail.clone())).collect();
        let (confirmed, dead) = if skipped.is_empty() {
            (db(&self.outbox, move |o| o.confirm(id, block)).await?, Vec::new())
        } else {
            db(&self.outbox, move |o| o.confirm_except(id, block, &skipped, now)).await?
        };
        for r in &dead {
            self.metrics.reject(Reason::Reverted);
            let reason = reasons.get(&r.id).map(String::as_str).unwrap_or("unknown");
            tracing::warn!(meter = %r.meter, timestamp = r.timestamp, import_wh = r.import_wh, export_wh = r.export_wh,
                tx = %t.hash, reason, "reading skipped by the contract in a batch; dead-lettered");
        }
        let now_s = now as f64 / 1000.0;
        for c in &confirmed {
            let lag = now_s - c.timestamp as f64;
            self.metrics.lag.observe(lag);
            self.metrics.bridge_lag.observe((now - c.received_ms) as f64 / 1000.0);
            self.metrics.last_lag_ms.store((lag.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
        }
        self.metrics.confirmed.fetch_add(confirmed.len() as u64, Ordering::Relaxed);
        tracing::debug!(tx = %t.hash, block, head, readings = confirmed.len(), skipped = dead.len(), "confirmed");
        Ok(())
    }

    /// The outbox readings of batch `t` that the contract skipped, each with the contract's reason: the
    /// receipt's `ReadingSkipped` logs of the readings contract give the item index, which names the item
    /// in the transaction's own `submitReadings` input, matched to the reading by meter address, counters
    /// and timestamp.
    async fn skipped_readings(
        &self,
        t: &SentTx,
        receipt: &TransactionReceipt,
    ) -> Result<Vec<(i64, Rejection)>, SubmitError> {
        let events = skipped_events(receipt, self.cfg.readings);
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let items = match batch_items(&t.raw) {
            Some(items) => items,
            None => {
                tracing::error!(tx = %t.hash, "a receipt reports skipped readings but the transaction is no batch");
                return Ok(Vec::new());
            }
        };
        let id = t.id;
        let in_tx = db(&self.outbox, move |o| o.tx_readings(id)).await?;
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            let Some(item) = usize::try_from(ev.index).ok().and_then(|i| items.get(i)) else {
                tracing::error!(tx = %t.hash, index = %ev.index, "ReadingSkipped names an item the batch does not have");
                continue;
            };
            let found = in_tx.iter().find(|r| {
                self.meters.get(&r.meter).map(|k| k.address) == Some(item.meter)
                    && r.import_wh == item.importWh
                    && r.export_wh == item.exportWh
                    && r.timestamp == item.timestamp
            });
            let Some(r) = found else {
                tracing::error!(tx = %t.hash, index = %ev.index, "skipped item matches no reading of the transaction");
                continue;
            };
            let name =
                MeterReadings::MeterReadingsErrors::name_by_selector(ev.reason.0).unwrap_or("unknown error");
            let detail = format!(
                "skipped by the contract in batch {} (item {}): {name} (0x{})",
                t.hash,
                ev.index,
                hex::encode(ev.reason.0)
            );
            out.push((r.id, Rejection::new(Reason::Reverted, detail)));
        }
        Ok(out)
    }

    /// A reverted transaction that used `gas_used`: a batch's readings are sent again one per
    /// transaction; a single reading that ran out of gas under the cap (its static allowance, when
    /// the node gave no estimate) is sent again with the cap; any other single reading is
    /// dead-lettered with the contract's reason.
    async fn handle_revert(&mut self, t: &SentTx, block: u64, gas_used: u64) -> Result<(), SubmitError> {
        let id = t.id;
        if t.readings > 1 {
            tracing::warn!(tx = %t.hash, block, readings = t.readings, "batch reverted; its readings will be sent one per transaction");
            db(&self.outbox, move |o| o.revert_to_isolated(id, block, false)).await?;
            return Ok(());
        }
        let gas_limit =
            <TxEnvelope as alloy_eips::eip2718::Decodable2718>::decode_2718(&mut t.raw.as_slice())
                .map(|e| alloy_consensus::Transaction::gas_limit(&e))
                .ok();
        if let Some(limit) = gas_limit.filter(|&l| gas_used >= l && l < GAS_CAP) {
            tracing::warn!(tx = %t.hash, block, gas_limit = limit, "reading ran out of gas (the node gave no estimate); sending it again with the cap");
            db(&self.outbox, move |o| o.revert_to_isolated(id, block, true)).await?;
            return Ok(());
        }
        // A single reading: find out why by replaying the call at the latest state.
        let detail = self.revert_reason(t).await;
        let rej = Rejection::new(Reason::Reverted, detail);
        let rej2 = rej.clone();
        let now = now_ms();
        let readings = db(&self.outbox, move |o| o.revert_to_dead(id, block, &rej2, now)).await?;
        for r in readings {
            self.metrics.reject(Reason::Reverted);
            tracing::warn!(meter = %r.meter, timestamp = r.timestamp, import_wh = r.import_wh, export_wh = r.export_wh,
                reason = %rej.detail, tx = %t.hash, "reading refused by the contract; dead-lettered");
        }
        Ok(())
    }

    /// Replays a transaction's call with `eth_call` and decodes the contract's custom error.
    async fn revert_reason(&self, t: &SentTx) -> String {
        let env = match <TxEnvelope as alloy_eips::eip2718::Decodable2718>::decode_2718(&mut t.raw.as_slice())
        {
            Ok(e) => e,
            Err(e) => return format!("transaction {} reverted (cannot decode it: {e})", t.hash),
        };
        let input = match &env {
            TxEnvelope::Eip1559(s) => s.tx().input.clone(),
            _ => Bytes::new(),
        };
        let call = TransactionRequest::default()
            .from(t.sender)
            .to(self.cfg.readings)
            .input(input.into())
            .gas_limit(0xf42400);
        match self.rpc.provider().call(call).latest().await.map_err(|e| self.rpc.error(e)) {
            Ok(_) => {
                format!("transaction {} reverted (the call no longer reverts at the latest block)", t.hash)
            }
            Err(RpcError::Node(e)) => {
                let data = e
                    .data
                    .as_ref()
                    .and_then(Value::as_str)
                    .and_then(|s| hex::decode(s).ok())
                    .unwrap_or_default();
                match MeterReadings::MeterReadingsErrors::abi_decode(&data) {
                    Ok(err) => format!("transaction {} reverted: {err:?}", t.hash),
                    Err(_) => format!(
                        "transaction {} reverted: {} (data 0x{})",
                        t.hash,
                        e.message,
                        hex::encode(&data)
                    ),
                }
            }
            Err(e) => format!("transaction {} reverted (reason unknown: {e})", t.hash),
        }
    }

    async fn resend(&mut self, txs: &[&SentTx]) -> Result<(), SubmitError> {
        let answers = self.send_raw(txs.iter().map(|t| &t.raw)).await?;
        let mut sent_ids = Vec::new();
        for (t, a) in txs.iter().zip(answers) {
            match a {
                Ok(_) => sent_ids.push(t.id),
                Err(e) if is_known(&e.message) => sent_ids.push(t.id),
                Err(e) if e.message.to_lowercase().contains("nonce too low") => {
                    sent_ids.push(t.id);
                    self.check_dropped(t).await?;
                }
                Err(e) => {
                    sent_ids.push(t.id);
                    tracing::warn!(tx = %t.hash, nonce = t.nonce, code = e.code, message = %e.message, "resend refused by the node");
                }
            }
        }
        self.metrics.txs_resent.fetch_add(sent_ids.len() as u64, Ordering::Relaxed);
        tracing::info!(count = sent_ids.len(), "resent transactions without a receipt");
        let now = now_ms();
        db(&self.outbox, move |o| o.mark_sent(&sent_ids, now)).await?;
        Ok(())
    }

    /// "nonce too low" for a transaction without a receipt: if the chain has moved past its nonce and
    /// it still has no receipt, another transaction took the nonce and its readings must be sent again.
    async fn check_dropped(&mut self, t: &SentTx) -> Result<(), SubmitError> {
        let provider = self.rpc.provider();
        let count = provider.get_transaction_count(t.sender).latest().await.map_err(|e| self.rpc.error(e))?;
        if count <= t.nonce {
            return Ok(());
        }
        let receipt = provider.get_transaction_receipt(t.hash).await.map_err(|e| self.rpc.error(e))?;
        if receipt.is_some() {
            return Ok(()); // mined after all; the next round confirms it
        }
        tracing::warn!(tx = %t.hash, sender = %t.sender, nonce = t.nonce, "nonce used by another transaction; re-queueing its readings");
        let id = t.id;
        db(&self.outbox, move |o| o.drop_tx(id)).await?;
        self.metrics.txs_dropped.fetch_add(1, Ordering::Relaxed);
        self.nonces.remove(&t.sender);
        Ok(())
    }

    async fn next_nonce(&mut self, sender: Address) -> Result<u64, SubmitError> {
        if let Some(n) = self.nonces.get_mut(&sender) {
            let v = *n;
            *n += 1;
            return Ok(v);
        }
        let chain = self
            .rpc
            .provider()
            .get_transaction_count(sender)
            .latest()
            .await
            .map_err(|e| self.rpc.error(e))?;
        let stored = db(&self.outbox, move |o| o.max_nonce(sender)).await?.map(|n| n + 1).unwrap_or(0);
        let v = chain.max(stored);
        self.nonces.insert(sender, v + 1);
        Ok(v)
    }

    /// Groups candidates: one group per meter (its oldest readings, at most `max_batch`, or a single
    /// isolated reading), groups packed into transactions of at most `max_batch` readings.
    fn plan(&self, candidates: Vec<PendingReading>) -> Vec<Vec<PendingReading>> {
        let max = self.cfg.max_batch.min(MAX_PER_TX);
        let mut per_meter: BTreeMap<i64, Vec<PendingReading>> = BTreeMap::new(); // keyed by first id
        let mut first_id: HashMap<String, i64> = HashMap::new();
        let mut sealed: std::collections::HashSet<String> = std::collections::HashSet::new();
        for r in candidates {
            if sealed.contains(&r.meter) {
                continue;
            }
            let key = *first_id.entry(r.meter.clone()).or_insert(r.id);
            let group = per_meter.entry(key).or_default();
            if r.isolate && !group.is_empty() {
                // Keep order: this meter's later readings wait for the next round.
                sealed.insert(r.meter.clone());
                continue;
            }
            let isolate = r.isolate;
            let meter = r.meter.clone();
            group.push(r);
            if isolate || group.len() >= max {
                sealed.insert(meter);
            }
        }
        let mut txs: Vec<Vec<PendingReading>> = Vec::new();
        let mut current: Vec<PendingReading> = Vec::new();
        for (_, group) in per_meter {
            if group[0].isolate {
                txs.push(group);
                continue;
            }
            if current.len() + group.len() > max {
                txs.push(std::mem::take(&mut current));
            }
            current.extend(group);
        }
        if !current.is_empty() {
            txs.push(current);
        }
        txs.truncate(self.cfg.max_txs_per_round);
        txs
    }

    /// The node's gas estimate of each job's call (`eth_estimateGas` in the next block's
    /// environment, one JSON-RPC batch, at most [`ESTIMATE_TIMEOUT`]); `None` where the node answered
    /// with an error, or for every job when the estimates failed or took too long (a node that is
    /// down or busy): the static allowance is used then. A batch that reverts out of gas with it is
    /// retried one reading per transaction, each estimated again.
    async fn estimate(&self, jobs: &[SignJob], calls: &[(u64, Vec<u8>)]) -> Vec<Option<u64>> {
        let mut batch = self.rpc.batch();
        let mut waiters = Vec::with_capacity(jobs.len());
        for (j, (_, input)) in jobs.iter().zip(calls) {
            let call = TransactionRequest::default()
                .from(j.sender.address())
                .to(self.cfg.readings)
                .input(Bytes::from(input.clone()).into())
                .gas_limit(GAS_CAP);
            waiters.push(self.rpc.add::<_, U64>(&mut batch, "eth_estimateGas", (call,)).ok());
        }
        match tokio::time::timeout(ESTIMATE_TIMEOUT, self.rpc.send(batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "gas estimates failed; using the static allowances");
                return vec![None; jobs.len()];
            }
            Err(_) => {
                tracing::debug!(
                    jobs = jobs.len(),
                    "gas estimates took too long; using the static allowances"
                );
                return vec![None; jobs.len()];
            }
        }
        let mut out = Vec::with_capacity(jobs.len());
        for w in waiters {
            out.push(match w {
                Some(w) => match self.rpc.item(w).await {
                    Ok(gas) => Some(gas.to::<u64>()),
                    Err(e) => {
                        tracing::debug!(code = e.code, message = %e.message, "no gas estimate; using the static allowance");
                        None
                    }
                },
                None => None,
            });
        }
        out
    }

    async fn build_and_send(&mut self, chain_id: u64) -> Result<(), SubmitError> {
        let limit = self.cfg.max_batch * self.cfg.max_txs_per_round;
        let candidates = db(&self.outbox, move |o| o.pending_candidates(limit)).await?;
        if candidates.is_empty() {
            return Ok(());
        }
        let plan = self.plan(candidates);
        // Senders and nonces first (may ask the node), then sign on blocking threads, in parallel.
        let mut jobs: Vec<SignJob> = Vec::with_capacity(plan.len());
        for group in plan {
            let keys: Vec<Arc<MeterKey>> =
                group.iter().map(|r| self.meters.get(&r.meter).cloned().expect("configured meter")).collect();
            let sender = if group.len() == 1 { keys[0].signer.clone() } else { (*self.relayer).clone() };
            let nonce = self.next_nonce(sender.address()).await?;
            jobs.push(SignJob { group, keys, sender, nonce });
        }
        let readings_addr = self.cfg.readings;
        let (jobs, calls) = tokio::task::spawn_blocking(move || {
            let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
            let chunk = jobs.len().div_ceil(threads).max(1);
            let calls = std::thread::scope(|s| {
                let handles: Vec<_> = jobs
                    .chunks(chunk)
                    .map(|part| {
                        s.spawn(move || {
                            part.iter()
                                .map(|j| j.call(chain_id, readings_addr))
                                .collect::<Result<Vec<_>, _>>()
                        })
                    })
                    .collect();
                let mut out = Vec::new();
                for h in handles {
                    out.extend(h.join().expect("signing thread")?);
                }
                Ok::<_, SubmitError>(out)
            })?;
            Ok::<_, SubmitError>((jobs, calls))
        })
        .await
        .expect("signing task panicked")?;
        let estimates = self.estimate(&jobs, &calls).await;
        let built: Vec<Built> = jobs
            .iter()
            .zip(calls)
            .zip(estimates)
            .map(|((j, (allowance, input)), estimate)| {
                j.sign(chain_id, readings_addr, gas_limit(allowance, estimate), input)
            })
            .collect::<Result<_, _>>()?;
        // Store before sending: a transaction is never on the wire without being in the outbox.
        let news: Vec<NewTx> = built.iter().map(|b| b.new.clone()).collect();
        let now = now_ms();
        let ids = db(&self.outbox, move |o| o.record_txs(&news, now)).await?;
        let readings: usize = built.iter().map(|b| b.readings).sum();
        self.metrics.submitted.fetch_add(readings as u64, Ordering::Relaxed);
        self.metrics.txs_sent.fetch_add(built.len() as u64, Ordering::Relaxed);
        let answers = self.send_raw(built.iter().map(|b| &b.new.raw)).await?;
        for ((b, a), id) in built.iter().zip(answers).zip(ids) {
            if let Err(e) = a {
                if !is_known(&e.message) {
                    tracing::warn!(tx = %b.new.hash, tx_id = id, nonce = b.new.nonce, sender = %b.new.sender, code = e.code,
                        message = %e.message, "node refused a new transaction; it will be resent");
                }
            }
        }
        tracing::debug!(txs = built.len(), readings, "sent transactions");
        Ok(())
    }
}

/// The `ReadingSkipped` events of the readings contract at `readings` in a receipt.
fn skipped_events(receipt: &TransactionReceipt, readings: Address) -> Vec<MeterReadings::ReadingSkipped> {
    let mut out = Vec::new();
    for log in receipt.inner.logs() {
        if log.address() != readings
            || log.topics().first() != Some(&MeterReadings::ReadingSkipped::SIGNATURE_HASH)
        {
            continue;
        }
        match MeterReadings::ReadingSkipped::decode_log_data(log.data()) {
            Ok(ev) => out.push(ev),
            Err(e) => tracing::error!(error = %e, "undecodable ReadingSkipped log"),
        }
    }
    out
}

/// The signed readings of a raw `submitReadings` transaction, in batch order; `None` for anything else.
fn batch_items(raw: &[u8]) -> Option<Vec<IMeterReadings::SignedReading>> {
    let env = <TxEnvelope as alloy_eips::eip2718::Decodable2718>::decode_2718(&mut &raw[..]).ok()?;
    let TxEnvelope::Eip1559(s) = env else { return None };
    MeterReadings::submitReadingsCall::abi_decode(&s.tx().input).ok().map(|c| c.readings)
}

impl Submitter {
    /// Sends raw transactions in one `eth_sendRawTransaction` batch; each answer is its hash or
    /// the node's refusal.
    async fn send_raw<'a>(
        &self,
        raws: impl Iterator<Item = &'a Vec<u8>>,
    ) -> Result<Vec<Result<B256, crate::rpc::RpcErrorObject>>, SubmitError> {
        let mut batch = self.rpc.batch();
        let mut waiters = Vec::new();
        for raw in raws {
            waiters.push(self.rpc.add::<_, B256>(
                &mut batch,
                "eth_sendRawTransaction",
                (Bytes::copy_from_slice(raw),),
            )?);
        }
        self.rpc.send(batch).await?;
        let mut answers = Vec::with_capacity(waiters.len());
        for w in waiters {
            answers.push(self.rpc.item(w).await);
        }
        Ok(answers)
    }
}

fn is_known(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("already known") || m.contains("known transaction") || m.contains("already imported")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_limit_is_the_allowance_or_the_padded_estimate_within_the_cap() {
        // No estimate, or one whose headroom stays under the allowance: the allowance.
        assert_eq!(gas_limit(GAS_SINGLE, None), GAS_SINGLE);
        assert_eq!(gas_limit(GAS_SINGLE, Some(100_000)), GAS_SINGLE);
        // 200,000 + 50,000 + 50,000 = 300,000: at the allowance.
        assert_eq!(gas_limit(GAS_SINGLE, Some(200_000)), GAS_SINGLE);
        assert_eq!(gas_limit(GAS_SINGLE, Some(200_004)), 300_005);
        assert_eq!(gas_limit(GAS_SINGLE, Some(669_529)), 669_529 + 167_382 + 50_000);
        // Never above the per-transaction cap, just under, at and over it.
        let under = (GAS_CAP - 50_000) * 4 / 5 - 4;
        assert!(gas_limit(GAS_SINGLE, Some(under)) < GAS_CAP);
        assert_eq!(gas_limit(GAS_SINGLE, Some(GAS_CAP)), GAS_CAP);
        assert_eq!(gas_limit(GAS_SINGLE, Some(u64::MAX)), GAS_CAP);
    }
}
