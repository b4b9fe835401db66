//! Tasmota `tele/<topic>/SENSOR` from the SML (smart meter) reader:
//!
//! ```json
//! {"Time":"2026-06-11T12:15:00","SML":{"Total_in":15453.806,"Total_out":2204.117,"Power_curr":-1834}}
//! ```
//!
//! The group is named after the meter script (often `SML`): the first object with `Total_in` is used.
//! `Total_in` / `Total_out` are the OBIS 1.8.0 / 2.8.0 registers in kWh; `Power_curr` (OBIS 16.7.0, W) is
//! kept for monitoring. Error registers such as 4294967.295 are refused.

use serde_json::Value;

use super::tasmota::tasmota_time;
use super::{
    kwh_to_wh, number, opt_number, parse_json, Decoded, Decoder, MeterContext, Reason, Rejection, Sample,
};

/// Decoder of Tasmota SML telemetry.
pub struct TasmotaSml;

impl Decoder for TasmotaSml {
    fn name(&self) -> &'static str {
        "tasmota-sml"
    }

    fn decode(&self, payload: &[u8], ctx: &MeterContext<'_>) -> Result<Decoded, Rejection> {
        let v = parse_json(payload)?;
        let Some(obj) = v.as_object() else {
            return Err(Rejection::new(Reason::WrongType, "payload must be an object"));
        };
        let Some((group, g)) = obj.iter().find(|(_, g)| g.get("Total_in").is_some()) else {
            return Err(Rejection::new(Reason::WrongType, "no SML group with Total_in"));
        };
        let timestamp = tasmota_time(&v, ctx.utc_offset_secs)?;
        let import_wh = kwh_to_wh(number(g, "Total_in", group)?, &format!("{group}.Total_in"))?;
        let export_wh = match g.get("Total_out") {
            None | Some(Value::Null) => 0,
            Some(_) => kwh_to_wh(number(g, "Total_out", group)?, &format!("{group}.Total_out"))?,
        };
        Ok(Decoded::Reading(Sample {
            import_wh,
            export_wh,
            timestamp,
            seq: None,
            epoch: None,
            power_w: opt_number(g, "Power_curr"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MeterContext<'static> {
        MeterContext { meter_id: "house-12-meter", channel: 0, utc_offset_secs: 0, device_id: None }
    }

    #[test]
    fn decodes_the_sample() {
        let p = br#"{"Time":"2026-06-11T12:15:00","SML":{"Total_in":15453.806,"Total_out":2204.117,"Power_curr":-1834}}"#;
        let Decoded::Reading(s) = TasmotaSml.decode(p, &ctx()).unwrap() else { panic!() };
        assert_eq!((s.import_wh, s.export_wh, s.timestamp), (15_453_806, 2_204_117, 1_781_180_100));
        assert_eq!(s.power_w, Some(-1834.0));
    }

    #[test]
    fn refuses_the_error_value() {
        let p = br#"{"Time":"2026-06-11T12:30:00","SML":{"Total_in":4294967.295,"Total_out":2204.117,"Power_curr":0}}"#;
        assert_eq!(TasmotaSml.decode(p, &ctx()).unwrap_err().reason, Reason::ErrorValue);
        let p = br#"{"Time":"2026-06-11T12:30:00","SML":{"Total_in":true}}"#;
        assert_eq!(TasmotaSml.decode(p, &ctx()).unwrap_err().reason, Reason::WrongType);
    }
}
