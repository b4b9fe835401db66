//! Shelly Gen2/Gen3 `<prefix>/events/rpc` `NotifyStatus` notifications:
//!
//! - `emdata:N` (Pro 3EM): `total_act` import and `total_act_ret` export, cumulative Wh;
//! - `em1data:N` (Pro EM, single phase): `total_act_energy` / `total_act_ret_energy`, Wh;
//! - `switch:N` (plugs, relays): `aenergy.total` Wh (import only), plus `apower` W;
//! - `em:N` / `em1:N`: instantaneous power only, kept for monitoring.
//!
//! `N` is the meter's configured `channel`. The timestamp is `params.ts` (unix seconds, fractional).
//! When the meter has a `device_id`, the notification's `src` must be exactly it (`device_mismatch`
//! otherwise), so that a Shelly re-flashed or swapped behind the same topic is noticed.

use serde_json::Value;

use super::{
    number, opt_number, parse_json, type_name, wh_to_wh, Decoded, Decoder, MeterContext, Reason, Rejection,
    Sample,
};

/// Decoder of Shelly Gen2/Gen3 RPC notifications.
pub struct Shelly;

impl Decoder for Shelly {
    fn name(&self) -> &'static str {
        "shelly"
    }

    fn decode(&self, payload: &[u8], ctx: &MeterContext<'_>) -> Result<Decoded, Rejection> {
        let v = parse_json(payload)?;
        match v.get("method") {
            Some(Value::String(m)) if m == "NotifyStatus" || m == "NotifyFullStatus" => {}
            Some(Value::String(m)) => {
                return Err(Rejection::new(Reason::WrongType, format!("method `{m}` carries no readings")))
            }
            Some(other) => {
                return Err(Rejection::new(
                    Reason::WrongType,
                    format!("method must be a string, found {}", type_name(other)),
                ))
            }
            None => return Err(Rejection::new(Reason::WrongType, "method is missing")),
        }
        if let Some(want) = ctx.device_id {
            match v.get("src") {
                Some(Value::String(src)) if src == want => {}
                Some(Value::String(src)) => {
                    return Err(Rejection::new(
                        Reason::DeviceMismatch,
                        format!("src `{src}` is not this meter's device_id `{want}`"),
                    ))
                }
                Some(other) => {
                    return Err(Rejection::new(
                        Reason::DeviceMismatch,
                        format!("src must be the device id `{want}`, found {}", type_name(other)),
                    ))
                }
                None => {
                    return Err(Rejection::new(
                        Reason::DeviceMismatch,
                        format!("src is missing; this meter's device_id is `{want}`"),
                    ))
                }
            }
        }
        let params = match v.get("params") {
            Some(p @ Value::Object(_)) => p,
            _ => return Err(Rejection::new(Reason::WrongType, "params must be an object")),
        };
        let ts = number(params, "ts", "params")?;
        if !ts.is_finite() || ts < 0.0 {
            return Err(Rejection::new(Reason::WrongType, format!("params.ts = {ts} is not a unix time")));
        }
        let timestamp = ts.floor() as u64;
        let n = ctx.channel;
        let comp = |name: &str| params.get(format!("{name}:{n}")).filter(|c| c.is_object());

        let (import_wh, export_wh, power_w) = if let Some(c) = comp("emdata") {
            let path = format!("emdata:{n}");
            let imp = wh_to_wh(number(c, "total_act", &path)?, &format!("{path}.total_act"))?;
            let exp = wh_to_wh(number(c, "total_act_ret", &path)?, &format!("{path}.total_act_ret"))?;
            (imp, exp, None)
        } else if let Some(c) = comp("em1data") {
            let path = format!("em1data:{n}");
            let imp = wh_to_wh(number(c, "total_act_energy", &path)?, &format!("{path}.total_act_energy"))?;
            let exp =
                wh_to_wh(number(c, "total_act_ret_energy", &path)?, &format!("{path}.total_act_ret_energy"))?;
            (imp, exp, None)
        } else if let Some(c) = comp("switch") {
            let path = format!("switch:{n}");
            let power = opt_number(c, "apower");
            match c.get("aenergy") {
                Some(a @ Value::Object(_)) => {
                    let imp = wh_to_wh(
                        number(a, "total", &format!("{path}.aenergy"))?,
                        &format!("{path}.aenergy.total"),
                    )?;
                    (imp, 0, power)
                }
                Some(other) => {
                    return Err(Rejection::new(
                        Reason::WrongType,
                        format!("{path}.aenergy must be an object, found {}", type_name(other)),
                    ))
                }
                // A switch status without energy (e.g. only the output state changed).
                None => return Ok(Decoded::Monitoring { power_w: power }),
            }
        } else if let Some(c) = comp("em") {
            return Ok(Decoded::Monitoring { power_w: opt_number(c, "total_act_power") });
        } else if let Some(c) = comp("em1") {
            return Ok(Decoded::Monitoring { power_w: opt_number(c, "act_power") });
        } else {
            return Err(Rejection::new(
                Reason::WrongType,
                format!("no emdata:{n}, em1data:{n}, switch:{n}, em:{n} or em1:{n} component"),
            ));
        };
        Ok(Decoded::Reading(Sample { import_wh, export_wh, timestamp, seq: None, epoch: None, power_w }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MeterContext<'static> {
        MeterContext { meter_id: "shelly", channel: 0, utc_offset_secs: 0, device_id: None }
    }

    fn reading(p: &[u8]) -> Sample {
        match Shelly.decode(p, &ctx()).unwrap() {
            Decoded::Reading(s) => s,
            other => panic!("not a reading: {other:?}"),
        }
    }

    #[test]
    fn decodes_the_samples() {
        let s = reading(br#"{"src":"shellypro3em-c8f09e8832a4","dst":"shellypro3em-c8f09e8832a4/events","method":"NotifyStatus","params":{"ts":1781180100.21,"emdata:0":{"id":0,"a_total_act_energy":1204.06,"a_total_act_ret_energy":0,"b_total_act_energy":981.77,"b_total_act_ret_energy":0,"c_total_act_energy":26289.44,"c_total_act_ret_energy":131881.85,"total_act":28475.27,"total_act_ret":131881.85}}}"#);
        assert_eq!((s.import_wh, s.export_wh, s.timestamp), (28475, 131_881, 1_781_180_100));
        let s = reading(br#"{"src":"shellyproem50-08f9e0e5a1b2","dst":"shellyproem50-08f9e0e5a1b2/events","method":"NotifyStatus","params":{"ts":1781180160.00,"em1data:0":{"id":0,"total_act_energy":48213.5,"total_act_ret_energy":9120.25}}}"#);
        assert_eq!((s.import_wh, s.export_wh, s.timestamp), (48213, 9120, 1_781_180_160));
        let s = reading(br#"{"src":"shellyplusplugs-80646fe1a0b2","dst":"shellyplusplugs-80646fe1a0b2/events","method":"NotifyStatus","params":{"ts":1781180160.00,"switch:0":{"id":0,"aenergy":{"total":14532.118,"by_minute":[0.0,12.5,11.9],"minute_ts":1781180160}}}}"#);
        assert_eq!((s.import_wh, s.export_wh, s.timestamp), (14532, 0, 1_781_180_160));
    }

    #[test]
    fn power_is_monitoring_only() {
        let d = Shelly
            .decode(br#"{"src":"shellypro3em-c8f09e8832a4","dst":"shellypro3em-c8f09e8832a4/events","method":"NotifyStatus","params":{"ts":1781180092.08,"em:0":{"id":0,"a_act_power":212.4,"b_act_power":0,"c_act_power":-2318.0,"total_act_power":-2105.6,"total_current":10.531}}}"#, &ctx())
            .unwrap();
        assert_eq!(d, Decoded::Monitoring { power_w: Some(-2105.6) });
    }

    #[test]
    fn src_must_match_the_configured_device() {
        let want = MeterContext {
            meter_id: "shelly",
            channel: 0,
            utc_offset_secs: 0,
            device_id: Some("shellypro3em-c8f09e8832a4"),
        };
        let p = |src: &str| {
            format!(
                r#"{{{src}"method":"NotifyStatus","params":{{"ts":1.0,"emdata:0":{{"total_act":1,"total_act_ret":2}}}}}}"#
            )
        };
        assert!(Shelly.decode(p(r#""src":"shellypro3em-c8f09e8832a4","#).as_bytes(), &want).is_ok());
        for bad in [r#""src":"shellypro3em-000000000000","#, r#""src":7,"#, ""] {
            let e = Shelly.decode(p(bad).as_bytes(), &want).unwrap_err();
            assert_eq!(e.reason, Reason::DeviceMismatch, "{bad}");
            assert!(e.detail.contains("shellypro3em-c8f09e8832a4"), "{e:?}");
        }
        // Without a configured device_id, src is not checked.
        assert!(Shelly.decode(p(r#""src":"anything","#).as_bytes(), &ctx()).is_ok());
    }

    #[test]
    fn refuses_wrong_channel_and_types() {
        let other = MeterContext { meter_id: "shelly", channel: 1, utc_offset_secs: 0, device_id: None };
        let p =
            br#"{"method":"NotifyStatus","params":{"ts":1.0,"emdata:0":{"total_act":1,"total_act_ret":2}}}"#;
        assert_eq!(Shelly.decode(p, &other).unwrap_err().reason, Reason::WrongType);
        let p = br#"{"method":"NotifyStatus","params":{"ts":1.0,"emdata:0":{"total_act":"1","total_act_ret":2}}}"#;
        assert_eq!(Shelly.decode(p, &ctx()).unwrap_err().reason, Reason::WrongType);
        let p =
            br#"{"method":"NotifyStatus","params":{"ts":"x","emdata:0":{"total_act":1,"total_act_ret":2}}}"#;
        assert_eq!(Shelly.decode(p, &ctx()).unwrap_err().reason, Reason::WrongType);
    }
}
