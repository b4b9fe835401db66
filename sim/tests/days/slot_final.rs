//! Readings that reach the chain after their slot is final: a run with a grace period of 0 s, where
//! a slot's last reading (taken at its end) cannot be on chain before the slot is final. The
//! readings contract skips those (`ReadingSkipped` with `SlotFinal`), the chain interpolates the
//! slot boundaries without them, and the energy check fails; the run must say why, naming the
//! meters and the flag to change, in `summary.json` and on the console (a loaded machine once
//! failed the energy check with nothing saying why). `sim_short.rs` checks the warning's absence
//! on a normal run.

use p2pe_sim::config::SimConfig;

use p2pe_tests::bridge::PlainMosquitto as Mosquitto;

#[test]
fn readings_after_the_grace_period_are_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let mut cfg = SimConfig::defaults();
    cfg.households = 2;
    cfg.first_slot = 12 * 4;
    cfg.slots = 2;
    cfg.grace_period = 0;
    cfg.broker = Some(format!("mqtt://127.0.0.1:{}", broker.port));
    cfg.out = dir.path().join("out");
    cfg.quiet = true;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let f = rt.block_on(p2pe_sim::simulate(cfg)).expect("the run completes (its checks may fail)");
    let warnings: Vec<&str> =
        f.summary["warnings"].as_array().expect("warnings").iter().filter_map(|w| w.as_str()).collect();
    let late: Vec<&&str> = warnings.iter().filter(|w| w.contains("SlotFinal")).collect();
    assert_eq!(late.len(), 1, "one warning about late readings: {warnings:#?}");
    assert!(late[0].contains("0 s grace period") && late[0].contains("--grace-period"), "{}", late[0]);
    assert!(late[0].contains("h001") || late[0].contains("h002"), "names the meters: {}", late[0]);
    assert!(f.table.contains(&format!("warning: {}", late[0])), "on the console too:\n{}", f.table);
    // What the warning explains: the chain's meter data differs from the simulated meters'.
    assert!(!f.checks.energy.passed, "the energy check compares against interpolated data");
}
