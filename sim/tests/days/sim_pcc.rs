//! A short PCC-limited run end to end: the same set-up as `sim_short.rs` (a real `p2pe-node dev`, a
//! real Mosquitto on a free port, the real bridge, 4 households in all four meter formats) with the
//! community's connection limited to 2 kW of export and 20 kW of import, over 6 midday slots, when
//! the prosumers' PV exceeds the export limit. The physics must curtail PV minute by minute and
//! record it per household, the PCC's flow must never exceed its limit (in the physics, in
//! `pcc.csv` and in the meter data on chain), the operator must have priced the slots it forecast
//! as export-bound at its surplus prices through `setSlotPrices`, and every end-of-run check must
//! pass. About a minute in debug.
//!
//! Needs the workspace binaries built (`cargo build -p p2pe-node -p p2pe-mqtt-bridge`; the
//! simulator builds them itself otherwise) and Debian's mosquitto.

use p2pe_sim::config::SimConfig;
use p2pe_sim::household::Strategy;
use p2pe_sim::pcc::PccLimits;
use serde_json::Value;

use p2pe_tests::bridge::PlainMosquitto as Mosquitto;

#[test]
fn export_limit_curtails_pv_and_holds_at_the_pcc() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let out = dir.path().join("out");
    let mut cfg = SimConfig::defaults();
    cfg.households = 4;
    cfg.first_slot = 11 * 4 + 2; // 11:30
    cfg.slots = 6;
    cfg.pv_share = 0.5;
    cfg.battery_share = 0.25;
    cfg.battery_strategy = Strategy::Arbitrage;
    cfg.seed = 7;
    cfg.cloudiness = 0.1;
    cfg.pcc = PccLimits { import_kw: Some(20.0), export_kw: Some(2.0) };
    cfg.broker = Some(format!("mqtt://127.0.0.1:{}", broker.port));
    cfg.out = out.clone();
    cfg.quiet = true;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let f = rt.block_on(p2pe_sim::simulate(cfg)).expect("simulation runs");
    println!("{}", f.table);

    // Every check, the new one included.
    let c = &f.checks;
    assert!(c.clearing.passed, "clearing: {:?}", c.clearing.failures);
    assert!(c.no_regret.passed, "no regret: {:?}", c.no_regret.failures);
    assert!(c.money.passed, "money: {:?}", c.money.failures);
    assert!(c.energy.passed, "energy: {:?}", c.energy.failures);
    assert!(c.pcc.passed, "power balance / PCC: {:?}", c.pcc.failures);
    // The connection's rating is in the registry (20 kW import, 2 kW export), and every slot's
    // report on chain equals the physics and the meters' net flow.
    assert!(c.reports.passed, "reports: {:?}", c.reports.failures);
    assert!(c.reports.checked >= 3 + 2 * 6, "{}", c.reports.checked);
    let reg = &f.summary["microgrid"]["registry"];
    assert_eq!(
        (reg["import_limit_w"].as_u64(), reg["export_limit_w"].as_u64()),
        (Some(20_000), Some(2_000)),
        "{reg}"
    );
    assert_eq!(reg["islanded"], false);
    assert_eq!(f.summary["microgrid"]["reported_slots"], 6);
    // 4 households × 15 minutes × 6 slots balances, 90 community minutes, limits and meter sums.
    assert!(c.pcc.checked >= 6 * 15 * (4 + 1 + 2), "{}", c.pcc.checked);
    assert_eq!(f.summary["transactions"]["failed"], 0, "{}", f.summary["transactions"]);

    // The limit binds: PV was curtailed, and each household's share adds up to the total.
    let mg = &f.summary["microgrid"];
    let curtailed = mg["curtailed_kwh"].as_f64().unwrap();
    assert!(curtailed > 0.0, "midday PV over 2 kW of export is curtailed: {mg}");
    let per_household: f64 =
        mg["households"].as_array().unwrap().iter().map(|h| h["curtailed_kwh"].as_f64().unwrap()).sum();
    assert!((per_household - curtailed).abs() < 1e-9);
    assert!(mg["curtailment_minutes"].as_u64().unwrap() > 0);
    assert!(mg["peak_export_kw"].as_f64().unwrap() <= 2.0 + 1e-9, "{mg}");
    assert_eq!(mg["unserved_kwh"], 0.0, "20 kW of import never binds at midday");

    // pcc.csv: 90 minutes, none above the export limit, and at the limit somewhere.
    let text = std::fs::read_to_string(out.join("pcc.csv")).unwrap();
    let kw: Vec<f64> = text.lines().skip(1).map(|l| l.split(',').nth(2).unwrap().parse().unwrap()).collect();
    assert_eq!(kw.len(), 6 * 15);
    assert!(kw.iter().all(|k| -k <= 2.0 + 1e-3), "{kw:?}");
    assert!(kw.iter().any(|k| (-k - 2.0).abs() < 1e-3), "the export limit binds in some minute");

    // The operator priced the slots it forecast as export-bound at surplus: feed-in 0, retail at
    // the default feed-in (0.08), set with setSlotPrices before opening them.
    let surplus = mg["surplus_slots"].as_u64().unwrap();
    assert!(surplus > 0, "{mg}");
    for (s, p) in f.slots.iter().zip(mg["slots"].as_array().unwrap()) {
        if p["pricing"] == "surplus" {
            assert_eq!((s.retail, s.feed_in), (0.08, 0.0), "{}", s.time);
        } else {
            assert_eq!((s.retail, s.feed_in), (0.3, 0.08), "{}", s.time);
        }
    }

    for name in ["pcc.png", "pcc.svg", "pcc.csv", "slots.csv", "households.csv", "summary.json"] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    assert_eq!(&std::fs::read(out.join("pcc.png")).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["microgrid"]["export_limit_kw"], 2.0);
}
