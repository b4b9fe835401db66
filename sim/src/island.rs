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
//! The balance holds every minute: plant − curtailed + discharged + genset − dumped = `n` + charged.
//! Fuel follows the usual linear curve, litres/h = a·rating + b·P (HOMER's defaults a = 0.08145,
//! b = 0.246 l/kWh).

use crate::battery::{Battery, BatterySpec};
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
}

const DT: f64 = 1.0 / 60.0;

impl Island {
    /// The assets with the plant's PV per minute of the day (W).
    pub fn new(spec: IslandSpec, plant_w: Vec<f64>) -> Self {
        Self { battery: Battery::new(spec.battery, spec.initial_soc), spec, plant_w, minutes: Vec::new() }
    }

    fn genset_max_wh(&self) -> f64 {
        self.spec.genset_kw * 1000.0 * DT
    }

    /// Dispatches the assets for the households' net import `n` in minute `m`.
    fn dispatch(&mut self, m: usize, n: f64) -> AssetMinute {
        let plant = self.plant_w.get(m).copied().unwrap_or(0.0) * DT;
        let mut a = AssetMinute { plant_wh: plant, served_wh: n, ..Default::default() };
        let deficit = n - plant;
        if deficit <= 0.0 {
            let f = self.battery.operate(deficit, DT);
            a.charged_wh = f.charged_wh;
            a.loss_wh = f.loss_wh;
            a.plant_curtailed_wh = (-deficit - f.charged_wh).clamp(0.0, plant);
        } else {
            let f = self.battery.operate(deficit, DT);
            a.discharged_wh = f.discharged_wh;
            a.loss_wh = f.loss_wh;
            let rest = deficit - f.discharged_wh;
            if rest > 1e-9 && self.spec.genset_kw > 0.0 {
                let min = self.spec.genset_min_load * self.genset_max_wh();
                a.genset_wh = rest.max(min).min(self.genset_max_wh());
                a.dumped_wh = (a.genset_wh - rest).max(0.0);
                let kw = a.genset_wh / DT / 1000.0;
                a.fuel_l = (self.spec.fuel_a * self.spec.genset_kw + self.spec.fuel_b * kw) * DT;
            }
        }
        a.soc_wh = self.battery.soc_wh;
        a
    }
}

impl Coupling for Island {
    /// The households may import what the plant, the battery and the genset can give, and export
    /// what the battery can take beyond the plant's own PV (which is curtailed first).
    fn limits(&mut self, m: usize) -> PccLimits {
        let plant = self.plant_w.get(m).copied().unwrap_or(0.0) * DT;
        let import = plant + self.battery.discharge_room_wh(DT) + self.genset_max_wh();
        let export = self.battery.charge_room_wh(DT);
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
}
