//! The agents of the community's own assets when islanded (each trades through the market like a
//! household, with its own account and meter):
//!
//! * **PV plant.** Asks its forecast (clear-sky energy of the slot times the clear-sky index it
//!   measured last, as the households forecast their PV), scaled by the sell fraction, at the
//!   floor: its energy costs nothing to make, and what it cannot sell is curtailed or balances the
//!   battery.
//! * **Genset.** Asks what it can make in a slot (its rating for 15 minutes) at its marginal cost,
//!   the fuel curve's slope times the fuel price (the first price level at or above it). What it
//!   sells it then runs ([`crate::island::Island::set_genset_schedule`]).
//! * **Community battery.** Buys cheap and sells dear within its state-of-charge limits: it bids
//!   the room it has below 90 % at one tick above the floor (it takes the plant's and the
//!   households' surplus) and asks what it holds above 30 % (a reserve it keeps for balancing, being
//!   the grid-forming unit) one tick below the genset's marginal cost (it displaces fuel), both
//!   within its power for 15 minutes. Balancing whatever the others leave, its meter differs from
//!   its trades; the difference is settled at imbalance prices.

use crate::agent::{AgentParams, Knowledge, Plan, PlannedOrder, PriceRule};
use crate::battery::Battery;
use crate::household::DayTrace;
use crate::island::{AssetKind, IslandSpec};
use crate::market::Prices;

/// Share of the battery's capacity it keeps for balancing (not sold).
pub const STORAGE_RESERVE: f64 = 0.3;
/// Share of the battery's capacity it buys up to.
pub const STORAGE_TARGET: f64 = 0.9;
/// A slot's simulated length, hours.
const SLOT_HOURS: f64 = 0.25;

/// The genset's marginal cost, credit base units per kWh: litres per kWh times the fuel price.
pub fn genset_marginal_cost(spec: &IslandSpec) -> u128 {
    (spec.fuel_b * spec.fuel_price * 1e18).round() as u128
}

/// A fixed price rule at exactly `level` (the rounds turn it back into that level).
fn at_level(prices: &Prices, level: u32) -> PriceRule {
    let max = prices.max_level().max(1);
    PriceRule::Fixed(f64::from(level.min(max)) / f64::from(max))
}

/// The asset's orders for `k.slot` at `prices`; `battery` is the storage's state as last measured.
pub fn asset_plan(
    kind: AssetKind,
    trace: &DayTrace,
    battery: Option<&Battery>,
    spec: &IslandSpec,
    prices: &Prices,
    p: &AgentParams,
    k: &Knowledge,
) -> Plan {
    let mut plan = Plan::default();
    let order = |wh: f64, level: u32| {
        let wh = wh.max(0.0).floor() as u32;
        (wh >= p.min_order_wh).then(|| PlannedOrder { wh, rule: at_level(prices, level) })
    };
    let genset_level = prices.level_at_or_above(genset_marginal_cost(spec));
    match kind {
        AssetKind::Plant => {
            let index = k.clear_sky_index.unwrap_or(0.7).clamp(0.0, 1.2);
            let forecast = trace.pv_clear_wh[k.slot % trace.pv_clear_wh.len()] * index;
            plan.forecast_net_wh = forecast;
            plan.ask = order(forecast * p.sell_fraction, 0);
        }
        AssetKind::Genset => {
            plan.ask = order(spec.genset_kw * 1000.0 * SLOT_HOURS, genset_level);
        }
        AssetKind::Storage => {
            let Some(b) = battery else { return plan };
            let cap = b.spec.capacity_wh;
            let eff = b.spec.one_way();
            let sell = ((b.soc_wh - STORAGE_RESERVE * cap) * eff).min(b.spec.max_discharge_w * SLOT_HOURS);
            let buy = ((STORAGE_TARGET * cap - b.soc_wh) / eff).min(b.spec.max_charge_w * SLOT_HOURS);
            let dear = if spec.genset_kw > 0.0 { genset_level.saturating_sub(1) } else { prices.max_level() };
            plan.ask = order(sell, dear.max(2));
            plan.bid = order(buy, 1);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::island::IslandSpec;

    fn prices() -> Prices {
        let milli = 1_000_000_000_000_000u128;
        Prices {
            feed_in: 80 * milli,
            retail: 335 * milli,
            tick: milli,
            short_premium: 50 * milli,
            long_penalty: 50 * milli,
        }
    }

    fn know(slot: usize) -> Knowledge {
        Knowledge {
            slot,
            soc_wh: None,
            project_previous: false,
            prev_target_export_wh: 0.0,
            clear_sky_index: Some(1.0),
            last_alpha: None,
        }
    }

    fn empty_trace() -> DayTrace {
        DayTrace {
            pv_w: vec![0.0; 1440],
            load_w: vec![0.0; 1440],
            pv_clear_wh: vec![0.0; 96],
            load_expected_wh: vec![0.0; 96],
        }
    }

    #[test]
    fn the_genset_offers_its_rating_at_marginal_cost() {
        let spec = IslandSpec::defaults(); // 20 kW, 0.246 l/kWh at 1.2 credits/l: 0.2952 credits/kWh
        let p = prices();
        let plan = asset_plan(
            AssetKind::Genset,
            &empty_trace(),
            None,
            &spec,
            &p,
            &AgentParams::default(),
            &know(80),
        );
        let ask = plan.ask.expect("an ask");
        assert_eq!(ask.wh, 5_000);
        let level = p.level_for_alpha(match ask.rule {
            PriceRule::Fixed(a) => a,
            PriceRule::Ramp => panic!("fixed"),
        });
        assert_eq!(p.price(level), 296 * 1_000_000_000_000_000, "the first level at or above 0.2952");
        assert!(plan.bid.is_none());
    }

    #[test]
    fn the_battery_buys_cheap_and_sells_dear_within_its_limits() {
        let spec = IslandSpec::defaults();
        let p = prices();
        let level = |r: PriceRule| match r {
            PriceRule::Fixed(a) => p.level_for_alpha(a),
            PriceRule::Ramp => panic!("fixed"),
        };
        let half = Battery::new(spec.battery, 0.5);
        let plan = asset_plan(
            AssetKind::Storage,
            &empty_trace(),
            Some(&half),
            &spec,
            &p,
            &AgentParams::default(),
            &know(80),
        );
        let (bid, ask) = (plan.bid.unwrap(), plan.ask.unwrap());
        assert_eq!(level(bid.rule), 1, "one tick above the floor");
        assert_eq!(p.price(level(ask.rule)), 295 * 1_000_000_000_000_000, "one tick below the genset");
        // 30 kW for 15 minutes caps both; at half full, 12 kWh above the reserve and 24 kWh below 90 %.
        assert_eq!((bid.wh, ask.wh), (7_500, 7_500));
        // At its reserve it does not sell; full, it does not buy.
        let low = Battery::new(spec.battery, STORAGE_RESERVE);
        let plan = asset_plan(
            AssetKind::Storage,
            &empty_trace(),
            Some(&low),
            &spec,
            &p,
            &AgentParams::default(),
            &know(80),
        );
        assert!(plan.ask.is_none() && plan.bid.is_some());
        let full = Battery::new(spec.battery, 1.0);
        let plan = asset_plan(
            AssetKind::Storage,
            &empty_trace(),
            Some(&full),
            &spec,
            &p,
            &AgentParams::default(),
            &know(80),
        );
        assert!(plan.bid.is_none() && plan.ask.is_some());
    }

    #[test]
    fn the_plant_asks_its_forecast_at_the_floor() {
        let spec = IslandSpec::defaults();
        let mut t = empty_trace();
        t.pv_clear_wh[48] = 6_000.0;
        let plan =
            asset_plan(AssetKind::Plant, &t, None, &spec, &prices(), &AgentParams::default(), &know(48));
        let ask = plan.ask.unwrap();
        assert_eq!(ask.wh, 4_800, "0.8 of the forecast");
        assert_eq!(ask.rule, PriceRule::Fixed(0.0));
        assert!(asset_plan(
            AssetKind::Plant,
            &empty_trace(),
            None,
            &spec,
            &prices(),
            &AgentParams::default(),
            &know(0)
        )
        .ask
        .is_none());
    }
}
