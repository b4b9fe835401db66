//! Direct state seeding for the benches (`p2pe-triebench`, `p2pe-yearbench`): storage words
//! written straight into a data directory's state tables, the stored tries rebuilt and the genesis
//! header made to carry the new root. A bench-only path: a chain seeded this way is opened
//! in-process with the node library (its genesis hash no longer matches its genesis file, so a
//! `p2pe-node run` would refuse it, as it should).

use std::path::Path;

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_rlp::{Decodable, Encodable};

/// `VmRSS` and `VmHWM` (peak) of this process, in kB.
pub fn rss_kb() -> (u64, u64) {
    status_rss_kb(Path::new("/proc/self/status"))
}

/// `VmRSS` and `VmHWM` in kB from a `/proc/PID/status` file (zeros if it cannot be read).
pub fn status_rss_kb(status: &Path) -> (u64, u64) {
    let status = std::fs::read_to_string(status).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes of all files in `dir` (the SQLite database with its WAL and shared-memory files).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
        })
        .unwrap_or(0)
}

/// Inserts `words` (slot, value) into each contract's storage in the chain of `datadir` (plain
/// and hashed rows, each in key order so that they go in as appends), rebuilds the stored tries
/// and writes the new state root into the genesis header. The slots must not exist yet.
pub fn seed_words(datadir: &Path, words: Vec<(Address, Vec<(B256, U256)>)>) -> B256 {
    let conn = rusqlite::Connection::open(datadir.join("chain.sqlite")).expect("open the chain database");
    conn.execute_batch("BEGIN").unwrap();
    for (contract, mut rows) in words {
        rows.sort_unstable();
        {
            let mut put =
                conn.prepare("INSERT INTO storage (address, slot, value) VALUES (?1, ?2, ?3)").unwrap();
            for (slot, value) in &rows {
                put.execute(rusqlite::params![
                    contract.as_slice(),
                    slot.as_slice(),
                    value.to_be_bytes::<32>()
                ])
                .unwrap();
            }
        }
        let mut hashed: Vec<(B256, U256)> =
            rows.into_iter().map(|(slot, value)| (keccak256(slot), value)).collect();
        hashed.sort_unstable();
        let owner = keccak256(contract);
        let mut put = conn
            .prepare("INSERT INTO hashed_storage (hashed_address, hashed_slot, value) VALUES (?1, ?2, ?3)")
            .unwrap();
        for (slot, value) in &hashed {
            put.execute(rusqlite::params![owner.as_slice(), slot.as_slice(), value.to_be_bytes::<32>()])
                .unwrap();
        }
    }
    let root = p2pe_node::storage::trie::rebuild_tries(&conn).unwrap();
    let (hash, raw): (Vec<u8>, Vec<u8>) = conn
        .query_row("SELECT hash, header FROM blocks WHERE number = 0", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    let mut header = alloy_consensus::Header::decode(&mut raw.as_slice()).unwrap();
    header.state_root = root;
    let mut out = Vec::new();
    header.encode(&mut out);
    conn.execute("UPDATE blocks SET header = ?1 WHERE hash = ?2", rusqlite::params![out, hash]).unwrap();
    conn.execute_batch("COMMIT").unwrap();
    root
}

/// Words of `contract` in the chain of `datadir` (plain storage rows).
pub fn count_words(datadir: &Path, contract: Address) -> u64 {
    let conn = rusqlite::Connection::open(datadir.join("chain.sqlite")).expect("open the chain database");
    conn.query_row("SELECT COUNT(*) FROM storage WHERE address = ?1", [contract.as_slice()], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .unwrap_or(0)
}

/// The state root of the same `changes` on the stored tries of `store` and on `memory` (a copy of
/// the same state: [`p2pe_node::storage::trie::MemoryState`]), `rounds` times, alternating which
/// goes first. Panics if the two roots differ. Returns the times on the tables and in memory.
pub fn roots_on_tables_and_in_memory(
    store: &p2pe_node::storage::Store,
    memory: &p2pe_node::storage::trie::MemoryState,
    changes: &p2pe_node::state::StateChanges,
    rounds: usize,
) -> (Vec<std::time::Duration>, Vec<std::time::Duration>) {
    let time = |on_tables: bool| {
        let start = std::time::Instant::now();
        // On the tables, in one read transaction, as the node computes a block's root.
        let root = if on_tables {
            store.in_read_transaction(|conn| p2pe_node::storage::trie::state_root(conn, changes))
        } else {
            memory.state_root(changes)
        };
        (root.expect("a state root").0, start.elapsed())
    };
    let (mut tables, mut in_memory) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let ((a, ta), (b, tb)) = if round % 2 == 0 {
            (time(true), time(false))
        } else {
            let m = time(false);
            (time(true), m)
        };
        assert_eq!(a, b, "round {round}: the walk in memory gives the stored tries' root");
        tables.push(ta);
        in_memory.push(tb);
    }
    (tables, in_memory)
}

/// A clap value parser for the benches' counts of timed blocks or rounds: a whole number of at
/// least 1 (a median of nothing has no value).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}
