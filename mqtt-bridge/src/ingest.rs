//! The acceptance rules for a decoded sample, given the meter's last accepted reading.
//!
//! Pure functions, so every rule is unit-tested; [`crate::outbox`] applies them inside the SQLite
//! transaction that stores the reading.
//!
//! - Timestamps outside `[now - max_past, now + max_future]` are refused.
//! - The first reading of a meter is accepted as is.
//! - Same timestamp as the last reading: a duplicate (same counters) is dropped silently, other
//!   counters are `conflicting`. An older timestamp is `out_of_order`: the contract would take it (it
//!   fixes slot boundaries from the readings that bracket them, whatever their arrival order), but the
//!   rules below judge a reading against the one before it in time, and the bridge keeps only the
//!   meter's latest; a meter publishes in order, so this refuses only a redelivered old message.
//! - A changed epoch (Tasmota `TotalStartTime`, the JSON `epoch`) is a **counter reset**: it is reported,
//!   and the meter's effective counters are re-based so that they continue from the last effective
//!   values (`effective = base + raw`): nothing is ever submitted as negative energy.
//! - A counter that goes down without an epoch change is refused as `counter_backwards` (policy
//!   `reject`, the default) or treated as a reset (policy `rebase`).
//!
//! Two rules **quarantine** a reading (kept in the outbox's `quarantine` table for the operator, never
//! signed); the meter's state stays at its last accepted reading, so the next genuine reading is
//! judged against that one, with all the time elapsed since:
//! - **Implausible rise** (`implausible_rise`): a counter may rise by at most
//!   `floor(max_power_w × elapsed_s / 3600) + 1` Wh between two readings, where
//!   `max_power_w = phases × voltage_v × rated_current_a` of the meter (default 3 × 230 V × 63 A =
//!   43,470 W, i.e. 12.075 Wh/s) and the `+ 1` Wh absorbs the rounding of whole-Wh registers. After a
//!   reset the rise is the new raw counter itself.
//! - **Epoch flapping** (`epoch_flapping`): a reset to an epoch the meter already had within the last
//!   `limits.counter_reset_window_secs` (it flips back), or a reset when the meter already had
//!   `limits.max_counter_resets` resets within that window (device time). Both expire with the window,
//!   so a meter that really did return to an old epoch is accepted again later.

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

/// Per-meter rules of [`judge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterRules {
    /// What a decreasing counter means.
    pub policy: DecreasePolicy,
    /// Most power the meter can carry, W (see [`crate::config::MeterConfig::max_power_w`]).
    pub max_power_w: u64,
}

/// What the outbox knows of a meter beyond its last accepted reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// A reading with the same meter, counters and timestamp is already stored.
    pub stored_duplicate: bool,
    /// The sample's epoch was the meter's epoch within `counter_reset_window_secs` before its timestamp.
    pub epoch_seen_before: bool,
    /// Counter resets of the meter within `counter_reset_window_secs` before the sample's timestamp.
    pub resets_in_window: u64,
}

/// The largest rise (Wh) a counter may show after `elapsed_secs` at `max_power_w`:
/// `floor(max_power_w × elapsed_secs / 3600) + 1`.
pub fn max_rise_wh(max_power_w: u64, elapsed_secs: u64) -> u64 {
    (u128::from(max_power_w) * u128::from(elapsed_secs) / 3600).min(u128::from(u64::MAX - 1)) as u64 + 1
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
    /// Physically implausible or flapping: keep it in quarantine, do not sign it.
    Quarantine(Rejection),
}

/// Judges `sample` against the meter's previous state and history.
pub fn judge(
    prev: Option<&MeterState>,
    sample: &Sample,
    rules: MeterRules,
    now_secs: u64,
    limits: &Limits,
    history: History,
) -> Verdict {
    if history.stored_duplicate {
        return Verdict::Duplicate;
    }
    if let Err(r) = check_clock(sample, now_secs, limits) {
        return Verdict::Reject(r);
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
    let reset = match check_order(prev, sample).and_then(|()| detect_reset(prev, sample, rules.policy)) {
        Ok(reset) => reset,
        Err(r) => return Verdict::Reject(r),
    };
    if let Some(q) = flapping(prev, sample, reset.as_ref(), limits, history) {
        return Verdict::Quarantine(q);
    }
    if let Some(q) = implausible_rise(prev, sample, reset.is_some(), rules.max_power_w) {
        return Verdict::Quarantine(q);
    }
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
    let seq_gap = matches!((prev.seq, sample.seq), (Some(a), Some(b)) if b != a.wrapping_add(1));
    Verdict::Accept { import_wh, export_wh, state, reset, seq_gap }
}

/// The sample's timestamp against the bridge's clock: not too far ahead, not too old.
fn check_clock(sample: &Sample, now_secs: u64, limits: &Limits) -> Result<(), Rejection> {
    if sample.timestamp > now_secs.saturating_add(limits.max_future_secs) {
        return Err(Rejection::new(
            Reason::FutureTimestamp,
            format!(
                "timestamp {} is {} s ahead of the bridge clock",
                sample.timestamp,
                sample.timestamp - now_secs
            ),
        ));
    }
    if sample.timestamp < now_secs.saturating_sub(limits.max_past_secs) {
        return Err(Rejection::new(
            Reason::PastTimestamp,
            format!(
                "timestamp {} is {} s old (limit {} s)",
                sample.timestamp,
                now_secs - sample.timestamp,
                limits.max_past_secs
            ),
        ));
    }
    Ok(())
}

/// The sample's timestamp against the meter's last accepted reading: strictly later.
fn check_order(prev: &MeterState, sample: &Sample) -> Result<(), Rejection> {
    if sample.timestamp == prev.timestamp {
        // Not an exact duplicate (checked before), so the counters differ.
        return Err(Rejection::new(
            Reason::Conflicting,
            format!(
                "timestamp {} already has import {} / export {} Wh, this says {} / {}",
                sample.timestamp, prev.raw_import, prev.raw_export, sample.import_wh, sample.export_wh
            ),
        ));
    }
    if sample.timestamp < prev.timestamp {
        return Err(Rejection::new(
            Reason::OutOfOrder,
            format!(
                "timestamp {} is older than the last accepted reading's {}",
                sample.timestamp, prev.timestamp
            ),
        ));
    }
    Ok(())
}

/// A counter reset at this sample: a new epoch, or counters that went down (refused, or
/// rebased, by the meter's `policy`).
fn detect_reset(
    prev: &MeterState,
    sample: &Sample,
    policy: DecreasePolicy,
) -> Result<Option<Reset>, Rejection> {
    let epoch_changed = matches!((&prev.epoch, &sample.epoch), (Some(a), Some(b)) if a != b);
    if epoch_changed {
        return Ok(Some(Reset {
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
        }));
    }
    if sample.import_wh >= prev.raw_import && sample.export_wh >= prev.raw_export {
        return Ok(None);
    }
    match policy {
        DecreasePolicy::Reject => Err(Rejection::new(
            Reason::CounterBackwards,
            format!(
                "counters went from {} / {} to {} / {} Wh without a reset marker",
                prev.raw_import, prev.raw_export, sample.import_wh, sample.export_wh
            ),
        )),
        DecreasePolicy::Rebase => Ok(Some(Reset {
            kind: "decrease",
            detail: format!(
                "raw counters went down {} / {} -> {} / {} Wh (policy rebase)",
                prev.raw_import, prev.raw_export, sample.import_wh, sample.export_wh
            ),
        })),
    }
}

/// The epoch-flapping rule (see the module doc).
fn flapping(
    prev: &MeterState,
    sample: &Sample,
    reset: Option<&Reset>,
    limits: &Limits,
    history: History,
) -> Option<Rejection> {
    let reset = reset?;
    if reset.kind == "epoch" && history.epoch_seen_before {
        return Some(Rejection::new(
            Reason::EpochFlapping,
            format!(
                "epoch {:?} -> {:?} returns to an epoch this meter had within {} s; {}",
                prev.epoch.as_deref().unwrap_or(""),
                sample.epoch.as_deref().unwrap_or(""),
                limits.counter_reset_window_secs,
                reset.detail
            ),
        ));
    }
    if history.resets_in_window >= limits.max_counter_resets {
        return Some(Rejection::new(
            Reason::EpochFlapping,
            format!(
                "{} counter resets within {} s already (limit limits.max_counter_resets = {}); {}",
                history.resets_in_window,
                limits.counter_reset_window_secs,
                limits.max_counter_resets,
                reset.detail
            ),
        ));
    }
    None
}

/// The rise-rate rule (see the module doc).
fn implausible_rise(prev: &MeterState, sample: &Sample, reset: bool, max_power_w: u64) -> Option<Rejection> {
    let elapsed = sample.timestamp - prev.timestamp;
    let max = max_rise_wh(max_power_w, elapsed);
    let rise = |new: u64, old: u64| if reset { new } else { new.saturating_sub(old) };
    for (what, new, old) in
        [("import", sample.import_wh, prev.raw_import), ("export", sample.export_wh, prev.raw_export)]
    {
        let r = rise(new, old);
        if r > max {
            return Some(Rejection::new(
                Reason::ImplausibleRise,
                format!(
                    "{what} counter rose {r} Wh in {elapsed} s since the last accepted reading (ts {}); at most \
                     {max} Wh possible at {max_power_w} W (phases x voltage_v x rated_current_a)",
                    prev.timestamp
                ),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn limits() -> Limits {
        Limits { max_payload_bytes: 1024, max_future_secs: 30, max_past_secs: 3600, ..Limits::default() }
    }

    const RULES: MeterRules = MeterRules { policy: DecreasePolicy::Reject, max_power_w: 43_470 };

    fn rules(p: DecreasePolicy) -> MeterRules {
        MeterRules { policy: p, ..RULES }
    }

    fn dup() -> History {
        History { stored_duplicate: true, ..History::default() }
    }

    fn sample(i: u64, e: u64, ts: u64) -> Sample {
        Sample { import_wh: i, export_wh: e, timestamp: ts, seq: None, epoch: None, power_w: None }
    }

    fn accept(
        prev: Option<&MeterState>,
        s: &Sample,
        p: DecreasePolicy,
    ) -> (u64, u64, MeterState, Option<Reset>) {
        match judge(prev, s, rules(p), NOW, &limits(), History::default()) {
            Verdict::Accept { import_wh, export_wh, state, reset, .. } => {
                (import_wh, export_wh, state, reset)
            }
            other => panic!("not accepted: {other:?}"),
        }
    }

    fn reason(prev: Option<&MeterState>, s: &Sample) -> Reason {
        match judge(prev, s, RULES, NOW, &limits(), History::default()) {
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
            judge(Some(&st), &sample(10, 5, NOW - 10), RULES, NOW, &limits(), dup()),
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
            judge(Some(&st), &b, RULES, NOW, &limits(), History::default()),
            Verdict::Accept { seq_gap: true, .. }
        ));
        b.seq = Some(8);
        assert!(matches!(
            judge(Some(&st), &b, RULES, NOW, &limits(), History::default()),
            Verdict::Accept { seq_gap: false, .. }
        ));
    }

    fn quarantined(prev: &MeterState, s: &Sample, r: MeterRules, h: History) -> Rejection {
        match judge(Some(prev), s, r, NOW, &limits(), h) {
            Verdict::Quarantine(q) => q,
            other => panic!("not quarantined: {other:?}"),
        }
    }

    #[test]
    fn default_limit_is_12_075_wh_per_second() {
        assert_eq!(max_rise_wh(43_470, 3600), 43_471);
        assert_eq!(max_rise_wh(43_470, 60), 725, "floor(724.5) + 1");
        assert_eq!(max_rise_wh(43_470, 1), 13);
        assert_eq!(max_rise_wh(u64::MAX, u64::MAX), u64::MAX, "no overflow");
    }

    #[test]
    fn rise_limit_under_at_and_over() {
        // 1 kW meter: in 36 s at most floor(1000 * 36 / 3600) + 1 = 11 Wh.
        let r = MeterRules { policy: DecreasePolicy::Reject, max_power_w: 1000 };
        let (_, _, st, _) = accept(None, &sample(5000, 200, NOW - 100), DecreasePolicy::Reject);
        for (di, de) in [(10, 0), (11, 0), (0, 10), (0, 11), (11, 11)] {
            assert!(
                matches!(
                    judge(
                        Some(&st),
                        &sample(5000 + di, 200 + de, NOW - 64),
                        r,
                        NOW,
                        &limits(),
                        History::default()
                    ),
                    Verdict::Accept { .. }
                ),
                "+{di}/+{de} Wh in 36 s is possible"
            );
        }
        for (di, de) in [(12, 0), (0, 12)] {
            let q = quarantined(&st, &sample(5000 + di, 200 + de, NOW - 64), r, History::default());
            assert_eq!(q.reason, Reason::ImplausibleRise);
            assert!(q.detail.contains("at most 11 Wh"), "{q:?}");
        }
    }

    #[test]
    fn a_spike_does_not_block_the_next_genuine_readings() {
        let (_, _, st, _) = accept(None, &sample(18_389_000, 0, NOW - 600), DecreasePolicy::Reject);
        // +1,000 kWh in 60 s: quarantined; the state stays at the last accepted reading.
        let q = quarantined(&st, &sample(19_389_000, 0, NOW - 540), RULES, History::default());
        assert_eq!(q.reason, Reason::ImplausibleRise);
        // The next genuine reading is judged against the last accepted one, 120 s earlier.
        let (i, _, st2, _) = accept(Some(&st), &sample(18_389_700, 0, NOW - 480), DecreasePolicy::Reject);
        assert_eq!(i, 18_389_700);
        // ... and 120 s of the maximum (1449 + 1) is still fine after the spike, one more is not.
        let (_, _, _, _) = accept(Some(&st), &sample(18_390_450, 0, NOW - 480), DecreasePolicy::Reject);
        quarantined(&st, &sample(18_390_451, 0, NOW - 480), RULES, History::default());
        assert_eq!(st2.timestamp, NOW - 480);
    }

    #[test]
    fn a_reset_counts_its_new_counter_as_the_rise() {
        let mut a = sample(3705, 0, NOW - 100);
        a.epoch = Some("e1".into());
        let (_, _, st, _) = accept(None, &a, DecreasePolicy::Reject);
        let mut b = sample(0, 0, NOW - 40);
        b.epoch = Some("e2".into());
        // 60 s at 43,470 W: at most 725 Wh.
        b.import_wh = 725;
        accept(Some(&st), &b, DecreasePolicy::Reject);
        b.import_wh = 726;
        assert_eq!(quarantined(&st, &b, RULES, History::default()).reason, Reason::ImplausibleRise);
        // A decrease with policy rebase likewise.
        let r = rules(DecreasePolicy::Rebase);
        assert_eq!(
            quarantined(&st, &sample(3000, 0, NOW - 99), r, History::default()).reason,
            Reason::ImplausibleRise
        );
        assert!(matches!(
            judge(Some(&st), &sample(13, 0, NOW - 99), r, NOW, &limits(), History::default()),
            Verdict::Accept { .. }
        ));
    }

    #[test]
    fn epoch_flapping_is_quarantined() {
        let mut a = sample(100, 0, NOW - 100);
        a.epoch = Some("e2".into());
        let (_, _, st, _) = accept(None, &a, DecreasePolicy::Reject);
        let mut back = sample(5, 0, NOW - 90);
        back.epoch = Some("e1".into());
        let seen = History { epoch_seen_before: true, ..History::default() };
        let q = quarantined(&st, &back, RULES, seen);
        assert_eq!(q.reason, Reason::EpochFlapping);
        assert!(q.detail.contains("returns to an epoch"), "{q:?}");
        // Resets within the window: under and at the limit (3 before this one) fine, over it not.
        for n in [0, 1, 2] {
            let h = History { resets_in_window: n, ..History::default() };
            assert!(
                matches!(
                    judge(Some(&st), &back, RULES, NOW, &limits(), h),
                    Verdict::Accept { reset: Some(_), .. }
                ),
                "{n}"
            );
        }
        let q = quarantined(&st, &back, RULES, History { resets_in_window: 3, ..History::default() });
        assert!(q.detail.contains("limits.max_counter_resets = 3"), "{q:?}");
        // Readings without a reset are not affected by the count.
        let mut same = sample(110, 0, NOW - 90);
        same.epoch = Some("e2".into());
        let h = History { resets_in_window: 50, epoch_seen_before: true, ..History::default() };
        assert!(matches!(
            judge(Some(&st), &same, RULES, NOW, &limits(), h),
            Verdict::Accept { reset: None, .. }
        ));
    }
}
