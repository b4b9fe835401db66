//! The order rounds of a slot: plans and round 0 (every agent's first ramp price), then later
//! rounds in which an order that would not trade completely against the public book is cancelled
//! and re-placed further along its ramp, until shortly before the gate closes.

use std::time::Duration;

use alloy_primitives::{Bytes, B256, U256};
use alloy_sol_types::SolCall;
use p2pe_bindings::energy_market::EnergyMarket;
use serde_json::json;

use super::model::{Fills, Hh, LiveOrder, PendingTx, SlotRec, TxStats};
use super::send::{record_failure, resync_nonces, revert_reason, rpc_err, wants_example};
use crate::agent::{plan, price_alpha, Knowledge, PriceRule};
use crate::asset_agent::asset_plan;
use crate::chain::Rpc;
use crate::clearing::{LevelClearing, Side};
use crate::clock::{now_unix, sleep_until_unix};
use crate::config::SimConfig;
use crate::market::{Market, Prices};

/// Seconds before gate closure by which every order must have been sent: two blocks before the
/// gate, so that a block that takes long to seal does not push the orders past it (`GateClosed`).
const SEND_MARGIN_S: f64 = 2.3;
/// Time a round needs between its scheduled start and its sends (receipts of the previous round,
/// the public book, signing).
const ROUND_BUDGET_S: f64 = 0.7;
/// Shortest spacing of two order rounds (a block and a receipt poll).
const MIN_ROUND_SPACING_S: f64 = 1.1;
/// Gas limits (fees are zero, so generous limits cost nothing).
const GAS_ORDER: u64 = 600_000;
const GAS_CANCEL: u64 = 300_000;

/// The order rounds of one slot in progress.
pub(crate) struct Rounds {
    i: usize,
    c: u64,
    prices: Prices,
    deadline: f64,
    t_first: f64,
    span: f64,
    rounds: usize,
    /// Transactions without a receipt yet. A household with one is left alone in a round (its
    /// state on chain is not known yet).
    pending: Vec<PendingTx>,
}

/// An order a round (re)places.
struct WantedOrder {
    household: usize,
    side: Side,
    order: LiveOrder,
}

/// What the agents know when they plan a slot, beyond their own state.
pub(crate) struct PlanInputs<'a> {
    /// Each household's fills in the previous slot, as worked out from its public book.
    pub expected: &'a [Fills],
    /// Where the last cleared slot's price lay between feed-in and retail.
    pub last_alpha: Option<f64>,
}

/// Plans simulated slot `i` and sends round 0 of its orders.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn begin_rounds(
    cfg: &SimConfig,
    market: &Market,
    chain_id: u64,
    hh: &mut [Hh],
    slots: &mut [SlotRec],
    i: usize,
    inputs: PlanInputs<'_>,
    tx: &mut TxStats,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Rounds> {
    let c = slots[i].chain_slot;
    let day_slot = cfg.first_slot + i;
    let prices = market.prices(c).await.map_err(rpc_err)?;
    slots[i].prices = Some(prices);
    let g = market.c.gate_closure as f64;
    // `deadline`: the last round's scheduled start; its sends must be out by `deadline + ROUND_BUDGET_S`.
    let deadline = market.c.slot_start(c) as f64 - g - SEND_MARGIN_S - ROUND_BUDGET_S;
    let t_first = now_unix();
    let span = deadline - t_first;
    let rounds = if span <= 0.0 {
        warnings.push(format!("slot {} ({}): too late for orders", i, super::hhmm(day_slot)));
        0
    } else {
        cfg.ramp_rounds.max(1).min(1 + (span / MIN_ROUND_SPACING_S).floor() as usize)
    };
    slots[i].rounds = rounds;
    let mut r = Rounds { i, c, prices, deadline, t_first, span, rounds, pending: Vec::new() };
    if rounds == 0 {
        return Ok(r);
    }
    plan_slot(cfg, hh, i, &inputs, &prices);
    order_round(&mut r, 0, market, chain_id, hh, tx).await?;
    Ok(r)
}

/// Every agent's plan for simulated slot `i`.
fn plan_slot(cfg: &SimConfig, hh: &mut [Hh], i: usize, inputs: &PlanInputs<'_>, prices: &Prices) {
    let day_slot = cfg.first_slot + i;
    for (j, h) in hh.iter_mut().enumerate() {
        // Slot i is planned while slot i − 2 is delivered: the last complete slot is i − 3.
        let csi = if day_slot >= 3 {
            let d = day_slot - 3;
            let clear = h.trace.pv_clear_wh[d];
            if clear > 5.0 && cfg.lab.is_none() {
                h.clear_sky_index = Some(h.trace.pv_wh(d) / clear);
            }
            h.clear_sky_index
        } else {
            h.clear_sky_index
        };
        // The battery now is at the start of slot i − 1 (its physics has not run yet).
        let soc = h.battery.map(|b| b.soc_wh);
        let k = Knowledge {
            slot: day_slot,
            soc_wh: soc,
            project_previous: i > 0,
            prev_target_export_wh: inputs.expected[j].target_export_wh(),
            clear_sky_index: csi,
            last_alpha: inputs.last_alpha,
        };
        h.slots[i].plan = match (h.asset, &cfg.islanded) {
            (Some(kind), Some(spec)) => {
                asset_plan(kind, &h.trace, h.battery.as_ref(), spec, prices, &cfg.agent, &k)
            }
            _ => plan(&h.spec, &h.trace, &cfg.agent, &k),
        };
    }
}

/// The order rounds after the first, until the last one is sent.
pub(crate) async fn rounds_after_first(
    r: &mut Rounds,
    market: &Market,
    chain_id: u64,
    hh: &mut [Hh],
    tx: &mut TxStats,
) -> anyhow::Result<()> {
    let send_by = r.deadline + ROUND_BUDGET_S;
    let gate = send_by + SEND_MARGIN_S;
    for round in 1..r.rounds {
        let at = r.t_first + r.span * round as f64 / (r.rounds - 1) as f64;
        sleep_until_unix(at).await;
        let wait = (send_by - 0.3 - now_unix()).clamp(0.0, 0.4);
        resolve_orders(&market.rpc, hh, r.i, gate, &mut r.pending, Duration::from_secs_f64(wait), tx, false)
            .await?;
        if now_unix() > send_by - 0.1 {
            // Too late for this round: its transactions could land after the gate.
            continue;
        }
        order_round(r, round, market, chain_id, hh, tx).await?;
    }
    Ok(())
}

/// The receipts of everything a slot's rounds sent (called after its gate has closed).
pub(crate) async fn finish_rounds(
    mut r: Rounds,
    market: &Market,
    hh: &mut [Hh],
    tx: &mut TxStats,
) -> anyhow::Result<()> {
    let gate = r.deadline + ROUND_BUDGET_S + SEND_MARGIN_S;
    let until = (gate + 1.5 - now_unix()).max(0.5);
    resolve_orders(&market.rpc, hh, r.i, gate, &mut r.pending, Duration::from_secs_f64(until), tx, true).await
}

/// What slot `i` will probably give each household, from its book as it stands.
pub(crate) async fn expected_fills(
    market: &Market,
    hh: &[Hh],
    slot: &SlotRec,
    i: usize,
) -> anyhow::Result<Vec<Fills>> {
    let mut expected = vec![Fills::default(); hh.len()];
    if let Some(p) = slot.prices {
        let levels = market.book_levels(slot.chain_slot, &p).await.map_err(rpc_err)?;
        let book = LevelClearing::new(&levels);
        for (j, h) in hh.iter().enumerate() {
            for (si, side) in [(0usize, Side::Bid), (1, Side::Ask)] {
                if let Some(o) = h.slots[i].live[si] {
                    let f = (o.wh as f64 * book.fill_share(side, o.level)).floor() as u64;
                    if si == 0 {
                        expected[j].bought_wh = f;
                    } else {
                        expected[j].sold_wh = f;
                    }
                }
            }
        }
    }
    Ok(expected)
}

/// One order round: round 0 places the plans; later rounds move orders that would not trade
/// completely against the public book further along their ramps.
async fn order_round(
    r: &mut Rounds,
    round: usize,
    market: &Market,
    chain_id: u64,
    hh: &mut [Hh],
    tx: &mut TxStats,
) -> anyhow::Result<()> {
    let wanted = if round == 0 { first_orders(r, hh) } else { moved_orders(r, round, market, hh).await? };
    if wanted.is_empty() || (round > 0 && now_unix() > r.deadline + ROUND_BUDGET_S - 0.05) {
        return Ok(());
    }
    send_orders(r, &wanted, market, chain_id, hh, tx).await
}

/// Round 0: every plan's orders at the first price of their ramps.
fn first_orders(r: &Rounds, hh: &[Hh]) -> Vec<WantedOrder> {
    let mut wanted = Vec::new();
    for (j, h) in hh.iter().enumerate() {
        let p = h.slots[r.i].plan;
        for (side, o) in [(Side::Bid, p.bid), (Side::Ask, p.ask)] {
            if let Some(o) = o {
                let a = price_alpha(&h.spec, o.rule, side == Side::Bid, 0, r.rounds);
                let order = LiveOrder { level: r.prices.level_for_alpha(a), wh: o.wh, rule: o.rule };
                wanted.push(WantedOrder { household: j, side, order });
            }
        }
    }
    wanted
}

/// A later round: the ramp orders that would not trade completely against the public book, at
/// their next ramp price.
async fn moved_orders(
    r: &Rounds,
    round: usize,
    market: &Market,
    hh: &[Hh],
) -> anyhow::Result<Vec<WantedOrder>> {
    let busy: Vec<usize> = r.pending.iter().map(|p| p.household).collect();
    let levels = market.book_levels(r.c, &r.prices).await.map_err(rpc_err)?;
    let book = LevelClearing::new(&levels);
    // No counterparty at any price: moving along the ramp cannot help (and costs transactions).
    let bids: u64 = levels.iter().map(|l| l.0).sum();
    let asks: u64 = levels.iter().map(|l| l.1).sum();
    let mut wanted = Vec::new();
    for (j, h) in hh.iter().enumerate() {
        if busy.contains(&j) {
            continue;
        }
        for (si, side) in [(0usize, Side::Bid), (1, Side::Ask)] {
            let Some(live) = h.slots[r.i].live[si] else { continue };
            let counterparty = if side == Side::Bid { asks } else { bids };
            if live.rule != PriceRule::Ramp || counterparty == 0 {
                continue;
            }
            // GSY-e keeps moving what is not matched: an order that would not trade
            // completely against the public book moves further along the ramp.
            if book.fill_share(side, live.level) >= 1.0 - 1e-9 {
                continue;
            }
            let a = price_alpha(&h.spec, live.rule, side == Side::Bid, round, r.rounds);
            let new_level = r.prices.level_for_alpha(a);
            if new_level != live.level {
                wanted.push(WantedOrder {
                    household: j,
                    side,
                    order: LiveOrder { level: new_level, ..live },
                });
            }
        }
    }
    Ok(wanted)
}

/// Signs and sends a round's orders: a cancel first where an order stands, then the new order.
async fn send_orders(
    r: &mut Rounds,
    wanted: &[WantedOrder],
    market: &Market,
    chain_id: u64,
    hh: &mut [Hh],
    tx: &mut TxStats,
) -> anyhow::Result<()> {
    let (i, c) = (r.i, r.c);
    let mut txs: Vec<(B256, Bytes)> = Vec::new();
    let mut what: Vec<(usize, usize, Option<LiveOrder>)> = Vec::new();
    for w in wanted {
        let h = &mut hh[w.household];
        let si = if w.side == Side::Bid { 0 } else { 1 };
        if h.slots[i].live[si].is_some() {
            let t = h.account.sign_call(
                chain_id,
                market.c.market,
                &EnergyMarket::cancelOrderCall { slot: c, side: si as u8 },
                GAS_CANCEL,
            );
            txs.push(t);
            what.push((w.household, si, None));
            tx.cancels += 1;
        }
        let price = U256::from(r.prices.price(w.order.level));
        let wh = w.order.wh;
        let data = match w.side {
            Side::Bid => {
                EnergyMarket::placeBidCall { slot: c, energyWh: wh, pricePerKWh: price }.abi_encode()
            }
            Side::Ask => {
                EnergyMarket::placeAskCall { slot: c, energyWh: wh, pricePerKWh: price }.abi_encode()
            }
        };
        txs.push(h.account.sign(chain_id, market.c.market, data, GAS_ORDER));
        what.push((w.household, si, Some(w.order)));
        tx.orders += 1;
    }
    let raws: Vec<Bytes> = txs.iter().map(|t| t.1.clone()).collect();
    let sent = market.rpc.send_raw(&raws).await.map_err(rpc_err)?;
    let mut resync = Vec::new();
    for ((hash, _), ((j, si, placed), answer)) in txs.iter().zip(what.into_iter().zip(sent)) {
        match answer {
            Ok(_) => r.pending.push(PendingTx { hash: *hash, household: j, side: si, placed }),
            Err(e) => {
                record_failure(
                    tx,
                    if placed.is_some() { "order" } else { "cancel" },
                    format!("refused by the node: {e}"),
                );
                resync.push(j);
            }
        }
    }
    // The node refused a transaction: its nonce is free again.
    resync_nonces(&market.rpc, hh, resync).await
}

/// Applies the receipts of pending order transactions of slot `i` (waiting up to `wait`); with
/// `last`, whatever is still pending is recorded as failed and its sender's nonce resynchronised.
#[allow(clippy::too_many_arguments)]
async fn resolve_orders(
    rpc: &Rpc,
    hh: &mut [Hh],
    i: usize,
    gate: f64,
    pending: &mut Vec<PendingTx>,
    wait: Duration,
    tx: &mut TxStats,
    last: bool,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let hashes: Vec<B256> = pending.iter().map(|p| p.hash).collect();
    let receipts = rpc.wait_receipts(&hashes, wait).await.map_err(rpc_err)?;
    let mut still = Vec::new();
    let mut resync = Vec::new();
    for (p, r) in pending.drain(..).zip(receipts) {
        let kind = if p.placed.is_some() { "order" } else { "cancel" };
        match r {
            Some(r) if r.success => hh[p.household].slots[i].live[p.side] = p.placed,
            Some(r) => {
                let why = if wants_example(tx, kind) {
                    let ts = rpc
                        .call("eth_getBlockByNumber", json!([format!("{:#x}", r.block_number), false]))
                        .await
                        .ok()
                        .and_then(|b| b.get("timestamp").and_then(crate::chain::hex_u64))
                        .unwrap_or(0);
                    format!(" (block time {ts}, gate closes at {gate})")
                        + &revert_reason(rpc, r.hash, r.block_number).await
                } else {
                    String::new()
                };
                record_failure(tx, kind, format!("reverted in block {}{why}", r.block_number))
            }
            None if last => {
                record_failure(tx, kind, format!("no receipt by the gate closure of slot index {i}"));
                resync.push(p.household);
            }
            None => still.push(p),
        }
    }
    *pending = still;
    resync_nonces(rpc, hh, resync).await
}
