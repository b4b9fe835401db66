//! Payload decoders: one file per format behind the [`Decoder`] trait.
//!
//! A decoder turns one MQTT payload into a [`Decoded`] value: a cumulative [`Sample`] (the only thing
//! that settles energy), a monitoring-only message (instantaneous power), or nothing of interest. Bad
//! input is a [`Rejection`] with a [`Reason`], which the bridge dead-letters. To add a format, write a
//! file with a type implementing [`Decoder`] and list it in [`FORMATS`] and [`decoder`].

mod project_json;
mod shelly;
mod tasmota;
mod tasmota_sml;

pub use project_json::ProjectJson;
pub use shelly::Shelly;
pub use tasmota::Tasmota;
pub use tasmota_sml::TasmotaSml;

use serde_json::Value;

/// Names of the known formats, as written in `meters.<id>.format`.
pub const FORMATS: &[&str] = &["json", "tasmota", "tasmota-sml", "shelly"];

/// The decoder for a format name from [`FORMATS`].
pub fn decoder(format: &str) -> Option<Box<dyn Decoder>> {
    match format {
        "json" => Some(Box::new(ProjectJson)),
        "tasmota" => Some(Box::new(Tasmota)),
        "tasmota-sml" => Some(Box::new(TasmotaSml)),
        "shelly" => Some(Box::new(Shelly)),
        _ => None,
    }
}

/// A cumulative reading decoded from a payload. Counters are raw (as the meter reports them).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Cumulative imported energy in Wh.
    pub import_wh: u64,
    /// Cumulative exported energy in Wh.
    pub export_wh: u64,
    /// Device time, unix seconds.
    pub timestamp: u64,
    /// Sequence number, when the format has one.
    pub seq: Option<u64>,
    /// Counter epoch (reset marker, e.g. Tasmota `TotalStartTime`): a change means the counters were reset.
    pub epoch: Option<String>,
    /// Instantaneous active power in W, for monitoring only.
    pub power_w: Option<f64>,
}

/// What a payload carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A cumulative reading.
    Reading(Sample),
    /// Only instantaneous values (monitoring, never settled).
    Monitoring {
        /// Active power in W, if present.
        power_w: Option<f64>,
    },
}

/// Why an input was refused. The names are the `reason` label of the rejection metric and the
/// `reason` column of the dead-letter table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not JSON, or truncated.
    Malformed,
    /// A field has the wrong type or is missing.
    WrongType,
    /// The topic or the payload's meter id is not configured.
    UnknownMeter,
    /// The payload names another meter than the topic's.
    MeterMismatch,
    /// The meter sent an error value (e.g. 4294967.295) instead of a reading.
    ErrorValue,
    /// The timestamp is too far ahead of the bridge's clock.
    FutureTimestamp,
    /// The timestamp is too old.
    PastTimestamp,
    /// A counter went down without a reset marker.
    CounterBackwards,
    /// Same timestamp as a stored reading but other counters.
    Conflicting,
    /// Older than the meter's newest stored reading.
    OutOfOrder,
    /// The payload is larger than `limits.max_payload_bytes`.
    Oversize,
    /// The contract refused the reading (its transaction reverted, or its batch skipped it).
    Reverted,
    /// Shelly `src` (device id) is not the meter's configured `device_id`.
    DeviceMismatch,
    /// Quarantined: a counter rose faster than the meter's rated power allows.
    ImplausibleRise,
    /// Quarantined: the counter epoch went back to an earlier one, or reset too often.
    EpochFlapping,
}

impl Reason {
    /// Every reason, for metrics.
    pub const ALL: [Reason; 15] = [
        Reason::Malformed,
        Reason::WrongType,
        Reason::UnknownMeter,
        Reason::MeterMismatch,
        Reason::ErrorValue,
        Reason::FutureTimestamp,
        Reason::PastTimestamp,
        Reason::CounterBackwards,
        Reason::Conflicting,
        Reason::OutOfOrder,
        Reason::Oversize,
        Reason::Reverted,
        Reason::DeviceMismatch,
        Reason::ImplausibleRise,
        Reason::EpochFlapping,
    ];

    /// The snake_case name used in metrics and the dead-letter table.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::WrongType => "wrong_type",
            Reason::UnknownMeter => "unknown_meter",
            Reason::MeterMismatch => "meter_mismatch",
            Reason::ErrorValue => "error_value",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::PastTimestamp => "past_timestamp",
            Reason::CounterBackwards => "counter_backwards",
            Reason::Conflicting => "conflicting",
            Reason::OutOfOrder => "out_of_order",
            Reason::Oversize => "oversize",
            Reason::Reverted => "reverted",
            Reason::DeviceMismatch => "device_mismatch",
            Reason::ImplausibleRise => "implausible_rise",
            Reason::EpochFlapping => "epoch_flapping",
        }
    }
}

/// A refused input: the reason and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: Reason,
    /// Details for the log and the dead-letter table.
    pub detail: String,
}

impl Rejection {
    /// A rejection with `reason` and `detail`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// What a decoder knows about the meter a payload came from.
#[derive(Debug, Clone)]
pub struct MeterContext<'a> {
    /// Configured meter id.
    pub meter_id: &'a str,
    /// Component index (Shelly `emdata:N` etc.).
    pub channel: u32,
    /// Offset of the device clock from UTC, seconds (Tasmota local time).
    pub utc_offset_secs: i64,
    /// Expected device id (Shelly `src`), when configured.
    pub device_id: Option<&'a str>,
}

/// A payload format.
pub trait Decoder: Send + Sync {
    /// The format's name (as in [`FORMATS`]).
    fn name(&self) -> &'static str;
    /// Decodes one payload of the meter described by `ctx`.
    fn decode(&self, payload: &[u8], ctx: &MeterContext<'_>) -> Result<Decoded, Rejection>;
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the decoders.

/// Parses JSON, mapping errors to `malformed`.
pub(crate) fn parse_json(payload: &[u8]) -> Result<Value, Rejection> {
    serde_json::from_slice(payload).map_err(|e| Rejection::new(Reason::Malformed, format!("not JSON: {e}")))
}

/// Counter values that meters send instead of a reading (all-ones registers), in the unit sent.
const ERROR_KWH: [f64; 2] = [4_294_967.295, 2_147_483.647];
const ERROR_WH: [f64; 2] = [4_294_967_295.0, 2_147_483_647.0];

/// A JSON number field as f64, or a `wrong_type` rejection naming the field.
pub(crate) fn number(obj: &Value, field: &str, path: &str) -> Result<f64, Rejection> {
    match obj.get(field) {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| Rejection::new(Reason::WrongType, format!("{path}.{field} is not a number"))),
        Some(v) => Err(Rejection::new(
            Reason::WrongType,
            format!("{path}.{field} must be a number, found {}", type_name(v)),
        )),
        None => Err(Rejection::new(Reason::WrongType, format!("{path}.{field} is missing"))),
    }
}

/// An optional JSON number field.
pub(crate) fn opt_number(obj: &Value, field: &str) -> Option<f64> {
    obj.get(field).and_then(Value::as_f64)
}

/// Converts a cumulative counter in kWh to whole Wh (rounded down, tolerant of binary fractions).
pub(crate) fn kwh_to_wh(kwh: f64, what: &str) -> Result<u64, Rejection> {
    if ERROR_KWH.iter().any(|e| (kwh - e).abs() < 1e-6) {
        return Err(Rejection::new(Reason::ErrorValue, format!("{what} = {kwh} kWh is a meter error value")));
    }
    wh_from(kwh * 1000.0, what)
}

/// Converts a cumulative counter in Wh to whole Wh (rounded down).
pub(crate) fn wh_to_wh(wh: f64, what: &str) -> Result<u64, Rejection> {
    if ERROR_WH.iter().any(|e| (wh - e).abs() < 1e-3) {
        return Err(Rejection::new(Reason::ErrorValue, format!("{what} = {wh} Wh is a meter error value")));
    }
    wh_from(wh, what)
}

fn wh_from(wh: f64, what: &str) -> Result<u64, Rejection> {
    if !wh.is_finite() || wh < 0.0 {
        return Err(Rejection::new(Reason::ErrorValue, format!("{what} = {wh} Wh is not a counter value")));
    }
    // 2^53: beyond this f64 no longer holds whole numbers, and no meter counts that far.
    if wh >= 9_007_199_254_740_992.0 {
        return Err(Rejection::new(Reason::ErrorValue, format!("{what} = {wh} Wh is out of range")));
    }
    Ok((wh + 1e-6).floor() as u64)
}

/// The JSON type name of `v`.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS` (local time of a device at `utc_offset_secs`) into unix seconds.
pub(crate) fn parse_local_time(s: &str, utc_offset_secs: i64) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d, h, mi, se) =
        (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // An explicit zone suffix ("Z" or "+HH:MM") overrides the configured offset.
    let rest = &s[19..];
    let rest =
        rest.strip_prefix('.').map(|r| r.trim_start_matches(|c: char| c.is_ascii_digit())).unwrap_or(rest);
    let offset = match rest {
        "" => utc_offset_secs,
        "Z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) && &z[3..4] == ":" => {
            let hh: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[4..6].parse().ok()?;
            let o = hh * 3600 + mm * 60;
            if z.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    u64::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_parses() {
        assert_eq!(parse_local_time("1970-01-01T00:00:00", 0), Some(0));
        assert_eq!(parse_local_time("2026-06-11T12:15:00", 0), Some(1_781_180_100));
        assert_eq!(parse_local_time("2026-06-11T14:15:00", 7200), Some(1_781_180_100));
        assert_eq!(parse_local_time("2026-06-11T12:15:00Z", 7200), Some(1_781_180_100));
        assert_eq!(parse_local_time("2026-06-11T14:15:00+02:00", 0), Some(1_781_180_100));
        assert_eq!(parse_local_time("2000-02-29T00:00:00", 0), Some(951_782_400));
        assert_eq!(parse_local_time("2026-13-11T12:15:00", 0), None);
        assert_eq!(parse_local_time("n/a", 0), None);
    }

    #[test]
    fn unit_conversion_and_error_values() {
        assert_eq!(kwh_to_wh(3.705, "t").unwrap(), 3705);
        assert_eq!(kwh_to_wh(15453.806, "t").unwrap(), 15_453_806);
        assert_eq!(kwh_to_wh(0.004, "t").unwrap(), 4);
        assert_eq!(wh_to_wh(48213.5, "t").unwrap(), 48213);
        assert_eq!(kwh_to_wh(4294967.295, "t").unwrap_err().reason, Reason::ErrorValue);
        assert_eq!(wh_to_wh(4294967295.0, "t").unwrap_err().reason, Reason::ErrorValue);
        assert_eq!(wh_to_wh(-1.0, "t").unwrap_err().reason, Reason::ErrorValue);
    }
}
