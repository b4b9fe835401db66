//! The point of common coupling (PCC): the community's one connection to the upstream grid, and
//! the physics of a slot for the whole community minute by minute within its import and export
//! limits.
//!
//! Each minute, every household first runs as it would alone: its battery steers its connection
//! towards its traded position ([`crate::household::step_slot`]). If the community's net flow at
//! the PCC then exceeds a limit, the excess is shared among the households that flow in that
//! direction, pro rata to their flow, and each of them replays the minute with its connection
//! capped at its share:
//! - **export** over the limit: the battery charges more (or discharges less) first; what it cannot
//!   take is PV curtailed at the inverter;
//! - **import** over the limit: the battery discharges more (or charges less) first; what it cannot
//!   give is load shed (unserved energy).
//!
//! The flow at the PCC is then exactly at the limit, and every household's minute balances:
//! PV − curtailed + import + discharged = load − shed + export + charged.

use crate::battery::Battery;
use crate::household::{DayTrace, SlotPhysics, SLOT_MINUTES};

/// Import and export limits of the community's connection, kW (None: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PccLimits {
    /// Largest import from the grid, kW.
    pub import_kw: Option<f64>,
    /// Largest export to the grid, kW.
    pub export_kw: Option<f64>,
}

impl PccLimits {
    /// Whether either direction is limited.
    pub fn is_limited(&self) -> bool {
        self.import_kw.is_some() || self.export_kw.is_some()
    }

    /// Checks that the limits are finite and not negative.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [("import", self.import_kw), ("export", self.export_kw)] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    anyhow::bail!("the PCC {name} limit must be a number of kW ≥ 0, not {v}");
                }
            }
        }
        Ok(())
    }
}

/// What the community's households are coupled to: limits on their net flow each minute, told the
/// net flow that resulted (the grid's PCC has fixed limits and keeps no state; an islanded
/// community's own assets have limits that depend on their state, which the flow changes).
pub trait Coupling {
    /// Limits on the households' net flow in minute `m` of the day.
    fn limits(&mut self, m: usize) -> PccLimits;
    /// The households' net import in minute `m` (Wh; negative: export), once within the limits.
    fn commit(&mut self, m: usize, net_import_wh: f64);
}

impl Coupling for PccLimits {
    fn limits(&mut self, _m: usize) -> PccLimits {
        *self
    }

    fn commit(&mut self, _m: usize, _net_import_wh: f64) {}
}

/// Most price levels a slot may have in the registry (`Registry.MAX_LEVEL`): the widest price band
/// the operator can set is 255 ticks.
pub const MAX_LEVEL: u128 = 255;

/// The islanded price band (value of lost load, floor) in credit base units per kWh from the
/// grid-connected defaults: the floor is feed-in, the cap the highest the registry's 255 levels
/// reach above it (0.335 credits at the 0.001 tick; a value of lost load of several credits needs a
/// chain deployed with a coarser tick, `p2pe-node dev --price-tick`).
pub fn island_band(default: &crate::market::Prices) -> (u128, u128) {
    (default.feed_in + MAX_LEVEL * default.tick, default.feed_in)
}

/// How the operator prices a slot in which it forecasts a binding PCC limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PccPricing {
    /// Forecast import beyond the import limit: the slot's band moves up to [retail, retail + 255
    /// ticks]: local supply is worth more than the grid's retail price, and imbalance import is
    /// charged at the scarcity price.
    Scarcity,
    /// Forecast export beyond the export limit: the band moves down to [0, feed-in]: the grid pays
    /// nothing for export it cannot take (it would be curtailed), and local energy is cheap.
    Surplus,
    /// Islanded: every slot's band is the registry's islanded band ([`island_band`], set once with
    /// `Registry.setIslanded`, which makes it the default prices: no slot needs an override);
    /// imbalance is bought from and sold to the community's assets (the market's grid account is
    /// their balancing account).
    Islanded,
}

impl PccPricing {
    /// The operator's decision for a slot from its forecast of the community's net import over the
    /// slot (Wh; negative: export) and the limits; `slot_hours` is the slot's simulated length.
    pub fn decide(forecast_import_wh: f64, limits: &PccLimits, slot_hours: f64) -> Option<Self> {
        if limits.import_kw.is_some_and(|kw| forecast_import_wh > kw * 1000.0 * slot_hours) {
            Some(PccPricing::Scarcity)
        } else if limits.export_kw.is_some_and(|kw| -forecast_import_wh > kw * 1000.0 * slot_hours) {
            Some(PccPricing::Surplus)
        } else {
            None
        }
    }

    /// The slot's (retail, feed-in) prices in credit base units per kWh, from the default prices
    /// and tick; both stay within the registry's rules (feed-in ≤ retail, retail > 0, a whole
    /// number of ticks apart, at most [`MAX_LEVEL`] of them).
    /// `None` when the slot needs no override (islanded: the band is the default).
    pub fn prices(self, default: &crate::market::Prices) -> Option<(u128, u128)> {
        match self {
            PccPricing::Scarcity => Some((default.retail + MAX_LEVEL * default.tick, default.retail)),
            PccPricing::Surplus => Some((default.feed_in.max(default.tick), 0)),
            PccPricing::Islanded => None,
        }
    }

    /// Name in outputs.
    pub fn name(self) -> &'static str {
        match self {
            PccPricing::Scarcity => "scarcity",
            PccPricing::Surplus => "surplus",
            PccPricing::Islanded => "islanded",
        }
    }
}

/// What flowed at one household in one minute, Wh (AC side).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MinuteFlows {
    /// PV the panels could give.
    pub pv_wh: f64,
    /// PV curtailed because of the export limit.
    pub curtailed_wh: f64,
    /// Demand.
    pub load_wh: f64,
    /// Demand shed because of the import limit (unserved).
    pub shed_wh: f64,
    /// Into the battery.
    pub charged_wh: f64,
    /// Out of the battery.
    pub discharged_wh: f64,
    /// Battery conversion losses.
    pub loss_wh: f64,
    /// From the grid connection.
    pub import_wh: f64,
    /// Into the grid connection.
    pub export_wh: f64,
}

impl MinuteFlows {
    /// Supply minus use of the minute (0 when it balances): PV − curtailed + import + discharged −
    /// (load − shed + export + charged).
    pub fn imbalance_wh(&self) -> f64 {
        (self.pv_wh - self.curtailed_wh + self.import_wh + self.discharged_wh)
            - (self.load_wh - self.shed_wh + self.export_wh + self.charged_wh)
    }
}

/// One household's part in a community slot.
pub struct Member<'a> {
    /// Its day.
    pub trace: &'a DayTrace,
    /// Its battery, if any (updated).
    pub battery: Option<&'a mut Battery>,
    /// Traded position to steer towards: sold − bought over the slot, Wh.
    pub target_export_wh: f64,
}

/// One household's minute with its connection's net export capped at `cap_export_wh` (or its net
/// import at `cap_import_wh`); None: as it would run alone.
fn run_minute(
    trace: &DayTrace,
    battery: Option<&mut Battery>,
    m: usize,
    per_minute_target: f64,
    cap: Option<f64>,
) -> MinuteFlows {
    let dt = 1.0 / 60.0;
    let pv = trace.pv_w[m] * dt;
    let load = trace.load_w[m] * dt;
    let natural = pv - load;
    // The net export the battery steers towards.
    let goal = cap.unwrap_or(per_minute_target);
    let mut f = MinuteFlows { pv_wh: pv, load_wh: load, ..Default::default() };
    let mut net = natural;
    if let Some(b) = battery {
        let flow = b.operate(goal - natural, dt);
        f.charged_wh = flow.charged_wh;
        f.discharged_wh = flow.discharged_wh;
        f.loss_wh = flow.loss_wh;
        net += flow.discharged_wh - flow.charged_wh;
    }
    if let Some(cap) = cap {
        if net > cap && cap >= 0.0 {
            f.curtailed_wh = (net - cap).min(pv);
            net -= f.curtailed_wh;
        } else if net < cap && cap <= 0.0 {
            f.shed_wh = (cap - net).min(load);
            net += f.shed_wh;
        }
    }
    if net >= 0.0 {
        f.export_wh = net;
    } else {
        f.import_wh = -net;
    }
    f
}

/// Runs day slot `s` minute by minute for a whole community coupled to the grid's PCC (a
/// [`PccLimits`]) or to its own assets; returns each member's physics (with its per-minute flows)
/// and the households' net import per minute, kW (the flow at the PCC when grid-connected).
pub fn step_community(
    members: &mut [Member<'_>],
    s: usize,
    coupling: &mut dyn Coupling,
) -> (Vec<SlotPhysics>, Vec<f64>) {
    let mut out: Vec<SlotPhysics> = members
        .iter()
        .map(|_| SlotPhysics {
            import_by_minute: Vec::with_capacity(SLOT_MINUTES),
            export_by_minute: Vec::with_capacity(SLOT_MINUTES),
            minutes: Vec::with_capacity(SLOT_MINUTES),
            ..Default::default()
        })
        .collect();
    let mut pcc_kw = Vec::with_capacity(SLOT_MINUTES);
    for m in s * SLOT_MINUTES..(s + 1) * SLOT_MINUTES {
        let before: Vec<Option<Battery>> = members.iter().map(|h| h.battery.as_deref().copied()).collect();
        let mut flows: Vec<MinuteFlows> = members
            .iter_mut()
            .map(|h| {
                let t = h.target_export_wh / SLOT_MINUTES as f64;
                run_minute(h.trace, h.battery.as_deref_mut(), m, t, None)
            })
            .collect();
        if let Some(caps) = caps(&flows, &coupling.limits(m)) {
            // Replay the minute of every household that is capped, from its battery as it was.
            for (j, h) in members.iter_mut().enumerate() {
                let Some(cap) = caps[j] else { continue };
                if let (Some(b), Some(b0)) = (h.battery.as_deref_mut(), before[j]) {
                    *b = b0;
                }
                let t = h.target_export_wh / SLOT_MINUTES as f64;
                flows[j] = run_minute(h.trace, h.battery.as_deref_mut(), m, t, Some(cap));
            }
        }
        let net_import: f64 = flows.iter().map(|f| f.import_wh - f.export_wh).sum();
        coupling.commit(m, net_import);
        pcc_kw.push(net_import * 60.0 / 1000.0);
        for (p, f) in out.iter_mut().zip(flows) {
            p.add_minute(f);
        }
    }
    for (p, h) in out.iter_mut().zip(members.iter()) {
        p.soc_end_wh = h.battery.as_deref().map_or(0.0, |b| b.soc_wh);
    }
    (out, pcc_kw)
}

/// Each household's cap on its net export this minute (Wh; negative: a floor on its import), or
/// None if the community's flow is within the limits.
fn caps(flows: &[MinuteFlows], limits: &PccLimits) -> Option<Vec<Option<f64>>> {
    let import: f64 = flows.iter().map(|f| f.import_wh).sum();
    let export: f64 = flows.iter().map(|f| f.export_wh).sum();
    let per_minute = |kw: f64| kw * 1000.0 / 60.0;
    if let Some(lim) = limits.export_kw.map(per_minute) {
        let excess = (export - import) - lim;
        if excess > 0.0 && export > 0.0 {
            return Some(
                flows
                    .iter()
                    .map(|f| (f.export_wh > 0.0).then(|| f.export_wh - excess * f.export_wh / export))
                    .collect(),
            );
        }
    }
    if let Some(lim) = limits.import_kw.map(per_minute) {
        let excess = (import - export) - lim;
        if excess > 0.0 && import > 0.0 {
            return Some(
                flows
                    .iter()
                    .map(|f| (f.import_wh > 0.0).then(|| -(f.import_wh - excess * f.import_wh / import)))
                    .collect(),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::household::Strategy;
    use crate::household::{generate, step_slot, DayTrace, Environment, Mix};

    fn community(n: usize) -> (Vec<crate::household::HouseholdSpec>, Vec<DayTrace>) {
        let cfg = crate::config::SimConfig::defaults();
        let specs = generate(&Mix {
            households: n,
            pv_share: 0.7,
            battery_share: 0.3,
            battery_strategy: Strategy::Ramp,
            seed: 3,
            lat_deg: cfg.location.lat_deg,
        });
        let env = Environment::new(cfg.date, cfg.utc_offset_secs, cfg.location, 0.1, 3);
        let traces = specs.iter().map(|h| DayTrace::simulate(h, &env, 3)).collect();
        (specs, traces)
    }

    fn run(limits: &PccLimits, s: usize, targets: f64) -> (Vec<SlotPhysics>, Vec<f64>) {
        let (specs, traces) = community(12);
        let mut batteries: Vec<Option<Battery>> =
            specs.iter().map(|h| h.battery.map(|b| Battery::new(b, h.initial_soc))).collect();
        let mut members: Vec<Member> = traces
            .iter()
            .zip(batteries.iter_mut())
            .map(|(t, b)| Member { trace: t, battery: b.as_mut(), target_export_wh: targets })
            .collect();
        step_community(&mut members, s, &mut limits.clone())
    }

    #[test]
    fn without_limits_each_household_runs_as_alone() {
        let (specs, traces) = community(6);
        let mut a: Vec<Option<Battery>> =
            specs.iter().map(|h| h.battery.map(|b| Battery::new(b, h.initial_soc))).collect();
        let mut b = a.clone();
        let mut members: Vec<Member> = traces
            .iter()
            .zip(a.iter_mut())
            .map(|(t, b)| Member { trace: t, battery: b.as_mut(), target_export_wh: 100.0 })
            .collect();
        let (together, _) = step_community(&mut members, 48, &mut PccLimits::default());
        for (j, t) in traces.iter().enumerate() {
            let alone = step_slot(t, b[j].as_mut(), 48, 100.0);
            assert_eq!(alone.import_wh, together[j].import_wh);
            assert_eq!(alone.export_wh, together[j].export_wh);
            assert_eq!(alone.soc_end_wh, together[j].soc_end_wh);
            assert_eq!(together[j].curtailed_wh + together[j].shed_wh, 0.0);
        }
    }

    #[test]
    fn export_over_the_limit_curtails_pv_and_the_flow_stays_at_the_limit() {
        let free = run(&PccLimits::default(), 50, 0.0);
        let peak = free.1.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(peak < -5.0, "midday: the community exports ({peak} kW)");
        let lim = -peak / 2.0;
        let (phys, pcc) = run(&PccLimits { import_kw: None, export_kw: Some(lim) }, 50, 0.0);
        assert!(pcc.iter().all(|kw| -kw <= lim + 1e-9), "{pcc:?}");
        let curtailed: f64 = phys.iter().map(|p| p.curtailed_wh).sum();
        assert!(curtailed > 0.0);
        for p in &phys {
            assert!(p.minutes.iter().all(|f| f.imbalance_wh().abs() < 1e-9));
            assert_eq!(p.shed_wh, 0.0);
        }
    }

    #[test]
    fn import_over_the_limit_sheds_load_and_the_flow_stays_at_the_limit() {
        // Evening, every household buying on top of its load: batteries empty first.
        let free = run(&PccLimits::default(), 80, -2000.0);
        let peak = free.1.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert!(peak > 2.0, "evening: the community imports ({peak} kW)");
        let lim = peak / 3.0;
        let (phys, pcc) = run(&PccLimits { import_kw: Some(lim), export_kw: None }, 80, -2000.0);
        assert!(pcc.iter().all(|kw| *kw <= lim + 1e-9), "{pcc:?}");
        let shed: f64 = phys.iter().map(|p| p.shed_wh).sum();
        assert!(shed > 0.0);
        for p in &phys {
            assert!(p.minutes.iter().all(|f| f.imbalance_wh().abs() < 1e-9));
            assert_eq!(p.curtailed_wh, 0.0);
        }
    }

    #[test]
    fn the_operator_prices_a_binding_limit() {
        let limits = PccLimits { import_kw: Some(10.0), export_kw: Some(20.0) };
        // 15 minutes: 2.5 kWh of import, 5 kWh of export fit.
        assert_eq!(PccPricing::decide(2_400.0, &limits, 0.25), None);
        assert_eq!(PccPricing::decide(2_600.0, &limits, 0.25), Some(PccPricing::Scarcity));
        assert_eq!(PccPricing::decide(-4_900.0, &limits, 0.25), None);
        assert_eq!(PccPricing::decide(-5_100.0, &limits, 0.25), Some(PccPricing::Surplus));
        assert_eq!(PccPricing::decide(1e9, &PccLimits::default(), 0.25), None);
        let milli = 1_000_000_000_000_000u128;
        let d = crate::market::Prices {
            feed_in: 80 * milli,
            retail: 300 * milli,
            tick: milli,
            short_premium: 50 * milli,
            long_penalty: 50 * milli,
        };
        let (r, f) = PccPricing::Scarcity.prices(&d).unwrap();
        assert_eq!((r, f), (555 * milli, 300 * milli));
        assert_eq!((r - f) / d.tick, MAX_LEVEL);
        assert_eq!(PccPricing::Surplus.prices(&d), Some((80 * milli, 0)));
        assert_eq!(PccPricing::Islanded.prices(&d), None, "the band is the registry's default");
        assert_eq!(island_band(&d), ((80 + 255) * milli, 80 * milli));
    }

    #[test]
    fn limits_must_be_sensible() {
        assert!(PccLimits { import_kw: Some(-1.0), export_kw: None }.validate().is_err());
        assert!(PccLimits { import_kw: None, export_kw: Some(f64::NAN) }.validate().is_err());
        assert!(PccLimits { import_kw: Some(0.0), export_kw: Some(30.0) }.validate().is_ok());
    }
}
