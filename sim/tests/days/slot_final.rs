//! Readings that reach the chain after their slot is final: a day with a grace period of 0 s whose
//! bridge the test stops (SIGSTOP) for 8 s in mid-day, as a loaded machine stalls it. The readings
//! the meters published meanwhile are relayed after their slots ended, the readings contract skips
//! them (`ReadingSkipped` with `SlotFinal`), the chain interpolates those slots' boundaries without
//! them, and the energy check fails; the run must say why, naming the meters and the flag to
//! change, in `summary.json` and on the console (a loaded machine once failed the energy check with
//! nothing saying why). `sim_short.rs` checks the warning's absence on a normal run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use p2pe_sim::config::SimConfig;

use p2pe_tests::bridge::PlainMosquitto as Mosquitto;

/// The pid of the bridge the simulator started with the configuration under `out`.
fn bridge_pid(out: &Path) -> Option<String> {
    let config = out.join("bridge/bridge.toml");
    let config = config.to_str()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> =
            cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_ours = args.first()?.ends_with("p2pe-mqtt-bridge") && args.iter().any(|a| a == config);
        is_ours.then(|| e.file_name().to_string_lossy().into_owned())
    })
}

fn signal(pid: &str, sig: &str) {
    let ok = Command::new("kill").args([sig, pid]).status().expect("kill").success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn readings_after_the_grace_period_are_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let out = dir.path().join("out");
    let mut cfg = SimConfig::defaults();
    cfg.households = 2;
    cfg.first_slot = 12 * 4;
    cfg.slots = 4;
    cfg.grace_period = 0;
    cfg.broker = Some(format!("mqtt://127.0.0.1:{}", broker.port));
    cfg.out = out.clone();
    cfg.quiet = true;
    // The stall: 10-18 s after the bridge starts, inside the day's 20 s of slots (they begin 5-10 s
    // after it), so at least one slot ends while the bridge holds that slot's last readings.
    let staller = std::thread::spawn(move || {
        let t0 = Instant::now();
        let pid = loop {
            if let Some(pid) = bridge_pid(&out) {
                break pid;
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "the simulator never started its bridge");
            std::thread::sleep(Duration::from_millis(100));
        };
        std::thread::sleep(Duration::from_secs(10));
        signal(&pid, "-STOP");
        std::thread::sleep(Duration::from_secs(8));
        signal(&pid, "-CONT");
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let f = rt.block_on(p2pe_sim::simulate(cfg)).expect("the run completes (its checks may fail)");
    staller.join().expect("the bridge was stopped and resumed");
    let warnings: Vec<&str> =
        f.summary["warnings"].as_array().expect("warnings").iter().filter_map(|w| w.as_str()).collect();
    let late: Vec<&&str> = warnings.iter().filter(|w| w.contains("SlotFinal")).collect();
    assert_eq!(late.len(), 1, "one warning about late readings: {warnings:#?}");
    eprintln!("{}", late[0]);
    assert!(late[0].contains("0 s grace period") && late[0].contains("--grace-period"), "{}", late[0]);
    assert!(late[0].contains("h001") || late[0].contains("h002"), "names the meters: {}", late[0]);
    assert!(f.table.contains(&format!("warning: {}", late[0])), "on the console too:\n{}", f.table);
    // What the warning explains: the chain's meter data differs from the simulated meters'.
    assert!(!f.checks.energy.passed, "the energy check compares against interpolated data");
}
