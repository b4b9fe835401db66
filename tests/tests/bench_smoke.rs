//! The benches run end to end at a small size, so that they keep working between the runs
//! recorded in BENCHMARKS.md: the state-size benches (every transaction they send must succeed:
//! they check each receipt, on the node and on anvil; the year bench's seeding must leave the
//! contracts the words it models) and the network bench with the load generator it drives. The
//! figures are not checked: a bench measures, a test does not time.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("the bench starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{bin} {args:?} failed: {}\n{stderr}", out.status);
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The numbers in the table row that starts with `label`.
fn row<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {label}")))
        .unwrap_or_else(|| panic!("no row {label:?} in\n{table}"));
    line.split('|').map(str::trim).filter(|c| !c.is_empty()).skip(1).collect()
}

#[test]
fn the_year_bench_seeds_the_words_a_year_leaves_and_every_order_and_reading_succeeds() {
    // 20 participants, 300 slots: the market's 128 level-word sets have all been used (221
    // words each) and 2 × 300 slot words are kept; each meter has its 64 reading words, its
    // meta word and 300 energy words (under the ring of 4,096).
    let table = run(
        env!("CARGO_BIN_EXE_p2pe-yearbench"),
        &[
            "--participants",
            "20",
            "--slots",
            "300",
            "--rounds",
            "1",
            "--extra-market-words",
            "1000",
            "--in-memory",
        ],
    );
    let words = row(&table, "storage words");
    let counts = |cell: &str| -> (u64, u64) {
        let (m, r) = cell.split_once(" / ").expect("market / readings");
        (m.parse().unwrap(), r.parse().unwrap())
    };
    let (fresh_market, fresh_readings) = counts(words[0]);
    let (year_market, year_readings) = counts(words[1]);
    assert_eq!(fresh_readings, 0, "genesis binds meters without readings");
    assert_eq!(year_market - fresh_market, 128 * 221 + 2 * 300 + 1000, "the slots' words and the extra ones");
    assert_eq!(year_readings, 20 * (65 + 300));
    // anvil, side by side, starts from the same genesis with the same words in its alloc.
    assert_eq!((words[2], words[3]), (words[0], words[1]), "anvil holds the node's words");
    for label in ["seal a block of 20 orders", "seal a block of 20 meter readings", "seal a block of 1 order"]
    {
        assert_eq!(row(&table, label).len(), 6, "{label}: fresh, year, ratio for the node and anvil");
    }
    assert_eq!(row(&table, "disk").len(), 5, "disk: the node's three cells, none for anvil");
    // The node's own phase timers were read for its blocks (its metrics recorder, in-process);
    // anvil has none.
    for block in ["orders", "readings"] {
        for part in ["execution", "state root", "rows written", "SQLite COMMIT", "other"] {
            let cells = row(&table, &format!("of the {block} block: {part}"));
            assert_eq!(cells.len(), 5, "{block}, {part}: fresh, year, ratio, then anvil's dashes: {cells:?}");
            assert_eq!(cells[3..], ["–", "–"], "{block}, {part}: no timers for anvil");
            for cell in &cells[..2] {
                let ms: f64 = cell.strip_suffix(" ms").and_then(|v| v.parse().ok()).expect("a time in ms");
                let timed = matches!(part, "execution" | "state root");
                assert!(if timed { ms > 0.0 } else { ms >= 0.0 }, "{block}, {part}: {cells:?}");
            }
        }
    }
    // --in-memory: the root of each block's keys on the stored tries and in memory (the bench
    // asserts both give the same root); anvil has none.
    for block in ["orders", "readings"] {
        for label in [
            format!("root of the {block} block's keys again, stored tries"),
            format!("root of the {block} block's keys, the same walk in memory"),
        ] {
            let cells = row(&table, &label);
            assert_eq!(cells.len(), 5, "{label}: {cells:?}");
            assert!(cells[0].ends_with(" ms") && cells[1].ends_with(" ms"), "{label}: {cells:?}");
            assert_eq!(cells[3..], ["–", "–"], "{label}: none for anvil");
        }
    }
    // Every chain's RSS was read (the node's own process, the real anvil under npm's launcher).
    let rss = row(&table, "RSS after the blocks");
    for cell in [rss[0], rss[1], rss[3], rss[4]] {
        let mb: f64 = cell.trim_end_matches(" MB").parse().expect("an RSS in MB");
        assert!(mb > 1.0, "RSS read: {rss:?}");
    }
}

#[test]
fn the_trie_bench_seals_order_shaped_blocks_on_a_seeded_contract() {
    // anvil runs side by side at both sizes: the same genesis with the words in its alloc, the
    // same signed transactions, every receipt checked; the row ends with the node / anvil ratio.
    let table =
        run(env!("CARGO_BIN_EXE_p2pe-triebench"), &["--words", "0,5000", "--txs", "20", "--blocks", "1"]);
    for words in ["0", "5000"] {
        let cells = row(&table, &format!("{words} |"));
        assert_eq!(cells.len(), 11, "node and anvil figures at {words} words: {cells:?}");
        assert!(cells[6].ends_with(" ms"), "anvil's evm_mine time: {cells:?}");
        assert!(cells[10].ends_with('x'), "node / anvil: {cells:?}");
    }
}

#[test]
fn the_trie_bench_times_the_same_walk_on_the_tables_and_in_memory() {
    // `--in-memory` copies each size's state into memory in a child process and asserts, every
    // round, that the walk there gives the stored tries' root for the same changes.
    let table = run(
        env!("CARGO_BIN_EXE_p2pe-triebench"),
        &[
            "--words",
            "0,5000",
            "--txs",
            "20",
            "--blocks",
            "1",
            "--no-anvil",
            "--in-memory",
            "--root-rounds",
            "2",
        ],
    );
    let memory = table
        .split("The same walk in memory")
        .nth(1)
        .unwrap_or_else(|| panic!("no in-memory table:\n{table}"));
    for words in ["0", "5000"] {
        let cells = row(memory, &format!("{words} |"));
        assert_eq!(cells.len(), 6, "{cells:?}");
        assert!(
            cells[0].ends_with(" ms") && cells[2].ends_with(" ms") && cells[4].ends_with('x'),
            "{cells:?}"
        );
        assert!(cells[5].ends_with(" MB"), "{cells:?}");
    }
}

#[test]
fn the_trie_bench_overwrites_seeded_words_and_refuses_a_contract_too_small_for_it() {
    // The bench checks after each block that the contract holds exactly the seeded words.
    // anvil runs up to --anvil-max-words: at 4 words (overwriting its alloc's words), not at 5,000.
    let table = run(
        env!("CARGO_BIN_EXE_p2pe-triebench"),
        &["--words", "4,5000", "--txs", "20", "--blocks", "1", "--overwrite", "--anvil-max-words", "4"],
    );
    assert!(row(&table, "4 |")[10].ends_with('x'), "anvil ran at 4 words:\n{table}");
    assert_eq!(row(&table, "5000 |")[6], "not run (over --anvil-max-words 4)", "{table}");
    let out = Command::new(env!("CARGO_BIN_EXE_p2pe-triebench"))
        .args(["--words", "0,3", "--overwrite"])
        .output()
        .expect("the bench starts");
    assert_eq!(out.status.code(), Some(2));
    // Zero timed blocks or rounds would have no median: refused with a clear error, not a panic.
    for (bin, flag) in [
        (env!("CARGO_BIN_EXE_p2pe-triebench"), "--blocks"),
        (env!("CARGO_BIN_EXE_p2pe-triebench"), "--root-rounds"),
        (env!("CARGO_BIN_EXE_p2pe-yearbench"), "--rounds"),
    ] {
        let zero = Command::new(bin).args([flag, "0"]).output().expect("the bench starts");
        let stderr = String::from_utf8_lossy(&zero.stderr);
        assert_eq!(zero.status.code(), Some(2), "{flag} 0: {stderr}");
        assert!(stderr.contains("must be at least 1"), "{flag} 0: {stderr}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 4"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_history_bench_reads_an_old_block_indexed_and_not_and_over_rpc_beside_anvil() {
    // The bench asserts every value it reads (an untouched account, a slot written once in block
    // 2) in process, on the node over JSON-RPC and on anvil. A read at block 1 of 40 blocks: one
    // lookup per key through the index, and without it one per later block for the account (39)
    // plus one for the slot (found in block 2). The archive chain passes --archive and the
    // trie bench runs with it too.
    let table = run(env!("CARGO_BIN_EXE_p2pe-historybench"), &["--blocks", "40", "--reads", "3"]);
    let cells = row(&table, "40");
    assert_eq!(cells.len(), 7, "{cells:?}");
    assert!(cells[1].ends_with("(2)"), "indexed: {cells:?}");
    assert!(cells[2].ends_with("(40)"), "not indexed: {cells:?}");
    assert!(cells[5].ends_with("ms"), "anvil ran: {cells:?}");
    let table = run(
        env!("CARGO_BIN_EXE_p2pe-triebench"),
        &["--words", "8", "--txs", "4", "--blocks", "1", "--overwrite", "--archive", "--no-anvil"],
    );
    assert!(table.lines().any(|l| l.starts_with("| 8 |")), "a row for 8 words:\n{table}");
}

#[test]
fn the_network_bench_drives_the_load_generator_against_the_network_the_dev_chain_and_anvil() {
    // `p2pe-netbench` runs `p2pe-loadgen`'s run (setup, pre-signing, batches, inclusion and
    // receipt checks) against a fresh 3-signer network, a dev chain and anvil, both workloads:
    // the side-by-side runs BENCHMARKS.md records, at 600 transactions instead of 60,000.
    let node = p2pe_tests::harness::node_bin();
    let out = run(
        env!("CARGO_BIN_EXE_p2pe-netbench"),
        &[
            "--targets",
            "net,dev,anvil",
            "--workloads",
            "transfer,contract",
            "--txs",
            "600",
            "--followers",
            "0",
            "--sync-blocks",
            "0",
            "--json",
            "--node-bin",
            node.to_str().unwrap(),
        ],
    );
    let reports: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let mut seen = Vec::new();
    for r in &reports {
        let (target, rep) = (r["target"].as_str().unwrap(), &r["report"]);
        let workload = rep["workload"].as_str().unwrap();
        seen.push(format!("{target} {workload}"));
        assert_eq!(rep["ok"], true, "{target} {workload}: {rep}");
        assert_eq!((rep["accepted"].as_u64(), rep["included"].as_u64()), (Some(600), Some(600)), "{rep}");
        assert_eq!(rep["receipts_failed"], 0, "{rep}");
        assert_eq!(rep["receipts_missing"], 0, "{rep}");
        assert!(rep["receipts_checked"].as_u64().unwrap() >= 200, "the last of every sender: {rep}");
        // A contract call writes a slot and logs: more than a transfer's 21,000 gas.
        let gas = rep["avg_gas_used"].as_f64().unwrap();
        assert_eq!(gas > 21_000.0, workload == "contract", "{target} {workload}: {gas} gas");
        if target == "net" {
            // The signers' blocks reached the other signers (as compact blocks or whole).
            let compact = r["compact"].as_array().expect("compact-block counts on the network");
            assert!(compact.iter().map(|c| c.as_u64().unwrap()).sum::<u64>() > 0, "{r}");
        }
    }
    seen.sort();
    let want =
        ["anvil contract", "anvil transfer", "dev contract", "dev transfer", "net contract", "net transfer"];
    assert_eq!(seen, want, "one report per target and workload");
}
