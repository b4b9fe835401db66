//! A short simulation end to end: a real `p2pe-node dev`, a real Mosquitto (started on a free port),
//! the real `p2pe-mqtt-bridge`, 4 simulated households whose meters publish in all four payload
//! formats, and their agents trading 8 midday slots of 5 s. The run's own end-of-run checks must
//! pass, and the outputs must be there and agree with each other and with the chain.
//!
//! Needs the workspace binaries built (`cargo build --workspace`, as `scripts/test.sh` does; the
//! simulator builds them itself otherwise) and Debian's mosquitto (`scripts/test.sh` installs it).

use std::path::Path;

use p2pe_sim::config::SimConfig;
use p2pe_sim::household::Strategy;
use serde_json::Value;

use p2pe_tests::bridge::PlainMosquitto as Mosquitto;

fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    // The note column is quoted and may contain commas: keep only the columns before it.
    let rows = lines.map(|l| l.split(',').take(head.len() - 1).map(str::to_string).collect()).collect();
    (head, rows)
}

fn col(head: &[String], name: &str) -> usize {
    head.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {head:?}"))
}

#[test]
fn four_households_eight_midday_slots_against_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let out = dir.path().join("out");
    let mut cfg = SimConfig::defaults();
    cfg.households = 4;
    cfg.first_slot = 11 * 4; // 11:00, PV surplus: prosumers sell to consumers
    cfg.slots = 8;
    cfg.pv_share = 0.5;
    cfg.battery_share = 0.25;
    cfg.battery_strategy = Strategy::Arbitrage;
    cfg.seed = 7;
    cfg.broker = Some(format!("mqtt://127.0.0.1:{}", broker.port));
    cfg.out = out.clone();
    cfg.quiet = true;
    cfg.stay = true;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut f = rt.block_on(p2pe_sim::simulate(cfg)).expect("simulation runs");
    println!("{}", f.table);

    // With `stay`, the dev chain outlives the day and serves the trading dApp and the market's
    // deployment on its JSON-RPC port (README's first command: the page shows the simulated market).
    let chain = f.live.take().expect("the chain stays up");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let page = http.get(format!("{}/", chain.url)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("<title>P2P Energy market</title>"));
        let deployment: Value =
            http.get(format!("{}/contracts.json", chain.url)).send().await.unwrap().json().await.unwrap();
        let on_disk: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("contracts.json")).unwrap()).unwrap();
        assert_eq!(deployment["market"], on_disk["market"]);
        let head: Value = http
            .post(&chain.url)
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let head =
            u64::from_str_radix(head["result"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        assert!(
            head >= f.summary["transactions"]["blocks"][1].as_u64().unwrap(),
            "the day's blocks are served"
        );
    });
    drop(chain);

    // The run's own checks: on-chain clearing = merit order, no rejected order in the money, money and
    // energy conserved, the chain's meter data = the simulated meters.
    assert!(f.checks.clearing.passed, "clearing: {:?}", f.checks.clearing.failures);
    assert!(f.checks.no_regret.passed, "rejected orders in the money: {:?}", f.checks.no_regret.failures);
    assert!(f.checks.money.passed, "money: {:?}", f.checks.money.failures);
    assert!(f.checks.energy.passed, "energy: {:?}", f.checks.energy.failures);
    let warnings = f.summary["warnings"].as_array().expect("warnings");
    assert!(
        !warnings.iter().any(|w| w.as_str().is_some_and(|w| w.contains("SlotFinal"))),
        "no reading arrived after its grace period: {warnings:?}"
    );
    assert!(f.checks.energy.checked >= 8 * 4, "every household's meter is compared in every slot");
    let traded: u64 = f.slots.iter().map(|s| s.volume_wh).sum();
    assert!(traded > 0, "midday prosumers sell to consumers");
    assert!(f.checks.clearing.checked > 8, "cleared slots were compared with the merit order");

    // Every meter message went through Mosquitto and the bridge onto the chain.
    let s = &f.summary;
    let published = s["meter_messages"]["published"].as_u64().unwrap();
    assert_eq!(
        published,
        4 + 4 + 8 * 3 * 4,
        "a first reading, one at the first slot's start, plus 3 per slot and meter"
    );
    assert_eq!(s["meter_messages"]["failed"], 0);
    assert_eq!(s["bridge"]["confirmed"].as_u64(), Some(published), "{}", s["bridge"]);
    assert_eq!(s["bridge"]["dead_letters"], 0);
    assert_eq!(s["transactions"]["failed"], 0, "{}", s["transactions"]);
    assert!(
        s["transactions"]["on_chain_during_the_day"].as_u64().unwrap()
            > s["transactions"]["orders"].as_u64().unwrap()
    );

    // Outputs.
    for name in [
        "slots.csv",
        "households.csv",
        "summary.json",
        "prices.png",
        "prices.svg",
        "energy.png",
        "energy.svg",
        "savings.png",
        "savings.svg",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    for name in ["prices.png", "energy.png", "savings.png"] {
        assert_eq!(&std::fs::read(out.join(name)).unwrap()[..8], b"\x89PNG\r\n\x1a\n", "{name}");
    }
    assert!(std::fs::read_to_string(out.join("prices.svg")).unwrap().contains("<svg"));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for k in [
        "self_sufficiency",
        "self_consumption",
        "total_savings_credits",
        "households_saved_share",
        "households_worse_than_baseline",
    ] {
        assert!(summary.get(k).is_some(), "summary.json lacks {k}");
    }
    let ss = summary["self_sufficiency"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ss), "{ss}");

    let (head, rows) = csv(&out.join("slots.csv"));
    assert_eq!(rows.len(), 8);
    let vol: u64 = rows.iter().map(|r| r[col(&head, "traded_wh")].parse::<u64>().unwrap()).sum();
    assert_eq!(vol, traded);
    assert_eq!(rows[0][col(&head, "time")], "11:00");

    let (head, rows) = csv(&out.join("households.csv"));
    assert_eq!(rows.len(), 4);
    let formats: Vec<&str> = rows.iter().map(|r| r[col(&head, "meter_format")].as_str()).collect();
    assert_eq!(formats, ["json", "tasmota", "tasmota-sml", "shelly"]);
    let bought: u64 = rows.iter().map(|r| r[col(&head, "bought_wh")].parse::<u64>().unwrap()).sum();
    let sold: u64 = rows.iter().map(|r| r[col(&head, "sold_wh")].parse::<u64>().unwrap()).sum();
    assert_eq!((bought, sold), (traded, traded), "households bought and sold what the slots traded");
    let savings: f64 = rows.iter().map(|r| r[col(&head, "savings_credits")].parse::<f64>().unwrap()).sum();
    assert!((savings - summary["total_savings_credits"].as_f64().unwrap()).abs() < 1e-5);
    // Households that paid more than their baseline are named with a reason.
    let worse = summary["households_worse_than_baseline"].as_array().unwrap();
    for r in &rows {
        let sv: f64 = r[col(&head, "savings_credits")].parse().unwrap();
        let id = &r[col(&head, "household")];
        assert_eq!(
            sv < 0.0,
            worse.iter().any(|w| w["id"] == id.as_str() && !w["reason"].as_str().unwrap().is_empty()),
            "{id}"
        );
    }
}
