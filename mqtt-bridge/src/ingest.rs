//! The acceptance rules for a decoded sample, given the meter's last accepted reading.
//!
//! Pure functions, so every rule is unit-tested; [`crate::outbox`] applies them inside the SQLite
//! transaction that stores the reading.
//!
//! - Timestamps outside `[now - max_past, now + max_future]` are refused.
//! - The first reading of a meter is accepted as is.
//! - Same timestamp as the last reading: a duplicate (same counters) is dropped silently, other
//!   counters are `conflicting`. An older timestamp is `out_of_order` (the contract would ignore it).
//! - A changed epoch (Tasmota `TotalStartTime`, the JSON `epoch`) is a **counter reset**: it is reported,
//!   and the meter's effective counters are re-based so that they continue from the last effective
//!   values (`effective = base + raw`): nothing is ever submitted as negative energy.
//! - A counter that goes down without an epoch change is refused as `counter_backwards` (policy
//!   `reject`, the default) or treated as a reset (policy `rebase`).

use crate::config::{DecreasePolicy, Limits};
use crate::decode::{Reason, Rejection, Sample};

/// What the bridge remembers of a meter: its last accepted reading and the re-basing offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterState {
    /// Raw import counter of the last accepted reading (Wh).
    pub raw_import: u64,
    /// Raw export counter of the last accepted reading (Wh).
    pub raw_export: u64,
    /// Device timestamp of the last accepted reading.
    pub timestamp: u64,
    /// Offset added to raw import since the last reset.
    pub base_import: u64,
    /// Offset added to raw export since the last reset.
    pub base_export: u64,
    /// Epoch (reset marker) of the last accepted reading.
    pub epoch: Option<String>,
    /// Sequence number of the last accepted reading.
    pub seq: Option<u64>,
}

impl MeterState {
    /// Effective import counter (what the chain sees).
    pub fn import_wh(&self) -> u64 {
        self.base_import + self.raw_import
    }

    /// Effective export counter (what the chain sees).
    pub fn export_wh(&self) -> u64 {
        self.base_export + self.raw_export
    }
}

/// A detected counter reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// `epoch` (marker changed) or `decrease` (counter went down, policy `rebase`).
    pub kind: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

/// The outcome of judging one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Store the reading with these effective counters and this new meter state.
    Accept {
        /// Effective import counter to submit.
        import_wh: u64,
        /// Effective export counter to submit.
        export_wh: u64,
        /// The meter's state after this reading.
        state: MeterState,
        /// A counter reset detected at this reading.
        reset: Option<Reset>,
        /// The sequence number skipped values (lost messages upstream of the broker).
        seq_gap: bool,
    },
    /// Exactly this reading is already stored (a redelivery): drop it.
    Duplicate,
    /// Refused: dead-letter it.
    Reject(Rejection),
}

/// Judges `sample` against the meter's previous state. `stored_duplicate` says whether a reading with
/// the same meter, counters and timestamp is already in the outbox.
pub fn judge(
    prev: Option<&MeterState>,
    sample: &Sample,
    policy: DecreasePolicy,
    now_secs: u64,
    limits: &Limits,
    stored_duplicate: bool,
) -> Verdict {
    if stored_duplicate {
        return Verdict::Duplicate;
    }
    if sample.timestamp > now_secs.saturating_add(limits.max_future_secs) {
        return Verdict::Reject(Rejection::new(
            Reason::FutureTimestamp,
            format!(
                "timestamp {} is {} s ahead of the bridge clock",
                sample.timestamp,
                sample.timestamp - now_secs
            ),
        ));
    }
    if sample.timestamp < now_secs.saturating_sub(limits.max_past_secs) {
        return Verdict::Reject(Rejection::new(
            Reason::PastTimestamp,
            format!(
                "timestamp {} is {} s old (limit {} s)",
                sample.timestamp,
                now_secs - sample.timestamp,
                limits.max_past_secs
            ),
        ));
    }
    let new_state = |base_import: u64, base_export: u64| MeterState {
        raw_import: sample.import_wh,
        raw_export: sample.export_wh,
        timestamp: sample.timestamp,
        base_import,
        base_export,
        epoch: sample.epoch.clone(),
        seq: sample.seq,
    };
    let Some(prev) = prev else {
        let state = new_state(0, 0);
        return Verdict::Accept {
            import_wh: state.import_wh(),
            export_wh: state.export_wh(),
            state,
            reset: None,
            seq_gap: false,
        };
    };
    if sample.timestamp == prev.timestamp {
        // Not an exact duplicate (checked above), so the counters differ.
        return Verdict::Reject(Rejection::new(
            Reason::Conflicting,
            format!(
                "timestamp {} already has import {} / export {} Wh, this says {} / {}",
                sample.timestamp, prev.raw_import, prev.raw_export, sample.import_wh, sample.export_wh
            ),
        ));
    }
    if sample.timestamp < prev.timestamp {
        return Verdict::Reject(Rejection::new(
            Reason::OutOfOrder,
            format!(
                "timestamp {} is older than the last accepted reading's {}",
                sample.timestamp, prev.timestamp
            ),
        ));
    }
    let seq_gap = matches!((prev.seq, sample.seq), (Some(a), Some(b)) if b != a.wrapping_add(1));
    let epoch_changed = matches!((&prev.epoch, &sample.epoch), (Some(a), Some(b)) if a != b);
    let decreased = sample.import_wh < prev.raw_import || sample.export_wh < prev.raw_export;
    let reset = if epoch_changed {
        Some(Reset {
            kind: "epoch",
            detail: format!(
                "epoch changed from {:?} to {:?}; raw counters {} / {} -> {} / {} Wh",
                prev.epoch.as_deref().unwrap_or(""),
                sample.epoch.as_deref().unwrap_or(""),
                prev.raw_import,
                prev.raw_export,
                sample.import_wh,
                sample.export_wh
            ),
        })
    } else if decreased {
        match policy {
            DecreasePolicy::Reject => {
                return Verdict::Reject(Rejection::new(
                    Reason::CounterBackwards,
                    format!(
                        "counters went from {} / {} to {} / {} Wh without a reset marker",
                        prev.raw_import, prev.raw_export, sample.import_wh, sample.export_wh
                    ),
                ))
            }
            DecreasePolicy::Rebase => Some(Reset {
                kind: "decrease",
                detail: format!(
                    "raw counters went down {} / {} -> {} / {} Wh (policy rebase)",
                    prev.raw_import, prev.raw_export, sample.import_wh, sample.export_wh
                ),
            }),
        }
    } else {
        None
    };
    let (base_import, base_export) = if reset.is_some() {
        (prev.import_wh(), prev.export_wh())
    } else {
        (prev.base_import, prev.base_export)
    };
    let state = new_state(base_import, base_export);
    let (Some(import_wh), Some(export_wh)) =
        (base_import.checked_add(sample.import_wh), base_export.checked_add(sample.export_wh))
    else {
        return Verdict::Reject(Rejection::new(Reason::ErrorValue, "effective counter overflows 64 bits"));
    };
    if import_wh >= u64::MAX - 1 || export_wh >= u64::MAX - 1 {
        return Verdict::Reject(Rejection::new(
            Reason::ErrorValue,
            "effective counter too large for the contract",
        ));
    }
    Verdict::Accept { import_wh, export_wh, state, reset, seq_gap }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn limits() -> Limits {
        Limits { max_payload_bytes: 1024, max_future_secs: 30, max_past_secs: 3600 }
    }

    fn sample(i: u64, e: u64, ts: u64) -> Sample {
        Sample { import_wh: i, export_wh: e, timestamp: ts, seq: None, epoch: None, power_w: None }
    }

    fn accept(
        prev: Option<&MeterState>,
        s: &Sample,
        p: DecreasePolicy,
    ) -> (u64, u64, MeterState, Option<Reset>) {
        match judge(prev, s, p, NOW, &limits(), false) {
            Verdict::Accept { import_wh, export_wh, state, reset, .. } => {
                (import_wh, export_wh, state, reset)
            }
            other => panic!("not accepted: {other:?}"),
        }
    }

    fn reason(prev: Option<&MeterState>, s: &Sample) -> Reason {
        match judge(prev, s, DecreasePolicy::Reject, NOW, &limits(), false) {
            Verdict::Reject(r) => r.reason,
            other => panic!("not rejected: {other:?}"),
        }
    }

    #[test]
    fn time_window() {
        assert_eq!(reason(None, &sample(1, 1, NOW + 31)), Reason::FutureTimestamp);
        assert_eq!(reason(None, &sample(1, 1, NOW - 3601)), Reason::PastTimestamp);
        accept(None, &sample(1, 1, NOW + 30), DecreasePolicy::Reject);
    }

    #[test]
    fn duplicates_conflicts_and_order() {
        let (_, _, st, _) = accept(None, &sample(10, 5, NOW - 10), DecreasePolicy::Reject);
        assert_eq!(
            judge(Some(&st), &sample(10, 5, NOW - 10), DecreasePolicy::Reject, NOW, &limits(), true),
            Verdict::Duplicate
        );
        assert_eq!(reason(Some(&st), &sample(11, 5, NOW - 10)), Reason::Conflicting);
        assert_eq!(reason(Some(&st), &sample(9, 5, NOW - 11)), Reason::OutOfOrder);
        assert_eq!(reason(Some(&st), &sample(9, 5, NOW - 9)), Reason::CounterBackwards);
        assert_eq!(reason(Some(&st), &sample(10, 4, NOW - 9)), Reason::CounterBackwards);
        let (i, e, _, r) = accept(Some(&st), &sample(12, 5, NOW - 9), DecreasePolicy::Reject);
        assert_eq!((i, e, r), (12, 5, None));
    }

    #[test]
    fn epoch_change_rebases_and_is_reported() {
        let mut s = sample(3705, 0, NOW - 100);
        s.epoch = Some("2025-10-21T22:15:00".into());
        let (_, _, st, _) = accept(None, &s, DecreasePolicy::Reject);
        let mut r = sample(4, 0, NOW - 50);
        r.epoch = Some("2026-06-11T12:20:00".into());
        let (i, e, st2, reset) = accept(Some(&st), &r, DecreasePolicy::Reject);
        assert_eq!((i, e), (3709, 0), "continues from the last effective value");
        assert_eq!(reset.unwrap().kind, "epoch");
        let mut n = sample(10, 0, NOW - 40);
        n.epoch = Some("2026-06-11T12:20:00".into());
        let (i, _, _, reset) = accept(Some(&st2), &n, DecreasePolicy::Reject);
        assert_eq!((i, reset), (3715, None));
    }

    #[test]
    fn decrease_with_rebase_policy_is_a_reset() {
        let (_, _, st, _) = accept(None, &sample(1000, 10, NOW - 100), DecreasePolicy::Rebase);
        let (i, e, _, reset) = accept(Some(&st), &sample(2, 1, NOW - 90), DecreasePolicy::Rebase);
        assert_eq!((i, e), (1002, 11));
        assert_eq!(reset.unwrap().kind, "decrease");
    }

    #[test]
    fn sequence_gaps_are_noticed() {
        let mut a = sample(1, 1, NOW - 10);
        a.seq = Some(7);
        let (_, _, st, _) = accept(None, &a, DecreasePolicy::Reject);
        let mut b = sample(2, 1, NOW - 9);
        b.seq = Some(9);
        assert!(matches!(
            judge(Some(&st), &b, DecreasePolicy::Reject, NOW, &limits(), false),
            Verdict::Accept { seq_gap: true, .. }
        ));
        b.seq = Some(8);
        assert!(matches!(
            judge(Some(&st), &b, DecreasePolicy::Reject, NOW, &limits(), false),
            Verdict::Accept { seq_gap: false, .. }
        ));
    }
}
