//! Counters and gauges of the bridge, served on `/metrics` by [`Metrics::render`].
//!
//! The values live in atomics (the submitter, `/health` and tests read them); the exposition
//! format is `metrics-exporter-prometheus`'s, through a recorder owned by this [`Metrics`] (not a
//! process-wide one): at each scrape the current values are handed to it and it renders them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::decode::Reason;
use crate::outbox::Depth;

/// Upper bounds (seconds) of the lag histogram buckets.
pub const LAG_BUCKETS: [f64; 14] =
    [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0];

/// A histogram of seconds, with the [`LAG_BUCKETS`] bounds.
pub struct Histogram(metrics::Histogram);

impl Histogram {
    /// Records one observation in seconds.
    pub fn observe(&self, secs: f64) {
        self.0.record(secs.max(0.0));
    }
}

/// The bridge's own recorder.
struct Exporter {
    recorder: PrometheusRecorder,
}

const META: Metadata<'static> = Metadata::new("p2pe_mqtt_bridge", metrics::Level::INFO, None);

impl Exporter {
    fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LAG_BUCKETS)
            .expect("fixed, non-empty buckets")
            .build_recorder();
        let e = Self { recorder };
        for (name, help) in DESCRIPTIONS {
            e.recorder.describe_counter(name.into(), None, help.into());
        }
        e
    }

    fn key(name: &'static str, label: Option<(&'static str, String)>) -> Key {
        match label {
            Some((k, v)) => Key::from_parts(name, vec![Label::new(k, v)]),
            None => Key::from_name(name),
        }
    }

    fn counter(&self, name: &'static str, label: Option<(&'static str, String)>, v: u64) {
        self.recorder.register_counter(&Self::key(name, label), &META).absolute(v);
    }

    fn gauge(&self, name: &'static str, label: Option<(&'static str, String)>, v: f64) {
        self.recorder.register_gauge(&Self::key(name, label), &META).set(v);
    }

    fn histogram(&self, name: &'static str) -> Histogram {
        Histogram(self.recorder.register_histogram(&Self::key(name, None), &META))
    }
}

/// `# HELP` lines (the recorder's descriptions are per name, whatever the kind).
const DESCRIPTIONS: [(&str, &str); 34] = [
    ("p2pe_bridge_readings_received_total", "MQTT messages received (the shared session's copies of meter messages not counted)."),
    ("p2pe_bridge_readings_committed_total", "Readings committed to the outbox."),
    ("p2pe_bridge_readings_submitted_total", "Readings put into a signed and sent transaction."),
    ("p2pe_bridge_readings_confirmed_total", "Readings confirmed on chain."),
    ("p2pe_bridge_readings_duplicate_total", "Redelivered readings dropped as duplicates."),
    ("p2pe_bridge_monitoring_messages_total", "Monitoring-only messages (instantaneous power)."),
    ("p2pe_bridge_counter_resets_total", "Meter counter resets detected."),
    ("p2pe_bridge_sequence_gaps_total", "Gaps in meters' sequence numbers."),
    (
        "p2pe_bridge_quarantined_total",
        "Readings quarantined (implausible rise or epoch flapping), never signed.",
    ),
    (
        "p2pe_bridge_dead_letters_suppressed_total",
        "Refused messages counted and acked but not stored (source over limits.dead_letters_per_minute).",
    ),
    ("p2pe_bridge_rejected_total", "Inputs refused (dead-lettered, quarantined or suppressed), by reason."),
    ("p2pe_bridge_txs_sent_total", "Transactions signed and sent."),
    ("p2pe_bridge_txs_resent_total", "Verbatim resends of transactions without a receipt."),
    ("p2pe_bridge_txs_reverted_total", "Transactions that reverted."),
    (
        "p2pe_bridge_txs_reorged_total",
        "Mined transactions that left the canonical chain before they were confirmed; resent.",
    ),
    ("p2pe_bridge_txs_dropped_total", "Transactions whose nonce was used by another."),
    ("p2pe_bridge_rpc_errors_total", "JSON-RPC rounds that reached no node."),
    ("p2pe_bridge_mqtt_reconnects_total", "MQTT reconnection attempts."),
    ("p2pe_bridge_mqtt_connected", "1 when every MQTT session of the bridge is connected to the broker."),
    ("p2pe_bridge_mqtt_sessions", "MQTT sessions the bridge keeps (the shared one and one per meter)."),
    ("p2pe_bridge_mqtt_sessions_connected", "MQTT sessions connected to the broker now."),
    ("p2pe_bridge_mqtt_acks_waiting", "Acks of committed messages waiting for their session's client to take them."),
    (
        "p2pe_bridge_mqtt_copies_total",
        "Messages on meters' topics that came on the shared session: copies of what the meters' own sessions deliver, stored only if first.",
    ),
    ("p2pe_bridge_rpc_up", "1 when the last JSON-RPC round succeeded."),
    ("p2pe_bridge_outbox_depth", "Readings not yet confirmed (pending + in flight)."),
    ("p2pe_bridge_outbox_pending", "Readings not yet in a transaction."),
    ("p2pe_bridge_outbox_in_flight", "Readings in transactions without a receipt."),
    (
        "p2pe_bridge_txs_in_flight",
        "Transactions not yet final (no receipt, or not yet `confirmations` deep).",
    ),
    ("p2pe_bridge_dead_letters", "Rows in the dead-letter table."),
    ("p2pe_bridge_quarantine", "Rows in the quarantine table."),
    (
        "p2pe_bridge_last_lag_seconds",
        "End-to-end lag (meter timestamp to confirmation) of the last confirmed reading.",
    ),
    ("p2pe_bridge_lag_seconds", "Seconds from the meter's timestamp to on-chain confirmation."),
    (
        "p2pe_bridge_receive_to_confirm_seconds",
        "Seconds from receipt by the bridge to on-chain confirmation.",
    ),
    ("p2pe_bridge_meter_power_watts", "Latest instantaneous power per meter (monitoring only)."),
];

/// All metrics. Shared as `Arc<Metrics>`.
pub struct Metrics {
    /// MQTT messages received on meter topics.
    pub received: AtomicU64,
    /// Readings committed to the outbox.
    pub committed: AtomicU64,
    /// Readings put into a signed, sent transaction.
    pub submitted: AtomicU64,
    /// Readings confirmed on chain.
    pub confirmed: AtomicU64,
    /// Redelivered readings dropped as duplicates.
    pub duplicates: AtomicU64,
    /// Monitoring-only messages (instantaneous power).
    pub monitoring: AtomicU64,
    /// Counter resets detected.
    pub counter_resets: AtomicU64,
    /// Sequence-number gaps seen.
    pub sequence_gaps: AtomicU64,
    /// Readings quarantined (implausible rise, epoch flapping).
    pub quarantined: AtomicU64,
    /// Refused messages not stored because their source was over `limits.dead_letters_per_minute`.
    pub dead_letters_suppressed: AtomicU64,
    /// Mined transactions whose receipt disappeared before they were confirmed (reorg); resent.
    pub txs_reorged: AtomicU64,
    rejected: [AtomicU64; Reason::ALL.len()],
    /// Transactions signed and sent for the first time.
    pub txs_sent: AtomicU64,
    /// Verbatim resends of transactions without a receipt.
    pub txs_resent: AtomicU64,
    /// Transactions that reverted.
    pub txs_reverted: AtomicU64,
    /// Transactions dropped because their nonce was used by another.
    pub txs_dropped: AtomicU64,
    /// JSON-RPC failures (no node reachable).
    pub rpc_errors: AtomicU64,
    /// MQTT connection attempts after the first.
    pub mqtt_reconnects: AtomicU64,
    /// MQTT sessions the bridge keeps.
    pub mqtt_sessions: AtomicU64,
    /// MQTT sessions connected now (CONNACK received, not lost since).
    pub mqtt_sessions_connected: AtomicU64,
    /// Acks waiting for their session's client (see [`crate::mqtt::run_acker`]).
    pub mqtt_acks_waiting: AtomicU64,
    /// Messages on meters' topics received on the shared session (copies; not in `received`).
    pub copies: AtomicU64,
    /// Whether the last JSON-RPC round succeeded.
    pub rpc_up: AtomicBool,
    /// Outbox depth (updated by the submitter each round).
    depth: Mutex<Depth>,
    /// Seconds from the meter's timestamp to on-chain confirmation.
    pub lag: Histogram,
    /// Seconds from receipt by the bridge to on-chain confirmation.
    pub bridge_lag: Histogram,
    /// Latest instantaneous power per meter (W), monitoring only.
    power: Mutex<BTreeMap<String, f64>>,
    /// Last end-to-end lag in milliseconds.
    pub last_lag_ms: AtomicU64,
    exporter: Exporter,
}

impl Default for Metrics {
    fn default() -> Self {
        let exporter = Exporter::new();
        Self {
            received: Default::default(),
            committed: Default::default(),
            submitted: Default::default(),
            confirmed: Default::default(),
            duplicates: Default::default(),
            monitoring: Default::default(),
            counter_resets: Default::default(),
            sequence_gaps: Default::default(),
            quarantined: Default::default(),
            dead_letters_suppressed: Default::default(),
            txs_reorged: Default::default(),
            rejected: Default::default(),
            txs_sent: Default::default(),
            txs_resent: Default::default(),
            txs_reverted: Default::default(),
            txs_dropped: Default::default(),
            rpc_errors: Default::default(),
            mqtt_reconnects: Default::default(),
            mqtt_sessions: Default::default(),
            mqtt_sessions_connected: Default::default(),
            copies: Default::default(),
            mqtt_acks_waiting: Default::default(),
            rpc_up: Default::default(),
            depth: Default::default(),
            lag: exporter.histogram("p2pe_bridge_lag_seconds"),
            bridge_lag: exporter.histogram("p2pe_bridge_receive_to_confirm_seconds"),
            power: Default::default(),
            last_lag_ms: Default::default(),
            exporter,
        }
    }
}

impl Metrics {
    /// Counts a rejection.
    pub fn reject(&self, reason: Reason) {
        let i = Reason::ALL.iter().position(|r| *r == reason).expect("listed");
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Rejections counted for `reason`.
    pub fn rejected(&self, reason: Reason) -> u64 {
        let i = Reason::ALL.iter().position(|r| *r == reason).expect("listed");
        self.rejected[i].load(Ordering::Relaxed)
    }

    /// Whether every MQTT session is connected (false before the first is configured).
    pub fn mqtt_connected(&self) -> bool {
        let n = self.mqtt_sessions.load(Ordering::Relaxed);
        n > 0 && self.mqtt_sessions_connected.load(Ordering::Relaxed) == n
    }

    /// Sets the outbox depth.
    pub fn set_depth(&self, d: Depth) {
        *self.depth.lock().expect("metrics lock") = d;
    }

    /// The last outbox depth.
    pub fn depth(&self) -> Depth {
        *self.depth.lock().expect("metrics lock")
    }

    /// Records a meter's instantaneous power.
    pub fn set_power(&self, meter: &str, watts: f64) {
        self.power.lock().expect("metrics lock").insert(meter.to_string(), watts);
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let e = &self.exporter;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counters: [(&'static str, &AtomicU64); 18] = [
            ("p2pe_bridge_readings_received_total", &self.received),
            ("p2pe_bridge_readings_committed_total", &self.committed),
            ("p2pe_bridge_readings_submitted_total", &self.submitted),
            ("p2pe_bridge_readings_confirmed_total", &self.confirmed),
            ("p2pe_bridge_readings_duplicate_total", &self.duplicates),
            ("p2pe_bridge_monitoring_messages_total", &self.monitoring),
            ("p2pe_bridge_counter_resets_total", &self.counter_resets),
            ("p2pe_bridge_sequence_gaps_total", &self.sequence_gaps),
            ("p2pe_bridge_quarantined_total", &self.quarantined),
            ("p2pe_bridge_dead_letters_suppressed_total", &self.dead_letters_suppressed),
            ("p2pe_bridge_txs_sent_total", &self.txs_sent),
            ("p2pe_bridge_txs_resent_total", &self.txs_resent),
            ("p2pe_bridge_txs_reverted_total", &self.txs_reverted),
            ("p2pe_bridge_txs_reorged_total", &self.txs_reorged),
            ("p2pe_bridge_txs_dropped_total", &self.txs_dropped),
            ("p2pe_bridge_rpc_errors_total", &self.rpc_errors),
            ("p2pe_bridge_mqtt_reconnects_total", &self.mqtt_reconnects),
            ("p2pe_bridge_mqtt_copies_total", &self.copies),
        ];
        for (name, v) in counters {
            e.counter(name, None, load(v));
        }
        for (i, r) in Reason::ALL.iter().enumerate() {
            e.counter(
                "p2pe_bridge_rejected_total",
                Some(("reason", r.as_str().to_string())),
                load(&self.rejected[i]),
            );
        }
        let flag = |b: &AtomicBool| f64::from(u8::from(b.load(Ordering::Relaxed)));
        let d = self.depth();
        let gauges: [(&'static str, f64); 12] = [
            ("p2pe_bridge_mqtt_connected", f64::from(u8::from(self.mqtt_connected()))),
            ("p2pe_bridge_mqtt_sessions", load(&self.mqtt_sessions) as f64),
            ("p2pe_bridge_mqtt_sessions_connected", load(&self.mqtt_sessions_connected) as f64),
            ("p2pe_bridge_mqtt_acks_waiting", load(&self.mqtt_acks_waiting) as f64),
            ("p2pe_bridge_rpc_up", flag(&self.rpc_up)),
            ("p2pe_bridge_outbox_depth", (d.pending + d.in_flight) as f64),
            ("p2pe_bridge_outbox_pending", d.pending as f64),
            ("p2pe_bridge_outbox_in_flight", d.in_flight as f64),
            ("p2pe_bridge_txs_in_flight", d.txs_in_flight as f64),
            ("p2pe_bridge_dead_letters", d.dead_letters as f64),
            ("p2pe_bridge_quarantine", d.quarantined as f64),
            ("p2pe_bridge_last_lag_seconds", load(&self.last_lag_ms) as f64 / 1000.0),
        ];
        for (name, v) in gauges {
            e.gauge(name, None, v);
        }
        for (meter, watts) in self.power.lock().expect("metrics lock").iter() {
            e.gauge("p2pe_bridge_meter_power_watts", Some(("meter", meter.clone())), *watts);
        }
        e.recorder.handle().render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_reason_and_histograms() {
        let m = Metrics::default();
        m.reject(Reason::Oversize);
        m.reject(Reason::Oversize);
        m.lag.observe(0.7);
        m.set_power("plug-07", 5.0);
        let text = m.render();
        assert!(text.contains("p2pe_bridge_rejected_total{reason=\"oversize\"} 2"));
        assert!(text.contains("p2pe_bridge_rejected_total{reason=\"malformed\"} 0"));
        assert!(text.contains("p2pe_bridge_lag_seconds_bucket{le=\"0.5\"} 0"));
        assert!(text.contains("p2pe_bridge_lag_seconds_bucket{le=\"1\"} 1"));
        assert!(text.contains("p2pe_bridge_meter_power_watts{meter=\"plug-07\"} 5"));
    }
}
