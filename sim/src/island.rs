//! Islanded operation: no grid; the community's own assets (a PV plant, a battery and a genset)
//! balance the households' net flow every minute.
//!
//! Dispatch each minute, for the households' net import `n` (negative: export) and the plant's
//! available PV `p`:
//! - `n + (−p) ≤ 0` (a surplus): the battery charges with it up to its limits; the rest is PV
//!   curtailed at the plant. The households' export is limited beforehand to what the battery can
//!   take (their PV is curtailed first, [`crate::pcc`]), so the plant's PV is always enough to
//!   curtail.
//! - a deficit: the plant, then the battery (down to its minimum state of charge), then the genset
//!   (between its minimum load and its rating; running at minimum load above the deficit, it dumps
//!   the excess into a dump load). The households' import is limited beforehand to what the three
//!   can give (load shed first, [`crate::pcc`]).
//!
//! The genset runs first what it sold in the market ([`Island::set_genset_schedule`]: at least
//! its minimum load while scheduled); a surplus then lowers it to its minimum load before its
//! output is dumped, and a deficit raises it up to its rating (starting it if it was off). The
//! battery is the grid-forming unit: it balances whatever the others leave, so its meter shows
//! the community's imbalance, settled at imbalance prices against its trades.
//!
//! The balance holds every minute: plant − curtailed + discharged + genset − dumped = `n` + charged.
//! Fuel follows the usual linear curve, litres/h = a·rating + b·P (HOMER's defaults a = 0.08145,
//! b = 0.246 l/kWh).

use crate::battery::{Battery, BatterySpec};
use crate::household::SLOT_MINUTES;
use crate::pcc::{Coupling, PccLimits};

/// The community's assets when islanded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IslandSpec {
    /// The community battery.
    pub battery: BatterySpec,
    /// Its state of charge at the start, fraction of capacity.
    pub initial_soc: f64,
    /// Genset rating, kW (0: none).
    pub genset_kw: f64,
    /// Genset minimum load, fraction of its rating.
    pub genset_min_load: f64,
    /// Fuel curve: litres per hour per kW of rating while running.
    pub fuel_a: f64,
    /// Fuel curve: litres per kWh produced.
    pub fuel_b: f64,
    /// Fuel price, credits per litre.
    pub fuel_price: f64,
    /// PV plant peak power, kW (0: none).
    pub plant_kwp: f64,
}

impl IslandSpec {
    /// The defaults of `--islanded`: a 60 kWh / 30 kW battery (92 % round trip, 10 % kept, half
    /// full at the start), a 20 kW genset (30 % minimum load) and a 30 kWp PV plant; fuel at 1.2
    /// credits per litre.
    pub fn defaults() -> Self {
        Self {
            battery: BatterySpec {
                capacity_wh: 60_000.0,
                max_charge_w: 30_000.0,
                max_discharge_w: 30_000.0,
                round_trip: 0.92,
                min_soc: 0.1,
            },
            initial_soc: 0.5,
            genset_kw: 20.0,
            genset_min_load: 0.3,
            fuel_a: 0.08145,
            fuel_b: 0.246,
            fuel_price: 1.2,
            plant_kwp: 30.0,
        }
    }

    /// Checks that the figures make sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        let b = &self.battery;
        let finite = [b.capacity_wh, b.max_charge_w, b.max_discharge_w, self.genset_kw, self.plant_kwp];
        if finite.iter().any(|v| !v.is_finite() || *v < 0.0) {
            anyhow::bail!("the islanded assets' sizes must be numbers ≥ 0");
        }
        if !(0.0..=1.0).contains(&self.genset_min_load) || !(0.5..=1.0).contains(&b.round_trip) {
            anyhow::bail!("the genset's minimum load must be 0–1 and the battery's round trip 0.5–1");
        }
        Ok(())
    }
}

/// One of the community's assets as a market participant (with its own account and meter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetKind {
    /// The PV plant: its meter exports what it gave.
    Plant,
    /// The community battery: its meter imports what it charged and exports what it discharged.
    Storage,
    /// The genset: its meter exports its output less what it dumped.
    Genset,
}

impl AssetKind {
    /// Name in outputs (and the member's id).
    pub fn name(self) -> &'static str {
        match self {
            AssetKind::Plant => "plant",
            AssetKind::Storage => "storage",
            AssetKind::Genset => "genset",
        }
    }

    /// The asset's rated power at its meter, W (the plant's peak, the battery's larger power
    /// limit, the genset's rating).
    pub fn rated_w(self, spec: &IslandSpec) -> f64 {
        match self {
            AssetKind::Plant => spec.plant_kwp * 1000.0,
            AssetKind::Storage => spec.battery.max_charge_w.max(spec.battery.max_discharge_w),
            AssetKind::Genset => spec.genset_kw * 1000.0,
        }
    }

    /// The assets `spec` has, in the order they join the market.
    pub fn present(spec: &IslandSpec) -> Vec<AssetKind> {
        let mut v = Vec::new();
        if spec.plant_kwp > 0.0 {
            v.push(AssetKind::Plant);
        }
        if spec.battery.capacity_wh > 0.0 {
            v.push(AssetKind::Storage);
        }
        if spec.genset_kw > 0.0 {
            v.push(AssetKind::Genset);
        }
        v
    }

    /// The asset's flows in one minute, as a meter and a power balance see them: its generation
    /// (PV or genset) as `pv_wh`, what it gave up (curtailed PV, dumped genset output) as
    /// `curtailed_wh`, the battery's charge and discharge, and the meter's import and export.
    pub fn flows(self, a: &AssetMinute) -> crate::pcc::MinuteFlows {
        use crate::pcc::MinuteFlows;
        match self {
            AssetKind::Plant => MinuteFlows {
                pv_wh: a.plant_wh,
                curtailed_wh: a.plant_curtailed_wh,
                export_wh: a.plant_wh - a.plant_curtailed_wh,
                ..Default::default()
            },
            AssetKind::Storage => MinuteFlows {
                charged_wh: a.charged_wh,
                discharged_wh: a.discharged_wh,
                loss_wh: a.loss_wh,
                import_wh: a.charged_wh,
                export_wh: a.discharged_wh,
                ..Default::default()
            },
            AssetKind::Genset => MinuteFlows {
                pv_wh: a.genset_wh,
                curtailed_wh: a.dumped_wh,
                export_wh: a.genset_wh - a.dumped_wh,
                ..Default::default()
            },
        }
    }
}

/// What the assets did in one minute, Wh (AC side).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct AssetMinute {
    /// PV the plant could give.
    pub plant_wh: f64,
    /// Of it, curtailed.
    pub plant_curtailed_wh: f64,
    /// Into the battery.
    pub charged_wh: f64,
    /// Out of the battery.
    pub discharged_wh: f64,
    /// Battery conversion losses.
    pub loss_wh: f64,
    /// Genset output.
    pub genset_wh: f64,
    /// Genset output dumped (running at minimum load above the deficit).
    pub dumped_wh: f64,
    /// Fuel burnt, litres.
    pub fuel_l: f64,
    /// The households' net import served (negative: their export absorbed).
    pub served_wh: f64,
    /// Battery state of charge after the minute, Wh.
    pub soc_wh: f64,
}

impl AssetMinute {
    /// Supply minus use (0 when it balances).
    pub fn imbalance_wh(&self) -> f64 {
        (self.plant_wh - self.plant_curtailed_wh + self.discharged_wh + self.genset_wh - self.dumped_wh)
            - (self.served_wh + self.charged_wh)
    }
}

/// The assets at run time; they record every minute they dispatched.
#[derive(Debug, Clone)]
pub struct Island {
    /// Their figures.
    pub spec: IslandSpec,
    /// The battery.
    pub battery: Battery,
    /// The plant's PV power per minute of the day, W.
    pub plant_w: Vec<f64>,
    /// Dispatch per minute of the day, as it happened.
    pub minutes: Vec<(usize, AssetMinute)>,
    /// The genset's scheduled output per minute of the day (what it sold), Wh.
    pub genset_schedule_wh: Vec<f64>,
    /// The plant's sold energy per minute of the day, Wh: its PV is curtailed below it only when
    /// nothing else can give way.
    pub plant_schedule_wh: Vec<f64>,
}

const DT: f64 = 1.0 / 60.0;

impl Island {
    /// The assets with the plant's PV per minute of the day (W).
    pub fn new(spec: IslandSpec, plant_w: Vec<f64>) -> Self {
        Self {
            battery: Battery::new(spec.battery, spec.initial_soc),
            spec,
            plant_w,
            minutes: Vec::new(),
            genset_schedule_wh: vec![0.0; 24 * 60],
            plant_schedule_wh: vec![0.0; 24 * 60],
        }
    }

    /// Records that the plant sold `sold_wh` in day slot `day_slot` (spread evenly): a surplus
    /// curtails the households' PV (their export is capped beforehand) rather than the plant's
    /// sold PV, as the market decided who delivers.
    pub fn set_plant_schedule(&mut self, day_slot: usize, sold_wh: f64) {
        let per_minute = sold_wh.max(0.0) / SLOT_MINUTES as f64;
        for m in day_slot * SLOT_MINUTES..(day_slot + 1) * SLOT_MINUTES {
            if let Some(s) = self.plant_schedule_wh.get_mut(m) {
                *s = per_minute;
            }
        }
    }

    /// The plant's sold PV this minute that it can actually give, Wh.
    fn plant_protected_wh(&self, m: usize) -> f64 {
        let plant = self.plant_w.get(m).copied().unwrap_or(0.0) * DT;
        self.plant_schedule_wh.get(m).copied().unwrap_or(0.0).min(plant)
    }

    /// Schedules the genset to deliver `sold_wh` evenly over day slot `day_slot` (what it sold in
    /// the market), running at least at its minimum load while scheduled.
    pub fn set_genset_schedule(&mut self, day_slot: usize, sold_wh: f64) {
        let per_minute = sold_wh.max(0.0) / SLOT_MINUTES as f64;
        let min = self.spec.genset_min_load * self.genset_max_wh();
        let wh = if per_minute > 0.0 { per_minute.max(min).min(self.genset_max_wh()) } else { 0.0 };
        for m in day_slot * SLOT_MINUTES..(day_slot + 1) * SLOT_MINUTES {
            if let Some(s) = self.genset_schedule_wh.get_mut(m) {
                *s = wh;
            }
        }
    }

    /// One asset's physics in day slot `day_slot`, from the minutes dispatched (`None` if the slot
    /// was not dispatched).
    pub fn asset_physics(&self, kind: AssetKind, day_slot: usize) -> Option<crate::household::SlotPhysics> {
        let own: Vec<&AssetMinute> =
            self.minutes.iter().filter(|(m, _)| m / SLOT_MINUTES == day_slot).map(|(_, a)| a).collect();
        let last = own.last()?;
        let mut p = crate::household::SlotPhysics {
            soc_end_wh: if kind == AssetKind::Storage { last.soc_wh } else { 0.0 },
            ..Default::default()
        };
        for a in own {
            p.add_minute(kind.flows(a));
        }
        Some(p)
    }

    fn genset_max_wh(&self) -> f64 {
        self.spec.genset_kw * 1000.0 * DT
    }

    /// Dispatches the assets for the households' net import `n` in minute `m`: the genset's
    /// schedule and the plant first, the battery balances the rest; a surplus the battery cannot
    /// take curtails the plant's PV beyond what it sold, then lowers the genset to its minimum load,
    /// then curtails the plant's sold PV, then is dumped; a deficit it cannot give raises the genset.
    fn dispatch(&mut self, m: usize, n: f64) -> AssetMinute {
        let plant = self.plant_w.get(m).copied().unwrap_or(0.0) * DT;
        let scheduled = self.genset_schedule_wh.get(m).copied().unwrap_or(0.0);
        let mut a = AssetMinute { plant_wh: plant, served_wh: n, genset_wh: scheduled, ..Default::default() };
        let deficit = n - plant - scheduled;
        let min = self.spec.genset_min_load * self.genset_max_wh();
        if deficit <= 0.0 {
            let f = self.battery.operate(deficit, DT);
            a.charged_wh = f.charged_wh;
            a.loss_wh = f.loss_wh;
            let mut rest = -deficit - f.charged_wh;
            let protected = self.plant_protected_wh(m);
            a.plant_curtailed_wh = rest.clamp(0.0, plant - protected);
            rest -= a.plant_curtailed_wh;
            if rest > 0.0 && scheduled > 0.0 {
                let lower = rest.min(scheduled - min).max(0.0);
                a.genset_wh -= lower;
                rest -= lower;
            }
            if rest > 0.0 {
                let below = rest.min(protected);
                a.plant_curtailed_wh += below;
                rest -= below;
            }
            a.dumped_wh = rest.clamp(0.0, a.genset_wh);
        } else {
            let f = self.battery.operate(deficit, DT);
            a.discharged_wh = f.discharged_wh;
            a.loss_wh = f.loss_wh;
            let rest = deficit - f.discharged_wh;
            if rest > 1e-9 && self.spec.genset_kw > 0.0 {
                let needed = scheduled + rest;
                a.genset_wh = needed.max(min).min(self.genset_max_wh());
                a.dumped_wh = (a.genset_wh - needed).max(0.0);
            }
        }
        if a.genset_wh > 0.0 {
            let kw = a.genset_wh / DT / 1000.0;
            a.fuel_l = (self.spec.fuel_a * self.spec.genset_kw + self.spec.fuel_b * kw) * DT;
        }
        a.soc_wh = self.battery.soc_wh;
        a
    }
}

impl Coupling for Island {
    /// The households may import what the plant, the battery and the genset can give, and export
    /// what the battery can take plus what the genset can lower to its minimum load, less the
    /// plant's sold PV (its PV beyond that is curtailed first).
    fn limits(&mut self, m: usize) -> PccLimits {
        let plant = self.plant_w.get(m).copied().unwrap_or(0.0) * DT;
        let import = plant + self.battery.discharge_room_wh(DT) + self.genset_max_wh();
        let scheduled = self.genset_schedule_wh.get(m).copied().unwrap_or(0.0);
        let lowerable = (scheduled - self.spec.genset_min_load * self.genset_max_wh()).max(0.0);
        let export = (self.battery.charge_room_wh(DT) + lowerable - self.plant_protected_wh(m)).max(0.0);
        let kw = |wh: f64| wh / DT / 1000.0;
        PccLimits { import_kw: Some(kw(import)), export_kw: Some(kw(export)) }
    }

    fn commit(&mut self, m: usize, net_import_wh: f64) {
        let a = self.dispatch(m, net_import_wh);
        self.minutes.push((m, a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn island(plant_kw: f64) -> Island {
        Island::new(IslandSpec::defaults(), vec![plant_kw * 1000.0; 1440])
    }

    #[test]
    fn a_surplus_charges_the_battery_then_curtails_the_plant() {
        let mut i = island(30.0);
        let soc0 = i.battery.soc_wh;
        i.commit(600, -100.0); // households export 6 kW, the plant gives 30 kW: 36 kW over a 30 kW battery
        let a = i.minutes[0].1;
        assert!((a.charged_wh - 500.0).abs() < 1e-9);
        assert!((a.plant_curtailed_wh - 100.0).abs() < 1e-9);
        assert!(a.imbalance_wh().abs() < 1e-9);
        assert!(i.battery.soc_wh > soc0);
        assert_eq!(a.genset_wh, 0.0);
    }

    #[test]
    fn a_deficit_uses_the_plant_then_the_battery_then_the_genset() {
        let mut i = island(0.0);
        i.battery.soc_wh = i.spec.battery.min_soc * i.spec.battery.capacity_wh; // empty
        i.commit(1200, 50.0); // 3 kW at night, empty battery: the genset at its 6 kW minimum
        let a = i.minutes[0].1;
        assert!((a.genset_wh - 100.0).abs() < 1e-9, "{a:?}");
        assert!((a.dumped_wh - 50.0).abs() < 1e-9);
        assert!(a.fuel_l > 0.0);
        assert!(a.imbalance_wh().abs() < 1e-9);
        let mut i = island(0.0);
        i.commit(1200, 200.0); // 12 kW from a half-full battery
        let a = i.minutes[0].1;
        assert!((a.discharged_wh - 200.0).abs() < 1e-9);
        assert_eq!(a.genset_wh, 0.0);
        // The households may import at most the battery's 30 kW and the genset's 20 kW at night.
        let l = i.limits(1200);
        assert!((l.import_kw.unwrap() - 50.0).abs() < 1e-6, "{l:?}");
    }

    #[test]
    fn the_genset_runs_what_it_sold_and_the_battery_balances_the_rest() {
        let mut i = island(0.0);
        i.set_genset_schedule(80, 3_000.0); // 12 kW over slot 80 (20:00)
        assert!((i.genset_schedule_wh[80 * 15] - 200.0).abs() < 1e-9);
        // Households draw 5 kW: the genset gives 12 kW, the battery takes the 7 kW left over.
        i.commit(80 * 15, 5_000.0 / 60.0);
        let a = i.minutes[0].1;
        assert!((a.genset_wh - 200.0).abs() < 1e-9 && a.dumped_wh == 0.0, "{a:?}");
        assert!((a.charged_wh - 7_000.0 / 60.0).abs() < 1e-9);
        assert!(a.imbalance_wh().abs() < 1e-9);
        // A small sale still runs it at its 6 kW minimum.
        i.set_genset_schedule(81, 100.0);
        assert!((i.genset_schedule_wh[81 * 15] - 100.0).abs() < 1e-9);
        // A full battery: a surplus lowers the genset to its minimum load, then dumps.
        let mut i = island(0.0);
        i.battery.soc_wh = i.spec.battery.capacity_wh;
        i.set_genset_schedule(80, 3_000.0);
        i.commit(80 * 15, 0.0);
        let a = i.minutes[0].1;
        assert!((a.genset_wh - 100.0).abs() < 1e-9, "lowered to 6 kW: {a:?}");
        assert!((a.dumped_wh - 100.0).abs() < 1e-9, "the minimum load dumped: {a:?}");
        assert!(a.imbalance_wh().abs() < 1e-9);
        // An empty battery: a deficit beyond the schedule raises the genset.
        let mut i = island(0.0);
        i.battery.soc_wh = i.spec.battery.min_soc * i.spec.battery.capacity_wh;
        i.set_genset_schedule(80, 1_500.0); // 6 kW
        i.commit(80 * 15, 250.0); // 15 kW
        let a = i.minutes[0].1;
        assert!((a.genset_wh - 250.0).abs() < 1e-9 && a.dumped_wh == 0.0, "{a:?}");
        assert!(a.imbalance_wh().abs() < 1e-9);
        // Each asset's meter sees its own part, and the assets' meters net out the households'.
        let flows: Vec<_> =
            [AssetKind::Plant, AssetKind::Storage, AssetKind::Genset].iter().map(|k| k.flows(&a)).collect();
        let net: f64 = flows.iter().map(|f| f.export_wh - f.import_wh).sum();
        assert!((net - 250.0).abs() < 1e-9);
        assert!(flows.iter().all(|f| f.imbalance_wh().abs() < 1e-9));
    }

    #[test]
    fn the_plants_sold_pv_is_curtailed_last() {
        // A full battery at noon, the plant gives 30 kW and sold 10 kW worth.
        let mut i = island(30.0);
        i.battery.soc_wh = i.spec.battery.capacity_wh;
        i.set_plant_schedule(48, 2_500.0);
        // The households may export nothing (no room, no genset to lower, the plant's sale first)...
        assert_eq!(i.limits(48 * 15).export_kw, Some(0.0));
        // ...and drawing 4 kW, they take the plant's sold 10 kW's part: the plant keeps 4 kW of it.
        i.commit(48 * 15, 4_000.0 / 60.0);
        let a = i.minutes[0].1;
        assert!((a.plant_curtailed_wh - 26_000.0 / 60.0).abs() < 1e-9, "{a:?}");
        assert!(a.imbalance_wh().abs() < 1e-9);
        // With room in the battery, the plant's unsold PV is curtailed before its sold PV.
        let mut i = island(30.0);
        i.battery.soc_wh = i.spec.battery.capacity_wh - 100.0; // about 6 kW of room this minute
        i.set_plant_schedule(48, 2_500.0);
        let room = i.battery.charge_room_wh(1.0 / 60.0);
        i.commit(48 * 15, 0.0);
        let a = i.minutes[0].1;
        assert!((a.plant_wh - a.plant_curtailed_wh - room).abs() < 1e-9, "{a:?}");
        assert!(a.plant_wh - a.plant_curtailed_wh <= 10_000.0 / 60.0 + 1e-9);
        assert!(a.imbalance_wh().abs() < 1e-9 && a.dumped_wh == 0.0);
    }
}
