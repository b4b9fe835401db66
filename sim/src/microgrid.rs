//! The community as a microgrid behind its point of common coupling (PCC): unserved energy and
//! curtailment (per slot, per household and in total), the PCC's flow minute by minute (`pcc.csv`)
//! and the checks that the physics kept the power balance and the limits.

use std::fmt::Write as _;
use std::path::Path;

use crate::checks::Check;
use crate::engine::{hhmm, RunData};
use crate::household::SLOT_MINUTES;

/// Tolerance of the power-balance and limit checks, Wh per minute (floating-point sums).
const TOLERANCE_WH: f64 = 1e-6;

/// One household's unserved energy and curtailment over the run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HouseholdPcc {
    /// Household id.
    pub id: String,
    /// PV curtailed at its inverter because of the export limit, kWh.
    pub curtailed_kwh: f64,
    /// Its load shed because of the import limit, kWh.
    pub unserved_kwh: f64,
}

/// One slot at the PCC.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SlotPcc {
    /// Local time of the slot's start.
    pub time: String,
    /// PV curtailed, Wh.
    pub curtailed_wh: f64,
    /// Load shed, Wh.
    pub unserved_wh: f64,
    /// Highest import in a minute, kW.
    pub peak_import_kw: f64,
    /// Highest export in a minute, kW.
    pub peak_export_kw: f64,
    /// How the operator priced the slot (`scarcity`, `surplus`, `islanded`), if it set prices.
    pub pricing: Option<&'static str>,
    /// The slot's clearing price, credits/kWh (None without a trade).
    pub price: Option<f64>,
    /// Islanded: the community battery's state of charge at the slot's end, kWh.
    pub soc_kwh: Option<f64>,
    /// Islanded: the genset's output, Wh.
    pub genset_wh: f64,
}

/// The islanded community's assets over the run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IslandResults {
    /// Energy the PV plant gave, kWh.
    pub plant_kwh: f64,
    /// PV curtailed at the plant, kWh.
    pub plant_curtailed_kwh: f64,
    /// Genset output, kWh.
    pub genset_kwh: f64,
    /// Genset running hours.
    pub genset_hours: f64,
    /// Genset output dumped at its minimum load, kWh.
    pub dumped_kwh: f64,
    /// Fuel burnt, litres.
    pub fuel_l: f64,
    /// Fuel cost, credits.
    pub fuel_cost_credits: f64,
    /// Battery equivalent full cycles (energy discharged ÷ usable capacity).
    pub battery_cycles: f64,
    /// Battery state of charge at the end, kWh.
    pub battery_soc_end_kwh: f64,
}

/// The microgrid's figures of a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MicrogridResults {
    /// Import limit, kW (None: unlimited).
    pub import_limit_kw: Option<f64>,
    /// Export limit, kW (None: unlimited).
    pub export_limit_kw: Option<f64>,
    /// Load shed over the run, kWh.
    pub unserved_kwh: f64,
    /// Unserved share of the demand (served + shed).
    pub unserved_share: Option<f64>,
    /// PV curtailed, kWh.
    pub curtailed_kwh: f64,
    /// Curtailed share of the PV the panels could give.
    pub curtailed_share: Option<f64>,
    /// Minutes in which some load was shed (loss-of-load minutes).
    pub loss_of_load_minutes: usize,
    /// Minutes in which some PV was curtailed.
    pub curtailment_minutes: usize,
    /// Highest import in a minute, kW.
    pub peak_import_kw: f64,
    /// Highest export in a minute, kW.
    pub peak_export_kw: f64,
    /// Slots the operator priced at scarcity.
    pub scarcity_slots: usize,
    /// Slots the operator priced at surplus.
    pub surplus_slots: usize,
    /// Per slot.
    pub slots: Vec<SlotPcc>,
    /// Per household.
    pub households: Vec<HouseholdPcc>,
    /// Islanded: the assets.
    pub island: Option<IslandResults>,
    /// The microgrid's parameters in the registry at the end of the run.
    pub registry: crate::market::MicrogridParams,
    /// Slots with the operator's report on chain.
    pub reported_slots: usize,
}

/// The microgrid's figures from a run (all zero without simulated physics).
pub fn microgrid_results(d: &RunData) -> MicrogridResults {
    let mut r = MicrogridResults {
        import_limit_kw: d.cfg.pcc.import_kw,
        export_limit_kw: d.cfg.pcc.export_kw,
        registry: d.microgrid.end,
        reported_slots: d.slots.iter().filter(|s| d.reports.contains_key(&s.chain_slot)).count(),
        ..Default::default()
    };
    let (mut load, mut pv) = (0.0, 0.0);
    for (k, s) in d.slots.iter().enumerate() {
        let mut sp = SlotPcc {
            time: hhmm(s.day_slot),
            pricing: s.pcc_pricing.map(|p| p.name()),
            price: s.cleared.filter(|c| c.volume_wh > 0).map(|c| c.price as f64 / 1e18),
            peak_import_kw: s.pcc_import_kw.iter().cloned().fold(0.0, f64::max),
            peak_export_kw: s.pcc_import_kw.iter().map(|kw| -kw).fold(0.0, f64::max),
            ..Default::default()
        };
        let households = || d.hh.iter().filter(|h| h.is_household());
        for m in 0..SLOT_MINUTES {
            let minute = households().filter_map(|h| h.slots[k].phys.as_ref()?.minutes.get(m));
            let (shed, curt) = minute.fold((0.0, 0.0), |a, f| (a.0 + f.shed_wh, a.1 + f.curtailed_wh));
            r.loss_of_load_minutes += usize::from(shed > 0.0);
            r.curtailment_minutes += usize::from(curt > 0.0);
        }
        for h in households() {
            if let Some(p) = &h.slots[k].phys {
                sp.curtailed_wh += p.curtailed_wh;
                sp.unserved_wh += p.shed_wh;
                load += p.load_wh + p.shed_wh;
                pv += p.pv_wh + p.curtailed_wh;
            }
        }
        r.unserved_kwh += sp.unserved_wh / 1000.0;
        r.curtailed_kwh += sp.curtailed_wh / 1000.0;
        r.peak_import_kw = r.peak_import_kw.max(sp.peak_import_kw);
        r.peak_export_kw = r.peak_export_kw.max(sp.peak_export_kw);
        if let Some(i) = &d.island {
            let own = i.minutes.iter().filter(|(m, _)| m / SLOT_MINUTES == s.day_slot);
            sp.genset_wh = own.clone().map(|(_, a)| a.genset_wh).sum();
            sp.soc_kwh = own.clone().next_back().map(|(_, a)| a.soc_wh / 1000.0);
        }
        r.slots.push(sp);
    }
    r.island = d.island.as_ref().map(island_results);
    r.unserved_share = (load > 0.0).then(|| r.unserved_kwh * 1000.0 / load);
    r.curtailed_share = (pv > 0.0).then(|| r.curtailed_kwh * 1000.0 / pv);
    r.scarcity_slots = r.slots.iter().filter(|s| s.pricing == Some("scarcity")).count();
    r.surplus_slots = r.slots.iter().filter(|s| s.pricing == Some("surplus")).count();
    r.households =
        d.hh.iter()
            .filter(|h| h.is_household())
            .map(|h| {
                let phys = h.slots.iter().filter_map(|s| s.phys.as_ref());
                let (c, u) = phys.fold((0.0, 0.0), |a, p| (a.0 + p.curtailed_wh, a.1 + p.shed_wh));
                HouseholdPcc { id: h.spec.id.clone(), curtailed_kwh: c / 1000.0, unserved_kwh: u / 1000.0 }
            })
            .collect();
    r
}

fn island_results(i: &crate::island::Island) -> IslandResults {
    let sum = |f: fn(&crate::island::AssetMinute) -> f64| i.minutes.iter().map(|(_, a)| f(a)).sum::<f64>();
    let fuel_l = sum(|a| a.fuel_l);
    let b = &i.spec.battery;
    let usable = b.capacity_wh * (1.0 - b.min_soc);
    IslandResults {
        plant_kwh: sum(|a| a.plant_wh - a.plant_curtailed_wh) / 1000.0,
        plant_curtailed_kwh: sum(|a| a.plant_curtailed_wh) / 1000.0,
        genset_kwh: sum(|a| a.genset_wh) / 1000.0,
        genset_hours: i.minutes.iter().filter(|(_, a)| a.genset_wh > 0.0).count() as f64 / 60.0,
        dumped_kwh: sum(|a| a.dumped_wh) / 1000.0,
        fuel_l,
        fuel_cost_credits: fuel_l * i.spec.fuel_price,
        battery_cycles: if usable > 0.0 { sum(|a| a.discharged_wh) / usable } else { 0.0 },
        battery_soc_end_kwh: i.battery.soc_wh / 1000.0,
    }
}

/// Writes `pcc.csv`: the PCC's net import per simulated minute with the limits.
pub fn write_pcc_csv(path: &Path, d: &RunData) -> std::io::Result<()> {
    let mut t =
        String::from("minute,time,net_import_kw,import_limit_kw,export_limit_kw,curtailed_wh,unserved_wh\n");
    let lim = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for (k, s) in d.slots.iter().enumerate() {
        for (m, kw) in s.pcc_import_kw.iter().enumerate() {
            let minute = s.day_slot * SLOT_MINUTES + m;
            let households = d.hh.iter().filter(|h| h.is_household());
            let flows = households.filter_map(|h| h.slots[k].phys.as_ref()?.minutes.get(m));
            let (c, u) = flows.fold((0.0, 0.0), |a, f| (a.0 + f.curtailed_wh, a.1 + f.shed_wh));
            let _ = writeln!(
                t,
                "{minute},{:02}:{:02},{kw:.3},{},{},{c:.1},{u:.1}",
                minute / 60,
                minute % 60,
                lim(d.cfg.pcc.import_kw),
                lim(d.cfg.pcc.export_kw)
            );
        }
    }
    std::fs::write(path, t)
}

/// Islanded: the assets balanced every minute of the slot and served exactly the households' net
/// import.
fn check_island_slot(c: &mut Check, i: &crate::island::Island, s: &crate::engine::SlotRec) {
    let own: Vec<_> = i.minutes.iter().filter(|(m, _)| m / SLOT_MINUTES == s.day_slot).collect();
    c.expect(own.len() == s.pcc_import_kw.len(), || {
        format!(
            "{}: the assets dispatched {} minutes of {}",
            hhmm(s.day_slot),
            own.len(),
            s.pcc_import_kw.len()
        )
    });
    for ((m, a), kw) in own.iter().zip(&s.pcc_import_kw) {
        c.expect(a.imbalance_wh().abs() <= TOLERANCE_WH, || {
            format!("minute {m}: the islanded assets are out of balance by {:.6} Wh", a.imbalance_wh())
        });
        c.expect((a.served_wh - kw * 1000.0 / 60.0).abs() <= TOLERANCE_WH, || {
            format!(
                "minute {m}: the assets served {:.6} Wh, the households drew {:.6} Wh",
                a.served_wh,
                kw * 1000.0 / 60.0
            )
        });
    }
}

/// The microgrid check: every household's power balances in every minute (PV − curtailed +
/// import plus discharged = load − shed + export + charged), so does the community's (the households' net
/// imports add up to the PCC's flow), the PCC's flow never exceeds its limits, and neither does
/// the grid's side of the bills (the community's net import per slot from the meter data on chain,
/// which settlement uses, within the limits' energy over the slot, 1 Wh of register rounding per
/// household aside). Islanded with the assets as members, the meters of all members net to zero in
/// every slot: the balancing account settles no net energy.
pub fn check_pcc(d: &RunData) -> Check {
    let mut c = Check::new();
    let limits = d.cfg.pcc;
    for (k, s) in d.slots.iter().enumerate() {
        for (m, kw) in s.pcc_import_kw.iter().enumerate() {
            let when = format!("{} + {m} min", hhmm(s.day_slot));
            let mut net = 0.0;
            for h in &d.hh {
                let Some(f) = h.slots[k].phys.as_ref().and_then(|p| p.minutes.get(m)) else { continue };
                if h.is_household() {
                    net += f.import_wh - f.export_wh;
                }
                c.expect(f.imbalance_wh().abs() <= TOLERANCE_WH, || {
                    format!("{when}: {} is out of balance by {:.6} Wh", h.spec.id, f.imbalance_wh())
                });
            }
            c.expect((net - kw * 1000.0 / 60.0).abs() <= TOLERANCE_WH, || {
                format!(
                    "{when}: the households' net import {net:.6} Wh ≠ the PCC's {:.6} Wh",
                    kw * 1000.0 / 60.0
                )
            });
            if let Some(lim) = limits.import_kw {
                c.expect(*kw <= lim + TOLERANCE_WH, || {
                    format!("{when}: import {kw:.3} kW over the limit {lim} kW")
                });
            }
            if let Some(lim) = limits.export_kw {
                c.expect(-kw <= lim + TOLERANCE_WH, || {
                    format!("{when}: export {:.3} kW over the limit {lim} kW", -kw)
                });
            }
        }
        if let Some(i) = &d.island {
            check_island_slot(&mut c, i, s);
            if d.hh.iter().any(|h| !h.is_household()) {
                // No grid counterparty: every kWh a member's meter drew came from another member's
                // meter (the assets'), so the market's grid account, islanded the community's
                // balancing account, settles no net energy (under 2 Wh of register rounding per meter).
                let net: f64 =
                    d.metered.iter().map(|row| row[k].import_wh as f64 - row[k].export_wh as f64).sum();
                c.expect(net.abs() <= 2.0 * d.hh.len() as f64, || {
                    format!(
                        "{}: the members' meters on chain net {net} Wh: energy from outside the island",
                        hhmm(s.day_slot)
                    )
                });
            }
            continue;
        }
        let hours = SLOT_MINUTES as f64 / 60.0;
        let rounding = d.hh.len() as f64;
        // What the grid is billed for: every meter's data on chain (settlement and the utility
        // bills of households without orders both use it).
        let supply: f64 = d.metered.iter().map(|row| row[k].import_wh as f64 - row[k].export_wh as f64).sum();
        if let Some(lim) = limits.import_kw {
            c.expect(supply <= lim * 1000.0 * hours + rounding, || {
                format!(
                    "{}: the meters on chain drew {supply} Wh net from the grid, over the import limit",
                    hhmm(s.day_slot)
                )
            });
        }
        if let Some(lim) = limits.export_kw {
            c.expect(-supply <= lim * 1000.0 * hours + rounding, || {
                format!(
                    "{}: the meters on chain fed {} Wh net into the grid, over the export limit",
                    hhmm(s.day_slot),
                    -supply
                )
            });
        }
    }
    c
}

/// What the operator reports on chain for one delivered slot (`Registry.reportMicrogrid`): what the
/// meters cannot measure (curtailment, shed, the community battery's charge) beside the flow at the
/// PCC. Energies in Wh, powers in W, rounded to the nearest unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SlotReport {
    /// Energy imported at the PCC over the slot (islanded: drawn from the community's assets).
    pub import_wh: u32,
    /// Energy exported at the PCC over the slot (islanded: fed into the community's assets).
    pub export_wh: u32,
    /// Highest one-minute import, W.
    pub peak_import_w: u32,
    /// Highest one-minute export, W.
    pub peak_export_w: u32,
    /// PV curtailed (households' and, islanded, the plant's).
    pub curtailed_wh: u32,
    /// Load shed (unserved energy).
    pub shed_wh: u32,
    /// The community battery's state of charge at the slot's end (0 without one).
    pub storage_wh: u32,
    /// Its capacity (0: no community storage).
    pub storage_capacity_wh: u32,
    /// The genset's output delivered over the slot (its output less what it dumped).
    pub generator_wh: u32,
}

impl SlotReport {
    /// The report of day slot `day_slot` from its minute flows at the PCC (kW, + import), the
    /// households' physics of the slot and, islanded, the assets' dispatch.
    pub fn from_slot<'a>(
        day_slot: usize,
        pcc_import_kw: &[f64],
        households: impl Iterator<Item = &'a crate::household::SlotPhysics>,
        island: Option<&crate::island::Island>,
    ) -> Self {
        let wh = |v: f64| v.max(0.0).round().min(u32::MAX as f64) as u32;
        let per_minute = |kw: f64| kw * 1000.0 / 60.0;
        let mut r = SlotReport {
            import_wh: wh(pcc_import_kw.iter().map(|kw| per_minute(kw.max(0.0))).sum()),
            export_wh: wh(pcc_import_kw.iter().map(|kw| per_minute((-kw).max(0.0))).sum()),
            peak_import_w: wh(pcc_import_kw.iter().fold(0.0, |a, kw| f64::max(a, kw * 1000.0))),
            peak_export_w: wh(pcc_import_kw.iter().fold(0.0, |a, kw| f64::max(a, -kw * 1000.0))),
            ..Default::default()
        };
        let (mut curtailed, mut shed) = (0.0, 0.0);
        for p in households {
            curtailed += p.curtailed_wh;
            shed += p.shed_wh;
        }
        if let Some(i) = island {
            let mut own = i.minutes.iter().filter(|(m, _)| m / SLOT_MINUTES == day_slot).map(|(_, a)| a);
            curtailed += own.clone().map(|a| a.plant_curtailed_wh).sum::<f64>();
            r.generator_wh = wh(own.clone().map(|a| a.genset_wh - a.dumped_wh).sum());
            r.storage_wh = wh(own.next_back().map_or(i.battery.soc_wh, |a| a.soc_wh));
            r.storage_capacity_wh = wh(i.spec.battery.capacity_wh);
        }
        r.curtailed_wh = wh(curtailed);
        r.shed_wh = wh(shed);
        r
    }
}

/// The microgrid on chain: the registry held the run's parameters (islanded band or PCC limits)
/// from set-up to the end; every delivered slot has the operator's report (`MicrogridReported`),
/// equal to the physics; and each report's net flow (import − export) agrees with the net energy
/// of every meter on chain in that slot (what settlement bills), within 1 Wh of register rounding
/// per meter and 1 Wh of the report's own rounding per direction.
pub fn check_reports(d: &RunData) -> Check {
    let mut c = Check::new();
    c.expect(d.microgrid.start == d.microgrid.end, || {
        format!(
            "the registry's microgrid parameters changed during the run: {:?} → {:?}",
            d.microgrid.start, d.microgrid.end
        )
    });
    c.expect(d.microgrid.end.islanded == d.cfg.islanded.is_some(), || {
        format!(
            "the registry says islanded = {}, the run was {}",
            d.microgrid.end.islanded,
            d.cfg.islanded.is_some()
        )
    });
    if let (Some(voll), true) = (d.cfg.voll, d.cfg.islanded.is_some()) {
        let want = (voll * 1000.0).round() as u128 * 1_000_000_000_000_000;
        c.expect(d.microgrid.end.voll == want, || {
            format!("the registry's value of lost load is {}, the run's {want}", d.microgrid.end.voll)
        });
    }
    let w = crate::market::limit_w;
    if d.cfg.islanded.is_none() {
        let (i, e) = (w(d.cfg.pcc.import_kw), w(d.cfg.pcc.export_kw));
        c.expect((d.microgrid.end.import_limit_w, d.microgrid.end.export_limit_w) == (i, e), || {
            format!("the registry's PCC limits are {:?}, the run's ({i}, {e}) W", d.microgrid.end)
        });
    }
    let rounding = d.hh.iter().filter(|h| h.is_household()).count() as f64 + 2.0;
    for (k, s) in d.slots.iter().enumerate() {
        let Some(mine) = s.report else { continue };
        let Some(theirs) = d.reports.get(&s.chain_slot) else {
            c.expect(false, || format!("{}: no microgrid report on chain", hhmm(s.day_slot)));
            continue;
        };
        c.expect(*theirs == mine, || {
            format!("{}: the report on chain {theirs:?} ≠ the physics {mine:?}", hhmm(s.day_slot))
        });
        let households = d.metered.iter().zip(&d.hh).filter(|(_, h)| h.is_household());
        let metered: f64 = households.map(|(row, _)| row[k].import_wh as f64 - row[k].export_wh as f64).sum();
        let reported = theirs.import_wh as f64 - theirs.export_wh as f64;
        c.expect((metered - reported).abs() <= rounding, || {
            format!(
                "{}: the report's net flow {reported} Wh ≠ the meters' {metered} Wh on chain",
                hhmm(s.day_slot)
            )
        });
    }
    c
}
