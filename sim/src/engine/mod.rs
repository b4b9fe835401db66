//! The run: bring everything up, trade a day slot by slot in wall-clock time, then read everything
//! back from the chain.
//!
//! A day slot `i` is chain slot `c0 + i`, with slot `c` starting at `start(c)` and its gate closing
//! `G` seconds earlier. Each cycle begins at the gate closure of the previous slot, `start(c − 1) − G`:
//!
//! 1. **Close slot c − 1**: the keeper (operator key) calls `clear(c − 1)`; the slot's orders are read
//!    back from `OrderPlaced` / `OrderCancelled`; each household's fills come from that book;
//!    the households' physics of the slot run with their batteries steering towards the traded
//!    position; the meters' readings for the slot are scheduled (the last one a second before the
//!    slot ends); a settlement job is queued.
//! 2. **Order rounds for slot c** until `start(c) − G − 1.4 s`: round 0 places every agent's bid or
//!    ask at the first price of its ramp; in each later round every agent reads the public book
//!    (`slotInfo` + `levelVolumes`) and, if its order would not trade against it, cancels and
//!    re-places it further along its ramp.
//!
//! Settlement runs in its own task with its own key (mnemonic index [`SETTLER_INDEX`]): from the
//! slot's end plus the grace period, as soon as every trading household's meter has a reading at
//! the slot's last telemetry time on chain (real meters: a reading at or after the slot's end), it
//! calls `settle(slot, participants)` in parts.
//!
//! The files, by concern: [`model`] (the named types a run records), `setup` (households, chain,
//! registration, broker, bridge, meters), `day` (the day loop: closing a slot, delivering it),
//! `rounds` (order rounds), `keepers` (clearer and settler), `send` (sending transactions and
//! revert reasons), `readback` (what the chain recorded).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::SimConfig;
use crate::household::SLOT_MINUTES;

mod day;
mod keepers;
pub mod model;
mod readback;
mod rounds;
mod send;
mod setup;

pub use model::*;

/// Mnemonic index of the key that settles slots (any account may settle).
pub const SETTLER_INDEX: u32 = 98;

/// Runs a simulation and returns what happened; `cfg.out` receives logs and the generated
/// bridge configuration (reports are written by [`crate::report`]).
pub async fn run(mut cfg: SimConfig) -> anyhow::Result<RunData> {
    let t0 = Instant::now();
    let s = setup::set_up(&mut cfg).await?;
    let setup::Setup {
        env,
        mut hh,
        chain,
        market,
        chain_id,
        operator,
        settler,
        mut tx,
        bridge,
        embedded: _embedded,
        telemetry,
        fleet,
        setup_block,
        grid_start,
        tokens_start,
        microgrid,
        island,
    } = s;
    let t_setup = t0.elapsed().as_secs_f64();

    let t_day = Instant::now();
    let inputs = day::DayInputs { operator, settler, telemetry, setup_block, island };
    let day::DayOutcome { mut slots, mut warnings, island } =
        day::run_day(&cfg, &market, chain_id, &mut hh, &mut tx, inputs).await?;
    let meter_messages = match fleet {
        Some(t) => t.await.unwrap_or_default(),
        None => MeterMessages::default(),
    };
    let t_day_s = t_day.elapsed().as_secs_f64();

    let t_read = Instant::now();
    let back = readback::read_back(&market, &mut hh, &mut slots, setup_block).await?;
    warnings.extend(readback::late_readings_warning(&back.late_readings, &hh, cfg.grace_period));
    // The last readings are on chain (settlement waited for them) but count as confirmed only a few
    // blocks later: the bridge's figures are read once it has confirmed everything it took.
    let bridge_health = bridge.health_when_confirmed(std::time::Duration::from_secs(30)).await;
    let t_read_s = t_read.elapsed().as_secs_f64();
    drop(bridge);
    let live = if cfg.stay { Some(chain) } else { None };

    Ok(RunData {
        simulated_meters: cfg.lab.is_none(),
        pay_as_bid: market.c.mode == p2pe_bindings::MarketMode::PayAsBid,
        cfg,
        env,
        hh,
        slots,
        grid: market.c.grid,
        grid_balance: StartEnd { start: grid_start, end: back.grid_end },
        market_tokens: StartEnd { start: tokens_start, end: back.tokens_end },
        metered: back.metered,
        microgrid: StartEnd { start: microgrid, end: back.microgrid_end },
        reports: back.reports,
        tx,
        chain_txs: back.chain_txs,
        blocks: StartEnd { start: setup_block + 1, end: back.head },
        meter_messages,
        bridge_health,
        wall: WallTimes { setup_s: t_setup, day_s: t_day_s, readback_s: t_read_s },
        warnings,
        live,
        island,
    })
}

/// `HH:MM` of day slot `s`.
pub fn hhmm(s: usize) -> String {
    format!("{:02}:{:02}", s / 4, (s % 4) * 15)
}

/// When meters publish within a slot: (wall offset in seconds from the slot start, simulated
/// minute of the slot whose counters they carry). The last message is one second before the slot
/// ends and carries the whole slot.
pub fn telemetry_offsets(telemetry_seconds: u32, slot_seconds: u32) -> Vec<(u32, usize)> {
    let per_slot = ((SLOT_MINUTES as u32 * 60) / telemetry_seconds.max(1)).max(1);
    let n = per_slot.min(slot_seconds.saturating_sub(1)).max(1);
    (1..=n)
        .map(|i| {
            let offset = ((i as f64 * (slot_seconds - 1) as f64) / n as f64).round() as u32;
            let minute = ((i as f64 * SLOT_MINUTES as f64) / n as f64).round() as usize;
            (offset.max(1), minute.clamp(1, SLOT_MINUTES))
        })
        .collect()
}

/// Lists files written by a run (for the console).
pub fn output_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_offsets_fit_in_the_slot() {
        // 300 s telemetry, 5 s slots: three messages, the last one a second before the end with the
        // whole slot.
        assert_eq!(telemetry_offsets(300, 5), vec![(1, 5), (3, 10), (4, 15)]);
        // More messages than whole seconds: one per second at most, still ending with minute 15.
        let o = telemetry_offsets(60, 5);
        assert_eq!(o.len(), 4);
        assert_eq!(*o.last().unwrap(), (4, 15));
        assert!(o.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        // Long slots: every 5 simulated minutes.
        assert_eq!(telemetry_offsets(300, 900), vec![(300, 5), (599, 10), (899, 15)]);
        assert_eq!(telemetry_offsets(3600, 5), vec![(4, 15)]);
    }

    #[test]
    fn simulated_meters_get_a_rise_limit_for_compressed_time() {
        use crate::bridge::simulated_rated_current_a;
        // 5 s slots, readings at (1 s, 5 min), (3, 10), (4, 15): 5 simulated minutes in 1 s is the
        // fastest step (x 300), so 63 A x 300.
        let a = simulated_rated_current_a(&telemetry_offsets(300, 5), 5);
        assert_eq!(a, 18_900);
        // Real-time slots: every 5 minutes in 299 s at the fastest, x 1.003.
        assert_eq!(simulated_rated_current_a(&telemetry_offsets(300, 900), 900), 64);
        // A 10 kW household in the 5 s slots: 10 kW x 300 s of simulated time per second stays under
        // 3 x 230 V x 18,900 A.
        assert!(10_000 * 300 < 3 * 230 * a);
    }

    #[test]
    fn slot_times() {
        assert_eq!(hhmm(0), "00:00");
        assert_eq!(hhmm(45), "11:15");
        assert_eq!(hhmm(95), "23:45");
    }
}
