//! The market's deployment: where its contracts live and its slot schedule.
//!
//! `p2pe-node` writes it into the genesis (`config.p2pe.market`) and to `contracts.json` (the same
//! object plus `chainId`); the node, the simulator and the MQTT bridge read it with
//! [`MarketDeployment`]. Slot `k` is delivered during `[slot_start(k), slot_end(k))`, takes orders
//! until [`MarketDeployment::gate_closes_at`] and can be settled from
//! [`MarketDeployment::settlement_opens_at`], as `Registry` and `EnergyMarket` compute them.

use std::fmt;
use std::path::{Path, PathBuf};

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

/// `Registry.MIN_SLOT_LENGTH`: the shortest slot the registry accepts, seconds.
pub const MIN_SLOT_LENGTH: u32 = 5;

/// `Registry.DEFAULT_ORDER_HORIZON`: one day, the order horizon of a deployment that names none.
pub const DEFAULT_ORDER_HORIZON: u32 = 86_400;

/// How a cleared slot's trades are priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MarketMode {
    /// Every trade at the slot's clearing price (`"payAsClear"`).
    PayAsClear,
    /// Every buyer pays its own bid (`"payAsBid"`).
    PayAsBid,
}

impl fmt::Display for MarketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PayAsClear => "payAsClear",
            Self::PayAsBid => "payAsBid",
        })
    }
}

/// Where the market contracts live, and how the market is set up (`contracts.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketDeployment {
    /// Participant and meter registry, grid prices, slot schedule.
    pub registry: Address,
    /// The credit token (ERC-20 with EIP-2612 permit).
    pub token: Address,
    /// Meter readings (direct and EIP-712 relayed).
    pub readings: Address,
    /// The double auction and settlement.
    pub market: Address,
    /// The grid operator's account (counterparty of every grid flow).
    pub grid: Address,
    /// Operator accounts.
    pub admins: Vec<Address>,
    /// Unix time at which slot 0 starts.
    pub start_time: u64,
    /// Slot length in seconds (at least [`MIN_SLOT_LENGTH`]).
    pub slot_length: u32,
    /// Orders for a slot close this many seconds before it starts.
    pub gate_closure: u32,
    /// Seconds after a slot ends before it can be settled (late readings).
    pub grace_period: u32,
    /// Pay-as-clear or pay-as-bid.
    pub mode: MarketMode,
    /// Orders are accepted only for slots starting at most this many seconds ahead (at
    /// deployment; the operator may change it with `Registry.setOrderHorizon`).
    #[serde(default = "default_order_horizon")]
    pub order_horizon: u32,
    /// The chain's EIP-155 id: in `contracts.json`, not in the genesis (which has its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
}

fn default_order_horizon() -> u32 {
    DEFAULT_ORDER_HORIZON
}

/// Why a deployment could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not JSON, or a key is missing or has the wrong type or value.
    #[error("{origin}: {key}: {message}")]
    Parse {
        /// The file, or `contracts.json` for text.
        origin: String,
        /// The key at fault (`.` for the whole object, e.g. a missing key is named in `message`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl MarketDeployment {
    /// Reads a `contracts.json` file. Errors name the file and the key at fault.
    pub fn load(path: &Path) -> Result<Self, DeploymentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| DeploymentError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses `contracts.json` text; `origin` names it in errors (a file name).
    pub fn parse(text: &str, origin: &str) -> Result<Self, DeploymentError> {
        let parse_err = |key: String, message: String| DeploymentError::Parse {
            origin: origin.to_string(),
            key,
            message,
        };
        let de = &mut serde_json::Deserializer::from_str(text);
        let d: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = if inner.is_syntax() || inner.is_eof() {
                format!("not JSON: {inner}")
            } else {
                inner.to_string()
            };
            parse_err(key, message)
        })?;
        if d.slot_length < MIN_SLOT_LENGTH {
            return Err(parse_err(
                "slotLength".into(),
                format!("must be at least {MIN_SLOT_LENGTH} seconds, found {}", d.slot_length),
            ));
        }
        Ok(d)
    }

    /// Pretty JSON as written to `contracts.json` (with `chainId` when set), ending in a newline.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a deployment serialises") + "\n"
    }

    /// The slot being delivered at unix time `t`, or `None` before slot 0 starts.
    pub fn slot_at(&self, t: u64) -> Option<u64> {
        let since = t.checked_sub(self.start_time)?;
        Some(since / u64::from(self.slot_length.max(1)))
    }

    /// Unix time at which slot `k` starts (saturating at `u64::MAX`).
    pub fn slot_start(&self, k: u64) -> u64 {
        self.start_time.saturating_add(k.saturating_mul(u64::from(self.slot_length)))
    }

    /// Unix time at which slot `k` ends: the start of slot `k + 1`.
    pub fn slot_end(&self, k: u64) -> u64 {
        self.slot_start(k.saturating_add(1))
    }

    /// Unix time from which orders for slot `k` are refused (gate closure before its start).
    pub fn gate_closes_at(&self, k: u64) -> u64 {
        self.slot_start(k).saturating_sub(u64::from(self.gate_closure))
    }

    /// Unix time from which slot `k` can be settled (its end plus the grace period).
    pub fn settlement_opens_at(&self, k: u64) -> u64 {
        self.slot_end(k).saturating_add(u64::from(self.grace_period))
    }

    /// Lines for the console.
    pub fn describe(&self) -> String {
        format!(
            "Energy market (slot {} s, gate closure {} s, grace {} s, {}):\n  Registry      {}\n  CreditToken   {}\n  MeterReadings {}\n  EnergyMarket  {}\n  Grid account  {}",
            self.slot_length,
            self.gate_closure,
            self.grace_period,
            self.mode,
            self.registry,
            self.token,
            self.readings,
            self.market,
            self.grid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn sample() -> Value {
        json!({
            "registry": "0x0000000000000000000000000000000000000001",
            "token": "0x0000000000000000000000000000000000000002",
            "readings": "0x0000000000000000000000000000000000000003",
            "market": "0x0000000000000000000000000000000000000004",
            "grid": "0x0000000000000000000000000000000000000005",
            "admins": ["0x0000000000000000000000000000000000000005"],
            "startTime": 1_000,
            "slotLength": 900,
            "gateClosure": 60,
            "gracePeriod": 120,
            "mode": "payAsClear",
            "orderHorizon": 3_600,
            "chainId": 1337
        })
    }

    fn parse(v: &Value) -> Result<MarketDeployment, String> {
        MarketDeployment::parse(&v.to_string(), "contracts.json").map_err(|e| e.to_string())
    }

    #[test]
    fn a_node_written_file_round_trips() {
        let d = parse(&sample()).unwrap();
        assert_eq!((d.mode, d.chain_id, d.order_horizon), (MarketMode::PayAsClear, Some(1337), 3_600));
        assert_eq!(MarketDeployment::parse(&d.to_json_pretty(), "x").unwrap(), d);
        let mut v = sample();
        v.as_object_mut().unwrap().remove("orderHorizon");
        v.as_object_mut().unwrap().remove("chainId");
        v["mode"] = json!("payAsBid");
        let d = parse(&v).unwrap();
        assert_eq!(
            (d.mode, d.chain_id, d.order_horizon),
            (MarketMode::PayAsBid, None, DEFAULT_ORDER_HORIZON)
        );
        assert!(!d.to_json_pretty().contains("chainId"), "a genesis deployment has no chain id");
    }

    #[test]
    fn slots_follow_the_registry_schedule() {
        let d = parse(&sample()).unwrap();
        assert_eq!(d.slot_at(999), None, "before slot 0");
        assert_eq!(d.slot_at(1_000), Some(0), "at the start");
        assert_eq!(d.slot_at(1_899), Some(0), "just under the end");
        assert_eq!(d.slot_at(1_900), Some(1), "at the end: the next slot");
        assert_eq!((d.slot_start(2), d.slot_end(2)), (2_800, 3_700));
        assert_eq!(d.slot_at(d.slot_end(2) - 1), Some(2));
        assert_eq!(d.gate_closes_at(2), 2_740);
        assert_eq!(d.settlement_opens_at(2), 3_820);
        assert_eq!(d.gate_closes_at(0), 940);
        assert_eq!(d.slot_start(u64::MAX), u64::MAX, "saturates");
        assert_eq!(d.slot_end(u64::MAX), u64::MAX);
        assert_eq!(d.settlement_opens_at(u64::MAX), u64::MAX);
        let early = MarketDeployment { start_time: 10, gate_closure: 60, ..d };
        assert_eq!(early.gate_closes_at(0), 0, "saturates at 0");
    }

    #[test]
    fn bad_files_name_the_key_at_fault() {
        let cases: [(&str, Value, &str); 6] = [
            ("missing key", json!({"token": 1}), "missing field `registry`"),
            ("bad address", json!({"registry": "0x12"}), "registry: "),
            ("bad mode", json!({"mode": "payAsYouGo"}), "mode: unknown variant `payAsYouGo`"),
            ("negative number", json!({"slotLength": -1}), "slotLength: invalid value"),
            ("wrong type", json!({"admins": "0x01"}), "admins: invalid type"),
            ("slot too short", json!({"slotLength": 4}), "slotLength: must be at least 5 seconds, found 4"),
        ];
        for (what, patch, want) in cases {
            let mut v = sample();
            if what == "missing key" {
                v.as_object_mut().unwrap().remove("registry");
            } else {
                for (k, x) in patch.as_object().unwrap() {
                    v[k] = x.clone();
                }
            }
            let e = parse(&v).expect_err(what);
            assert!(e.starts_with("contracts.json: ") && e.contains(want), "{what}: {e}");
        }
        // The shortest slot the registry accepts is taken.
        let mut v = sample();
        v["slotLength"] = json!(5);
        assert_eq!(parse(&v).unwrap().slot_length, 5);
        let e = MarketDeployment::parse("{\"registry\": ", "c.json").unwrap_err().to_string();
        assert!(e.starts_with("c.json: ") && e.contains("not JSON"), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let path = Path::new("/nonexistent/contracts.json");
        let e = MarketDeployment::load(path).unwrap_err().to_string();
        assert!(e.starts_with("cannot read /nonexistent/contracts.json: "), "{e}");
    }
}
