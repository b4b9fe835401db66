//! Sending transactions and finding out what became of them: batches of signed transactions sent
//! and waited for, failures recorded by kind with their revert reasons, and waiting for the chain's
//! clock.

use std::time::{Duration, Instant};

use alloy_primitives::{Bytes, B256};
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
    let got = rpc.wait_receipts(&hashes, timeout).await.map_err(rpc_err)?;
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
