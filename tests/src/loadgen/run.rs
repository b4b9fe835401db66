//! The two phases of a load-generation run: setup, then the timed run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{hex, Address, Bytes, B256, U256};
use alloy_signer_local::PrivateKeySigner;
use serde::Serialize;
use serde_json::{json, Value};

use super::contract;
use super::keys;
use super::rpc::{self, parse_u256, parse_u64, RpcClient};
use super::txs::{self, Call, Fees, SenderPlan, SignedTx};
use super::LoadgenError;

/// Gas limit of a plain transfer.
const TRANSFER_GAS: u64 = 21_000;
/// Gas limit used when `eth_estimateGas` is not usable for the contract call.
const FALLBACK_CALL_GAS: u64 = 100_000;
/// How many error messages are kept for the report.
const KEPT_ERRORS: usize = 5;

/// What the measured transactions do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Plain value transfers of 1 wei from each sender to the next one.
    Transfer,
    /// Calls of the benchmark contract: one SSTORE and one LOG1 each.
    Contract,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Workload::Transfer => "transfer",
            Workload::Contract => "contract",
        })
    }
}

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// JSON-RPC HTTP endpoint.
    pub rpc: String,
    /// Kind of transactions.
    pub workload: Workload,
    /// Number of measured transactions.
    pub txs: usize,
    /// Number of sender accounts.
    pub senders: usize,
    /// Calls per JSON-RPC batch.
    pub batch: usize,
    /// Number of batches in flight at once.
    pub concurrency: usize,
    /// Mnemonic of the funder (index 0) and the senders.
    pub mnemonic: String,
    /// Derivation index of the first sender.
    pub sender_index_base: u32,
    /// Balance given to a sender whose balance is below half of it.
    pub fund_wei: U256,
    /// Fee fields of every transaction.
    pub fees: Fees,
    /// Delay between two polls while waiting for receipts.
    pub poll_interval: Duration,
    /// Longest wait for the receipts of the timed run.
    pub timeout: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// How many receipts are checked after the run.
    pub verify: Verify,
    /// Blocks that must be on top of the last block holding a measured transaction before the
    /// receipts are checked (0: check at once). On a chain with several signers the newest
    /// blocks can still be replaced (Clique fork choice: an in-turn block that arrives late
    /// beats an out-of-turn one at the same height), and transactions of a replaced block have
    /// no receipt until they are mined again. Does not change the measured times.
    pub confirmations: u64,
}

/// How receipts are checked after the timed run (inclusion of every
/// transaction is always checked, from the blocks' transaction lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// Check the receipts of the last transaction of every sender plus an
    /// evenly spread sample of this many others.
    Sample(usize),
    /// Check every receipt (`eth_getBlockReceipts` when the node has it).
    Full,
}

/// Result of a run, printed as text or as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Workload that was run.
    pub workload: Workload,
    /// Endpoint that was measured.
    pub rpc: String,
    /// Answer of `web3_clientVersion`, if the node has it.
    pub client_version: Option<String>,
    /// Chain id reported by the node.
    pub chain_id: u64,
    /// Number of signed transactions.
    pub txs: usize,
    /// Number of senders.
    pub senders: usize,
    /// Calls per batch.
    pub batch: usize,
    /// Batches in flight.
    pub concurrency: usize,
    /// Gas limit of each measured transaction.
    pub gas_limit_per_tx: u64,
    /// Transactions the node accepted (`eth_sendRawTransaction` returned a hash).
    pub accepted: usize,
    /// Transactions the node rejected.
    pub send_errors: usize,
    /// The first few rejection messages.
    pub first_errors: Vec<String>,
    /// Seconds from the first send until every batch was answered.
    pub send_secs: f64,
    /// `txs / send_secs`.
    pub send_tps: f64,
    /// Seconds from the first send until the last receipt was seen.
    pub elapsed_secs: f64,
    /// End-to-end throughput: `accepted / elapsed_secs`.
    pub tps: f64,
    /// Inclusion latency, median over the mined transactions: from the moment the batch
    /// carrying a transaction was sent until a head holding its block was first seen (heads are
    /// polled every `--poll-ms` while the run lasts, sends included).
    pub latency_p50_secs: f64,
    /// Inclusion latency, 99th percentile (nearest rank).
    pub latency_p99_secs: f64,
    /// Inclusion latency, largest.
    pub latency_max_secs: f64,
    /// Head block number just before the clock started.
    pub start_block: u64,
    /// Highest block holding a measured transaction.
    pub last_block: u64,
    /// Blocks read during the run that the node later replaced (reorganisations seen).
    pub reorgs: usize,
    /// Number of blocks holding measured transactions.
    pub blocks_used: usize,
    /// Largest number of measured transactions in one block.
    pub max_txs_per_block: usize,
    /// Accepted transactions found in the blocks of the run.
    pub included: usize,
    /// Receipts checked after the run.
    pub receipts_checked: usize,
    /// Checked receipts with status 0 (or, for `contract`, without the event).
    pub receipts_failed: usize,
    /// Checked transactions without a receipt (after asking again for 10 s).
    pub receipts_missing: usize,
    /// Receipts missing at the first check that the node returned when asked again.
    pub receipts_late: usize,
    /// How the receipts were checked.
    pub verified_with: String,
    /// Average gas used by a checked transaction.
    pub avg_gas_used: f64,
    /// True when every transaction was accepted and succeeded.
    pub ok: bool,
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("[p2pe-loadgen] {}", msg.as_ref());
}

/// Runs setup and the timed phase against `cfg.rpc` and returns the report.
pub async fn run(cfg: &Config) -> Result<Report, LoadgenError> {
    validate(cfg)?;
    let client = RpcClient::new(&cfg.rpc, cfg.request_timeout)?;

    // ---------------------------------------------------------------- setup
    let (chain_id, client_version) = identify(cfg, &client).await?;
    let keys =
        tokio::task::block_in_place(|| keys::derive(&cfg.mnemonic, cfg.sender_index_base, cfg.senders))?;
    let addrs: Vec<Address> = keys.senders.iter().map(|s| s.address()).collect();
    let contract = setup(cfg, &client, chain_id, &keys.funder, &addrs).await?;
    let (gas_limit, make_call) = workload_calls(&client, &addrs, contract).await;
    let plans = plan_senders(cfg, &client, &addrs).await?;

    // ------------------------------------------------------------ pre-sign
    let (signed, queues) = presign(cfg, keys, &plans, chain_id, &make_call)?;

    // ----------------------------------------------------------- timed run
    let start_block = parse_u64(&client.call("eth_blockNumber", json!([])).await?, "eth_blockNumber")?;
    // Heads are watched from the start, so that blocks sealed while batches are still being
    // sent get the time they appeared, not the time the sending ended.
    let heads: HeadTimes = Arc::new(Mutex::new(BTreeMap::new()));
    let watcher = tokio::spawn(watch_heads(client.clone(), start_block, heads.clone(), cfg.poll_interval));
    let start = Instant::now();
    let sends = send_all(cfg, &client, &signed, queues).await?;
    let send_secs = start.elapsed().as_secs_f64();
    let targets = targets_of(&signed, &sends.failed);
    let ours: HashSet<B256> = signed.iter().flatten().map(|t| t.hash).collect();
    let wait = wait_for_inclusion(
        &client,
        &ours,
        &targets,
        start_block + 1,
        start,
        (&sends.sent_at, &heads),
        cfg.poll_interval,
        cfg.timeout,
        cfg.confirmations,
    )
    .await;
    watcher.abort();
    let mut wait = wait?;
    wait.latencies.sort_by(f64::total_cmp);
    let elapsed_secs = wait.done_at.duration_since(start).as_secs_f64();
    let send_errors = sends.failed.len();
    let accepted = cfg.txs - send_errors;
    progress(format!(
        "last transaction mined after {elapsed_secs:.2} s (block {}): {:.0} tx/s end to end",
        wait.last_block,
        accepted as f64 / elapsed_secs
    ));

    // -------------------------------------------------------------- verify
    let check =
        verify(&client, cfg, &signed, &targets, &wait.per_block, cfg.workload == Workload::Contract).await?;
    // Blocks of the run replaced after the wait (during the receipt check) are reorganisations
    // too: receipts found only when asked again are usually their consequence.
    wait.reorgs += replaced_blocks(&client, &wait.blocks).await?;
    let missing = accepted.saturating_sub(wait.included);
    if missing > 0 {
        progress(format!("{missing} accepted transactions were never mined"));
    }
    let ok = send_errors == 0 && check.failed == 0 && missing == 0 && check.missing == 0;
    Ok(Report {
        workload: cfg.workload,
        rpc: cfg.rpc.clone(),
        client_version,
        chain_id,
        txs: cfg.txs,
        senders: cfg.senders,
        batch: cfg.batch,
        concurrency: cfg.concurrency,
        gas_limit_per_tx: gas_limit,
        accepted,
        send_errors,
        first_errors: sends.first_errors,
        send_secs,
        send_tps: cfg.txs as f64 / send_secs,
        elapsed_secs,
        tps: accepted as f64 / elapsed_secs,
        latency_p50_secs: percentile(&wait.latencies, 0.50),
        latency_p99_secs: percentile(&wait.latencies, 0.99),
        latency_max_secs: wait.latencies.last().copied().unwrap_or(0.0),
        start_block,
        last_block: wait.last_block,
        reorgs: wait.reorgs,
        blocks_used: wait.per_block.len(),
        max_txs_per_block: wait.per_block.values().copied().max().unwrap_or(0),
        included: wait.included,
        receipts_checked: check.found,
        receipts_failed: check.failed,
        receipts_missing: check.missing,
        receipts_late: check.late,
        verified_with: check.method,
        avg_gas_used: if check.found == 0 { 0.0 } else { check.gas_used as f64 / check.found as f64 },
        ok,
    })
}

/// Every sender's signed transactions, in nonce order.
type Signed = Vec<Vec<SignedTx>>;

/// Signs every measured transaction ahead of the timed run (the keys are dropped after) and
/// splits them into the senders' queues of batches.
fn presign(
    cfg: &Config,
    keys: keys::Keys,
    plans: &[SenderPlan],
    chain_id: u64,
    make_call: &MakeCall,
) -> Result<(Signed, Vec<Vec<Batch>>), LoadgenError> {
    let t_sign = Instant::now();
    let signed =
        tokio::task::block_in_place(|| txs::sign_all(&keys.senders, plans, chain_id, cfg.fees, make_call))?;
    drop(keys);
    let queues = build_queues(&signed, cfg.concurrency, cfg.batch)?;
    progress(format!(
        "pre-signed {} {} transactions from {} senders in {:.1} s ({} batches of ≤ {}, {} in flight)",
        cfg.txs,
        cfg.workload,
        cfg.senders,
        t_sign.elapsed().as_secs_f64(),
        queues.iter().map(Vec::len).sum::<usize>(),
        cfg.batch,
        cfg.concurrency
    ));
    Ok((signed, queues))
}

/// The node's chain id and client version (printed).
async fn identify(cfg: &Config, client: &RpcClient) -> Result<(u64, Option<String>), LoadgenError> {
    let chain_id = parse_u64(&client.call("eth_chainId", json!([])).await?, "eth_chainId")?;
    let client_version = client
        .try_call("web3_clientVersion", json!([]))
        .await
        .ok()
        .and_then(|r| r.ok())
        .and_then(|v| v.as_str().map(str::to_owned));
    progress(format!(
        "{} chain id {chain_id} ({})",
        cfg.rpc,
        client_version.as_deref().unwrap_or("unknown client")
    ));
    Ok((chain_id, client_version))
}

/// How many of the run's blocks `(number, hash)` are no longer the chain's at their height.
async fn replaced_blocks(client: &RpcClient, blocks: &[(u64, B256)]) -> Result<usize, LoadgenError> {
    let mut replaced = 0;
    for &(n, hash) in blocks {
        if read_block(client, n).await?.map(|(h, _, _)| h) != Some(hash) {
            progress(format!("  block {n} was replaced after the wait (reorg)"));
            replaced += 1;
        }
    }
    Ok(replaced)
}

/// Makes the call a sender signs at a nonce (a transfer, or a call of the deployed contract).
type MakeCall = Box<dyn Fn(usize, u64) -> Call + Sync>;

/// The gas limit of one transaction of the workload and the maker of its calls.
async fn workload_calls(client: &RpcClient, addrs: &[Address], contract: Option<Address>) -> (u64, MakeCall) {
    match contract {
        None => {
            let addrs = addrs.to_vec();
            (
                TRANSFER_GAS,
                Box::new(move |s, _nonce| Call {
                    to: Some(addrs[(s + 1) % addrs.len()]),
                    value: U256::from(1u64),
                    input: Bytes::new(),
                    gas_limit: TRANSFER_GAS,
                }),
            )
        }
        Some(addr) => {
            let gas = call_gas(client, addrs[0], addr).await;
            (
                gas,
                Box::new(move |_s, nonce| Call {
                    to: Some(addr),
                    value: U256::ZERO,
                    // nonce + 1 differs from whatever the slot holds, so the
                    // SSTORE always changes state.
                    input: contract::calldata(U256::from(nonce) + U256::from(1u64)),
                    gas_limit: gas,
                }),
            )
        }
    }
}

/// Each sender's first (pending) nonce and share of the transactions.
async fn plan_senders(
    cfg: &Config,
    client: &RpcClient,
    addrs: &[Address],
) -> Result<Vec<SenderPlan>, LoadgenError> {
    let nonce_params: Vec<Value> = addrs.iter().map(|a| json!([a, "pending"])).collect();
    let nonces = client.batch("eth_getTransactionCount", &nonce_params).await?;
    let per_sender = cfg.txs / cfg.senders;
    let extra = cfg.txs % cfg.senders;
    nonces
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let v = r.map_err(|e| rpc_err("eth_getTransactionCount", e))?;
            Ok(SenderPlan {
                first_nonce: parse_u64(&v, "eth_getTransactionCount")?,
                count: (per_sender + usize::from(i < extra)) as u64,
            })
        })
        .collect()
}

/// What sending every batch gave: the refused transactions (sender, index, error) in order,
/// the first few errors as text, and when each transaction was sent.
struct Sends {
    failed: Vec<(usize, usize, String)>,
    first_errors: Vec<String>,
    sent_at: HashMap<B256, Instant>,
}

/// Sends every queue concurrently and waits for all of them.
async fn send_all(
    cfg: &Config,
    client: &RpcClient,
    signed: &[Vec<SignedTx>],
    queues: Vec<Vec<Batch>>,
) -> Result<Sends, LoadgenError> {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(queues.len());
    for queue in queues {
        let client = client.clone();
        tasks.push(tokio::spawn(async move { send_queue(&client, queue).await }));
    }
    let mut failed: Vec<(usize, usize, String)> = Vec::new();
    let mut sent_at: HashMap<B256, Instant> = HashMap::with_capacity(cfg.txs);
    for t in tasks {
        let (errs, sent) = t.await.map_err(|e| LoadgenError::Setup(format!("send task failed: {e}")))?;
        failed.extend(errs);
        sent_at.extend(sent.into_iter().map(|(s, i, at)| (signed[s][i].hash, at)));
    }
    let send_secs = start.elapsed().as_secs_f64();
    failed.sort_by_key(|(s, i, _)| (*s, *i));
    let first_errors: Vec<String> = failed
        .iter()
        .take(KEPT_ERRORS)
        .map(|(s, i, m)| format!("sender {s} nonce {}: {m}", signed[*s][*i].nonce))
        .collect();
    progress(format!(
        "sent {} transactions in {send_secs:.2} s ({:.0} tx/s), {} rejected",
        cfg.txs,
        cfg.txs as f64 / send_secs,
        failed.len()
    ));
    for e in &first_errors {
        progress(format!("  rejected: {e}"));
    }
    Ok(Sends { failed, first_errors, sent_at })
}

/// The hash of the last transaction of each sender's accepted prefix: each sender's
/// transactions are mined in nonce order, so once it is in, all of them are.
fn targets_of(signed: &[Vec<SignedTx>], failed: &[(usize, usize, String)]) -> Vec<B256> {
    let mut first_failed: HashMap<usize, usize> = HashMap::new();
    for (s, i, _) in failed {
        first_failed.entry(*s).or_insert(*i);
    }
    signed
        .iter()
        .enumerate()
        .filter_map(|(s, list)| {
            let prefix = first_failed.get(&s).copied().unwrap_or(list.len());
            prefix.checked_sub(1).map(|i| list[i].hash)
        })
        .collect()
}

fn validate(cfg: &Config) -> Result<(), LoadgenError> {
    let positive = [
        ("--txs", cfg.txs),
        ("--senders", cfg.senders),
        ("--batch", cfg.batch),
        ("--concurrency", cfg.concurrency),
    ];
    for (flag, v) in positive {
        if v == 0 {
            return Err(LoadgenError::Config(format!("{flag} must be at least 1")));
        }
    }
    if cfg.fees.max_priority_fee_per_gas > cfg.fees.max_fee_per_gas {
        return Err(LoadgenError::Config("--priority-fee must not exceed --max-fee".to_owned()));
    }
    Ok(())
}

fn rpc_err(method: &str, e: rpc::RpcErrorObject) -> LoadgenError {
    LoadgenError::Rpc { method: method.to_owned(), code: e.code, message: e.message }
}

/// Funds the senders that need it and, for the contract workload, deploys
/// the contract; returns its address.
async fn setup(
    cfg: &Config,
    client: &RpcClient,
    chain_id: u64,
    funder: &PrivateKeySigner,
    addrs: &[Address],
) -> Result<Option<Address>, LoadgenError> {
    let to_fund = needing_funds(cfg, client, addrs).await?;
    let funder_addr = funder.address();
    let mut nonce = parse_u64(
        &client.call("eth_getTransactionCount", json!([funder_addr, "pending"])).await?,
        "eth_getTransactionCount",
    )?;
    let mut setup_txs: Vec<(B256, String)> = Vec::new();
    for addr in &to_fund {
        let call =
            Call { to: Some(*addr), value: cfg.fund_wei, input: Bytes::new(), gas_limit: TRANSFER_GAS };
        setup_txs.push(txs::sign(funder, chain_id, nonce, cfg.fees, &call)?);
        nonce += 1;
    }
    let mut deploy: Option<(B256, Address)> = None;
    if cfg.workload == Workload::Contract {
        let init = Bytes::from(contract::INIT_CODE.to_vec());
        let gas = match client
            .call("eth_estimateGas", json!([{"from": funder_addr, "data": init}]))
            .await
            .and_then(|v| parse_u64(&v, "eth_estimateGas"))
        {
            Ok(g) => g + g / 5,
            Err(e) => {
                progress(format!("eth_estimateGas for the deployment failed ({e}); using 200000"));
                200_000
            }
        };
        let call = Call { to: None, value: U256::ZERO, input: init, gas_limit: gas };
        let (hash, raw) = txs::sign(funder, chain_id, nonce, cfg.fees, &call)?;
        deploy = Some((hash, funder_addr.create(nonce)));
        setup_txs.push((hash, raw));
    }
    if setup_txs.is_empty() {
        progress(format!("all {} senders already funded", addrs.len()));
        return Ok(None);
    }
    progress(format!(
        "setup: funding {} of {} senders{}",
        to_fund.len(),
        addrs.len(),
        if deploy.is_some() { ", deploying the benchmark contract" } else { "" }
    ));
    for chunk in setup_txs.chunks(cfg.batch) {
        let params: Vec<Value> = chunk.iter().map(|(_, raw)| json!([raw])).collect();
        let answers = client.batch("eth_sendRawTransaction", &params).await?;
        if let Some(e) = answers.into_iter().find_map(Result::err) {
            return Err(LoadgenError::Setup(format!("a funding/deployment transaction was rejected: {e}")));
        }
    }
    let hashes: Vec<B256> = setup_txs.iter().map(|(h, _)| *h).collect();
    let receipts = fetch_receipts_until(client, &hashes, cfg.batch, Duration::from_secs(120)).await?;
    for (h, r) in hashes.iter().zip(&receipts) {
        if r.get("status").and_then(Value::as_str) != Some("0x1") {
            return Err(LoadgenError::Setup(format!("setup transaction {h} failed: receipt {r}")));
        }
    }
    let Some((hash, expected)) = deploy else {
        return Ok(None);
    };
    let receipt = hashes
        .iter()
        .position(|h| *h == hash)
        .map(|i| &receipts[i])
        .ok_or_else(|| LoadgenError::Setup("deployment receipt missing".to_owned()))?;
    verify_deployment(client, receipt, expected).await.map(Some)
}

/// The senders among `addrs` whose balance is under half of `cfg.fund_wei`.
async fn needing_funds(
    cfg: &Config,
    client: &RpcClient,
    addrs: &[Address],
) -> Result<Vec<Address>, LoadgenError> {
    let balance_params: Vec<Value> = addrs.iter().map(|a| json!([a, "latest"])).collect();
    let mut to_fund = Vec::new();
    for chunk in balance_params.chunks(cfg.batch).zip(addrs.chunks(cfg.batch)) {
        let answers = client.batch("eth_getBalance", chunk.0).await?;
        for (r, addr) in answers.into_iter().zip(chunk.1) {
            let bal = parse_u256(&r.map_err(|e| rpc_err("eth_getBalance", e))?, "eth_getBalance")?;
            if bal < cfg.fund_wei / U256::from(2u64) {
                to_fund.push(*addr);
            }
        }
    }
    Ok(to_fund)
}

/// Checks that the deployment's `receipt` names the `expected` address and that its code there is
/// the benchmark contract's runtime.
async fn verify_deployment(
    client: &RpcClient,
    receipt: &Value,
    expected: Address,
) -> Result<Address, LoadgenError> {
    let addr: Address = receipt
        .get("contractAddress")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(expected);
    if addr != expected {
        return Err(LoadgenError::Setup(format!(
            "deployment receipt names contract {addr}, expected {expected}"
        )));
    }
    let code = client.call("eth_getCode", json!([addr, "latest"])).await?;
    let code_hex = code.as_str().unwrap_or_default();
    if code_hex != hex::encode_prefixed(contract::RUNTIME) {
        return Err(LoadgenError::Setup(format!(
            "eth_getCode({addr}) returned {code_hex:?}, expected the benchmark runtime {}",
            hex::encode_prefixed(contract::RUNTIME)
        )));
    }
    progress(format!("contract deployed at {addr}, code verified"));
    Ok(addr)
}

/// Gas limit for one contract call: `eth_estimateGas` of the most expensive
/// case (0 → non-zero write, all calldata bytes non-zero) plus 20 %.
async fn call_gas(client: &RpcClient, from: Address, contract: Address) -> u64 {
    let data = contract::calldata(U256::MAX);
    match client
        .call("eth_estimateGas", json!([{"from": from, "to": contract, "data": data}]))
        .await
        .and_then(|v| parse_u64(&v, "eth_estimateGas"))
    {
        Ok(g) => {
            let gas = g + g / 5;
            progress(format!("contract call: eth_estimateGas = {g}, gas limit {gas}"));
            gas
        }
        Err(e) => {
            progress(format!(
                "eth_estimateGas for the contract call failed ({e}); using {FALLBACK_CALL_GAS}"
            ));
            FALLBACK_CALL_GAS
        }
    }
}

/// One pre-serialised batch: the body and, per element, (sender, index in
/// the sender's list).
struct Batch {
    body: Vec<u8>,
    refs: Vec<(usize, usize)>,
}

/// Splits the signed transactions into `concurrency` queues of batches.
///
/// Queue `w` holds the senders `s` with `s % concurrency == w`, interleaved
/// round by round, so each sender's nonces reach the node in order even
/// though the queues run in parallel.
fn build_queues(
    signed: &[Vec<SignedTx>],
    concurrency: usize,
    batch: usize,
) -> Result<Vec<Vec<Batch>>, LoadgenError> {
    let rounds = signed.iter().map(Vec::len).max().unwrap_or(0);
    let mut queues = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let mut order = Vec::new();
        for r in 0..rounds {
            for (s, list) in signed.iter().enumerate().skip(w).step_by(concurrency) {
                if r < list.len() {
                    order.push((s, r));
                }
            }
        }
        let mut batches = Vec::new();
        for refs in order.chunks(batch) {
            let params: Vec<Value> = refs.iter().map(|&(s, i)| json!([signed[s][i].raw_hex])).collect();
            batches.push(Batch {
                body: rpc::batch_body("eth_sendRawTransaction", &params)?,
                refs: refs.to_vec(),
            });
        }
        if !batches.is_empty() {
            queues.push(batches);
        }
    }
    Ok(queues)
}

/// The `p` quantile (0..=1, nearest rank) of sorted values; 0 when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// When each block number was first seen as (or below) the head.
type HeadTimes = Arc<Mutex<BTreeMap<u64, Instant>>>;

/// Polls `eth_blockNumber` every `poll` until aborted, recording when each block after `from`
/// was first seen.
async fn watch_heads(client: RpcClient, from: u64, heads: HeadTimes, poll: Duration) {
    let mut last = from;
    loop {
        if let Ok(head) = client.call("eth_blockNumber", json!([])).await.and_then(|v| parse_u64(&v, "head"))
        {
            let now = Instant::now();
            if head > last {
                let mut map = heads.lock().unwrap_or_else(|e| e.into_inner());
                for n in last + 1..=head {
                    map.insert(n, now);
                }
                last = head;
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// A sent transaction: (sender, index in the sender's list, when its batch was sent).
type Sent = (usize, usize, Instant);

/// Sends a queue of batches one after the other; returns the rejected
/// transactions as (sender, index, message), and when each transaction's batch was sent.
async fn send_queue(client: &RpcClient, queue: Vec<Batch>) -> (Vec<(usize, usize, String)>, Vec<Sent>) {
    let mut errors = Vec::new();
    let mut sent = Vec::new();
    for b in queue {
        let n = b.refs.len();
        let at = Instant::now();
        sent.extend(b.refs.iter().map(|&(s, i)| (s, i, at)));
        match client.send_batch_body("eth_sendRawTransaction", b.body, n).await {
            Ok(answers) => {
                for (r, (s, i)) in answers.into_iter().zip(b.refs) {
                    if let Err(e) = r {
                        errors.push((s, i, e.to_string()));
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                errors.extend(b.refs.into_iter().map(|(s, i)| (s, i, msg.clone())));
            }
        }
    }
    (errors, sent)
}

/// When the run's transactions were mined, and where.
struct Waited {
    /// When the head holding the last target was first seen.
    done_at: Instant,
    /// Block holding the last target.
    last_block: u64,
    /// Measured transactions per block.
    per_block: BTreeMap<u64, usize>,
    /// Measured transactions found in blocks.
    included: usize,
    /// Inclusion latency of each of them, in seconds (unsorted).
    latencies: Vec<f64>,
    /// Times a block read during the wait was replaced by another (chain reorganisations).
    reorgs: usize,
    /// Number and hash of every block of the run that held measured transactions.
    blocks: Vec<(u64, B256)>,
}

/// A block of the run as read from the node.
struct SeenBlock {
    /// Its hash (its successor's parentHash must match, else the chain reorganised).
    hash: B256,
    /// The run's transactions in it.
    ours: Vec<B256>,
    /// When a head holding it was first seen.
    seen_at: Instant,
}

/// Reads block `n` (hashes only): (hash, parentHash, transaction hashes), or `None` if the node
/// has no such block (any more).
async fn read_block(client: &RpcClient, n: u64) -> Result<Option<(B256, B256, Vec<B256>)>, LoadgenError> {
    let block = client.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false])).await?;
    if block.is_null() {
        return Ok(None);
    }
    let bad =
        |detail: String| LoadgenError::BadResponse { method: "eth_getBlockByNumber".to_owned(), detail };
    let field = |k: &str| -> Result<B256, LoadgenError> {
        block
            .get(k)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("block {n} has no valid {k}")))
    };
    let (hash, parent) = (field("hash")?, field("parentHash")?);
    let list = block
        .get("transactions")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("block {n} has no transactions array")))?;
    let mut txs = Vec::with_capacity(list.len());
    for h in list {
        let hash = h
            .as_str()
            .and_then(|s| s.parse::<B256>().ok())
            .ok_or_else(|| bad(format!("block {n}: bad transaction hash {h}")))?;
        txs.push(hash);
    }
    Ok(Some((hash, parent, txs)))
}

/// Waits until every hash in `targets` is in a block of the node's canonical chain.
///
/// The head is polled with `eth_blockNumber` every `poll`; each new block is
/// read with `eth_getBlockByNumber(n, false)` and its transaction hashes are
/// matched against the run's. A block's time is the moment a head holding it
/// was first seen, here or by the head watcher that ran during the sends
/// (`times.1`); the end time is that of the block holding the last target, so
/// it is accurate to about `poll`, and each transaction's inclusion latency is
/// its block's time minus its send time (`times.0`). (Receipt look-ups are not
/// used here: on anvil they cost time linear in the block size, which would
/// bias the measurement.)
///
/// On a chain with several signers the head can be replaced (two signers seal
/// at the same height and the chain reorganises). Every block read must
/// therefore extend the previous one: when its parentHash does not match, the
/// blocks read since the fork are dropped (their transactions count as not
/// mined) and read again; before returning, every block of the run is read
/// once more and must still be canonical. A transaction that was in an
/// orphaned block counts once, at its block in the final chain.
#[allow(clippy::too_many_arguments)]
async fn wait_for_inclusion(
    client: &RpcClient,
    ours: &HashSet<B256>,
    targets: &[B256],
    first_block: u64,
    start: Instant,
    times: (&HashMap<B256, Instant>, &HeadTimes),
    poll: Duration,
    timeout: Duration,
    confirmations: u64,
) -> Result<Waited, LoadgenError> {
    let (sent_at, heads) = times;
    let target_set: HashSet<B256> = targets.iter().copied().collect();
    let mut seen: BTreeMap<u64, SeenBlock> = BTreeMap::new();
    let base = match first_block.checked_sub(1) {
        Some(n) => read_block(client, n).await?.map(|(h, _, _)| h),
        None => None,
    };
    let mut next = first_block;
    let mut reorgs = 0usize;
    loop {
        let head = parse_u64(&client.call("eth_blockNumber", json!([])).await?, "eth_blockNumber")?;
        let polled_at = Instant::now();
        while next <= head {
            let Some((hash, parent, txs)) = read_block(client, next).await? else {
                break;
            };
            let expected_parent = match next.checked_sub(1).and_then(|p| seen.get(&p)) {
                Some(b) => Some(b.hash),
                None => base,
            };
            if expected_parent.is_some_and(|p| p != parent) {
                // Reorganised below `next`: forget the previous block and read it again.
                let back = next - 1;
                if back < first_block {
                    return Err(LoadgenError::BadResponse {
                        method: "eth_getBlockByNumber".to_owned(),
                        detail: format!(
                            "the chain reorganised below block {first_block}, where the run began"
                        ),
                    });
                }
                seen.remove(&back);
                next = back;
                reorgs += 1;
                progress(format!("  block {back} was replaced (reorg): reading from it again"));
                continue;
            }
            let watched = heads.lock().unwrap_or_else(|e| e.into_inner()).get(&next).copied();
            let seen_at = watched.map_or(polled_at, |t| t.min(polled_at));
            let mine: Vec<B256> = txs.into_iter().filter(|h| ours.contains(h)).collect();
            if !mine.is_empty() {
                progress(format!(
                    "  block {next}: {} txs, seen at {:.2} s",
                    mine.len(),
                    seen_at.duration_since(start).as_secs_f64()
                ));
            }
            seen.insert(next, SeenBlock { hash, ours: mine, seen_at });
            next += 1;
        }
        let mined: HashSet<B256> = seen.values().flat_map(|b| b.ours.iter().copied()).collect();
        // The newest block holding one of ours must be buried under `confirmations` blocks read
        // (and linked by parentHash) before the run counts as mined.
        let last_ours = seen.iter().rev().find(|(_, b)| !b.ours.is_empty()).map_or(0, |(&n, _)| n);
        let confirmed = next.saturating_sub(1) >= last_ours.saturating_add(confirmations);
        if confirmed && target_set.iter().all(|t| mined.contains(t)) {
            // Check that every block read is still canonical.
            let mut fork = None;
            for (&n, b) in &seen {
                if read_block(client, n).await?.map(|(h, _, _)| h) != Some(b.hash) {
                    fork = Some(n);
                    break;
                }
            }
            match fork {
                None => return Ok(summarise(seen, sent_at, start, first_block, reorgs)),
                Some(n) => {
                    progress(format!("  block {n} was replaced (reorg): reading from it again"));
                    seen.retain(|k, _| *k < n);
                    next = n;
                    reorgs += 1;
                }
            }
        }
        if start.elapsed() > timeout {
            let missing = target_set.iter().filter(|t| !mined.contains(*t)).count();
            return Err(LoadgenError::Timeout(format!(
                "{missing} of {} senders' last transactions are not in a block after {:?} (head {head}, {} txs mined)",
                targets.len(),
                timeout,
                mined.len()
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

/// The blocks of the run, once every target is in the canonical chain.
fn summarise(
    seen: BTreeMap<u64, SeenBlock>,
    sent_at: &HashMap<B256, Instant>,
    start: Instant,
    first_block: u64,
    reorgs: usize,
) -> Waited {
    let mut waited = Waited {
        done_at: start,
        last_block: first_block.saturating_sub(1),
        per_block: BTreeMap::new(),
        included: 0,
        latencies: Vec::new(),
        reorgs,
        blocks: Vec::new(),
    };
    // The run ends with the last block holding one of its transactions.
    for (&n, b) in &seen {
        if b.ours.is_empty() {
            continue;
        }
        waited.per_block.insert(n, b.ours.len());
        waited.blocks.push((n, b.hash));
        waited.included += b.ours.len();
        waited.last_block = n;
        waited.done_at = b.seen_at;
        for h in &b.ours {
            if let Some(sent) = sent_at.get(h) {
                waited.latencies.push(b.seen_at.saturating_duration_since(*sent).as_secs_f64());
            }
        }
    }
    waited
}

/// Fetches the receipts of `hashes` (in order), polling until all exist.
async fn fetch_receipts_until(
    client: &RpcClient,
    hashes: &[B256],
    batch: usize,
    timeout: Duration,
) -> Result<Vec<Value>, LoadgenError> {
    let start = Instant::now();
    let mut out: Vec<Value> = vec![Value::Null; hashes.len()];
    loop {
        let missing: Vec<usize> = (0..hashes.len()).filter(|&i| out[i].is_null()).collect();
        if missing.is_empty() {
            return Ok(out);
        }
        for idx in missing.chunks(batch) {
            let params: Vec<Value> = idx.iter().map(|&i| json!([hashes[i]])).collect();
            let answers = client.batch("eth_getTransactionReceipt", &params).await?;
            for (&i, r) in idx.iter().zip(answers) {
                out[i] = r.map_err(|e| rpc_err("eth_getTransactionReceipt", e))?;
            }
        }
        if out.iter().any(Value::is_null) {
            if start.elapsed() > timeout {
                return Err(LoadgenError::Timeout(format!("setup transactions not mined after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Outcome of the receipt check.
struct Check {
    found: usize,
    /// Found only when asked again after a first check found them missing.
    late: usize,
    missing: usize,
    failed: usize,
    gas_used: u128,
    method: String,
}

/// Checks receipts after the run: per [`Verify`], either the last
/// transaction of every sender plus an even sample, or all of them (with
/// `eth_getBlockReceipts` over the run's blocks when the node has it, else
/// one `eth_getTransactionReceipt` per transaction).
async fn verify(
    client: &RpcClient,
    cfg: &Config,
    signed: &[Vec<SignedTx>],
    targets: &[B256],
    per_block: &BTreeMap<u64, usize>,
    want_event: bool,
) -> Result<Check, LoadgenError> {
    let ours: HashSet<B256> = signed.iter().flatten().map(|t| t.hash).collect();
    let mut check = Check { found: 0, late: 0, missing: 0, failed: 0, gas_used: 0, method: String::new() };
    let to_check: Vec<B256> = match cfg.verify {
        Verify::Sample(n) => {
            let all: Vec<B256> = signed.iter().flatten().map(|t| t.hash).collect();
            let stride = (all.len() / n.max(1)).max(1);
            let mut pick: Vec<B256> = targets.to_vec();
            let target_set: HashSet<B256> = targets.iter().copied().collect();
            pick.extend(all.iter().step_by(stride).filter(|h| !target_set.contains(*h)).take(n));
            check.method = format!(
                "eth_getTransactionReceipt, {} last-of-sender + {} sampled",
                targets.len(),
                pick.len() - targets.len()
            );
            pick
        }
        Verify::Full => {
            let first = per_block.keys().next().copied();
            let probe = match first {
                Some(b) => Some(client.try_call("eth_getBlockReceipts", json!([format!("{b:#x}")])).await?),
                None => None,
            };
            if let Some(Ok(Value::Array(_))) = probe {
                check.method = "eth_getBlockReceipts, all".to_owned();
                let mut seen = 0usize;
                for &b in per_block.keys() {
                    let r = client.call("eth_getBlockReceipts", json!([format!("{b:#x}")])).await?;
                    let receipts = r.as_array().ok_or_else(|| LoadgenError::BadResponse {
                        method: "eth_getBlockReceipts".to_owned(),
                        detail: format!("block {b}: expected an array"),
                    })?;
                    for receipt in receipts {
                        if tally(&mut check, receipt, &ours, want_event)? {
                            seen += 1;
                        }
                    }
                }
                check.missing = ours.len().saturating_sub(seen);
                log_check(&check);
                return Ok(check);
            }
            if let Some(Err(e)) = probe {
                progress(format!("eth_getBlockReceipts unavailable ({e}); checking receipts one by one"));
            }
            check.method = "eth_getTransactionReceipt, all".to_owned();
            ours.iter().copied().collect()
        }
    };
    // A receipt that is missing at first is asked for again for a few seconds (a node may
    // still be switching branches); those that show up late are counted apart.
    let mut pending = to_check;
    for attempt in 0..=RECEIPT_RETRIES {
        let mut still = Vec::new();
        for chunk in pending.chunks(cfg.batch) {
            let params: Vec<Value> = chunk.iter().map(|h| json!([h])).collect();
            let answers = client.batch("eth_getTransactionReceipt", &params).await?;
            for (h, r) in chunk.iter().zip(answers) {
                match r {
                    Ok(Value::Null) => still.push(*h),
                    Ok(receipt) => {
                        tally(&mut check, &receipt, &ours, want_event)?;
                        if attempt > 0 {
                            check.late += 1;
                        }
                    }
                    Err(e) => return Err(rpc_err("eth_getTransactionReceipt", e)),
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if attempt == 0 {
            progress(format!("{} receipts missing at the first check; asking again", pending.len()));
        }
        if attempt < RECEIPT_RETRIES {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    check.missing = pending.len();
    log_check(&check);
    Ok(check)
}

/// How many times (500 ms apart) missing receipts are asked for again.
const RECEIPT_RETRIES: usize = 20;

fn log_check(check: &Check) {
    progress(format!(
        "checked {} receipts ({}): {} failed, {} missing, {} found only when asked again",
        check.found, check.method, check.failed, check.missing, check.late
    ));
}

fn tally(
    check: &mut Check,
    receipt: &Value,
    ours: &HashSet<B256>,
    want_event: bool,
) -> Result<bool, LoadgenError> {
    let hash: Option<B256> =
        receipt.get("transactionHash").and_then(Value::as_str).and_then(|s| s.parse().ok());
    let Some(hash) = hash else {
        return Err(LoadgenError::BadResponse {
            method: "receipt".to_owned(),
            detail: "receipt without a valid transactionHash".to_owned(),
        });
    };
    if !ours.contains(&hash) {
        return Ok(false);
    }
    check.found += 1;
    let status_ok = receipt.get("status").and_then(Value::as_str) == Some("0x1");
    let event_ok = !want_event || receipt.get("logs").and_then(Value::as_array).map(Vec::len) == Some(1);
    if !(status_ok && event_ok) {
        check.failed += 1;
    }
    let gas = parse_u64(receipt.get("gasUsed").unwrap_or(&Value::Null), "receipt.gasUsed")?;
    check.gas_used += u128::from(gas);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0, "median of 1..=100");
        assert_eq!(percentile(&v, 0.99), 99.0, "p99 of 1..=100");
        assert_eq!(percentile(&v, 1.0), 100.0, "p100 is the largest");
        assert_eq!(percentile(&[7.0], 0.99), 7.0, "one value is every percentile");
        assert_eq!(percentile(&[], 0.5), 0.0, "no values");
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.0), 1.0, "p0 is the smallest");
    }
}
