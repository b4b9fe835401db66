//! The keepers: the operator's clearer (`clear` after each gate closure, `openSlot` ahead) and the
//! settler (`settle` once a slot is cleared, its grace period is over and its readings are in),
//! each a task with its own key (the clearer sends through alloy's fillers, the settler signs its batches).

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use alloy_provider::DynProvider;
use alloy_rpc_types_eth::TransactionRequest;
use p2pe_bindings::energy_market::EnergyMarket;
use p2pe_bindings::meter_readings::MeterReadings;
use p2pe_bindings::registry::Registry;
use tokio::sync::mpsc;

use super::model::{Participant, SettleOutcome, TxStats};
use super::send::{send_and_wait, send_filled, wait_for_block_time, zero_fee};
use crate::chain::Account;
use crate::clock::{now_unix, sleep_until_unix};
use crate::market::{BookOrder, Market};
use crate::microgrid::SlotReport;

/// Gas limits (fees are zero, so generous limits cost nothing).
pub(crate) const GAS_CLEAR: u64 = 8_000_000;
/// See [`GAS_CLEAR`].
pub(crate) const GAS_OPEN: u64 = 8_000_000;
/// See [`GAS_CLEAR`] (a report is an event: about 40,000 gas).
const GAS_REPORT: u64 = 200_000;
const GAS_SETTLE_BASE: u64 = 300_000;
const GAS_SETTLE_EACH: u64 = 80_000;
/// Participants per `settle` transaction.
const SETTLE_CHUNK: usize = 150;

/// A slot for the settler.
pub(crate) struct SettleJob {
    /// Day slot index in the run.
    pub index: usize,
    /// Chain slot.
    pub chain_slot: u64,
    /// Every household (those with orders in the slot are settled).
    pub households: Vec<Participant>,
    /// The reading every trading meter must have on chain first (unix time).
    pub min_reading_ts: u64,
    /// The slot's end (unix time).
    pub slot_end: f64,
    /// Not before the end of the grace period.
    pub not_before: f64,
    /// When to stop waiting for the clearing or the readings.
    pub give_up_at: f64,
}

/// Work for the operator's keeper: a slot to clear, a later one to open, a delivered one to report.
pub(crate) struct ClearJob {
    /// Day slot index in the run (of the slot cleared, or reported when nothing is cleared).
    pub index: usize,
    /// Chain slot to clear, if any.
    pub clear: Option<u64>,
    /// A delivered chain slot and the operator's report of it (`Registry.reportMicrogrid`, sent
    /// once the chain's time has passed the slot's end).
    pub report: Option<(u64, SlotReport)>,
    /// A later slot to open (`openSlot`) once this one is cleared, with the (retail, feed-in)
    /// prices the operator sets for it first (`setSlotPrices`) when it forecasts a binding PCC limit.
    pub open: Option<(u64, Option<(u128, u128)>)>,
}

/// What clearing a slot took.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClearOutcome {
    /// `clear` transactions sent.
    pub txs: u64,
    /// `openSlot` transactions sent.
    pub opens: u64,
    /// Why opening the later slot failed.
    pub open_errors: Vec<String>,
    /// Whether the slot is cleared.
    pub cleared: bool,
    /// Whether the slot had no order (nothing to clear).
    pub empty: bool,
    /// `reportMicrogrid` transactions sent.
    pub reports: u64,
    /// Why a report failed.
    pub report_errors: Vec<String>,
    /// Errors.
    pub errors: Vec<String>,
}

/// The clearing task (the operator's keeper): clears each queued slot that has orders, waiting for
/// its receipt and trying again only if the node refused the transaction or it reverted (for
/// instance when a lagging block was still before the gate closure). It sends through `operator`,
/// a provider whose fillers add the operator's nonce, chain id and signature ([`Rpc::signing`]),
/// so a refused or lost transaction needs no nonce bookkeeping here.
///
/// [`Rpc::signing`]: crate::chain::Rpc::signing
pub(crate) async fn clearer(
    market: Arc<Market>,
    operator: DynProvider,
    mut rx: mpsc::Receiver<ClearJob>,
) -> Vec<(usize, ClearOutcome)> {
    let mut out = Vec::new();
    while let Some(job) = rx.recv().await {
        let mut o = ClearOutcome::default();
        if let Some(slot) = job.clear {
            clear_slot(&market, &operator, slot, &mut o).await;
        } else {
            o.empty = true; // nothing asked
        }
        if let Some((slot, prices)) = job.open {
            open_slot(&market, &operator, slot, prices, &mut o).await;
        }
        if let Some((slot, report)) = job.report {
            report_slot(&market, &operator, slot, report, &mut o).await;
        }
        out.push((job.index, o));
    }
    out
}

/// Clears one slot (if it has orders), retrying until it is cleared or three slot lengths pass.
async fn clear_slot(market: &Market, operator: &DynProvider, slot: u64, o: &mut ClearOutcome) {
    let mut scratch = TxStats::default();
    let gate = market.c.slot_start(slot) - market.c.gate_closure as u64;
    let give_up = now_unix() + 3.0 * market.c.slot_length as f64 + 20.0;
    let contract = EnergyMarket::new(market.c.market, operator);
    while now_unix() < give_up {
        let status = market.rpc.view(market.c.market, &EnergyMarket::slotInfoCall { slot }).await;
        match status.map(|s| s.status) {
            Ok(2) => {
                o.cleared = true;
                break;
            }
            Ok(0) => {
                o.empty = true; // no order: nothing to clear
                break;
            }
            Ok(_) => {}
            Err(e) => {
                o.errors.push(format!("slotInfo: {e}"));
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        }
        wait_for_block_time(&market.rpc, gate, 10.0).await;
        let request = zero_fee(contract.clear(slot), GAS_CLEAR);
        o.txs += 1;
        let wait = Duration::from_secs_f64((give_up - now_unix()).max(1.0));
        match send_filled(&market.rpc, operator, vec![request], wait, &mut scratch, "clear").await {
            Ok(r) if r[0].as_ref().is_some_and(|r| r.success) => {
                o.cleared = true;
                break;
            }
            Ok(_) => {}
            Err(e) => o.errors.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for k in scratch.failures.values_mut() {
        o.errors.append(&mut k.examples);
    }
}

/// The operator's transactions that open `slot`: `setSlotPrices` first if it has prices of its
/// own, then `openSlot` (which fixes them).
pub(crate) fn open_requests(
    market: &Market,
    operator: &DynProvider,
    slot: u64,
    prices: Option<(u128, u128)>,
) -> Vec<TransactionRequest> {
    let mut requests = Vec::new();
    if let Some((retail, feed_in)) = prices {
        let registry = Registry::new(market.c.registry, operator);
        let set = registry.setSlotPrices(slot, U256::from(retail), U256::from(feed_in));
        requests.push(zero_fee(set, GAS_OPEN));
    }
    requests.push(zero_fee(EnergyMarket::new(market.c.market, operator).openSlot(slot), GAS_OPEN));
    requests
}

/// Opens a later slot (`openSlot`: its prices and storage, ahead of its orders).
async fn open_slot(
    market: &Market,
    operator: &DynProvider,
    slot: u64,
    prices: Option<(u128, u128)>,
    o: &mut ClearOutcome,
) {
    let mut scratch = TxStats::default();
    let requests = open_requests(market, operator, slot, prices);
    o.opens += 1;
    let wait = Duration::from_secs(market.c.slot_length as u64);
    match send_filled(&market.rpc, operator, requests, wait, &mut scratch, "open").await {
        Ok(r) if r.iter().all(|r| r.as_ref().is_some_and(|r| r.success)) => {}
        Ok(_) => {
            for k in scratch.failures.values_mut() {
                o.open_errors.append(&mut k.examples);
            }
        }
        Err(e) => o.open_errors.push(e.to_string()),
    }
}

/// Reports a delivered slot's microgrid figures (`Registry.reportMicrogrid`) once a block past its
/// end is in (the registry refuses a report of a slot that has not ended).
async fn report_slot(
    market: &Market,
    operator: &DynProvider,
    slot: u64,
    report: SlotReport,
    o: &mut ClearOutcome,
) {
    let mut scratch = TxStats::default();
    wait_for_block_time(&market.rpc, market.c.slot_start(slot + 1), 10.0).await;
    let registry = Registry::new(market.c.registry, operator);
    let call = registry.reportMicrogrid(slot, report.into());
    o.reports += 1;
    let wait = Duration::from_secs(market.c.slot_length as u64 + 10);
    match send_filled(&market.rpc, operator, vec![zero_fee(call, GAS_REPORT)], wait, &mut scratch, "report")
        .await
    {
        Ok(r) if r[0].as_ref().is_some_and(|r| r.success) => {}
        Ok(_) => {
            o.report_errors.push(format!("slot {slot}: not recorded"));
            for k in scratch.failures.values_mut() {
                o.report_errors.append(&mut k.examples);
            }
        }
        Err(e) => o.report_errors.push(e.to_string()),
    }
}

/// The settlement task: settles queued slots in order; returns the outcome per slot index.
pub(crate) async fn settler(
    market: Arc<Market>,
    chain_id: u64,
    mut acct: Account,
    from_block: u64,
    mut rx: mpsc::Receiver<SettleJob>,
) -> Vec<(usize, SettleOutcome)> {
    let mut out = Vec::new();
    // Failures of `settle` transactions, kept over the day (their reasons are looked up for the first few).
    let mut scratch = TxStats::default();
    while let Some(job) = rx.recv().await {
        sleep_until_unix(job.not_before).await;
        wait_for_block_time(
            &market.rpc,
            market.c.slot_start(job.chain_slot + 1) + market.c.grace_period as u64,
            10.0,
        )
        .await;
        let mut o = SettleOutcome::default();
        // The slot must be cleared (by the operator's keeper) first. Every household is settled, with
        // orders or not: one with a meter and no order in the slot is settled against the grid (import
        // at retail, export at feed-in), so every metered Wh is billed (issue 14, part 6). Every
        // household has a meter here; an account the contract finds with neither orders nor a meter
        // in the slot would be skipped with an event, not reverted on.
        if cleared_book(&market, &job, from_block, &mut o).await.is_some() {
            if job.min_reading_ts > 0 {
                o.missing_readings = wait_for_readings(&market, &job).await;
            }
            o.delay_s = now_unix() - job.slot_end;
            settle_slot(&market, chain_id, &mut acct, &job, &mut o, &mut scratch).await;
        }
        out.push((job.index, o));
    }
    out
}

/// Waits until the job's slot is cleared and returns its orders; `None` (with the error in `o`)
/// if it is not cleared in time or its orders cannot be read.
async fn cleared_book(
    market: &Market,
    job: &SettleJob,
    from_block: u64,
    o: &mut SettleOutcome,
) -> Option<Vec<BookOrder>> {
    loop {
        let status =
            market.rpc.view(market.c.market, &EnergyMarket::slotInfoCall { slot: job.chain_slot }).await;
        if status.is_ok_and(|s| s.status == 2) {
            break;
        }
        if now_unix() > job.give_up_at {
            o.errors.push(format!("chain slot {} was not cleared", job.chain_slot));
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    match market.rpc.head().await {
        Ok((head, _)) => match market.slot_events(job.chain_slot, from_block, head).await {
            Ok(ev) => Some(ev.book()),
            Err(e) => {
                o.errors.push(format!("chain slot {}: reading its orders: {e}", job.chain_slot));
                None
            }
        },
        Err(e) => {
            o.errors.push(format!("chain slot {}: {e}", job.chain_slot));
            None
        }
    }
}

/// Waits for every trading meter's last reading of the slot; returns how many were still missing
/// when the job gave up (0 when all arrived).
async fn wait_for_readings(market: &Market, job: &SettleJob) -> usize {
    loop {
        let calls: Vec<(Address, MeterReadings::latestReadingCall)> = job
            .households
            .iter()
            .map(|p| (market.c.readings, MeterReadings::latestReadingCall { meter: p.meter }))
            .collect();
        let missing = match market.rpc.views(&calls).await {
            Ok(rs) => {
                rs.iter().filter(|r| !r.as_ref().is_ok_and(|r| r.timestamp >= job.min_reading_ts)).count()
            }
            Err(_) => job.households.len(),
        };
        if missing == 0 || now_unix() > job.give_up_at {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sends the slot's `settle` transactions (in parts of [`SETTLE_CHUNK`] participants).
async fn settle_slot(
    market: &Market,
    chain_id: u64,
    acct: &mut Account,
    job: &SettleJob,
    o: &mut SettleOutcome,
    scratch: &mut TxStats,
) {
    let mut txs = Vec::new();
    let mut parts: Vec<Vec<Address>> = Vec::new();
    let accounts: Vec<Address> = job.households.iter().map(|p| p.account).collect();
    for part in accounts.chunks(SETTLE_CHUNK) {
        let gas = GAS_SETTLE_BASE + GAS_SETTLE_EACH * part.len() as u64;
        txs.push(acct.sign_call(
            chain_id,
            market.c.market,
            &EnergyMarket::settleCall { slot: job.chain_slot, participants: part.to_vec() },
            gas,
        ));
        parts.push(part.to_vec());
    }
    o.txs += txs.len() as u64;
    match send_and_wait(&market.rpc, &txs, Duration::from_secs(60), scratch, "settle").await {
        Ok(rs) => {
            for (part, r) in parts.iter().zip(rs) {
                if r.as_ref().is_some_and(|r| r.success) {
                    o.settled += part.len();
                } else {
                    o.errors.push(format!(
                        "chain slot {}: a settle transaction of {} participants failed",
                        job.chain_slot,
                        part.len()
                    ));
                }
            }
        }
        Err(e) => o.errors.push(format!("chain slot {}: {e}", job.chain_slot)),
    }
    if !o.errors.is_empty() {
        if let Ok(n) = market.rpc.nonce(acct.address()).await {
            acct.nonce = n;
        }
    }
}
