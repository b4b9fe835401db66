//! The project's own JSON reading format (documented in the README, "MQTT bridge"):
//!
//! ```json
//! {"meter":"house-12","seq":42,"ts":1781180160,"import_wh":15453806,"export_wh":2204117}
//! ```
//!
//! `meter` (string, must be the topic's meter), `seq` (integer, +1 per message), `ts` (unix seconds),
//! `import_wh` and `export_wh` (cumulative Wh, integers) are required; `epoch` (string or integer,
//! changed by the meter when it resets its counters) and `power_w` (number, monitoring only) are
//! optional. Other fields are ignored.

use serde_json::Value;

use super::{parse_json, type_name, Decoded, Decoder, MeterContext, Reason, Rejection, Sample};

/// Decoder of the project's JSON reading format.
pub struct ProjectJson;

fn uint(obj: &Value, field: &str) -> Result<u64, Rejection> {
    match obj.get(field) {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            Rejection::new(Reason::WrongType, format!("{field} must be a non-negative integer, found {n}"))
        }),
        Some(v) => Err(Rejection::new(
            Reason::WrongType,
            format!("{field} must be an integer, found {}", type_name(v)),
        )),
        None => Err(Rejection::new(Reason::WrongType, format!("{field} is missing"))),
    }
}

impl Decoder for ProjectJson {
    fn name(&self) -> &'static str {
        "json"
    }

    fn decode(&self, payload: &[u8], ctx: &MeterContext<'_>) -> Result<Decoded, Rejection> {
        let v = parse_json(payload)?;
        if !v.is_object() {
            return Err(Rejection::new(
                Reason::WrongType,
                format!("payload must be an object, found {}", type_name(&v)),
            ));
        }
        let meter = match v.get("meter") {
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(Rejection::new(
                    Reason::WrongType,
                    format!("meter must be a string, found {}", type_name(other)),
                ))
            }
            None => return Err(Rejection::new(Reason::WrongType, "meter is missing")),
        };
        if meter != ctx.meter_id {
            return Err(Rejection::new(
                Reason::MeterMismatch,
                format!("payload names meter `{meter}` but the topic belongs to `{}`", ctx.meter_id),
            ));
        }
        let seq = uint(&v, "seq")?;
        let timestamp = uint(&v, "ts")?;
        let import_wh = uint(&v, "import_wh")?;
        let export_wh = uint(&v, "export_wh")?;
        for (name, val) in [("import_wh", import_wh), ("export_wh", export_wh)] {
            if val == u64::from(u32::MAX) || val == u64::from(i32::MAX as u32) || val >= u64::MAX - 1 {
                return Err(Rejection::new(
                    Reason::ErrorValue,
                    format!("{name} = {val} is a meter error value"),
                ));
            }
        }
        let epoch = match v.get("epoch") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
            Some(other) => {
                return Err(Rejection::new(
                    Reason::WrongType,
                    format!("epoch must be a string or an integer, found {}", type_name(other)),
                ))
            }
        };
        let power_w = match v.get("power_w") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                return Err(Rejection::new(
                    Reason::WrongType,
                    format!("power_w must be a number, found {}", type_name(other)),
                ))
            }
        };
        Ok(Decoded::Reading(Sample { import_wh, export_wh, timestamp, seq: Some(seq), epoch, power_w }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MeterContext<'static> {
        MeterContext { meter_id: "house-12", channel: 0, utc_offset_secs: 0, device_id: None }
    }

    #[test]
    fn decodes_a_reading() {
        let d = ProjectJson
            .decode(br#"{"meter":"house-12","seq":42,"ts":1781180160,"import_wh":15453806,"export_wh":2204117,"power_w":-1834}"#, &ctx())
            .unwrap();
        assert_eq!(
            d,
            Decoded::Reading(Sample {
                import_wh: 15_453_806,
                export_wh: 2_204_117,
                timestamp: 1_781_180_160,
                seq: Some(42),
                epoch: None,
                power_w: Some(-1834.0)
            })
        );
    }

    #[test]
    fn refuses_bad_input() {
        let r = |p: &str| ProjectJson.decode(p.as_bytes(), &ctx()).unwrap_err().reason;
        assert_eq!(r(r#"{"meter":"house-12","seq":1,"ts":1,"import_wh":1,"export_"#), Reason::Malformed);
        assert_eq!(
            r(r#"{"meter":"house-12","seq":1,"ts":1,"import_wh":"1","export_wh":2}"#),
            Reason::WrongType
        );
        assert_eq!(
            r(r#"{"meter":"house-12","seq":1,"ts":1,"import_wh":1.5,"export_wh":2}"#),
            Reason::WrongType
        );
        assert_eq!(
            r(r#"{"meter":"house-12","seq":1,"ts":1,"import_wh":-1,"export_wh":2}"#),
            Reason::WrongType
        );
        assert_eq!(r(r#"{"meter":"house-12","seq":1,"ts":1,"import_wh":1}"#), Reason::WrongType);
        assert_eq!(r(r#"[1,2]"#), Reason::WrongType);
        assert_eq!(
            r(r#"{"meter":"house-13","seq":1,"ts":1,"import_wh":1,"export_wh":2}"#),
            Reason::MeterMismatch
        );
        assert_eq!(
            r(r#"{"meter":"house-12","seq":1,"ts":1,"import_wh":4294967295,"export_wh":2}"#),
            Reason::ErrorValue
        );
    }
}
