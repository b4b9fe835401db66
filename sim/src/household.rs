//! Households: what they own (PV, battery, meter), their exogenous day (PV and load per minute) and
//! the physics of one delivery slot (battery dispatch and the meter's import/export).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::battery::{Battery, BatterySpec};
use crate::calendar::Date;
use crate::load::{LoadModel, StandardLoadProfile};
use crate::rng::uniform;
use crate::solar::{
    ambient_temperature, clear_sky, cloudy, sun_position, CloudProcess, Irradiance, Location, PvSystem,
    SunPosition,
};

/// Minutes in a delivery slot of the simulated day.
pub const SLOT_MINUTES: usize = 15;
/// Slots in a simulated day.
pub const SLOTS_PER_DAY: usize = 96;

/// The payload format a household's meter publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterFormat {
    /// The project's own JSON (`json`).
    Json,
    /// Tasmota `ENERGY` telemetry (`tasmota`).
    Tasmota,
    /// Tasmota SML reader telemetry (`tasmota-sml`).
    TasmotaSml,
    /// Shelly Pro 3EM `NotifyStatus` with `emdata:0` (`shelly`).
    Shelly,
}

impl MeterFormat {
    /// All formats, in the order households are given them.
    pub const ALL: [MeterFormat; 4] =
        [MeterFormat::Json, MeterFormat::Tasmota, MeterFormat::TasmotaSml, MeterFormat::Shelly];

    /// The bridge's name of the format (`meters.<id>.format`).
    pub fn bridge_name(self) -> &'static str {
        match self {
            MeterFormat::Json => "json",
            MeterFormat::Tasmota => "tasmota",
            MeterFormat::TasmotaSml => "tasmota-sml",
            MeterFormat::Shelly => "shelly",
        }
    }

    /// Parses a bridge format name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.bridge_name() == s)
    }
}

/// How a household's agent trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Trades its forecast net position with a GSY-e-style price ramp between the feed-in tariff and
    /// the retail price; a battery, if any, is used for self-consumption.
    Ramp,
    /// Battery arbitrage: buys to charge when the last clearing price was low, sells stored energy
    /// beyond its own needs when it was high; otherwise like `Ramp`.
    Arbitrage,
}

impl Strategy {
    /// Name in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Ramp => "ramp",
            Strategy::Arbitrage => "arbitrage",
        }
    }
}

/// Where on the feed-in … retail range an agent's prices start and end, as fractions of the spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RampParams {
    /// First bid price.
    pub buy_initial: f64,
    /// Last bid price.
    pub buy_final: f64,
    /// First ask price.
    pub sell_initial: f64,
    /// Last ask price.
    pub sell_final: f64,
}

impl RampParams {
    /// GSY-e's full ramp (bids from feed-in up to retail, asks from retail down to feed-in) with a
    /// little per-household spread so that not everyone sits on the same levels.
    pub fn random<R: Rng>(rng: &mut R) -> Self {
        Self {
            buy_initial: uniform(rng, 0.0, 0.1),
            buy_final: uniform(rng, 0.9, 1.0),
            sell_initial: uniform(rng, 0.9, 1.0),
            sell_final: uniform(rng, 0.0, 0.1),
        }
    }
}

/// A household: its equipment and its agent's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdSpec {
    /// Index (0-based) in the community.
    pub index: usize,
    /// Name, e.g. `h007`.
    pub id: String,
    /// Consumption model.
    pub load: LoadModel,
    /// Rooftop PV, if any.
    pub pv: Option<PvSystem>,
    /// Home battery, if any.
    pub battery: Option<BatterySpec>,
    /// State of charge at midnight, fraction of capacity.
    pub initial_soc: f64,
    /// The meter's payload format.
    pub meter_format: MeterFormat,
    /// The agent's strategy.
    pub strategy: Strategy,
    /// The agent's price ramp.
    pub ramp: RampParams,
}

impl HouseholdSpec {
    /// Prosumers (with PV or a battery) may sell; consumers only buy.
    pub fn is_prosumer(&self) -> bool {
        self.pv.is_some() || self.battery.is_some()
    }

    /// `consumer` or `prosumer`.
    pub fn role_name(&self) -> &'static str {
        if self.is_prosumer() {
            "prosumer"
        } else {
            "consumer"
        }
    }
}

/// How to compose the community.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Number of households.
    pub households: usize,
    /// Share with PV (0–1).
    pub pv_share: f64,
    /// Share with PV *and* a battery (0–1, at most `pv_share`).
    pub battery_share: f64,
    /// Strategy of battery households (others always use the ramp).
    pub battery_strategy: Strategy,
    /// Random seed.
    pub seed: u64,
    /// Northern hemisphere panels face south, southern ones north.
    pub lat_deg: f64,
}

/// Draws the community: `round(n·pv_share)` PV households, of which `round(n·battery_share)` also
/// have a battery, at random positions; meter formats rotate through JSON, Tasmota, Tasmota SML and
/// Shelly.
pub fn generate(mix: &Mix) -> Vec<HouseholdSpec> {
    let n = mix.households;
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix.seed);
    let n_pv = ((n as f64 * mix.pv_share.clamp(0.0, 1.0)).round() as usize).min(n);
    let n_bat = ((n as f64 * mix.battery_share.clamp(0.0, 1.0)).round() as usize).min(n_pv);
    let mut kinds: Vec<u8> = (0..n)
        .map(|i| {
            if i < n_bat {
                2
            } else if i < n_pv {
                1
            } else {
                0
            }
        })
        .collect();
    kinds.shuffle(&mut rng);
    let facing = if mix.lat_deg >= 0.0 { 180.0 } else { 0.0 };
    (0..n)
        .map(|i| {
            let load = LoadModel::random(&mut rng);
            let pv = (kinds[i] >= 1).then(|| {
                PvSystem::new(
                    (uniform(&mut rng, 3.0, 10.0) * 10.0).round() / 10.0,
                    uniform(&mut rng, 20.0, 40.0).round(),
                    (facing + uniform(&mut rng, -45.0, 45.0)).round(),
                )
            });
            let battery = (kinds[i] == 2).then(|| {
                let cap = [5_000.0, 7_500.0, 10_000.0, 13_500.0][rng.gen_range(0..4)];
                let power = if cap >= 10_000.0 { 5_000.0 } else { 3_300.0 };
                BatterySpec {
                    capacity_wh: cap,
                    max_charge_w: power,
                    max_discharge_w: power,
                    round_trip: uniform(&mut rng, 0.88, 0.94),
                    min_soc: 0.1,
                }
            });
            HouseholdSpec {
                index: i,
                id: format!("h{:03}", i + 1),
                load,
                pv,
                battery,
                initial_soc: uniform(&mut rng, 0.2, 0.5),
                meter_format: MeterFormat::ALL[i % MeterFormat::ALL.len()],
                strategy: if battery.is_some() { mix.battery_strategy } else { Strategy::Ramp },
                ramp: RampParams::random(&mut rng),
            }
        })
        .collect()
}

/// Sun, clear-sky irradiance, clouds and temperature for every minute of the simulated day.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The day.
    pub date: Date,
    /// Local time zone, seconds east of UTC.
    pub utc_offset_secs: i64,
    /// The site.
    pub location: Location,
    /// The generated standard load profile.
    pub slp: StandardLoadProfile,
    /// Sun position per minute of the local day.
    pub sun: Vec<SunPosition>,
    /// Clear-sky irradiance per minute.
    pub clear: Vec<Irradiance>,
    /// Cloud cover per minute (0–1).
    pub cloud_cover: Vec<f64>,
    /// Ambient temperature per minute, °C.
    pub temperature: Vec<f64>,
}

impl Environment {
    /// The day `date` at `location`, with a cloud cover process around `cloudiness` (0 clear … 1
    /// overcast) stepped every 5 minutes and interpolated per minute.
    pub fn new(date: Date, utc_offset_secs: i64, location: Location, cloudiness: f64, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xC10D);
        let midnight = date.local_midnight_unix(utc_offset_secs) as f64;
        let doy = date.day_of_year();
        let mut sun = Vec::with_capacity(1440);
        let mut clear = Vec::with_capacity(1440);
        let mut temperature = Vec::with_capacity(1440);
        for m in 0..1440 {
            // Mid-minute.
            let s = sun_position(midnight + m as f64 * 60.0 + 30.0, location.lat_deg, location.lon_deg);
            clear.push(clear_sky(s.zenith_deg, doy, location.altitude_m, location.linke_turbidity));
            sun.push(s);
            temperature.push(ambient_temperature(doy, (m as f64 + 0.5) / 60.0, location.lat_deg));
        }
        let mut process = CloudProcess::new(cloudiness);
        // Burn in so the first value is a draw from the process, not its mean.
        for _ in 0..50 {
            process.step(&mut rng);
        }
        let knots: Vec<f64> = (0..=1440 / 5).map(|_| process.step(&mut rng)).collect();
        let cloud_cover = (0..1440)
            .map(|m| {
                let (k, f) = (m / 5, (m % 5) as f64 / 5.0);
                knots[k] * (1.0 - f) + knots[k + 1] * f
            })
            .collect();
        Self {
            date,
            utc_offset_secs,
            location,
            slp: StandardLoadProfile::new(date.year),
            sun,
            clear,
            cloud_cover,
            temperature,
        }
    }

    /// AC power (W) of `pv` at `minute`, under clouds (`clouds = true`) or a clear sky.
    pub fn pv_w(&self, pv: &PvSystem, minute: usize, clouds: bool) -> f64 {
        let irr = if clouds {
            cloudy(self.clear[minute], self.sun[minute].zenith_deg, self.cloud_cover[minute])
        } else {
            self.clear[minute]
        };
        pv.ac_power_w(pv.plane_of_array(self.sun[minute], irr), self.temperature[minute])
    }
}

/// A household's exogenous day: minute powers that do not depend on the market.
#[derive(Debug, Clone)]
pub struct DayTrace {
    /// Actual PV power per minute, W.
    pub pv_w: Vec<f64>,
    /// Actual load per minute, W.
    pub load_w: Vec<f64>,
    /// PV energy per slot under a clear sky, Wh (what the agent scales by its cloud estimate).
    pub pv_clear_wh: Vec<f64>,
    /// Expected load per slot (the profile, no noise), Wh (the agent's load forecast).
    pub load_expected_wh: Vec<f64>,
}

impl DayTrace {
    /// Simulates `h`'s day in `env`.
    pub fn simulate(h: &HouseholdSpec, env: &Environment, seed: u64) -> Self {
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ h.index as u64);
        let load_w = h.load.simulate_day(&env.slp, env.date, &mut rng);
        let (pv_w, pv_clear_wh) = match &h.pv {
            Some(pv) => {
                let actual: Vec<f64> = (0..1440).map(|m| env.pv_w(pv, m, true)).collect();
                let clear: Vec<f64> = (0..SLOTS_PER_DAY)
                    .map(|s| {
                        (s * SLOT_MINUTES..(s + 1) * SLOT_MINUTES)
                            .map(|m| env.pv_w(pv, m, false))
                            .sum::<f64>()
                            / 60.0
                    })
                    .collect();
                (actual, clear)
            }
            None => (vec![0.0; 1440], vec![0.0; SLOTS_PER_DAY]),
        };
        let load_expected_wh = (0..SLOTS_PER_DAY)
            .map(|s| {
                (s * SLOT_MINUTES..(s + 1) * SLOT_MINUTES)
                    .map(|m| h.load.expected_w(&env.slp, env.date, m))
                    .sum::<f64>()
                    / 60.0
            })
            .collect();
        Self { pv_w, load_w, pv_clear_wh, load_expected_wh }
    }

    /// Actual PV energy of day slot `s`, Wh.
    pub fn pv_wh(&self, s: usize) -> f64 {
        self.pv_w[s * SLOT_MINUTES..(s + 1) * SLOT_MINUTES].iter().sum::<f64>() / 60.0
    }

    /// Actual load of day slot `s`, Wh.
    pub fn load_wh(&self, s: usize) -> f64 {
        self.load_w[s * SLOT_MINUTES..(s + 1) * SLOT_MINUTES].iter().sum::<f64>() / 60.0
    }
}

/// The physics of one household in one slot (Wh unless stated).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlotPhysics {
    /// PV generation.
    pub pv_wh: f64,
    /// Consumption.
    pub load_wh: f64,
    /// Energy drawn from the grid connection (meter import register).
    pub import_wh: f64,
    /// Energy fed into the grid connection (meter export register).
    pub export_wh: f64,
    /// Energy into the battery (AC side).
    pub charged_wh: f64,
    /// Energy out of the battery (AC side).
    pub discharged_wh: f64,
    /// Battery conversion losses.
    pub battery_loss_wh: f64,
    /// State of charge at the end of the slot.
    pub soc_end_wh: f64,
    /// Cumulative import after each minute of the slot (15 values), relative to the slot start.
    pub import_by_minute: Vec<f64>,
    /// Cumulative export after each minute of the slot.
    pub export_by_minute: Vec<f64>,
    /// PV curtailed because of the PCC's export limit (not in `pv_wh`, which is the PV used).
    pub curtailed_wh: f64,
    /// Load shed because of the PCC's import limit: unserved energy (not in `load_wh`, which is
    /// the load served).
    pub shed_wh: f64,
    /// What flowed in each minute of the slot.
    pub minutes: Vec<crate::pcc::MinuteFlows>,
}

impl SlotPhysics {
    /// Adds one minute's flows: the totals, the cumulative meter registers and the minute itself.
    pub fn add_minute(&mut self, f: crate::pcc::MinuteFlows) {
        self.pv_wh += f.pv_wh - f.curtailed_wh;
        self.curtailed_wh += f.curtailed_wh;
        self.load_wh += f.load_wh - f.shed_wh;
        self.shed_wh += f.shed_wh;
        self.charged_wh += f.charged_wh;
        self.discharged_wh += f.discharged_wh;
        self.battery_loss_wh += f.loss_wh;
        self.import_wh += f.import_wh;
        self.export_wh += f.export_wh;
        self.import_by_minute.push(self.import_wh);
        self.export_by_minute.push(self.export_wh);
        self.minutes.push(f);
    }
}

/// Runs day slot `s` minute by minute. The battery (if any) steers the connection towards exporting
/// `target_export_wh` over the slot (sold minus bought energy; 0 = plain self-consumption), within
/// its limits; whatever it cannot balance flows through the meter.
pub fn step_slot(
    trace: &DayTrace,
    battery: Option<&mut Battery>,
    s: usize,
    target_export_wh: f64,
) -> SlotPhysics {
    let mut alone = [crate::pcc::Member { trace, battery, target_export_wh }];
    let (mut phys, _) = crate::pcc::step_community(&mut alone, s, &mut crate::pcc::PccLimits::default());
    phys.pop().expect("one household")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        let loc = Location { lat_deg: 48.14, lon_deg: 11.58, altitude_m: 520.0, linke_turbidity: 3.5 };
        Environment::new(Date::parse("2026-06-21").unwrap(), 7200, loc, 0.3, 1)
    }

    #[test]
    fn community_mix() {
        let mix = Mix {
            households: 20,
            pv_share: 0.5,
            battery_share: 0.2,
            battery_strategy: Strategy::Arbitrage,
            seed: 5,
            lat_deg: 48.0,
        };
        let hs = generate(&mix);
        assert_eq!(hs.len(), 20);
        assert_eq!(hs.iter().filter(|h| h.pv.is_some()).count(), 10);
        assert_eq!(hs.iter().filter(|h| h.battery.is_some()).count(), 4);
        assert!(hs
            .iter()
            .filter(|h| h.battery.is_some())
            .all(|h| h.pv.is_some() && h.strategy == Strategy::Arbitrage));
        assert_eq!(hs[5].meter_format, MeterFormat::Tasmota);
        assert_eq!(generate(&mix), hs, "deterministic for a seed");
        assert!(hs.iter().filter_map(|h| h.pv).all(|p| (135.0..=225.0).contains(&p.azimuth_deg)));
    }

    #[test]
    fn a_summer_day_of_a_pv_household() {
        let env = env();
        let mut h = generate(&Mix {
            households: 1,
            pv_share: 1.0,
            battery_share: 0.0,
            battery_strategy: Strategy::Ramp,
            seed: 1,
            lat_deg: 48.0,
        })
        .remove(0);
        h.pv = Some(PvSystem::new(5.0, 30.0, 180.0));
        let t = DayTrace::simulate(&h, &env, 9);
        let pv_day: f64 = (0..96).map(|s| t.pv_wh(s)).sum();
        let clear_day: f64 = t.pv_clear_wh.iter().sum();
        // 5 kWp in Munich at midsummer: about 30–38 kWh on a clear day.
        assert!(clear_day > 28_000.0 && clear_day < 40_000.0, "{clear_day}");
        assert!(pv_day < clear_day && pv_day > 0.4 * clear_day, "{pv_day} vs {clear_day}");
        assert_eq!(t.pv_wh(4), 0.0, "no sun at 01:00 local");
        let peak = (0..96).max_by(|a, b| t.pv_clear_wh[*a].total_cmp(&t.pv_clear_wh[*b])).unwrap();
        assert!((50..=56).contains(&peak), "clear-sky peak at slot {peak} (13:15 local is 53)");
    }

    #[test]
    fn slot_physics_conserves_energy() {
        let env = env();
        let mut h = generate(&Mix {
            households: 1,
            pv_share: 1.0,
            battery_share: 1.0,
            battery_strategy: Strategy::Ramp,
            seed: 2,
            lat_deg: 48.0,
        })
        .remove(0);
        h.pv = Some(PvSystem::new(6.0, 30.0, 180.0));
        let t = DayTrace::simulate(&h, &env, 4);
        let mut b = Battery::new(h.battery.unwrap(), 0.3);
        let soc0 = b.soc_wh;
        let mut total = SlotPhysics::default();
        for s in 0..96 {
            let target = if s == 60 { 500.0 } else { 0.0 };
            let p = step_slot(&t, Some(&mut b), s, target);
            assert_eq!(p.import_by_minute.len(), 15);
            assert!((p.import_by_minute[14] - p.import_wh).abs() < 1e-9);
            total.pv_wh += p.pv_wh;
            total.load_wh += p.load_wh;
            total.import_wh += p.import_wh;
            total.export_wh += p.export_wh;
            total.battery_loss_wh += p.battery_loss_wh;
        }
        // PV + import = load + export + Δstored + losses.
        let lhs = total.pv_wh + total.import_wh;
        let rhs = total.load_wh + total.export_wh + (b.soc_wh - soc0) + total.battery_loss_wh;
        assert!((lhs - rhs).abs() < 1e-6, "{lhs} vs {rhs}");
        // A battery for self-consumption imports less than no battery.
        let none: f64 = (0..96).map(|s| step_slot(&t, None, s, 0.0).import_wh).sum();
        assert!(total.import_wh < none);
    }
}
