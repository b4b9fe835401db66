//! Counters and gauges of the bridge, rendered in the Prometheus text exposition format by
//! [`Metrics::render`] (served on `/metrics`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::decode::Reason;
use crate::outbox::Depth;

/// Upper bounds (seconds) of the lag histogram buckets.
pub const LAG_BUCKETS: [f64; 14] =
    [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0];

/// A cumulative histogram.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; LAG_BUCKETS.len()],
    count: AtomicU64,
    sum_millis: AtomicU64,
}

impl Histogram {
    /// Records one observation in seconds.
    pub fn observe(&self, secs: f64) {
        let secs = secs.max(0.0);
        for (i, b) in LAG_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_millis.fetch_add((secs * 1000.0) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in LAG_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", self.counts[i].load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_millis.load(Ordering::Relaxed) as f64 / 1000.0);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// All metrics. Shared as `Arc<Metrics>`.
#[derive(Default)]
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
    /// Whether the MQTT connection is up (CONNACK received).
    pub mqtt_connected: AtomicBool,
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
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(
            &mut out,
            "p2pe_bridge_readings_received_total",
            "MQTT messages received on meter topics.",
            &self.received,
        );
        counter(
            &mut out,
            "p2pe_bridge_readings_committed_total",
            "Readings committed to the outbox.",
            &self.committed,
        );
        counter(
            &mut out,
            "p2pe_bridge_readings_submitted_total",
            "Readings put into a signed and sent transaction.",
            &self.submitted,
        );
        counter(
            &mut out,
            "p2pe_bridge_readings_confirmed_total",
            "Readings confirmed on chain.",
            &self.confirmed,
        );
        counter(
            &mut out,
            "p2pe_bridge_readings_duplicate_total",
            "Redelivered readings dropped as duplicates.",
            &self.duplicates,
        );
        counter(
            &mut out,
            "p2pe_bridge_monitoring_messages_total",
            "Monitoring-only messages (instantaneous power).",
            &self.monitoring,
        );
        counter(
            &mut out,
            "p2pe_bridge_counter_resets_total",
            "Meter counter resets detected.",
            &self.counter_resets,
        );
        counter(
            &mut out,
            "p2pe_bridge_sequence_gaps_total",
            "Gaps in meters' sequence numbers.",
            &self.sequence_gaps,
        );
        counter(
            &mut out,
            "p2pe_bridge_quarantined_total",
            "Readings quarantined (implausible rise or epoch flapping), never signed.",
            &self.quarantined,
        );
        counter(
            &mut out,
            "p2pe_bridge_dead_letters_suppressed_total",
            "Refused messages counted and acked but not stored (source over limits.dead_letters_per_minute).",
            &self.dead_letters_suppressed,
        );
        let _ = writeln!(out, "# HELP p2pe_bridge_rejected_total Inputs refused (dead-lettered, quarantined or suppressed), by reason.\n# TYPE p2pe_bridge_rejected_total counter");
        for (i, r) in Reason::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "p2pe_bridge_rejected_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.rejected[i].load(Ordering::Relaxed)
            );
        }
        counter(&mut out, "p2pe_bridge_txs_sent_total", "Transactions signed and sent.", &self.txs_sent);
        counter(
            &mut out,
            "p2pe_bridge_txs_resent_total",
            "Verbatim resends of transactions without a receipt.",
            &self.txs_resent,
        );
        counter(
            &mut out,
            "p2pe_bridge_txs_reverted_total",
            "Transactions that reverted.",
            &self.txs_reverted,
        );
        counter(
            &mut out,
            "p2pe_bridge_txs_reorged_total",
            "Mined transactions that left the canonical chain before they were confirmed; resent.",
            &self.txs_reorged,
        );
        counter(
            &mut out,
            "p2pe_bridge_txs_dropped_total",
            "Transactions whose nonce was used by another.",
            &self.txs_dropped,
        );
        counter(
            &mut out,
            "p2pe_bridge_rpc_errors_total",
            "JSON-RPC rounds that reached no node.",
            &self.rpc_errors,
        );
        counter(
            &mut out,
            "p2pe_bridge_mqtt_reconnects_total",
            "MQTT reconnection attempts.",
            &self.mqtt_reconnects,
        );
        gauge(
            &mut out,
            "p2pe_bridge_mqtt_connected",
            "1 when connected to the broker.",
            f64::from(u8::from(self.mqtt_connected.load(Ordering::Relaxed))),
        );
        gauge(
            &mut out,
            "p2pe_bridge_rpc_up",
            "1 when the last JSON-RPC round succeeded.",
            f64::from(u8::from(self.rpc_up.load(Ordering::Relaxed))),
        );
        let d = self.depth();
        gauge(
            &mut out,
            "p2pe_bridge_outbox_depth",
            "Readings not yet confirmed (pending + in flight).",
            (d.pending + d.in_flight) as f64,
        );
        gauge(&mut out, "p2pe_bridge_outbox_pending", "Readings not yet in a transaction.", d.pending as f64);
        gauge(
            &mut out,
            "p2pe_bridge_outbox_in_flight",
            "Readings in transactions without a receipt.",
            d.in_flight as f64,
        );
        gauge(
            &mut out,
            "p2pe_bridge_txs_in_flight",
            "Transactions not yet final (no receipt, or not yet `confirmations` deep).",
            d.txs_in_flight as f64,
        );
        gauge(&mut out, "p2pe_bridge_dead_letters", "Rows in the dead-letter table.", d.dead_letters as f64);
        gauge(&mut out, "p2pe_bridge_quarantine", "Rows in the quarantine table.", d.quarantined as f64);
        gauge(
            &mut out,
            "p2pe_bridge_last_lag_seconds",
            "End-to-end lag (meter timestamp to confirmation) of the last confirmed reading.",
            self.last_lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        self.lag.render(
            &mut out,
            "p2pe_bridge_lag_seconds",
            "Seconds from the meter's timestamp to on-chain confirmation.",
        );
        self.bridge_lag.render(
            &mut out,
            "p2pe_bridge_receive_to_confirm_seconds",
            "Seconds from receipt by the bridge to on-chain confirmation.",
        );
        let power = self.power.lock().expect("metrics lock");
        let _ = writeln!(out, "# HELP p2pe_bridge_meter_power_watts Latest instantaneous power per meter (monitoring only).\n# TYPE p2pe_bridge_meter_power_watts gauge");
        for (m, w) in power.iter() {
            let _ = writeln!(
                out,
                "p2pe_bridge_meter_power_watts{{meter=\"{}\"}} {w}",
                m.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
        out
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
