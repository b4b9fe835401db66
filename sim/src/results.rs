//! Per-slot and per-household figures derived from a run's data (chain events, on-chain meter data
//! and the simulated physics), and the community KPIs.
//!
//! Definitions:
//! * **Platform bill** of a household: what the market took from it over the day (escrow locked,
//!   minus refunds, minus settlement credits, plus settlement debits, from the events), plus the
//!   grid bill of slots in which it had no order (metered import at retail minus metered export at
//!   the feed-in tariff: the utility bills those outside the market).
//! * **Baseline bill**: the same household on grid tariffs only (no market): metered import at
//!   retail minus export at the feed-in tariff, with its battery (if any) used for self-consumption.
//! * **Savings** = baseline − platform, plus for battery households the difference of the value of
//!   the energy left in the battery at the end (platform − baseline): what the household will need
//!   before its PV covers its load again is valued at the retail price it displaces, the rest at the
//!   feed-in tariff (both through the discharge efficiency); see [`stored_energy_value`].
//! * **Self-sufficiency** (community) = 1 − energy imported at the point of common coupling / load;
//!   **self-consumption** = 1 − energy exported at that point / PV generation. The point of common
//!   coupling sees the net of all meters in each slot.

use alloy_primitives::Address;

use crate::engine::{hhmm, RunData};
use crate::market::{Prices, SettledEvent};

/// One slot's figures.
#[derive(Debug, Clone, Default)]
pub struct SlotResult {
    /// Day slot.
    pub day_slot: usize,
    /// `HH:MM`.
    pub time: String,
    /// Chain slot.
    pub chain_slot: u64,
    /// Clearing price, credits/kWh (None without a trade).
    pub price: Option<f64>,
    /// Traded volume, Wh.
    pub volume_wh: u64,
    /// Bids and asks in the book at gate closure.
    pub bids: usize,
    /// See `bids`.
    pub asks: usize,
    /// Bid energy in the book, Wh.
    pub bid_wh: u64,
    /// Ask energy in the book, Wh.
    pub ask_wh: u64,
    /// PV generation (simulated), Wh.
    pub pv_wh: f64,
    /// Load (simulated), Wh.
    pub load_wh: f64,
    /// Sum of metered imports (on chain), Wh.
    pub metered_import_wh: u64,
    /// Sum of metered exports, Wh.
    pub metered_export_wh: u64,
    /// Net import from the grid at the point of common coupling, Wh.
    pub grid_import_wh: u64,
    /// Net export to the grid at the point of common coupling, Wh.
    pub grid_export_wh: u64,
    /// Energy the grid supplied in settlement (at retail), Wh.
    pub settled_grid_supply_wh: u64,
    /// Energy the grid absorbed in settlement (at feed-in), Wh.
    pub settled_grid_absorb_wh: u64,
    /// Participants settled.
    pub settled: usize,
    /// Seconds from the slot's end to its settlement.
    pub settle_delay_s: Option<f64>,
    /// Retail and feed-in, credits/kWh.
    pub retail: f64,
    /// See `retail`.
    pub feed_in: f64,
}

/// One household's figures.
#[derive(Debug, Clone, Default)]
pub struct HouseholdResult {
    /// Id.
    pub id: String,
    /// Account.
    pub account: Address,
    /// `consumer` / `prosumer`.
    pub role: &'static str,
    /// PV peak power, kW.
    pub pv_kwp: f64,
    /// Battery capacity, kWh.
    pub battery_kwh: f64,
    /// Meter format.
    pub meter_format: &'static str,
    /// Strategy.
    pub strategy: &'static str,
    /// Load, Wh (simulated meters only).
    pub load_wh: f64,
    /// PV, Wh.
    pub pv_wh: f64,
    /// Bought on the platform, Wh.
    pub bought_wh: u64,
    /// Sold on the platform, Wh.
    pub sold_wh: u64,
    /// PV used on site (generation minus metered export), Wh.
    pub self_consumed_wh: f64,
    /// Energy from the grid (metered import not covered by purchases), Wh.
    pub from_grid_wh: u64,
    /// Energy to the grid (metered export not covered by sales), Wh.
    pub to_grid_wh: u64,
    /// Metered import, Wh.
    pub import_wh: u64,
    /// Metered export, Wh.
    pub export_wh: u64,
    /// Bill on the platform, credit base units (positive = pays).
    pub bill_platform: i128,
    /// Of which the market (settlement) part.
    pub bill_market: i128,
    /// Grid-only baseline bill.
    pub bill_baseline: i128,
    /// Value of the battery energy left at the end, platform minus baseline.
    pub stored_value: i128,
    /// Savings = baseline − platform + stored value.
    pub savings: i128,
    /// Savings from trading what was delivered as traded.
    pub trade_gain: i128,
    /// Cost of energy bought but not used (resold at feed-in less the long imbalance penalty).
    pub overbuy_loss: i128,
    /// Cost of energy sold but not delivered (bought back at retail plus the short imbalance premium).
    pub shortfall_loss: i128,
    /// Wh bought but not used.
    pub overbought_wh: u64,
    /// Wh sold but not delivered.
    pub undelivered_wh: u64,
    /// Slots with an order at gate closure.
    pub slots_traded: usize,
}

impl HouseholdResult {
    /// Why a household paid more than its baseline (empty if it did not).
    pub fn reason(&self) -> String {
        if self.savings >= 0 {
            return String::new();
        }
        let c = |v: i128| v as f64 / 1e18;
        let mut parts = Vec::new();
        if self.shortfall_loss > 0 {
            parts.push(format!(
                "sold {:.2} kWh it did not deliver (forecast error), bought back at retail plus the imbalance premium: −{:.3} credits",
                self.undelivered_wh as f64 / 1000.0,
                c(self.shortfall_loss)
            ));
        }
        if self.overbuy_loss > 0 {
            parts.push(format!(
                "bought {:.2} kWh it did not use (forecast error), resold at feed-in less the imbalance penalty: −{:.3} credits",
                self.overbought_wh as f64 / 1000.0,
                c(self.overbuy_loss)
            ));
        }
        let other = self.savings - self.trade_gain + self.overbuy_loss + self.shortfall_loss;
        if other < 0 {
            parts.push(format!(
                "battery dispatch for the market (arbitrage, losses, end-of-day charge): −{:.3} credits",
                c(-other)
            ));
        }
        parts.push(format!("trading gained +{:.3} credits", c(self.trade_gain)));
        parts.join("; ")
    }
}

/// Community KPIs (summary.json).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Kpis {
    /// 1 − grid import at the point of common coupling / load.
    pub self_sufficiency: Option<f64>,
    /// 1 − grid export at the point of common coupling / PV.
    pub self_consumption: Option<f64>,
    /// Sum of savings, credits.
    pub total_savings_credits: f64,
    /// Sum of baseline bills, credits.
    pub total_baseline_credits: f64,
    /// Savings as a share of the baseline bills.
    pub savings_share_of_baseline: Option<f64>,
    /// Share of households whose savings are positive.
    pub households_saved_share: f64,
    /// Number of households whose savings are positive.
    pub households_saved: usize,
    /// Number of households with no trade at all.
    pub households_without_trades: usize,
    /// Households that paid more than their baseline.
    pub households_worse: Vec<WorseHousehold>,
    /// Traded energy, kWh.
    pub traded_kwh: f64,
    /// Volume-weighted mean clearing price, credits/kWh.
    pub mean_price: Option<f64>,
    /// Load, kWh.
    pub load_kwh: f64,
    /// PV, kWh.
    pub pv_kwh: f64,
    /// Net grid import at the point of common coupling, kWh.
    pub grid_import_kwh: f64,
    /// Net grid export at the point of common coupling, kWh.
    pub grid_export_kwh: f64,
}

/// A household that paid more than its baseline, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorseHousehold {
    /// Id.
    pub id: String,
    /// Savings (negative), credits.
    pub savings_credits: f64,
    /// Why.
    pub reason: String,
}

fn cost(wh: u64, price: u128) -> i128 {
    Prices::cost(wh, price) as i128
}

/// The household's own deficit (Wh) from day slot `from` (wrapping past midnight to the same day's
/// morning) until the first slot in which its PV covers its load.
pub fn need_after(trace: &crate::household::DayTrace, from: usize) -> f64 {
    let n = crate::household::SLOTS_PER_DAY;
    let mut need = 0.0;
    for k in 0..n {
        let s = (from + k) % n;
        let deficit = trace.load_wh(s) - trace.pv_wh(s);
        if deficit < 0.0 {
            break;
        }
        need += deficit;
    }
    need
}

/// What the energy left in a battery is worth (credit base units): the part the household will
/// need before its PV covers its load again (`need`, Wh) displaces retail purchases; the rest can
/// only displace feed-in (the PV refills the battery anyway). Both through the discharge efficiency.
pub fn stored_energy_value(b: &crate::battery::Battery, need: f64, p: &Prices) -> i128 {
    let usable = (b.soc_wh - b.spec.min_soc * b.spec.capacity_wh).max(0.0) * b.spec.one_way();
    let needed = usable.min(need);
    let rest = usable - needed;
    ((needed * p.retail as f64 + rest * p.feed_in as f64) / 1000.0) as i128
}

/// Per-slot figures.
pub fn slot_results(d: &RunData) -> Vec<SlotResult> {
    d.slots
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let book = s.events.book();
            // The households' meters: islanded, what they drew from and fed into the assets.
            let (mut mi, mut me) = (0u64, 0u64);
            for (row, _) in d.metered.iter().zip(&d.hh).filter(|(_, h)| h.is_household()) {
                mi += row[k].import_wh;
                me += row[k].export_wh;
            }
            let (mut pv, mut load) = (0.0, 0.0);
            for h in d.hh.iter().filter(|h| h.is_household()) {
                if let Some(p) = &h.slots[k].phys {
                    pv += p.pv_wh;
                    load += p.load_wh;
                }
            }
            let (mut gs, mut ga) = (0u64, 0u64);
            for e in &s.events.settled {
                gs += e.import_wh.saturating_sub(e.bought_wh) + e.sold_wh.saturating_sub(e.export_wh);
                ga += e.bought_wh.saturating_sub(e.import_wh) + e.export_wh.saturating_sub(e.sold_wh);
            }
            let traded = s.cleared.filter(|c| c.volume_wh > 0);
            SlotResult {
                day_slot: s.day_slot,
                time: hhmm(s.day_slot),
                chain_slot: s.chain_slot,
                price: traded.map(|c| c.price as f64 / 1e18),
                volume_wh: traded.map_or(0, |c| c.volume_wh),
                bids: book.iter().filter(|o| o.side == crate::clearing::Side::Bid).count(),
                asks: book.iter().filter(|o| o.side == crate::clearing::Side::Ask).count(),
                bid_wh: book.iter().filter(|o| o.side == crate::clearing::Side::Bid).map(|o| o.wh).sum(),
                ask_wh: book.iter().filter(|o| o.side == crate::clearing::Side::Ask).map(|o| o.wh).sum(),
                pv_wh: pv,
                load_wh: load,
                metered_import_wh: mi,
                metered_export_wh: me,
                grid_import_wh: mi.saturating_sub(me),
                grid_export_wh: me.saturating_sub(mi),
                settled_grid_supply_wh: gs,
                settled_grid_absorb_wh: ga,
                settled: s.events.settled.len(),
                settle_delay_s: s.settle.as_ref().map(|o| o.delay_s),
                retail: s.prices.map_or(0.0, |p| p.retail as f64 / 1e18),
                feed_in: s.prices.map_or(0.0, |p| p.feed_in as f64 / 1e18),
            }
        })
        .collect()
}

/// Per-household figures.
pub fn household_results(d: &RunData) -> Vec<HouseholdResult> {
    member_results(d, true)
}

/// The same figures for each of the community's assets (islanded), which trade like households.
pub fn asset_results(d: &RunData) -> Vec<HouseholdResult> {
    member_results(d, false)
}

/// The assets' trading in `summary.json`: energy sold and bought, metered, what the imbalance
/// settlement left them short or long, and the money (credits; + earned) the market paid them.
pub fn assets_json(assets: &[HouseholdResult]) -> serde_json::Value {
    let credits = |v: i128| v as f64 / 1e18;
    assets
        .iter()
        .map(|a| {
            serde_json::json!({
                "asset": a.role,
                "account": a.account,
                "sold_wh": a.sold_wh,
                "bought_wh": a.bought_wh,
                "metered_import_wh": a.import_wh,
                "metered_export_wh": a.export_wh,
                "undelivered_wh": a.undelivered_wh,
                "overbought_wh": a.overbought_wh,
                "slots_traded": a.slots_traded,
                "earned_credits": -credits(a.bill_market + a.bill_platform),
            })
        })
        .collect()
}

fn member_results(d: &RunData, households: bool) -> Vec<HouseholdResult> {
    d.hh.iter()
        .enumerate()
        .filter(|(_, h)| h.is_household() == households)
        .map(|(j, h)| {
            let a = h.account.address();
            let mut r = HouseholdResult {
                id: h.spec.id.clone(),
                account: a,
                role: h.asset.map_or(h.spec.role_name(), |a| a.name()),
                pv_kwp: h.spec.pv.map_or(0.0, |p| p.kwp),
                battery_kwh: h.spec.battery.map_or(0.0, |b| b.capacity_wh / 1000.0),
                meter_format: h.spec.meter_format.bridge_name(),
                strategy: h.spec.strategy.name(),
                ..Default::default()
            };
            for (k, s) in d.slots.iter().enumerate() {
                let Some(prices) = s.prices else { continue };
                let (r_, f_) = (prices.retail, prices.feed_in);
                let (imp, exp) = (d.metered[j][k].import_wh, d.metered[j][k].export_wh);
                r.import_wh += imp;
                r.export_wh += exp;
                if let Some(p) = &h.slots[k].phys {
                    r.load_wh += p.load_wh;
                    r.pv_wh += p.pv_wh;
                }
                // Market money of this slot from the events.
                let mut market: i128 = 0;
                for (o, locked) in &s.events.placed {
                    if o.account == a {
                        market += *locked as i128;
                    }
                }
                for (acc, _, refund) in &s.events.cancelled {
                    if *acc == a {
                        market -= *refund as i128;
                    }
                }
                let settled: Option<&SettledEvent> = s.events.settled.iter().find(|e| e.account == a);
                match settled {
                    Some(e) => {
                        r.slots_traded += 1;
                        market += e.debited as i128 - e.credited as i128;
                        r.bought_wh += e.bought_wh;
                        r.sold_wh += e.sold_wh;
                        r.from_grid_wh += e.import_wh.saturating_sub(e.bought_wh);
                        r.to_grid_wh += e.export_wh.saturating_sub(e.sold_wh);
                        let c = s.cleared.map_or(0, |c| c.price);
                        let (b, sd, i, x) = (e.bought_wh, e.sold_wh, e.import_wh, e.export_wh);
                        r.trade_gain +=
                            cost(b.min(i), r_) - cost(b.min(i), c) + cost(sd.min(x), c) - cost(sd.min(x), f_);
                        // Imbalances (issue 14): unused energy goes back at feed-in less the long
                        // penalty, undelivered energy is bought at retail plus the short premium.
                        let (long, short) = (b.saturating_sub(i), sd.saturating_sub(x));
                        r.overbuy_loss += cost(long, c) - cost(long, f_) + cost(long, prices.long_penalty);
                        r.shortfall_loss += cost(short, r_ + prices.short_premium) - cost(short, c);
                        r.overbought_wh += b.saturating_sub(i);
                        r.undelivered_wh += sd.saturating_sub(x);
                    }
                    None => {
                        r.bill_platform += cost(imp, r_) - cost(exp, f_);
                        r.from_grid_wh += imp;
                        r.to_grid_wh += exp;
                    }
                }
                r.bill_market += market;
                r.bill_baseline += match &h.slots[k].base {
                    Some(_) => {
                        cost(h.slots[k].base_delta.import_wh, r_) - cost(h.slots[k].base_delta.export_wh, f_)
                    }
                    None => cost(imp, r_) - cost(exp, f_),
                };
            }
            r.bill_platform += r.bill_market;
            r.self_consumed_wh = (r.pv_wh - r.export_wh as f64).max(0.0);
            if let (Some(b), Some(bb), Some(last)) = (h.battery, h.base_battery, d.slots.last()) {
                if let Some(p) = last.prices {
                    let need = need_after(&h.trace, last.day_slot + 1);
                    r.stored_value = stored_energy_value(&b, need, &p) - stored_energy_value(&bb, need, &p);
                }
            }
            r.savings = r.bill_baseline - r.bill_platform + r.stored_value;
            r
        })
        .collect()
}

/// Community KPIs.
pub fn kpis(d: &RunData, slots: &[SlotResult], hs: &[HouseholdResult]) -> Kpis {
    let load: f64 = slots.iter().map(|s| s.load_wh).sum();
    let pv: f64 = slots.iter().map(|s| s.pv_wh).sum();
    let gi: u64 = slots.iter().map(|s| s.grid_import_wh).sum();
    let ge: u64 = slots.iter().map(|s| s.grid_export_wh).sum();
    let traded: u64 = slots.iter().map(|s| s.volume_wh).sum();
    let value: f64 = slots.iter().filter_map(|s| s.price.map(|p| p * s.volume_wh as f64)).sum();
    let savings: i128 = hs.iter().map(|h| h.savings).sum();
    let baseline: i128 = hs.iter().map(|h| h.bill_baseline).sum();
    let saved = hs.iter().filter(|h| h.savings > 0).count();
    Kpis {
        self_sufficiency: (d.simulated_meters && load > 0.0).then(|| 1.0 - gi as f64 / load),
        self_consumption: (d.simulated_meters && pv > 0.0).then(|| 1.0 - ge as f64 / pv),
        total_savings_credits: savings as f64 / 1e18,
        total_baseline_credits: baseline as f64 / 1e18,
        savings_share_of_baseline: (baseline > 0).then(|| savings as f64 / baseline as f64),
        households_saved_share: if hs.is_empty() { 0.0 } else { saved as f64 / hs.len() as f64 },
        households_saved: saved,
        households_without_trades: hs.iter().filter(|h| h.slots_traded == 0).count(),
        households_worse: hs
            .iter()
            .filter(|h| h.savings < 0)
            .map(|h| WorseHousehold {
                id: h.id.clone(),
                savings_credits: h.savings as f64 / 1e18,
                reason: h.reason(),
            })
            .collect(),
        traded_kwh: traded as f64 / 1000.0,
        mean_price: (traded > 0).then(|| value / traded as f64),
        load_kwh: load / 1000.0,
        pv_kwh: pv / 1000.0,
        grid_import_kwh: gi as f64 / 1000.0,
        grid_export_kwh: ge as f64 / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::{Battery, BatterySpec};
    use crate::household::DayTrace;

    #[test]
    fn stored_energy_is_worth_retail_only_up_to_the_households_need() {
        let milli = 1_000_000_000_000_000u128;
        let p = Prices {
            feed_in: 80 * milli,
            retail: 300 * milli,
            tick: milli,
            short_premium: 50 * milli,
            long_penalty: 50 * milli,
        };
        let spec = BatterySpec {
            capacity_wh: 10_000.0,
            max_charge_w: 5_000.0,
            max_discharge_w: 5_000.0,
            round_trip: 0.81,
            min_soc: 0.1,
        };
        let b = Battery { spec, soc_wh: 6_000.0 };
        // 5,000 Wh usable → 4,500 Wh deliverable; 1,000 Wh needed at retail, the rest at feed-in.
        let v = stored_energy_value(&b, 1_000.0, &p);
        let want = 5.8e17; // (1,000 Wh × 0.30 + 3,500 Wh × 0.08) credits/kWh
        assert!((v as f64 - want).abs() < 1e6, "{v}");
        assert!(stored_energy_value(&b, 10_000.0, &p) > v);
        assert_eq!(stored_energy_value(&Battery { spec, soc_wh: 1_000.0 }, 1_000.0, &p), 0);
    }

    #[test]
    fn need_runs_until_the_pv_covers_the_load() {
        // Load 400 W all day; PV 800 W from minute 360 (06:00) to 1080 (18:00).
        let pv: Vec<f64> = (0..1440).map(|m| if (360..1080).contains(&m) { 800.0 } else { 0.0 }).collect();
        let t = DayTrace {
            pv_w: pv,
            load_w: vec![400.0; 1440],
            pv_clear_wh: vec![0.0; 96],
            load_expected_wh: vec![100.0; 96],
        };
        // From 18:00 (slot 72) to 06:00: 12 h × 400 W.
        assert!((need_after(&t, 72) - 4_800.0).abs() < 1e-6);
        // At noon the PV already covers the load.
        assert_eq!(need_after(&t, 48), 0.0);
    }
}
