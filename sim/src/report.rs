//! Outputs: `slots.csv`, `households.csv`, `summary.json` and the console summary table.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::checks::Checks;
use crate::engine::RunData;
use crate::results::{HouseholdResult, Kpis, SlotResult};

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_default()
}

fn credits(v: i128) -> String {
    format!("{:.6}", v as f64 / 1e18)
}

/// Writes `slots.csv`.
pub fn write_slots_csv(path: &Path, slots: &[SlotResult]) -> std::io::Result<()> {
    let mut t = String::from(
        "slot,time,chain_slot,clearing_price_credits_per_kwh,traded_wh,bids,asks,bid_wh,ask_wh,grid_import_wh,grid_export_wh,pv_wh,load_wh,metered_import_wh,metered_export_wh,settled_grid_supply_wh,settled_grid_absorb_wh,settled_participants,settle_delay_s,retail_credits_per_kwh,feed_in_credits_per_kwh\n",
    );
    for s in slots {
        let _ = writeln!(
            t,
            "{},{},{},{},{},{},{},{},{},{},{},{:.1},{:.1},{},{},{},{},{},{},{},{}",
            s.day_slot,
            s.time,
            s.chain_slot,
            opt(s.price, 3),
            s.volume_wh,
            s.bids,
            s.asks,
            s.bid_wh,
            s.ask_wh,
            s.grid_import_wh,
            s.grid_export_wh,
            s.pv_wh,
            s.load_wh,
            s.metered_import_wh,
            s.metered_export_wh,
            s.settled_grid_supply_wh,
            s.settled_grid_absorb_wh,
            s.settled,
            opt(s.settle_delay_s, 2),
            s.retail,
            s.feed_in
        );
    }
    std::fs::write(path, t)
}

/// Writes `households.csv`.
pub fn write_households_csv(path: &Path, hs: &[HouseholdResult]) -> std::io::Result<()> {
    let mut t = String::from(
        "household,account,role,pv_kwp,battery_kwh,meter_format,strategy,load_wh,pv_wh,bought_wh,sold_wh,self_consumed_wh,from_grid_wh,to_grid_wh,metered_import_wh,metered_export_wh,slots_traded,bill_platform_credits,bill_market_credits,bill_baseline_credits,stored_energy_value_credits,savings_credits,note\n",
    );
    for h in hs {
        let _ = writeln!(
            t,
            "{},{:#x},{},{},{},{},{},{:.0},{:.0},{},{},{:.0},{},{},{},{},{},{},{},{},{},{},\"{}\"",
            h.id,
            h.account,
            h.role,
            h.pv_kwp,
            h.battery_kwh,
            h.meter_format,
            h.strategy,
            h.load_wh,
            h.pv_wh,
            h.bought_wh,
            h.sold_wh,
            h.self_consumed_wh,
            h.from_grid_wh,
            h.to_grid_wh,
            h.import_wh,
            h.export_wh,
            h.slots_traded,
            credits(h.bill_platform),
            credits(h.bill_market),
            credits(h.bill_baseline),
            credits(h.stored_value),
            credits(h.savings),
            h.reason().replace('"', "'")
        );
    }
    std::fs::write(path, t)
}

/// The summary document.
pub fn summary_json(d: &RunData, k: &Kpis, checks: &Checks) -> serde_json::Value {
    let mine =
        d.tx.setup + d.tx.orders + d.tx.cancels + d.tx.clears + d.tx.opens + d.tx.settles + d.tx.reports;
    json!({
        "households": d.households(),
        "slots": d.slots.len(),
        "first_slot": d.cfg.first_slot,
        "date": d.cfg.date.to_string(),
        "location": {"lat": d.cfg.location.lat_deg, "lon": d.cfg.location.lon_deg, "utc_offset_hours": d.cfg.utc_offset_secs as f64 / 3600.0},
        "cloudiness": d.cfg.cloudiness,
        "seed": d.cfg.seed,
        "slot_seconds": d.cfg.slot_seconds,
        "simulated_meters": d.simulated_meters,
        "market_mode": if d.pay_as_bid { "payAsBid" } else { "payAsClear" },
        "self_sufficiency": k.self_sufficiency,
        "self_consumption": k.self_consumption,
        "total_savings_credits": k.total_savings_credits,
        "total_baseline_bill_credits": k.total_baseline_credits,
        "savings_share_of_baseline": k.savings_share_of_baseline,
        "households_saved_share": k.households_saved_share,
        "households_saved": k.households_saved,
        "households_without_trades": k.households_without_trades,
        "households_worse_than_baseline": k.households_worse,
        "traded_kwh": k.traded_kwh,
        "mean_clearing_price_credits_per_kwh": k.mean_price,
        "load_kwh": k.load_kwh,
        "pv_kwh": k.pv_kwh,
        "grid_import_kwh": k.grid_import_kwh,
        "grid_export_kwh": k.grid_export_kwh,
        "transactions": {
            "on_chain_during_the_day": d.chain_txs,
            "blocks": [d.blocks.start, d.blocks.end],
            "by_simulator": mine,
            "setup": d.tx.setup,
            "orders": d.tx.orders,
            "cancels": d.tx.cancels,
            "clears": d.tx.clears,
            "opens": d.tx.opens,
            "settles": d.tx.settles,
            "failed": d.tx.failed,
            "failures": d.tx.failures,
            "by_bridge_and_others": d.chain_txs.saturating_sub(mine - d.tx.setup),
        },
        "meter_messages": {"published": d.meter_messages.published, "failed": d.meter_messages.failed},
        "bridge": d.bridge_health,
        "wall_seconds": {"setup": d.wall.setup_s, "day": d.wall.day_s, "readback": d.wall.readback_s, "total": d.wall.total_s()},
        "checks": checks,
        "warnings": d.warnings,
    })
}

/// The console summary: the run's figures and checks as a two-column table, then the first check
/// failures, households worse off and warnings (all of them are in `summary.json`).
pub fn console_table(d: &RunData, k: &Kpis, checks: &Checks, out: &Path) -> String {
    let mut rows = figure_rows(d, k);
    rows.extend(check_rows(k, checks));
    rows.push(("outputs".into(), out.display().to_string()));
    let mut t = render_rows(&rows);
    for f in checks
        .clearing
        .failures
        .iter()
        .chain(&checks.no_regret.failures)
        .chain(&checks.money.failures)
        .chain(&checks.energy.failures)
        .chain(&checks.pcc.failures)
        .chain(&checks.reports.failures)
        .take(10)
    {
        let _ = writeln!(t, "check failure: {f}");
    }
    for wh in k.households_worse.iter().take(10) {
        let _ = writeln!(t, "worse off: {} ({:.3} credits): {}", wh.id, wh.savings_credits, wh.reason);
    }
    for w in d.warnings.iter().take(10) {
        let _ = writeln!(t, "warning: {w}");
    }
    t
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1} %", x * 100.0)).unwrap_or_else(|| "n/a".into())
}

/// The run's figures: size, energy, prices, savings, transactions, time.
fn figure_rows(d: &RunData, k: &Kpis) -> Vec<(String, String)> {
    vec![
        ("households".into(), d.households().to_string()),
        (
            "slots (15 min)".into(),
            format!("{} (from {})", d.slots.len(), crate::engine::hhmm(d.cfg.first_slot)),
        ),
        ("load / PV".into(), format!("{:.1} kWh / {:.1} kWh", k.load_kwh, k.pv_kwh)),
        ("traded peer to peer".into(), format!("{:.1} kWh", k.traded_kwh)),
        (
            "mean clearing price".into(),
            k.mean_price.map(|p| format!("{p:.3} credits/kWh")).unwrap_or_else(|| "n/a".into()),
        ),
        (
            "grid import / export".into(),
            format!("{:.1} kWh / {:.1} kWh", k.grid_import_kwh, k.grid_export_kwh),
        ),
        ("self-sufficiency".into(), pct(k.self_sufficiency)),
        ("self-consumption".into(), pct(k.self_consumption)),
        (
            "savings vs grid only".into(),
            format!(
                "{:.3} credits (grid-only net bill {:.3}: {})",
                k.total_savings_credits,
                k.total_baseline_credits,
                pct(k.savings_share_of_baseline)
            ),
        ),
        (
            "households that saved".into(),
            format!(
                "{} of {} ({} without trades)",
                k.households_saved,
                d.households(),
                k.households_without_trades
            ),
        ),
        ("households worse off".into(), k.households_worse.len().to_string()),
        (
            "transactions on chain".into(),
            format!(
                "{} (simulator {}, failed {})",
                d.chain_txs,
                d.tx.setup + d.tx.orders + d.tx.cancels + d.tx.clears + d.tx.opens + d.tx.settles,
                d.tx.failed
            ),
        ),
        (
            "wall time".into(),
            format!("{:.0} s (setup {:.0} s, day {:.0} s)", d.wall.total_s(), d.wall.setup_s, d.wall.day_s),
        ),
    ]
}

/// One row per end-of-run check.
fn check_rows(k: &Kpis, checks: &Checks) -> Vec<(String, String)> {
    let ok = |b: bool| if b { "pass" } else { "FAIL" };
    vec![
        (
            "check: clearing".into(),
            format!("{} ({} items)", ok(checks.clearing.passed), checks.clearing.checked),
        ),
        (
            "check: no rejected order in the money".into(),
            format!("{} ({} items)", ok(checks.no_regret.passed), checks.no_regret.checked),
        ),
        ("check: money".into(), format!("{} ({} items)", ok(checks.money.passed), checks.money.checked)),
        ("check: energy".into(), format!("{} ({} items)", ok(checks.energy.passed), checks.energy.checked)),
        (
            "check: power balance and PCC".into(),
            format!("{} ({} items)", ok(checks.pcc.passed), checks.pcc.checked),
        ),
        (
            "check: microgrid reports on chain".into(),
            format!("{} ({} items)", ok(checks.reports.passed), checks.reports.checked),
        ),
        (
            "check: nobody worse off".into(),
            if checks.baseline.passed {
                "pass".into()
            } else {
                format!("{} households, see summary.json", k.households_worse.len())
            },
        ),
    ]
}

/// `rows` as a boxed table with padded columns.
fn render_rows(rows: &[(String, String)]) -> String {
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let v = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    let mut t = String::new();
    let line = format!("+-{}-+-{}-+\n", "-".repeat(w), "-".repeat(v));
    t.push_str(&line);
    for (a, b) in rows {
        let _ = writeln!(
            t,
            "| {a}{} | {b}{} |",
            " ".repeat(w - a.chars().count()),
            " ".repeat(v - b.chars().count())
        );
    }
    t.push_str(&line);
    t
}
