//! A short islanded run end to end: the same set-up as `sim_short.rs` (a real `p2pe-node dev`, a
//! real Mosquitto on a free port, the real bridge, 4 households in all four meter formats), with
//! no grid: the community's assets are an empty battery, no PV plant and a 1.5 kW genset, over 6
//! evening slots. The genset must run (at its minimum load when the deficit is smaller, dumping the
//! excess), load beyond what the assets give must be shed and recorded, and only then, every slot
//! must be priced in the islanded band up to a value of lost load of 5 credits/kWh (a dev chain
//! with a 0.02 price tick), the assets must trade as members of the market, and
//! every end-of-run check (minute-level balances of households, community and assets included)
//! must pass. About a minute in debug.
//!
//! Needs the workspace binaries built (`cargo build -p p2pe-node -p p2pe-mqtt-bridge`; the
//! simulator builds them itself otherwise) and Debian's mosquitto.

use p2pe_sim::config::SimConfig;
use p2pe_sim::household::Strategy;
use p2pe_sim::island::IslandSpec;

use p2pe_tests::bridge::PlainMosquitto as Mosquitto;

#[test]
fn islanded_evening_on_a_small_genset() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let out = dir.path().join("out");
    let mut cfg = SimConfig::defaults();
    cfg.households = 4;
    cfg.first_slot = 19 * 4; // 19:00
    cfg.slots = 6;
    cfg.pv_share = 0.5;
    cfg.battery_share = 0.25;
    cfg.battery_strategy = Strategy::Arbitrage;
    cfg.seed = 7;
    let mut island = IslandSpec::defaults();
    island.initial_soc = 0.0; // at its minimum: nothing to give
    island.plant_kwp = 0.0;
    island.genset_kw = 1.5;
    cfg.islanded = Some(island);
    // A value of lost load as in studies: the dev chain gets a 0.02 price tick to reach it.
    cfg.voll = Some(5.0);
    cfg.broker = Some(format!("mqtt://127.0.0.1:{}", broker.port));
    cfg.out = out.clone();
    cfg.quiet = true;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let f = rt.block_on(p2pe_sim::simulate(cfg)).expect("simulation runs");
    println!("{}", f.table);

    let c = &f.checks;
    assert!(c.clearing.passed, "clearing: {:?}", c.clearing.failures);
    assert!(c.no_regret.passed, "no regret: {:?}", c.no_regret.failures);
    assert!(c.money.passed, "money: {:?}", c.money.failures);
    assert!(c.energy.passed, "energy: {:?}", c.energy.failures);
    assert!(c.pcc.passed, "power balance / assets: {:?}", c.pcc.failures);
    // The registry is islanded with the band the slots were priced in, and every slot has the
    // operator's report on chain, equal to the physics and to the meters' net flow.
    assert!(c.reports.passed, "reports: {:?}", c.reports.failures);
    assert!(c.reports.checked >= 2 + 2 * 6, "{}", c.reports.checked);
    // Households (4) and the asset members (2), the community, and the assets' dispatch (2) in
    // each of 90 minutes.
    assert!(c.pcc.checked >= 6 * 15 * (4 + 2 + 1 + 2), "{}", c.pcc.checked);
    assert_eq!(f.summary["transactions"]["failed"], 0, "{}", f.summary["transactions"]);

    let mg = &f.summary["microgrid"];
    // The assets trade as members of the market: the empty battery and the genset (no plant),
    // each with its own meter through the bridge, settled like the households. The genset asks at
    // its marginal cost and runs what it sold: its meter exports at least that.
    println!("{}", f.summary["assets"]);
    let assets = f.summary["assets"].as_array().unwrap();
    let names: Vec<&str> = assets.iter().map(|a| a["asset"].as_str().unwrap()).collect();
    assert_eq!(names, ["storage", "genset"]);
    let genset = &assets[1];
    let sold = genset["sold_wh"].as_u64().unwrap();
    assert!(sold > 0, "the genset sold in the evening: {genset}");
    assert!(genset["metered_export_wh"].as_u64().unwrap() >= sold, "{genset}");
    assert!(genset["slots_traded"].as_u64().unwrap() > 0);
    assert_eq!(f.summary["households"], 4);
    let reg = &mg["registry"];
    assert_eq!(reg["islanded"], true, "{reg}");
    assert_eq!(
        (reg["floor"].as_u64(), reg["voll"].as_u64()),
        (Some(80 * 10u64.pow(15)), Some(5 * 10u64.pow(18)))
    );
    assert_eq!(mg["reported_slots"], 6);
    let isl = &mg["island"];
    assert!(isl["genset_hours"].as_f64().unwrap() > 1.0, "{isl}");
    assert!(isl["fuel_l"].as_f64().unwrap() > 0.0);
    assert!(isl["fuel_cost_credits"].as_f64().unwrap() > 0.0);
    assert_eq!(isl["plant_kwh"], 0.0);
    // The evening load exceeds 1.5 kW at times: shed, and recorded per household.
    let unserved = mg["unserved_kwh"].as_f64().unwrap();
    assert!(unserved > 0.0, "{mg}");
    let per_household: f64 =
        mg["households"].as_array().unwrap().iter().map(|h| h["unserved_kwh"].as_f64().unwrap()).sum();
    assert!((per_household - unserved).abs() < 1e-9);
    assert!(mg["loss_of_load_minutes"].as_u64().unwrap() > 0);
    // Load is shed only once the assets give all they can: in every minute with shed, the
    // households draw at least the genset's full 1.5 kW (plus whatever the battery, charged by
    // their PV earlier, still gives).
    let text = std::fs::read_to_string(out.join("pcc.csv")).unwrap();
    // (net_import_kw, unserved_wh) of every minute; the limit columns are empty when islanded.
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("minute,time,net_import_kw,import_limit_kw,export_limit_kw,curtailed_wh,unserved_wh")
    );
    let rows: Vec<(f64, f64)> = lines
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            let num = |i: usize| {
                cols[i].parse::<f64>().unwrap_or_else(|e| panic!("pcc.csv `{l}`, column {i}: {e}"))
            };
            (num(2), num(6))
        })
        .collect();
    assert_eq!(rows.len(), 6 * 15);
    let shed_minutes: Vec<&(f64, f64)> = rows.iter().filter(|r| r.1 > 0.0).collect();
    assert!(!shed_minutes.is_empty());
    assert!(shed_minutes.iter().all(|r| r.0 >= 1.5 - 1e-3), "{shed_minutes:?}");

    // Every slot priced in the islanded band (floor 0.08, cap the value of lost load), with the
    // battery's state of charge reported.
    for (s, p) in f.slots.iter().zip(mg["slots"].as_array().unwrap()) {
        assert_eq!(p["pricing"], "islanded", "{}", s.time);
        assert_eq!((s.retail, s.feed_in), (5.0, 0.08), "{}", s.time);
        assert!(p["soc_kwh"].as_f64().is_some());
    }
    for name in ["pcc.csv", "pcc.png", "soc.png", "soc.svg"] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
}
