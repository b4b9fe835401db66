//! Arguments the simulator refuses before it starts anything: the `p2pe-sim` binary itself, in a
//! fresh working directory, must exit non-zero with a message naming the flag at fault, and leave
//! no output directory behind. (The accepted cases run whole days: `--islanded --voll 5` in
//! sim_island.rs, the defaults in readme_sim.rs.)

use std::path::PathBuf;
use std::process::Command;

fn sim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_p2pe-sim"))
}

/// Runs `p2pe-sim ARGS` in a fresh directory; asserts it failed, wrote nothing there, and that its
/// stderr contains `why`.
fn refused(args: &[&str], why: &str) {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(sim_bin()).args(args).current_dir(cwd.path()).output().expect("start p2pe-sim");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "p2pe-sim {args:?} was accepted; stderr:\n{stderr}");
    assert!(stderr.contains(why), "p2pe-sim {args:?}: stderr does not say {why:?}:\n{stderr}");
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "p2pe-sim {args:?} was refused but wrote {left:?}");
}

#[test]
fn voll_without_islanded_is_refused() {
    refused(&["--voll", "5"], "--voll is the islanded price cap: it needs --islanded");
}

#[test]
fn voll_at_the_floor_and_past_the_last_reachable_cap_are_refused() {
    // At the 0.08 floor: no band at all.
    refused(&["--islanded", "--voll", "0.08"], "above the 0.08 floor");
    // Below the floor, and not a price in thousandths.
    refused(&["--islanded", "--voll", "0.05"], "above the 0.08 floor");
    refused(&["--islanded", "--voll", "0.3335"], "in thousandths");
    // 5.18 is the highest cap 255 levels of a tick dividing 0.22 reach; 5.19 is not reachable.
    refused(&["--islanded", "--voll", "5.19"], "no price tick dividing 0.22 reaches it");
}

#[test]
fn a_start_off_the_quarter_hour_is_refused() {
    refused(&["--start", "11:10"], "--start must be HH:MM on a quarter hour");
    refused(&["--start", "24:00"], "--start must be HH:MM on a quarter hour");
}

#[test]
fn an_islanded_run_with_a_grid_connection_limit_is_refused() {
    refused(&["--islanded", "--pcc-import-kw", "10"], "--islanded has no grid connection");
}
