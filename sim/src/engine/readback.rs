//! Reading the day back from the chain: every slot's events, every meter's energy per slot, the
//! balances at the end and the day's transactions.

use alloy_primitives::Address;
use alloy_sol_types::{SolError, SolEvent};
use p2pe_bindings::meter_readings::MeterReadings;
use serde_json::json;

use super::model::{Hh, MarketAccount, MeteredSlot, SlotRec};
use super::send::rpc_err;
use super::setup::{account_of, balances_of, market_tokens};
use crate::market::Market;

/// What the chain says at the end of the day (besides what goes into `hh` and `slots`).
pub(crate) struct ReadBack {
    /// The head block.
    pub head: u64,
    /// On-chain meter energy per household and slot.
    pub metered: Vec<Vec<MeteredSlot>>,
    /// The grid's market account.
    pub grid_end: MarketAccount,
    /// Credits held by the market contract.
    pub tokens_end: u128,
    /// Transactions in the blocks of the day.
    pub chain_txs: u64,
    /// The registry's microgrid parameters.
    pub microgrid_end: crate::market::MicrogridParams,
    /// The operator's microgrid reports, by chain slot.
    pub reports: std::collections::BTreeMap<u64, crate::microgrid::SlotReport>,
    /// Readings the readings contract skipped because their slot was already final (arrived
    /// after its grace period): (meter, reading timestamp).
    pub late_readings: Vec<(Address, u64)>,
}

/// Reads everything back: events into `slots`, end balances into `hh`, the rest returned.
pub(crate) async fn read_back(
    market: &Market,
    hh: &mut [Hh],
    slots: &mut [SlotRec],
    setup_block: u64,
) -> anyhow::Result<ReadBack> {
    let rpc = &market.rpc;
    let (head, _) = rpc.head().await.map_err(rpc_err)?;
    for s in slots.iter_mut() {
        s.events = market.slot_events(s.chain_slot, setup_block, head).await.map_err(rpc_err)?;
        s.cleared = s.events.cleared;
    }
    let mut calls = Vec::with_capacity(hh.len() * slots.len());
    for h in hh.iter() {
        for s in slots.iter() {
            calls.push((
                market.c.readings,
                MeterReadings::energyInSlotCall { meter: h.meter, slot: s.chain_slot },
            ));
        }
    }
    let answers = rpc.views(&calls).await.map_err(rpc_err)?;
    let mut metered = Vec::with_capacity(hh.len());
    let mut it = answers.into_iter();
    for _ in hh.iter() {
        let mut row = Vec::with_capacity(slots.len());
        for _ in slots.iter() {
            let e = it.next().expect("one answer per call").map_err(rpc_err)?;
            row.push(MeteredSlot { import_wh: e.importWh, export_wh: e.exportWh, has_reading: e.hasReading });
        }
        metered.push(row);
    }
    let balances = balances_of(market, hh).await?;
    for (h, b) in hh.iter_mut().zip(balances) {
        h.balance_end = b;
    }
    let grid_end = account_of(market, market.c.grid).await?;
    let tokens_end = market_tokens(market).await?;
    let counts = rpc
        .batch::<_, alloy_primitives::U64>(
            "eth_getBlockTransactionCountByNumber",
            (setup_block + 1..=head).map(|b| (alloy_eips::BlockNumberOrTag::Number(b),)).collect(),
        )
        .await
        .map_err(rpc_err)?;
    let chain_txs = counts.iter().filter_map(|r| r.as_ref().ok().map(|n| n.to::<u64>())).sum();
    let microgrid_end = market.microgrid_params().await.map_err(rpc_err)?;
    let reports = market.microgrid_reports(setup_block, head).await.map_err(rpc_err)?;
    let late_readings = late_readings(market, setup_block, head).await?;
    Ok(ReadBack { head, metered, grid_end, tokens_end, chain_txs, microgrid_end, reports, late_readings })
}

/// The readings the contract skipped as `SlotFinal` (their `ReadingSkipped` events): they reached
/// the chain after their slot's grace period, so the slot's boundaries were interpolated without
/// them.
async fn late_readings(market: &Market, from: u64, to: u64) -> anyhow::Result<Vec<(Address, u64)>> {
    let topics = json!([MeterReadings::ReadingSkipped::SIGNATURE_HASH]);
    let logs = market.rpc.logs(market.c.readings, topics, from, to).await.map_err(rpc_err)?;
    Ok(logs
        .iter()
        .filter_map(|l| l.decode::<MeterReadings::ReadingSkipped>())
        .filter(|e| e.reason == MeterReadings::SlotFinal::SELECTOR)
        .map(|e| (e.meter, e.timestamp))
        .collect())
}

/// The run's warning about late readings, if any: how many, and what to do about it.
pub(crate) fn late_readings_warning(late: &[(Address, u64)], hh: &[Hh], grace_s: u32) -> Option<String> {
    if late.is_empty() {
        return None;
    }
    let mut meters: Vec<&str> = late
        .iter()
        .filter_map(|(m, _)| hh.iter().find(|h| h.meter == *m).map(|h| h.spec.id.as_str()))
        .collect();
    meters.sort_unstable();
    meters.dedup();
    Some(format!(
        "{} meter readings ({}) reached the chain after their slot's {grace_s} s grace period and were \
         skipped (SlotFinal): those slots' energy was interpolated without them, so the energy \
         check can fail. The machine was too busy to relay readings within {grace_s} s; run with a \
         longer --grace-period",
        late.len(),
        meters.join(", ")
    ))
}
