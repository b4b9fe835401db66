//! The simulation's settings (filled from the command line, see `main.rs`, or by tests).

use std::path::PathBuf;

use crate::agent::AgentParams;
use crate::calendar::Date;
use crate::household::Strategy;
use crate::island::IslandSpec;
use crate::lab::LabConfig;
use crate::pcc::PccLimits;
use crate::solar::Location;

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of simulated households (ignored with a lab configuration).
    pub households: usize,
    /// First day slot to simulate (0 = 00:00–00:15).
    pub first_slot: usize,
    /// Number of day slots to simulate.
    pub slots: usize,
    /// Wall-clock length of a slot, seconds (≥ 5).
    pub slot_seconds: u32,
    /// Gate closure, seconds before a slot starts.
    pub gate_closure: u32,
    /// Grace period, seconds after a slot ends before it may be settled.
    pub grace_period: u32,
    /// Order rounds per slot along the price ramp.
    pub ramp_rounds: usize,
    /// Simulated seconds between two messages of a meter.
    pub telemetry_seconds: u32,
    /// The simulated day.
    pub date: Date,
    /// Local time zone, seconds east of UTC.
    pub utc_offset_secs: i64,
    /// The site.
    pub location: Location,
    /// Mean cloud cover of the day, 0–1.
    pub cloudiness: f64,
    /// Random seed.
    pub seed: u64,
    /// Share of households with PV.
    pub pv_share: f64,
    /// Share of households with PV and a battery.
    pub battery_share: f64,
    /// Strategy of battery households.
    pub battery_strategy: Strategy,
    /// Credits deposited for each household.
    pub deposit_credits: u64,
    /// Agent settings.
    pub agent: AgentParams,
    /// External broker (`mqtt://host:port`); None = embedded rumqttd.
    pub broker: Option<String>,
    /// Broker user name.
    pub broker_user: Option<String>,
    /// Broker password.
    pub broker_password: Option<String>,
    /// Output directory.
    pub out: PathBuf,
    /// Keep the chain's data directory in `out/chain`.
    pub keep_chain: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Real meters instead of simulated ones (needs `lab`).
    pub lab: Option<LabConfig>,
    /// Port of the dev chain's JSON-RPC and trading dApp on 127.0.0.1; None, or the port taken:
    /// a free port.
    pub rpc_port: Option<u16>,
    /// After the day, keep the dev chain (JSON-RPC and dApp) running until interrupted.
    pub stay: bool,
    /// Import and export limits of the community's connection to the grid (point of common
    /// coupling); none by default (the infinite bus).
    pub pcc: PccLimits,
    /// Islanded: no grid, the community's own assets balance it (None: grid-connected).
    pub islanded: Option<IslandSpec>,
    /// Islanded: the value of lost load, credits/kWh, the cap of the price band (None: the most
    /// 255 levels reach at the 0.001 tick, 0.335).
    pub voll: Option<f64>,
}

impl SimConfig {
    /// The defaults of `p2pe-sim` without arguments: 20 households, a whole day of 5-second slots
    /// on the June solstice in Munich.
    pub fn defaults() -> Self {
        Self {
            households: 20,
            first_slot: 0,
            slots: 96,
            slot_seconds: 5,
            gate_closure: 1,
            grace_period: 5,
            ramp_rounds: 3,
            telemetry_seconds: 300,
            date: Date::parse("2026-06-21").expect("date"),
            utc_offset_secs: 7200,
            location: Location { lat_deg: 48.14, lon_deg: 11.58, altitude_m: 520.0, linke_turbidity: 3.5 },
            cloudiness: 0.3,
            seed: 42,
            pv_share: 0.5,
            battery_share: 0.2,
            battery_strategy: Strategy::Arbitrage,
            deposit_credits: 100,
            agent: AgentParams::default(),
            broker: None,
            broker_user: None,
            broker_password: None,
            out: PathBuf::from("p2pe-sim-out"),
            keep_chain: false,
            quiet: false,
            lab: None,
            rpc_port: None,
            stay: false,
            pcc: PccLimits::default(),
            islanded: None,
            voll: None,
        }
    }

    /// The market's price tick for this run, thousandths of a credit per kWh: 1, or islanded with
    /// a value of lost load beyond 0.335 the finest tick that divides the spread between the
    /// default retail and feed-in prices (the registry's rule) and reaches the cap from the 0.08
    /// floor exactly in at most 255 levels.
    pub fn price_tick_milli(&self) -> anyhow::Result<u64> {
        let Some(voll) = self.voll.filter(|_| self.islanded.is_some()) else { return Ok(1) };
        let milli = (voll * 1000.0).round();
        if !voll.is_finite() || (voll * 1000.0 - milli).abs() > 1e-6 || milli <= FLOOR_MILLI as f64 {
            anyhow::bail!(
                "--voll {voll} must be a price in credits/kWh above the 0.08 floor, in thousandths"
            );
        }
        let span = milli as u64 - FLOOR_MILLI;
        const SPREAD_MILLI: u64 = 220; // default retail 0.30 − feed-in 0.08
        (1..=SPREAD_MILLI)
            .filter(|t| SPREAD_MILLI % t == 0)
            .find(|t| span % t == 0 && span / t <= 255)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--voll {voll}: no price tick dividing 0.22 reaches it from 0.08 in at most 255 levels (try 0.08 plus a multiple of 0.02 up to 5.18)"
                )
            })
    }
}

/// The islanded band's floor: the default feed-in price, thousandths of a credit per kWh.
pub const FLOOR_MILLI: u64 = 80;

#[cfg(test)]
mod tests {
    use super::*;

    fn islanded(voll: Option<f64>) -> SimConfig {
        let mut c = SimConfig::defaults();
        c.islanded = Some(IslandSpec::defaults());
        c.voll = voll;
        c
    }

    /// The finest tick reaching the value of lost load in at most 255 levels: at, just over and far
    /// beyond the fine tick's reach, the coarsest cap, and caps no tick reaches.
    #[test]
    fn the_price_tick_is_the_finest_that_reaches_the_value_of_lost_load() {
        assert_eq!(islanded(None).price_tick_milli().unwrap(), 1);
        assert_eq!(SimConfig::defaults().price_tick_milli().unwrap(), 1, "grid-connected");
        assert_eq!(islanded(Some(0.335)).price_tick_milli().unwrap(), 1, "255 levels of 0.001");
        assert_eq!(islanded(Some(0.336)).price_tick_milli().unwrap(), 2, "256 levels need 0.002");
        assert_eq!(islanded(Some(5.0)).price_tick_milli().unwrap(), 20);
        assert_eq!(islanded(Some(5.18)).price_tick_milli().unwrap(), 20, "255 levels of 0.02");
        for bad in [5.2, 0.08, 0.05, 0.0805, f64::NAN, 1e9] {
            let e = islanded(Some(bad)).price_tick_milli().expect_err("refused").to_string();
            assert!(e.contains("--voll"), "{bad}: {e}");
        }
    }
}
