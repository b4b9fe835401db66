//! Trading agents: per slot, each household turns its forecast net position into a bid or an ask.
//!
//! * **Forecast.** Load: the household's own expected profile (no noise). PV: the clear-sky energy
//!   of the slot times the clear-sky index the household measured in its last complete slot
//!   (persistence of cloudiness). Battery: the state of charge at the start of the slot, projected
//!   from the last measured one through the slot being delivered.
//! * **Ramp** (default, GSY-e style). The forecast net position after self-consumption from the
//!   battery is bid (a deficit) or asked (a surplus, prosumers only), scaled by a safety fraction so
//!   that forecast errors rarely turn into non-delivery. The limit price starts at the ramp's
//!   initial rate and moves linearly to its final rate over the order rounds of the slot; an agent
//!   whose order would already trade against the public book keeps its price (see [`crate::engine`]).
//! * **Arbitrage** (battery households). After a cheap slot (last clearing price at most
//!   `charge_alpha` of the way from feed-in to retail) it bids its deficit plus what its battery
//!   can still take beyond the PV surplus it expects later that day, at that cheap limit. After an
//!   expensive slot (at least `discharge_alpha`) it asks its surplus plus the stored energy beyond
//!   what it needs itself until its PV covers its load again, at that high limit. The battery then
//!   steers the connection towards the traded position (see [`crate::household::step_slot`]), so an
//!   unfilled arbitrage order costs nothing: the battery falls back to self-consumption.

use crate::battery::Battery;
use crate::household::{DayTrace, HouseholdSpec, Strategy, SLOTS_PER_DAY};

/// Agent settings shared by all households.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentParams {
    /// Fraction of a forecast deficit that is bid.
    pub buy_fraction: f64,
    /// Fraction of a forecast surplus that is asked.
    pub sell_fraction: f64,
    /// Orders smaller than this (Wh) are not placed.
    pub min_order_wh: u32,
    /// Arbitrage buys after a slot cleared at or below this fraction of the feed-in … retail spread.
    pub charge_alpha: f64,
    /// Arbitrage sells after a slot cleared at or above this fraction.
    pub discharge_alpha: f64,
}

impl Default for AgentParams {
    fn default() -> Self {
        Self {
            buy_fraction: 0.9,
            sell_fraction: 0.8,
            min_order_wh: 10,
            charge_alpha: 0.35,
            discharge_alpha: 0.65,
        }
    }
}

/// How an order's limit price is chosen in each round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriceRule {
    /// Along the household's ramp.
    Ramp,
    /// A fixed fraction of the feed-in … retail spread.
    Fixed(f64),
}

/// One planned order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedOrder {
    /// Energy, Wh.
    pub wh: u32,
    /// Price rule.
    pub rule: PriceRule,
}

/// An agent's orders for one slot.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Plan {
    /// Bid, if any.
    pub bid: Option<PlannedOrder>,
    /// Ask, if any.
    pub ask: Option<PlannedOrder>,
    /// Forecast natural net export (PV − load) of the slot, Wh.
    pub forecast_net_wh: f64,
}

/// What an agent knows when it plans day slot `slot` (during the delivery of `slot − 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knowledge {
    /// The day slot to plan.
    pub slot: usize,
    /// Measured state of charge (Wh) at the start of `slot − 1` (or of `slot` itself when
    /// `project_previous` is false), for battery households.
    pub soc_wh: Option<f64>,
    /// Whether `soc_wh` must be projected through `slot − 1`.
    pub project_previous: bool,
    /// Traded net export of `slot − 1` (sold − bought, Wh).
    pub prev_target_export_wh: f64,
    /// Measured clear-sky index (PV / clear-sky PV) of the last complete slot, if it had sun.
    pub clear_sky_index: Option<f64>,
    /// Clearing price of the last cleared slot as a fraction of the spread, if it traded.
    pub last_alpha: Option<f64>,
}

/// Forecast of the natural net export (PV − load, Wh) of day slot `s` (slots past the end of the day
/// wrap to the same day's profile, as a stand-in for the next morning).
pub fn forecast_net(trace: &DayTrace, s: usize, clear_sky_index: Option<f64>) -> f64 {
    let s = s % SLOTS_PER_DAY;
    let index = clear_sky_index.unwrap_or(0.7).clamp(0.0, 1.2);
    trace.pv_clear_wh[s] * index - trace.load_expected_wh[s]
}

/// Quarter-hour duration of a slot in hours.
const SLOT_HOURS: f64 = 0.25;

/// The household's orders for `k.slot`.
pub fn plan(h: &HouseholdSpec, trace: &DayTrace, p: &AgentParams, k: &Knowledge) -> Plan {
    let x = forecast_net(trace, k.slot, k.clear_sky_index);
    let mut plan = Plan { forecast_net_wh: x, ..Default::default() };
    // Battery at the start of the slot: measured at the start of the previous one, projected through it.
    let mut battery = match (h.battery, k.soc_wh) {
        (Some(spec), Some(soc)) => {
            let mut b = Battery { spec, soc_wh: soc };
            if k.project_previous && k.slot > 0 {
                let prev = forecast_net(trace, k.slot - 1, k.clear_sky_index);
                b.operate(k.prev_target_export_wh - prev, SLOT_HOURS);
            }
            Some(b)
        }
        _ => None,
    };

    if let (Some(b), Strategy::Arbitrage, Some(alpha)) = (battery.as_mut(), h.strategy, k.last_alpha) {
        if alpha <= p.charge_alpha {
            // Charge: the battery takes the PV surplus (if any) plus what is bought.
            let future_surplus: f64 =
                (k.slot + 1..SLOTS_PER_DAY).map(|s| forecast_net(trace, s, k.clear_sky_index).max(0.0)).sum();
            let room_energy = (b.spec.capacity_wh - b.soc_wh).max(0.0) / b.spec.one_way();
            let wanted = (room_energy - future_surplus).max(0.0);
            let by_power = (b.spec.max_charge_w * SLOT_HOURS - x.max(0.0)).max(0.0);
            let extra = wanted.min(by_power).min(room_energy);
            let wh = ((-x).max(0.0) + extra).floor() as u32;
            if extra >= p.min_order_wh as f64 && wh >= p.min_order_wh {
                plan.bid = Some(PlannedOrder { wh, rule: PriceRule::Fixed(p.charge_alpha) });
                return plan;
            }
        } else if alpha >= p.discharge_alpha {
            // Discharge: cover the own deficit, then sell what is stored beyond the own needs until
            // the PV covers the load again.
            let mut trial = *b;
            let own = trial.operate(-x, SLOT_HOURS);
            let residual = x + own.discharged_wh - own.charged_wh;
            let mut reserve = 0.0;
            for s in k.slot + 1..k.slot + SLOTS_PER_DAY {
                let n = forecast_net(trace, s, k.clear_sky_index);
                if n > 0.0 {
                    break;
                }
                reserve -= n;
            }
            let deliverable = trial.discharge_room_wh(f64::INFINITY);
            let by_power = (trial.spec.max_discharge_w * SLOT_HOURS - own.discharged_wh).max(0.0);
            let extra = (deliverable - reserve).max(0.0).min(by_power);
            let wh = (residual.max(0.0) * p.sell_fraction + extra).floor() as u32;
            if extra >= p.min_order_wh as f64 && wh >= p.min_order_wh {
                plan.ask = Some(PlannedOrder { wh, rule: PriceRule::Fixed(p.discharge_alpha) });
                return plan;
            }
            // Not worth it: plain self-consumption below.
        }
    }

    // Self-consumption first, then trade the residual.
    let residual = match battery.as_mut() {
        Some(b) => {
            let f = b.operate(-x, SLOT_HOURS);
            x + f.discharged_wh - f.charged_wh
        }
        None => x,
    };
    if residual < 0.0 {
        let wh = (-residual * p.buy_fraction).floor() as u32;
        if wh >= p.min_order_wh {
            plan.bid = Some(PlannedOrder { wh, rule: PriceRule::Ramp });
        }
    } else if residual > 0.0 && h.is_prosumer() {
        let wh = (residual * p.sell_fraction).floor() as u32;
        if wh >= p.min_order_wh {
            plan.ask = Some(PlannedOrder { wh, rule: PriceRule::Ramp });
        }
    }
    plan
}

/// The price fraction of the spread for `rule` in round `round` of `rounds` on the buy or sell side.
pub fn price_alpha(h: &HouseholdSpec, rule: PriceRule, buy: bool, round: usize, rounds: usize) -> f64 {
    match rule {
        PriceRule::Fixed(a) => a,
        PriceRule::Ramp => {
            let t = if rounds <= 1 { 1.0 } else { round as f64 / (rounds - 1) as f64 };
            let (a, b) = if buy {
                (h.ramp.buy_initial, h.ramp.buy_final)
            } else {
                (h.ramp.sell_initial, h.ramp.sell_final)
            };
            (a + (b - a) * t).clamp(0.0, 1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::BatterySpec;
    use crate::household::{generate, Mix, RampParams};

    fn trace(pv: f64, load: f64) -> DayTrace {
        DayTrace {
            pv_w: vec![pv * 4.0; 1440],
            load_w: vec![load * 4.0; 1440],
            pv_clear_wh: vec![pv; 96],
            load_expected_wh: vec![load; 96],
        }
    }

    fn household(battery: bool, strategy: Strategy) -> HouseholdSpec {
        let mut h = generate(&Mix {
            households: 1,
            pv_share: 1.0,
            battery_share: if battery { 1.0 } else { 0.0 },
            battery_strategy: strategy,
            seed: 1,
            lat_deg: 48.0,
        })
        .remove(0);
        h.ramp = RampParams { buy_initial: 0.0, buy_final: 1.0, sell_initial: 1.0, sell_final: 0.0 };
        if battery {
            h.battery = Some(BatterySpec {
                capacity_wh: 10_000.0,
                max_charge_w: 4_000.0,
                max_discharge_w: 4_000.0,
                round_trip: 0.81,
                min_soc: 0.1,
            });
        }
        h
    }

    fn know(slot: usize, soc: Option<f64>, alpha: Option<f64>) -> Knowledge {
        Knowledge {
            slot,
            soc_wh: soc,
            project_previous: true,
            prev_target_export_wh: 0.0,
            clear_sky_index: Some(1.0),
            last_alpha: alpha,
        }
    }

    #[test]
    fn plain_households_trade_their_forecast() {
        let p = AgentParams::default();
        let h = household(false, Strategy::Ramp);
        let plan = plan(&h, &trace(100.0, 300.0), &p, &know(40, None, None));
        assert_eq!(plan.bid, Some(PlannedOrder { wh: 180, rule: PriceRule::Ramp }));
        assert_eq!(plan.ask, None);
        let plan2 = super::plan(&h, &trace(500.0, 100.0), &p, &know(40, None, None));
        assert_eq!(plan2.ask, Some(PlannedOrder { wh: 320, rule: PriceRule::Ramp }));
        // Tiny positions are not traded.
        assert_eq!(super::plan(&h, &trace(100.0, 105.0), &p, &know(40, None, None)).bid, None);
    }

    #[test]
    fn self_consumption_battery_covers_the_deficit_first() {
        let p = AgentParams::default();
        let h = household(true, Strategy::Ramp);
        // 600 Wh deficit; a full battery delivers up to 1,000 Wh in 15 minutes at 4 kW.
        let plan = plan(&h, &trace(0.0, 600.0), &p, &know(80, Some(9_000.0), None));
        assert_eq!((plan.bid, plan.ask), (None, None));
        // An empty one cannot: the deficit is bid.
        let plan = super::plan(&h, &trace(0.0, 600.0), &p, &know(80, Some(1_000.0), None));
        assert_eq!(plan.bid.map(|o| o.wh), Some(540));
    }

    #[test]
    fn arbitrage_buys_cheap_and_sells_dear() {
        let p = AgentParams::default();
        let h = household(true, Strategy::Arbitrage);
        // Cheap last slot, empty battery and no PV surplus ahead: buy to charge at the cheap limit.
        let plan = plan(&h, &trace(0.0, 100.0), &p, &know(50, Some(1_000.0), Some(0.2)));
        let bid = plan.bid.expect("a charging bid");
        assert_eq!(bid.rule, PriceRule::Fixed(p.charge_alpha));
        assert!(bid.wh > 900 && bid.wh <= 1_100, "{bid:?}");
        // Dear last slot, full battery, small own needs until the end of the horizon: sell the excess.
        let plan = super::plan(&h, &trace(0.0, 20.0), &p, &know(80, Some(10_000.0), Some(0.8)));
        let ask = plan.ask.expect("a discharging ask");
        assert_eq!(ask.rule, PriceRule::Fixed(p.discharge_alpha));
        // Dear, but the stored energy is all needed: no arbitrage ask, plain self-consumption.
        let plan = super::plan(&h, &trace(0.0, 200.0), &p, &know(80, Some(5_000.0), Some(0.8)));
        assert_eq!((plan.ask, plan.bid), (None, None));
    }

    #[test]
    fn ramp_prices_move_from_initial_to_final() {
        let h = household(false, Strategy::Ramp);
        assert_eq!(price_alpha(&h, PriceRule::Ramp, true, 0, 3), 0.0);
        assert_eq!(price_alpha(&h, PriceRule::Ramp, true, 1, 3), 0.5);
        assert_eq!(price_alpha(&h, PriceRule::Ramp, true, 2, 3), 1.0);
        assert_eq!(price_alpha(&h, PriceRule::Ramp, false, 2, 3), 0.0);
        assert_eq!(price_alpha(&h, PriceRule::Ramp, false, 0, 1), 0.0);
        assert_eq!(price_alpha(&h, PriceRule::Fixed(0.3), false, 0, 3), 0.3);
    }
}
