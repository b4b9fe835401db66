//! Simulated smart meters: cumulative import/export registers published over MQTT at QoS 1 in the
//! payload format of a real device, one MQTT connection per meter.
//!
//! | format | topic | payload (shape of the samples in `tests/fixtures/meter-samples/`) |
//! | --- | --- | --- |
//! | `json` | `p2pe/meters/<id>/reading` | `{"meter","seq","ts","import_wh","export_wh","power_w"}` |
//! | `tasmota` | `tele/<id>/SENSOR` | `{"Time", "ENERGY": {"TotalStartTime","Total","ExportActive","Power",…}}`, kWh, local time |
//! | `tasmota-sml` | `tele/<id>/SENSOR` | `{"Time", "SML": {"Total_in","Total_out","Power_curr"}}`, kWh, local time |
//! | `shelly` | `shellypro3em-<id>/events/rpc` | `NotifyStatus` with `emdata:0` (`total_act`, `total_act_ret`, per phase), Wh |
//!
//! A meter's register is the whole Wh of its true cumulative energy; every format carries exactly
//! that register (Tasmota's three kWh decimals are whole Wh; Shelly's two Wh decimals are truncated,
//! never rounded up), so the bridge's decoders recover the same integer the simulator expects on
//! chain.

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;

use crate::calendar::format_local;
use crate::clock::sleep_until_unix;
use crate::household::MeterFormat;

/// The topic of a meter of `format` named `id`.
pub fn topic_for(format: MeterFormat, id: &str) -> String {
    match format {
        MeterFormat::Json => format!("p2pe/meters/{id}/reading"),
        MeterFormat::Tasmota | MeterFormat::TasmotaSml => format!("tele/{id}/SENSOR"),
        MeterFormat::Shelly => format!("shellypro3em-{id}/events/rpc"),
    }
}

/// One meter reading to publish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Telemetry {
    /// Device time (unix seconds, fractional for Shelly).
    pub ts: f64,
    /// True cumulative import, Wh.
    pub import_wh: f64,
    /// True cumulative export, Wh.
    pub export_wh: f64,
    /// Net active power over the last minute, W (positive = import).
    pub power_w: f64,
}

/// A meter's whole-Wh register of a cumulative energy.
pub fn register(wh: f64) -> u64 {
    wh.max(0.0).floor() as u64
}

/// A simulated meter's identity and format state.
#[derive(Debug, Clone)]
pub struct SimMeter {
    /// Meter id (household id).
    pub id: String,
    /// Payload format.
    pub format: MeterFormat,
    /// Topic.
    pub topic: String,
    /// Device clock offset (Tasmota local time), seconds east of UTC.
    pub utc_offset_secs: i64,
    seq: u64,
}

impl SimMeter {
    /// A meter `id` publishing in `format`.
    pub fn new(id: &str, format: MeterFormat, utc_offset_secs: i64) -> Self {
        Self { id: id.to_string(), format, topic: topic_for(format, id), utc_offset_secs, seq: 0 }
    }

    /// The payload of `t` (advances the JSON sequence number).
    pub fn payload(&mut self, t: &Telemetry) -> Vec<u8> {
        let imp = register(t.import_wh);
        let exp = register(t.export_wh);
        self.seq += 1;
        let kwh = |wh: u64| serde_json::Number::from_f64(wh as f64 / 1000.0).expect("finite");
        let local = format_local(t.ts.floor() as i64, self.utc_offset_secs);
        let v = match self.format {
            MeterFormat::Json => json!({
                "meter": self.id, "seq": self.seq, "ts": t.ts.floor() as u64,
                "import_wh": imp, "export_wh": exp, "power_w": (t.power_w * 10.0).round() / 10.0,
            }),
            MeterFormat::Tasmota => {
                let volts = 231.0;
                json!({
                    "Time": local,
                    "ENERGY": {
                        "TotalStartTime": "2024-03-01T10:00:00",
                        "Total": kwh(imp), "ExportActive": kwh(exp),
                        "Yesterday": 0.0, "Today": 0.0, "Period": 0,
                        "Power": t.power_w.round(), "ApparentPower": t.power_w.abs().round(), "ReactivePower": 0,
                        "Factor": 1.0, "Voltage": volts, "Current": ((t.power_w.abs() / volts) * 1000.0).round() / 1000.0,
                    },
                })
            }
            MeterFormat::TasmotaSml => json!({
                "Time": local,
                "SML": {"Total_in": kwh(imp), "Total_out": kwh(exp), "Power_curr": t.power_w.round()},
            }),
            MeterFormat::Shelly => {
                // Whole Wh plus the true fraction truncated to two decimals: the decoder's floor is `imp`.
                let frac = |true_wh: f64, reg: u64| {
                    reg as f64 + ((true_wh - reg as f64) * 100.0).floor().clamp(0.0, 99.0) / 100.0
                };
                let total_act = frac(t.import_wh, imp);
                let total_ret = frac(t.export_wh, exp);
                let split = |v: f64, share: f64| (v * share * 100.0).floor() / 100.0;
                let (a, b) = (split(total_act, 0.5), split(total_act, 0.3));
                let src = format!("shellypro3em-{}", self.id);
                json!({
                    "src": src, "dst": format!("{src}/events"), "method": "NotifyStatus",
                    "params": {
                        "ts": (t.ts * 100.0).floor() / 100.0,
                        "emdata:0": {
                            "id": 0,
                            "a_total_act_energy": a, "a_total_act_ret_energy": 0.0,
                            "b_total_act_energy": b, "b_total_act_ret_energy": 0.0,
                            "c_total_act_energy": ((total_act - a - b) * 100.0).round() / 100.0, "c_total_act_ret_energy": total_ret,
                            "total_act": total_act, "total_act_ret": total_ret,
                        },
                    },
                })
            }
        };
        serde_json::to_vec(&v).expect("json")
    }
}

/// MQTT connections of the simulated meters.
pub struct MeterFleet {
    meters: Vec<SimMeter>,
    clients: Vec<AsyncClient>,
    loops: Vec<tokio::task::JoinHandle<()>>,
    closing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Messages handed to the MQTT clients.
    pub published: u64,
    /// Publishes refused by a client.
    pub failed: u64,
}

impl MeterFleet {
    /// Connects every meter to the broker at `host:port` (client id `p2pe-sim-meter-<id>`).
    pub async fn connect(meters: Vec<SimMeter>, host: &str, port: u16, user: Option<(&str, &str)>) -> Self {
        let mut clients = Vec::with_capacity(meters.len());
        let mut loops = Vec::with_capacity(meters.len());
        let closing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for m in &meters {
            let mut opts = MqttOptions::new(format!("p2pe-sim-meter-{}", m.id), host, port);
            opts.set_keep_alive(Duration::from_secs(30));
            opts.set_max_packet_size(64 * 1024, 64 * 1024);
            if let Some((u, p)) = user {
                opts.set_credentials(u, p);
            }
            let (client, mut eventloop) = AsyncClient::new(opts, 64);
            let id = m.id.clone();
            let closing_ = closing.clone();
            loops.push(tokio::spawn(async move {
                let mut failures = 0u32;
                loop {
                    match eventloop.poll().await {
                        Ok(_) => failures = 0,
                        Err(e) => {
                            failures += 1;
                            if closing_.load(std::sync::atomic::Ordering::Relaxed) {
                                return;
                            }
                            if failures == 1 || failures % 20 == 0 {
                                tracing::warn!(meter = %id, error = %e, "meter MQTT connection failed; retrying");
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }));
            clients.push(client);
        }
        Self { meters, clients, loops, closing, published: 0, failed: 0 }
    }

    /// Number of meters.
    pub fn len(&self) -> usize {
        self.meters.len()
    }

    /// Whether there are no meters.
    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
    }

    /// Publishes one reading per meter (`readings[i]` for meter `i`).
    pub async fn publish_all(&mut self, readings: &[Telemetry]) {
        for ((m, c), t) in self.meters.iter_mut().zip(&self.clients).zip(readings) {
            let payload = m.payload(t);
            match c.publish(m.topic.clone(), QoS::AtLeastOnce, false, payload).await {
                Ok(()) => self.published += 1,
                Err(e) => {
                    self.failed += 1;
                    tracing::warn!(meter = %m.id, error = %e, "publish failed");
                }
            }
        }
    }

    /// Publishes a schedule of readings: for each `(unix time, readings)` in order, waits until
    /// that time and publishes them.
    pub async fn publish_schedule(&mut self, schedule: Vec<(f64, Vec<Telemetry>)>) {
        for (at, readings) in schedule {
            sleep_until_unix(at).await;
            self.publish_all(&readings).await;
        }
    }

    /// Disconnects every meter and stops its connection task.
    pub async fn disconnect(&self) {
        self.closing.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in &self.clients {
            let _ = c.disconnect().await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for l in &self.loops {
            l.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(imp: f64, exp: f64) -> Telemetry {
        Telemetry { ts: 1_781_180_100.37, import_wh: imp, export_wh: exp, power_w: -1834.26 }
    }

    #[test]
    fn payload_shapes() {
        let mut m = SimMeter::new("h001", MeterFormat::Json, 0);
        let v: serde_json::Value = serde_json::from_slice(&m.payload(&t(15_453_806.9, 2_204_117.2))).unwrap();
        assert_eq!(v["meter"], "h001");
        assert_eq!(v["seq"], 1);
        assert_eq!(v["ts"], 1_781_180_100u64);
        assert_eq!(v["import_wh"], 15_453_806u64);
        assert_eq!(v["export_wh"], 2_204_117u64);
        assert_eq!(m.topic, "p2pe/meters/h001/reading");

        let mut m = SimMeter::new("h002", MeterFormat::Tasmota, 7200);
        let v: serde_json::Value = serde_json::from_slice(&m.payload(&t(3_705.4, 12.0))).unwrap();
        assert_eq!(v["Time"], "2026-06-11T14:15:00");
        assert_eq!(v["ENERGY"]["Total"], 3.705);
        assert_eq!(v["ENERGY"]["ExportActive"], 0.012);
        assert_eq!(m.topic, "tele/h002/SENSOR");

        let mut m = SimMeter::new("h003", MeterFormat::TasmotaSml, 0);
        let v: serde_json::Value = serde_json::from_slice(&m.payload(&t(15_453_806.0, 2_204_117.0))).unwrap();
        assert_eq!(v["SML"]["Total_in"], 15_453.806);
        assert_eq!(v["SML"]["Total_out"], 2_204.117);

        let mut m = SimMeter::new("h004", MeterFormat::Shelly, 0);
        let v: serde_json::Value = serde_json::from_slice(&m.payload(&t(28_475.279, 131_881.999))).unwrap();
        assert_eq!(v["method"], "NotifyStatus");
        assert_eq!(v["params"]["ts"], 1_781_180_100.37);
        assert_eq!(v["params"]["emdata:0"]["total_act"], 28_475.27);
        assert_eq!(v["params"]["emdata:0"]["total_act_ret"], 131_881.99);
        assert_eq!(m.topic, "shellypro3em-h004/events/rpc");
    }

    #[test]
    fn kwh_decimals_are_whole_wh() {
        // Every register value must survive kWh formatting: the decoder multiplies by 1000 and floors.
        let mut m = SimMeter::new("h", MeterFormat::TasmotaSml, 0);
        for wh in [0u64, 1, 999, 1_001, 123_456_789, 4_294_967_294] {
            let v: serde_json::Value = serde_json::from_slice(&m.payload(&t(wh as f64, 0.0))).unwrap();
            let kwh = v["SML"]["Total_in"].as_f64().unwrap();
            assert_eq!((kwh * 1000.0 + 1e-6).floor() as u64, wh);
        }
    }
}
