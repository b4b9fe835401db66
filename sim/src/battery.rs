//! A home battery: usable capacity, charge and discharge power limits, round-trip efficiency split
//! evenly between charging and discharging, and a minimum state of charge.

/// Battery parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatterySpec {
    /// Capacity, Wh.
    pub capacity_wh: f64,
    /// Largest charging power at the AC side, W.
    pub max_charge_w: f64,
    /// Largest discharging power at the AC side, W.
    pub max_discharge_w: f64,
    /// Round-trip efficiency (AC to AC), e.g. 0.9.
    pub round_trip: f64,
    /// State of charge that is never used, as a fraction of capacity.
    pub min_soc: f64,
}

impl BatterySpec {
    /// One-way efficiency (√ of the round trip).
    pub fn one_way(&self) -> f64 {
        self.round_trip.sqrt()
    }
}

/// A battery with its state of charge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Battery {
    /// Parameters.
    pub spec: BatterySpec,
    /// Stored energy, Wh (between `min_soc·capacity` and `capacity`).
    pub soc_wh: f64,
}

/// What one step of battery operation did (all at the AC side, Wh).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BatteryFlow {
    /// Energy taken in.
    pub charged_wh: f64,
    /// Energy given out.
    pub discharged_wh: f64,
    /// Conversion losses.
    pub loss_wh: f64,
}

impl Battery {
    /// A battery at `soc_frac` of its capacity (clamped to the usable range).
    pub fn new(spec: BatterySpec, soc_frac: f64) -> Self {
        let soc = (soc_frac * spec.capacity_wh).clamp(spec.min_soc * spec.capacity_wh, spec.capacity_wh);
        Self { spec, soc_wh: soc }
    }

    /// Energy (Wh, AC side) the battery could still absorb within `hours`.
    pub fn charge_room_wh(&self, hours: f64) -> f64 {
        let by_power = self.spec.max_charge_w * hours;
        let by_energy = (self.spec.capacity_wh - self.soc_wh).max(0.0) / self.spec.one_way();
        by_power.min(by_energy)
    }

    /// Energy (Wh, AC side) the battery could still deliver within `hours`.
    pub fn discharge_room_wh(&self, hours: f64) -> f64 {
        let by_power = self.spec.max_discharge_w * hours;
        let usable = (self.soc_wh - self.spec.min_soc * self.spec.capacity_wh).max(0.0);
        by_power.min(usable * self.spec.one_way())
    }

    /// Moves `ac_wh` through the battery during `hours`: positive discharges (delivers up to that
    /// much), negative charges (absorbs up to that much). Returns what actually flowed.
    pub fn operate(&mut self, ac_wh: f64, hours: f64) -> BatteryFlow {
        let eta = self.spec.one_way();
        if ac_wh > 0.0 {
            let out = ac_wh.min(self.discharge_room_wh(hours));
            let drawn = out / eta;
            self.soc_wh -= drawn;
            BatteryFlow { charged_wh: 0.0, discharged_wh: out, loss_wh: drawn - out }
        } else if ac_wh < 0.0 {
            let taken = (-ac_wh).min(self.charge_room_wh(hours));
            let stored = taken * eta;
            self.soc_wh = (self.soc_wh + stored).min(self.spec.capacity_wh);
            BatteryFlow { charged_wh: taken, discharged_wh: 0.0, loss_wh: taken - stored }
        } else {
            BatteryFlow::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BatterySpec {
        BatterySpec {
            capacity_wh: 10_000.0,
            max_charge_w: 4_000.0,
            max_discharge_w: 5_000.0,
            round_trip: 0.81,
            min_soc: 0.1,
        }
    }

    #[test]
    fn power_and_energy_limits() {
        let mut b = Battery::new(spec(), 0.5);
        // 15 minutes at 4 kW = 1 kWh at most.
        let f = b.operate(-3_000.0, 0.25);
        assert!((f.charged_wh - 1_000.0).abs() < 1e-9);
        assert!((b.soc_wh - 5_900.0).abs() < 1e-9);
        assert!((f.loss_wh - 100.0).abs() < 1e-9);
        // Discharging stops at the minimum state of charge.
        let mut b = Battery::new(spec(), 0.12);
        let f = b.operate(5_000.0, 1.0);
        assert!((b.soc_wh - 1_000.0).abs() < 1e-9);
        assert!((f.discharged_wh - 200.0 * 0.9).abs() < 1e-9);
        // Charging stops at full.
        let mut b = Battery::new(spec(), 0.99);
        let f = b.operate(-4_000.0, 1.0);
        assert!((b.soc_wh - 10_000.0).abs() < 1e-9);
        assert!((f.charged_wh - 100.0 / 0.9).abs() < 1e-9);
    }

    #[test]
    fn round_trip_efficiency() {
        let mut b = Battery::new(spec(), 0.1);
        let c = b.operate(-1_000.0, 1.0);
        let d = b.operate(10_000.0, 1.0);
        assert!((d.discharged_wh / c.charged_wh - 0.81).abs() < 1e-9);
        assert!((c.loss_wh + d.loss_wh - 190.0).abs() < 1e-9);
    }
}
