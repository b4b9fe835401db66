//! Sending transactions and finding out what became of them: batches of signed transactions sent
//! and waited for, failures recorded by kind with their revert reasons, and waiting for the chain's
//! clock.

use std::time::{Duration, Instant};

use alloy_primitives::{Bytes, B256};
use alloy_provider::{DynProvider, Provider};
use alloy_rpc_types_eth::TransactionRequest;
use p2pe_bindings::energy_market::EnergyMarket;
use serde_json::json;

use super::model::TxStats;
use crate::chain::{Receipt, Rpc, RpcError};

/// A JSON-RPC error as an `anyhow` error.
pub(crate) fn rpc_err(e: RpcError) -> anyhow::Error {
    anyhow::anyhow!("JSON-RPC: {e}")
}

/// Sends signed transactions and waits for their receipts; failures are recorded in `stats`.
pub(crate) async fn send_and_wait(
    rpc: &Rpc,
    txs: &[(B256, Bytes)],
    timeout: Duration,
    stats: &mut TxStats,
    what: &str,
) -> anyhow::Result<Vec<Option<Receipt>>> {
    let raws: Vec<Bytes> = txs.iter().map(|t| t.1.clone()).collect();
    let sent = rpc.send_raw(&raws).await.map_err(rpc_err)?;
    let mut hashes = Vec::with_capacity(txs.len());
    let mut refused = vec![false; txs.len()];
    for (i, r) in sent.iter().enumerate() {
        match r {
            Ok(h) => hashes.push(*h),
            Err(e) => {
                refused[i] = true;
                hashes.push(txs[i].0);
                record_failure(stats, what, format!("refused by the node: {e}"));
            }
        }
    }
    wait_recorded(rpc, &hashes, &refused, timeout, stats, what).await
}

/// A call at zero fees with `gas`, for [`send_filled`]: the provider's fillers add the nonce, the
/// chain id and the signature.
pub(crate) fn zero_fee<P, D>(call: alloy_contract::SolCallBuilder<P, D>, gas: u64) -> TransactionRequest
where
    P: alloy_provider::Provider,
    D: alloy_sol_types::SolCall,
{
    call.gas(gas).max_fee_per_gas(0).max_priority_fee_per_gas(0).into_transaction_request()
}

/// Sends `requests` one after the other through `provider` (alloy's fillers: nonce, chain id,
/// signature; [`Rpc::signing`]) and waits for their receipts; failures are recorded in `stats`
/// as [`send_and_wait`] records them. A request the node refuses is not retried.
pub(crate) async fn send_filled(
    rpc: &Rpc,
    provider: &DynProvider,
    requests: Vec<TransactionRequest>,
    timeout: Duration,
    stats: &mut TxStats,
    what: &str,
) -> anyhow::Result<Vec<Option<Receipt>>> {
    let mut hashes = Vec::with_capacity(requests.len());
    let mut refused = vec![false; requests.len()];
    for (i, request) in requests.into_iter().enumerate() {
        match provider.send_transaction(request).await {
            Ok(pending) => hashes.push(*pending.tx_hash()),
            Err(e) => {
                refused[i] = true;
                hashes.push(B256::ZERO);
                record_failure(stats, what, format!("refused by the node: {}", RpcError::from(e)));
            }
        }
    }
    wait_recorded(rpc, &hashes, &refused, timeout, stats, what).await
}

/// Waits for the receipts of `hashes` (those `refused` have none) and records reverts and
/// missing receipts in `stats`.
async fn wait_recorded(
    rpc: &Rpc,
    hashes: &[B256],
    refused: &[bool],
    timeout: Duration,
    stats: &mut TxStats,
    what: &str,
) -> anyhow::Result<Vec<Option<Receipt>>> {
    // Only the accepted ones can get a receipt: waiting for a refused one would wait the whole timeout.
    let accepted: Vec<usize> = (0..hashes.len()).filter(|i| !refused[*i]).collect();
    let ask: Vec<B256> = accepted.iter().map(|i| hashes[*i]).collect();
    let mut got = vec![None; hashes.len()];
    for (i, r) in accepted.iter().zip(rpc.wait_receipts(&ask, timeout).await.map_err(rpc_err)?) {
        got[*i] = r;
    }
    let mut out = Vec::with_capacity(got.len());
    for (i, r) in got.into_iter().enumerate() {
        if refused[i] {
            out.push(None);
            continue;
        }
        match &r {
            Some(rc) if !rc.success => {
                let why = if wants_example(stats, what) {
                    revert_reason(rpc, rc.hash, rc.block_number).await
                } else {
                    String::new()
                };
                record_failure(stats, what, format!("reverted in block {}{why}", rc.block_number))
            }
            None => record_failure(stats, what, format!("no receipt after {timeout:?}")),
            _ => {}
        }
        out.push(r);
    }
    Ok(out)
}

/// Counts a failed transaction of `kind`, keeping the first few messages.
pub(crate) fn record_failure(stats: &mut TxStats, kind: &str, msg: String) {
    stats.failed += 1;
    let k = stats.failures.entry(kind.to_string()).or_default();
    k.count += 1;
    if k.examples.len() < 10 {
        k.examples.push(msg);
    }
}

/// Whether another example of `kind` would be kept (so that its reason is worth looking up).
pub(crate) fn wants_example(stats: &TxStats, kind: &str) -> bool {
    stats.failures.get(kind).is_none_or(|k| k.examples.len() < 10)
}

/// Waits (up to `timeout_s`) until the next block's timestamp will be at least `t`, i.e. the head's
/// is at least `t − 1`.
pub(crate) async fn wait_for_block_time(rpc: &Rpc, t: u64, timeout_s: f64) {
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < timeout_s {
        match rpc.head().await {
            Ok((_, ts)) if ts + 1 >= t => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Why a transaction reverted: its call replayed on the state before its block, decoded as a
/// market error (`: NoOrder(..)`), or empty if that cannot be found.
pub(crate) async fn revert_reason(rpc: &Rpc, hash: B256, block: u64) -> String {
    let Ok(t) = rpc.call("eth_getTransactionByHash", json!([hash])).await else { return String::new() };
    let call = json!([{"from": t["from"], "to": t["to"], "data": t["input"], "gas": t["gas"]}, format!("{:#x}", block.saturating_sub(1))]);
    match rpc.call("eth_call", call).await {
        Err(RpcError::Node { data: Some(d), .. }) => {
            let bytes: Option<Bytes> = d.as_str().and_then(|s| s.parse().ok());
            match bytes.and_then(|b| {
                <EnergyMarket::EnergyMarketErrors as alloy_sol_types::SolInterface>::abi_decode(&b).ok()
            }) {
                Some(e) => format!(": {e:?}"),
                None => format!(": {d}"),
            }
        }
        Err(e) => format!(": {e}"),
        Ok(_) => ": (succeeds when replayed before its block)".into(),
    }
}

/// Resynchronises each listed household's nonce with the node (after a refused or lost
/// transaction its nonce is free again).
pub(crate) async fn resync_nonces(
    rpc: &Rpc,
    hh: &mut [super::model::Hh],
    mut who: Vec<usize>,
) -> anyhow::Result<()> {
    who.sort_unstable();
    who.dedup();
    for j in who {
        hh[j].account.nonce = rpc.nonce(hh[j].account.address()).await.map_err(rpc_err)?;
    }
    Ok(())
}
