//! The lab path: households mapped to real meters (`p2pe-sim --lab lab.toml`). The simulator then
//! simulates no meters and no physics: it registers the households with the lab meters' addresses,
//! runs the bridge for the lab's meters against the lab's broker, and trades for the households
//! from their forecasts; settlement uses what the real meters reported. See README, "Simulator".
//!
//! ```toml
//! [broker]
//! url = "mqtt://192.168.1.10:1883"
//! username = "bridge"              # optional
//! password_file = "broker-pw.txt"  # optional
//!
//! [keys]
//! password_file = "meter-pw.txt"   # password of the meter keystores
//!
//! [[households]]
//! id = "house-1"
//! meter_address = "0x…"            # the meter key's address
//! meter_keystore = "keys/house-1.json"
//! meter_format = "tasmota-sml"     # json | tasmota | tasmota-sml | shelly
//! meter_topic = "tele/house-1/SENSOR"
//! utc_offset = "+01:00"            # Tasmota local time
//! annual_kwh = 3500
//! pv_kwp = 4.2                     # optional, for the agent's forecast
//! pv_tilt = 30
//! pv_azimuth = 180
//! battery_kwh = 10                 # optional
//! battery_kw = 5
//! strategy = "ramp"                # ramp | arbitrage
//! ```

use std::path::{Path, PathBuf};

use alloy_primitives::Address;
use anyhow::{bail, Context};
use serde::Deserialize;

use crate::battery::BatterySpec;
use crate::household::{HouseholdSpec, MeterFormat, RampParams, Strategy};
use crate::load::LoadModel;
use crate::solar::PvSystem;

/// `[broker]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabBroker {
    /// `mqtt://host:port` (or `mqtts://` with the bridge's TLS settings in a hand-written config).
    pub url: String,
    /// User name.
    pub username: Option<String>,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
}

/// `[keys]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabKeys {
    /// Password file of the meter keystores.
    pub password_file: PathBuf,
}

/// `[[households]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabHousehold {
    /// Household and meter id.
    pub id: String,
    /// The meter's on-chain address.
    pub meter_address: Address,
    /// The meter's keystore.
    pub meter_keystore: PathBuf,
    /// Payload format.
    pub meter_format: String,
    /// MQTT topic.
    pub meter_topic: String,
    /// Device clock offset, `+HH:MM`.
    pub utc_offset: Option<String>,
    /// Annual consumption, kWh (for the load forecast).
    pub annual_kwh: f64,
    /// PV peak power, kW.
    pub pv_kwp: Option<f64>,
    /// PV tilt, degrees.
    pub pv_tilt: Option<f64>,
    /// PV azimuth, degrees from north.
    pub pv_azimuth: Option<f64>,
    /// Battery capacity, kWh.
    pub battery_kwh: Option<f64>,
    /// Battery power, kW.
    pub battery_kw: Option<f64>,
    /// `ramp` or `arbitrage`.
    pub strategy: Option<String>,
    /// The meter's rated current per phase, A, for the bridge's plausibility limit on how fast
    /// its counters may rise (`3 × 230 V × A`); default the bridge's 63 A.
    pub meter_rated_current_a: Option<u64>,
}

/// The lab microgrid's connection to the grid (`[pcc]`): limits in kW, either optional.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabPcc {
    /// Import limit, kW.
    pub import_kw: Option<f64>,
    /// Export limit, kW.
    pub export_kw: Option<f64>,
}

/// The whole lab file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    /// The lab's broker.
    pub broker: LabBroker,
    /// Keystore password.
    pub keys: LabKeys,
    /// Households and their meters.
    pub households: Vec<LabHousehold>,
    /// The limits of the lab microgrid's connection (`[pcc] import_kw`, `export_kw`; optional).
    #[serde(default)]
    pub pcc: Option<LabPcc>,
    /// The lab microgrid runs islanded (`islanded = true`; as `--islanded`): the operator prices
    /// every slot in the islanded band and the market's grid account stands for the lab's own assets.
    #[serde(default)]
    pub islanded: bool,
    /// Directory of the file (relative paths resolve against it).
    #[serde(skip)]
    pub base: PathBuf,
}

/// Parses `+HH:MM` / `-HH:MM` / `Z` into seconds.
pub fn parse_offset(s: &str) -> anyhow::Result<i64> {
    if s == "Z" {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => bail!("offset `{s}` must look like +02:00"),
    };
    let (h, m) = rest.split_once(':').with_context(|| format!("offset `{s}` must look like +02:00"))?;
    Ok(sign * (h.parse::<i64>()? * 3600 + m.parse::<i64>()? * 60))
}

impl LabConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut c: LabConfig = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid lab configuration", path.display()))?;
        // Paths in the file are relative to the file; the folder is made absolute so that they stay
        // right when handed to the bridge, which runs with another configuration file.
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        c.base = std::path::absolute(&dir)
            .with_context(|| format!("cannot resolve the folder of {}", path.display()))?;
        if c.households.is_empty() {
            bail!("{}: no [[households]]", path.display());
        }
        for h in &c.households {
            if MeterFormat::from_name(&h.meter_format).is_none() {
                bail!(
                    "households `{}`: unknown meter_format `{}` (json, tasmota, tasmota-sml, shelly)",
                    h.id,
                    h.meter_format
                );
            }
            if let Some(s) = &h.strategy {
                if s != "ramp" && s != "arbitrage" {
                    bail!("households `{}`: strategy must be ramp or arbitrage", h.id);
                }
            }
            if let Some(o) = &h.utc_offset {
                parse_offset(o).with_context(|| format!("households `{}`", h.id))?;
            }
        }
        Ok(c)
    }

    /// A path from the file, resolved against its directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        self.base.join(p)
    }

    /// The households as the agents see them.
    pub fn specs(&self, lat_deg: f64) -> Vec<HouseholdSpec> {
        let facing = if lat_deg >= 0.0 { 180.0 } else { 0.0 };
        self.households
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let battery = h.battery_kwh.map(|kwh| BatterySpec {
                    capacity_wh: kwh * 1000.0,
                    max_charge_w: h.battery_kw.unwrap_or(kwh / 2.0) * 1000.0,
                    max_discharge_w: h.battery_kw.unwrap_or(kwh / 2.0) * 1000.0,
                    round_trip: 0.9,
                    min_soc: 0.1,
                });
                HouseholdSpec {
                    index: i,
                    id: h.id.clone(),
                    load: LoadModel {
                        annual_kwh: h.annual_kwh,
                        shift_min: 0.0,
                        noise_sigma: 0.0,
                        event_share: 0.0,
                    },
                    pv: h
                        .pv_kwp
                        .map(|k| PvSystem::new(k, h.pv_tilt.unwrap_or(30.0), h.pv_azimuth.unwrap_or(facing))),
                    battery,
                    initial_soc: 0.3,
                    meter_format: MeterFormat::from_name(&h.meter_format).expect("checked"),
                    strategy: match h.strategy.as_deref() {
                        Some("arbitrage") if battery.is_some() => Strategy::Arbitrage,
                        _ => Strategy::Ramp,
                    },
                    ramp: RampParams {
                        buy_initial: 0.05,
                        buy_final: 0.95,
                        sell_initial: 0.95,
                        sell_final: 0.05,
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_lab_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lab.toml");
        std::fs::write(
            &p,
            r#"
islanded = true
[broker]
url = "mqtt://192.168.1.10:1883"
[keys]
password_file = "pw.txt"
[pcc]
export_kw = 7.5
[[households]]
id = "house-1"
meter_address = "0x00000000000000000000000000000000000000aa"
meter_keystore = "keys/house-1.json"
meter_format = "tasmota-sml"
meter_topic = "tele/house-1/SENSOR"
utc_offset = "+01:00"
annual_kwh = 3500
pv_kwp = 4.2
battery_kwh = 10
strategy = "arbitrage"
"#,
        )
        .unwrap();
        let c = LabConfig::load(&p).unwrap();
        assert_eq!(c.path(Path::new("pw.txt")), dir.path().join("pw.txt"));
        assert_eq!(c.pcc, Some(LabPcc { import_kw: None, export_kw: Some(7.5) }));
        assert!(c.islanded);
        let s = c.specs(48.0);
        assert_eq!(s[0].meter_format, MeterFormat::TasmotaSml);
        assert_eq!(s[0].strategy, Strategy::Arbitrage);
        assert_eq!(s[0].pv.unwrap().azimuth_deg, 180.0);
        assert_eq!(parse_offset("+01:00").unwrap(), 3600);
        assert_eq!(parse_offset("-05:30").unwrap(), -19_800);
        std::fs::write(&p, std::fs::read_to_string(&p).unwrap().replace("tasmota-sml", "modbus")).unwrap();
        assert!(LabConfig::load(&p).unwrap_err().to_string().contains("unknown meter_format"));
    }
}
