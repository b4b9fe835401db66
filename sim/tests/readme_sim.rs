//! The README's simulator commands, run as a user runs them: the `p2pe-sim` binary itself, started in
//! a fresh temporary working directory, with the embedded broker and the default flags, and only the
//! flags that shorten the day (fewer households and midday slots) added.
//!
//! - `p2pe-sim --households 4 --start 11:00 --slots 8`, the README's short midday run, with no `--out`:
//!   exit 0, and the outputs in `./p2pe-sim-out`; then the bridge's README command
//!   `p2pe-mqtt-bridge --config bridge.toml --check` on the configuration it generated, from that
//!   configuration's own folder (a relative `--out` once wrote keystore paths relative to the working
//!   directory, which the bridge read relative to the file, so the README's main command failed);
//! - `--keep-chain` with a nested relative `--out ./a/b`: exits 0, keeps the chain in `OUT/chain` and
//!   writes the bridge configuration with absolute paths (the default `--out` is the run above; how
//!   a relative, nested or absolute `--out` is resolved is unit-tested in `engine::setup`);
//! - `p2pe-sim --help`.
//!
//! The runs share the dev chain's default port 8545 (the simulator falls back to a free port when it
//! is taken, as the README says), so they run one at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

/// One run at a time (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

fn sim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_p2pe-sim"))
}

/// `p2pe-mqtt-bridge` next to `p2pe-sim` (the test command builds the whole workspace first).
fn bridge_bin() -> PathBuf {
    let p = sim_bin().with_file_name("p2pe-mqtt-bridge");
    assert!(p.is_file(), "{} is missing: run `cargo build --workspace` first", p.display());
    p
}

/// Runs `p2pe-sim ARGS` in `cwd` and returns its output; fails the test with the output on a
/// non-zero exit.
fn run_sim(cwd: &Path, args: &[&str]) -> Output {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(sim_bin()).args(args).current_dir(cwd).output().expect("start p2pe-sim");
    assert!(
        out.status.success(),
        "p2pe-sim {args:?} in {} exited with {}\nstdout:\n{}\nstderr:\n{}",
        cwd.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The outputs every run writes, and what they must say.
fn assert_outputs(out: &Path, slots: u64) {
    for f in ["summary.json", "slots.csv", "households.csv", "contracts.json", "energy.png", "prices.svg"] {
        assert!(out.join(f).is_file(), "{} is missing", out.join(f).display());
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let csv = std::fs::read_to_string(out.join("slots.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, slots + 1, "one row per slot in {}", out.display());
    let checks = summary["checks"].as_object().expect("checks in summary.json");
    assert!(!checks.is_empty());
    let toml = std::fs::read_to_string(out.join("bridge/bridge.toml")).unwrap();
    let paths = ["keystore", "path", "password_file", "contracts_file"];
    for line in toml.lines().filter(|l| paths.iter().any(|k| l.starts_with(&format!("{k} =")))) {
        let path = line.split('"').nth(1).unwrap();
        assert!(Path::new(path).is_absolute(), "generated path is not absolute: {line}");
        assert!(Path::new(path).exists(), "generated path does not exist: {line}");
    }
}

#[test]
fn readme_short_midday_run_with_no_out_writes_p2pe_sim_out_and_its_bridge_config_checks() {
    let cwd = tempfile::tempdir().unwrap();
    let out = run_sim(cwd.path(), &["--households", "4", "--start", "11:00", "--slots", "8"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("check: energy"), "the summary table is printed:\n{table}");
    let dir = cwd.path().join("p2pe-sim-out");
    assert_outputs(&dir, 8);
    assert!(!dir.join("chain").exists(), "without --keep-chain the chain is not kept");

    // README: `p2pe-mqtt-bridge --config bridge.toml --check`, from the folder of the file.
    let bridge_dir = dir.join("bridge");
    let check = Command::new(bridge_bin())
        .args(["--config", "bridge.toml", "--check"])
        .current_dir(&bridge_dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bridge --check failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// `--keep-chain` with the given `--out`; returns the output folder.
fn keep_chain_run(cwd: &Path, out_arg: &str) -> PathBuf {
    run_sim(
        cwd,
        &[
            "--households",
            "2",
            "--start",
            "12:00",
            "--slots",
            "1",
            "--keep-chain",
            "--quiet",
            "--out",
            out_arg,
        ],
    );
    let out = cwd.join(out_arg);
    assert_outputs(&out, 1);
    let chain = out.join("chain");
    assert!(chain.is_dir(), "--keep-chain keeps {}", chain.display());
    assert!(
        std::fs::read_dir(&chain).unwrap().next().is_some(),
        "the kept chain folder {} is empty",
        chain.display()
    );
    out
}

#[test]
fn keep_chain_with_a_nested_relative_out() {
    let cwd = tempfile::tempdir().unwrap();
    let out = keep_chain_run(cwd.path(), "./a/b");
    assert!(out.starts_with(cwd.path()), "a relative --out is under the working directory");
}

#[test]
fn help_lists_every_option_the_readme_names() {
    let out = Command::new(sim_bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--households", "--start", "--slots", "--out", "--keep-chain", "--stay", "--broker", "--lab"]
    {
        assert!(help.contains(flag), "--help does not mention {flag}:\n{help}");
    }
}
