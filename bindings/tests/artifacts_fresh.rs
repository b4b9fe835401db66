//! Fails when the artifacts committed under `bindings/artifacts/` differ from a fresh `forge build`.
//!
//! Gate: `P2PE_CHECK_ARTIFACTS=1` forces the check (and fails with a clear message if forge is not installed
//! in `contracts/node_modules`); `P2PE_CHECK_ARTIFACTS=0` skips it; when unset, the check runs whenever
//! `contracts/node_modules/.bin/forge` exists (i.e. after `npm ci` in `contracts/`) and is skipped, with a
//! notice on stderr, otherwise. CI: `cd contracts && npm ci && cd .. && P2PE_CHECK_ARTIFACTS=1 cargo test`.
//! Fix a failure with `contracts/scripts/update-bindings.sh` and commit the JSON files.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

const CONTRACTS: [&str; 4] = ["Registry", "CreditToken", "MeterReadings", "EnergyMarket"];

fn slim(artifact: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "abi": artifact["abi"],
        "bytecode": { "object": artifact["bytecode"]["object"] },
        "deployedBytecode": { "object": artifact["deployedBytecode"]["object"] },
    })
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

#[test]
fn artifacts_match_fresh_forge_build() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let contracts = manifest.join("../contracts");
    let forge = contracts.join("node_modules/.bin/forge");
    let gate = std::env::var("P2PE_CHECK_ARTIFACTS").unwrap_or_default();
    match gate.as_str() {
        "0" => {
            eprintln!("P2PE_CHECK_ARTIFACTS=0: skipping the artifact freshness check");
            return;
        }
        "1" => assert!(
            forge.exists(),
            "P2PE_CHECK_ARTIFACTS=1 but forge is not installed at {}; run `npm ci` in contracts/ first",
            forge.display()
        ),
        _ if !forge.exists() => {
            eprintln!(
                "SKIPPED artifact freshness check: {} not found (run `npm ci` in contracts/, \
                 or set P2PE_CHECK_ARTIFACTS=1 to make this an error)",
                forge.display()
            );
            return;
        }
        _ => {}
    }

    // Removed when dropped, also when an assertion below fails (CI's disk is shared).
    let scratch = tempfile::Builder::new().prefix("p2pe-artifact-check-").tempdir().expect("temp dir");
    let out: PathBuf = scratch.path().to_path_buf();
    let status = Command::new(&forge)
        .current_dir(&contracts)
        .args(["build", "--out"])
        .arg(out.join("out"))
        .arg("--cache-path")
        .arg(out.join("cache"))
        .status()
        .expect("running forge build");
    assert!(status.success(), "forge build failed");

    let mut stale = Vec::new();
    for name in CONTRACTS {
        let fresh =
            slim(&read_json(&out.join("out").join(format!("{name}.sol")).join(format!("{name}.json"))));
        let committed = read_json(&manifest.join("artifacts").join(format!("{name}.json")));
        if fresh != committed {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "committed artifacts are stale for {stale:?}: run contracts/scripts/update-bindings.sh and commit bindings/artifacts/"
    );
}
