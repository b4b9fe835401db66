//! `p2pe-sim`: the platform's main job in one command. A dev chain with the market contracts, an
//! MQTT broker, the meter bridge, simulated households with PV, load and batteries, their smart
//! meters publishing over MQTT in real device formats, and trading agents sending transactions over
//! JSON-RPC — a simulated day in a few minutes, with market KPIs, plots and end-of-run checks.
//!
//! Modules, from physics to reports:
//! * [`calendar`], [`rng`], [`clock`]: dates, random deviates, wall time;
//! * [`solar`], [`load`], [`battery`], [`household`], [`pcc`], [`island`]: PV from the sun's position, clear-sky
//!   irradiance and clouds; generated standard load profiles; batteries; the households' day and
//!   the physics of a slot, for the community behind its connection's limits;
//! * [`agent`]: forecasts and strategies (price ramp, battery arbitrage);
//! * [`clearing`]: the independent merit-order clearing the checks compare the chain with;
//! * [`chain`], [`market`], [`keys`]: JSON-RPC, signed transactions, the contracts, keys;
//! * [`node`], [`broker`], [`bridge`], [`meters`], [`procs`]: the processes and devices;
//! * [`engine`]: the run; [`results`], [`microgrid`], [`checks`], [`report`], [`plots`]: what comes out;
//! * [`config`], [`lab`]: settings, and the lab path with real meters.

pub mod agent;
pub mod asset_agent;
pub mod battery;
pub mod bridge;
pub mod broker;
pub mod calendar;
pub mod chain;
pub mod checks;
pub mod clearing;
pub mod clock;
pub mod config;
pub mod engine;
pub mod household;
pub mod island;
pub mod keys;
pub mod lab;
pub mod load;
pub mod market;
pub mod meters;
pub mod microgrid;
pub mod node;
pub mod pcc;
pub mod plots;
pub mod procs;
pub mod report;
pub mod results;
pub mod rng;
pub mod solar;

use std::path::PathBuf;

/// What a finished run wrote and found.
pub struct Finished {
    /// The summary document (also in `summary.json`).
    pub summary: serde_json::Value,
    /// The checks.
    pub checks: checks::Checks,
    /// Per-slot figures.
    pub slots: Vec<results::SlotResult>,
    /// Per-household figures.
    pub households: Vec<results::HouseholdResult>,
    /// The console table.
    pub table: String,
    /// Output directory.
    pub out: PathBuf,
    /// The dev chain, still running when the run was asked to stay.
    pub live: Option<node::DevChain>,
}

/// Runs a simulation and writes every output into `cfg.out`.
pub async fn simulate(cfg: config::SimConfig) -> anyhow::Result<Finished> {
    let mut data = engine::run(cfg).await?;
    let live = data.live.take();
    let mut f = finish(&data)?;
    f.live = live;
    Ok(f)
}

/// Derives the results of a run, runs the checks and writes the outputs.
pub fn finish(data: &engine::RunData) -> anyhow::Result<Finished> {
    let out = data.cfg.out.clone();
    let slots = results::slot_results(data);
    let households = results::household_results(data);
    let kpis = results::kpis(data, &slots, &households);
    let checks = checks::run_checks(data, &households);
    report::write_slots_csv(&out.join("slots.csv"), &slots)?;
    report::write_households_csv(&out.join("households.csv"), &households)?;
    let mut summary = report::summary_json(data, &kpis, &checks);
    summary["microgrid"] = serde_json::to_value(microgrid::microgrid_results(data))?;
    summary["assets"] = results::assets_json(&results::asset_results(data));
    microgrid::write_pcc_csv(&out.join("pcc.csv"), data)?;
    std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n")?;
    plots::write_plots(&out, &slots, &households)?;
    plots::write_pcc_plot(&out, data)?;
    let table = report::console_table(data, &kpis, &checks, &out);
    Ok(Finished { summary, checks, slots, households, table, out, live: None })
}
