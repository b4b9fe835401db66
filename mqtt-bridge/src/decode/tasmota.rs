//! Tasmota `tele/<topic>/SENSOR` with the `ENERGY` object:
//!
//! ```json
//! {"Time":"2026-06-11T12:15:00","ENERGY":{"TotalStartTime":"2025-10-21T22:15:00","Total":3.705,"Power":5}}
//! ```
//!
//! `Total` is cumulative import in kWh since `TotalStartTime` (a change of `TotalStartTime` is a counter
//! reset, reported as the sample's epoch); `ExportActive` (kWh), when present, is the export counter.
//! `Time` is the device's local time (configure `utc_offset`). `Power` (W) is kept for monitoring;
//! `Today`/`Yesterday` reset daily and are never used.

use serde_json::Value;

use super::{
    kwh_to_wh, number, opt_number, parse_json, parse_local_time, type_name, Decoded, Decoder, MeterContext,
    Reason, Rejection, Sample,
};

/// Decoder of Tasmota's `ENERGY` telemetry.
pub struct Tasmota;

/// The device time of a Tasmota telemetry message.
pub(crate) fn tasmota_time(v: &Value, utc_offset_secs: i64) -> Result<u64, Rejection> {
    match v.get("Time") {
        Some(Value::String(s)) => parse_local_time(s, utc_offset_secs).ok_or_else(|| {
            Rejection::new(Reason::WrongType, format!("Time `{s}` is not a YYYY-MM-DDTHH:MM:SS time"))
        }),
        Some(other) => Err(Rejection::new(
            Reason::WrongType,
            format!("Time must be a string, found {}", type_name(other)),
        )),
        None => Err(Rejection::new(Reason::WrongType, "Time is missing")),
    }
}

impl Decoder for Tasmota {
    fn name(&self) -> &'static str {
        "tasmota"
    }

    fn decode(&self, payload: &[u8], ctx: &MeterContext<'_>) -> Result<Decoded, Rejection> {
        let v = parse_json(payload)?;
        let energy = match v.get("ENERGY") {
            Some(e @ Value::Object(_)) => e,
            Some(other) => {
                return Err(Rejection::new(
                    Reason::WrongType,
                    format!("ENERGY must be an object, found {}", type_name(other)),
                ))
            }
            None => return Err(Rejection::new(Reason::WrongType, "ENERGY is missing")),
        };
        let timestamp = tasmota_time(&v, ctx.utc_offset_secs)?;
        let import_wh = kwh_to_wh(number(energy, "Total", "ENERGY")?, "ENERGY.Total")?;
        let export_wh = match energy.get("ExportActive") {
            None => 0,
            Some(_) => kwh_to_wh(number(energy, "ExportActive", "ENERGY")?, "ENERGY.ExportActive")?,
        };
        let epoch = match energy.get("TotalStartTime") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(Rejection::new(
                    Reason::WrongType,
                    format!("ENERGY.TotalStartTime must be a string, found {}", type_name(other)),
                ))
            }
        };
        Ok(Decoded::Reading(Sample {
            import_wh,
            export_wh,
            timestamp,
            seq: None,
            epoch,
            power_w: opt_number(energy, "Power"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MeterContext<'static> {
        MeterContext { meter_id: "plug-07", channel: 0, utc_offset_secs: 0, device_id: None }
    }

    #[test]
    fn decodes_the_sample_and_the_reset() {
        let p = br#"{"Time":"2026-06-11T12:15:00","ENERGY":{"TotalStartTime":"2025-10-21T22:15:00","Total":3.705,"Yesterday":0.028,"Today":0.026,"Period":1,"Power":5,"ApparentPower":5,"ReactivePower":0,"Factor":1.00,"Voltage":233,"Current":0.021}}"#;
        let Decoded::Reading(s) = Tasmota.decode(p, &ctx()).unwrap() else { panic!() };
        assert_eq!((s.import_wh, s.export_wh, s.timestamp), (3705, 0, 1_781_180_100));
        assert_eq!(s.epoch.as_deref(), Some("2025-10-21T22:15:00"));
        assert_eq!(s.power_w, Some(5.0));
        let reset = br#"{"Time":"2026-06-11T12:30:00","ENERGY":{"TotalStartTime":"2026-06-11T12:20:00","Total":0.004,"Yesterday":0.0,"Today":0.004,"Period":0,"Power":5}}"#;
        let Decoded::Reading(r) = Tasmota.decode(reset, &ctx()).unwrap() else { panic!() };
        assert_eq!(r.import_wh, 4);
        assert_ne!(r.epoch, s.epoch);
    }

    #[test]
    fn refuses_truncated_and_wrong_types() {
        let truncated = br#"{"Time":"2026-06-11T12:45:00","ENERGY":{"Total":"n/a","Power":"#;
        assert_eq!(Tasmota.decode(truncated, &ctx()).unwrap_err().reason, Reason::Malformed);
        let na = br#"{"Time":"2026-06-11T12:45:00","ENERGY":{"Total":"n/a","Power":1}}"#;
        assert_eq!(Tasmota.decode(na, &ctx()).unwrap_err().reason, Reason::WrongType);
        let err = br#"{"Time":"2026-06-11T12:45:00","ENERGY":{"Total":4294967.295}}"#;
        assert_eq!(Tasmota.decode(err, &ctx()).unwrap_err().reason, Reason::ErrorValue);
        let no_time = br#"{"ENERGY":{"Total":1.0}}"#;
        assert_eq!(Tasmota.decode(no_time, &ctx()).unwrap_err().reason, Reason::WrongType);
    }
}
