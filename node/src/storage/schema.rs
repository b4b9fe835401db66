//! Tables and connection settings.

use rusqlite::Connection;

use super::StorageError;

/// Version of the schema below; a data directory of another version is refused, except
/// versions 1 to 7, which are migrated on open (see the `migrate_from_*` functions).
pub const SCHEMA_VERSION: i64 = 8;

/// The blocks table of schema version 5 (also used by its migration).
const BLOCKS_V5: &str = r#"
-- The small columns come first: SQLite reads a column after a large blob by walking the blob's
-- overflow pages, so a header and its total difficulty are read without touching the body. A rowid
-- table, found by hash through its own small index: in a WITHOUT ROWID table the row is the key,
-- and finding a row whose payload overflows reads the whole payload (a 30,000-transaction block's
-- body and receipts, megabytes) to compare it, on every lookup of that block.
CREATE TABLE IF NOT EXISTS blocks (
    hash BLOB NOT NULL UNIQUE,
    number INTEGER NOT NULL,
    td BLOB NOT NULL,
    header BLOB NOT NULL,
    block BLOB NOT NULL,
    senders BLOB NOT NULL,
    receipts BLOB NOT NULL
);
"#;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_number ON blocks(number);
CREATE TABLE IF NOT EXISTS canonical (number INTEGER PRIMARY KEY, hash BLOB NOT NULL);
-- One row per transaction of every stored block: its EIP-2718 bytes, sender and receipt with what
-- the RPC receipt needs from the transactions before it, so that a lookup by hash or index reads
-- one row whatever the block's size (the `block` and `receipts` columns hold the whole block).
CREATE TABLE IF NOT EXISTS block_txs (
    block_hash BLOB NOT NULL,
    idx INTEGER NOT NULL,
    sender BLOB NOT NULL,
    tx BLOB NOT NULL,
    receipt BLOB NOT NULL,
    gas_used INTEGER NOT NULL,
    first_log INTEGER NOT NULL,
    PRIMARY KEY (block_hash, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tx_index (hash BLOB PRIMARY KEY, number INTEGER NOT NULL, idx INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
    number INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    address BLOB NOT NULL,
    topic0 BLOB, topic1 BLOB, topic2 BLOB, topic3 BLOB,
    PRIMARY KEY (number, log_index)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS logs_address ON logs(address, number);
CREATE INDEX IF NOT EXISTS logs_topic0 ON logs(topic0, number);
CREATE TABLE IF NOT EXISTS accounts (address BLOB PRIMARY KEY, nonce INTEGER NOT NULL, balance BLOB NOT NULL, code_hash BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS storage (address BLOB NOT NULL, slot BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (address, slot)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS code (hash BLOB PRIMARY KEY, code BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (hash BLOB PRIMARY KEY, number INTEGER NOT NULL, snapshot TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshots_number ON snapshots(number);
CREATE TABLE IF NOT EXISTS hashed_accounts (
    hashed_address BLOB PRIMARY KEY, nonce INTEGER NOT NULL, balance BLOB NOT NULL,
    code_hash BLOB NOT NULL, storage_root BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hashed_storage (
    hashed_address BLOB NOT NULL, hashed_slot BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (hashed_address, hashed_slot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS account_trie (path BLOB PRIMARY KEY, node BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS storage_trie (
    hashed_address BLOB NOT NULL, path BLOB NOT NULL, node BLOB NOT NULL,
    PRIMARY KEY (hashed_address, path)
) WITHOUT ROWID;
"#;

/// The undo rows: the values a block's changes overwrote, keyed by block first, so that a block
/// appends its rows at the end of each table and the prune deletes a range from the start (keyed
/// by address first, as up to version 7, every row landed on its own page of a large table).
const HISTORY_V8: &str = r#"
CREATE TABLE IF NOT EXISTS account_history (
    block INTEGER NOT NULL, address BLOB NOT NULL,
    nonce INTEGER, balance BLOB, code_hash BLOB,
    PRIMARY KEY (block, address)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS storage_history (
    block INTEGER NOT NULL, address BLOB NOT NULL, slot BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (block, address, slot)
) WITHOUT ROWID;
"#;

/// Above this many blocks of kept history (and on an archive node) the history is also indexed by
/// key, so that a read at an old block finds the first later change of an account or slot with one
/// index seek. At or below it, a read looks the key up in each block after the one asked for (at
/// most this many plus the 32-block prune step), and no block pays for a second B-tree.
pub const INDEX_HISTORY_ABOVE: u64 = 256;

/// The indexes of the history by key (`INDEX_HISTORY_ABOVE`).
const HISTORY_KEY_INDEXES: &str = r#"
CREATE INDEX IF NOT EXISTS account_history_by_key ON account_history(address, block);
CREATE INDEX IF NOT EXISTS storage_history_by_key ON storage_history(address, slot, block);
"#;

/// Whether a store keeping `history` blocks of state history (`None`: all) indexes it by key.
pub fn indexes_history(history: Option<u64>) -> bool {
    history.is_none_or(|keep| keep > INDEX_HISTORY_ABOVE)
}

/// Whether the history's indexes by key exist, as `conn`'s transaction sees the schema.
pub fn history_indexed(conn: &Connection) -> Result<bool, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN ('account_history_by_key', 'storage_history_by_key')",
    )?
    .query_row([], |r| r.get::<_, i64>(0))
    .map(|n| n == 2)
}

/// Creates the history's indexes by key, or drops them, as `history` asks
/// ([`indexes_history`]). Building them over a long history takes a while (logged); dropping them
/// is quick, and the store then keeps only the window.
pub fn set_history_indexes(conn: &Connection, history: Option<u64>) -> Result<(), StorageError> {
    let want = indexes_history(history);
    if want == history_indexed(conn)? {
        return Ok(());
    }
    if want {
        tracing::info!(
            "indexing the state history by account and slot (kept history over {INDEX_HISTORY_ABOVE} blocks)"
        );
        conn.execute_batch(&format!("BEGIN IMMEDIATE;{HISTORY_KEY_INDEXES}COMMIT;"))?;
    } else {
        conn.execute_batch(
            "BEGIN IMMEDIATE; DROP INDEX IF EXISTS account_history_by_key; \
             DROP INDEX IF EXISTS storage_history_by_key; COMMIT;",
        )?;
    }
    Ok(())
}

/// One step of the schema migrations: from version N to N + 1, in its own transaction.
type Migration = fn(&Connection) -> Result<(), StorageError>;

/// Creates the tables on a writer connection and checks the schema version.
pub fn init(conn: &Connection) -> Result<(), StorageError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Every block is fsynced before it is acknowledged: a crash or power loss loses nothing
    // the node has reported as committed.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // 32 MiB of pages: the hot B-tree levels of every table; the rest comes from the OS's page
    // cache (a copy, not a disk read), so the node's own memory stays bounded.
    conn.pragma_update(None, "cache_size", -32768)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // A block's commit and its state root use a few dozen statements: keep them all prepared,
    // and plan them once (a stable plan: no re-preparing a range scan for new bound values).
    conn.set_prepared_statement_cache_capacity(64);
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.execute_batch(BLOCKS_V5)?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(HISTORY_V8)?;
    conn.execute_batch(super::explorer::SCHEMA)?;
    let version: Option<i64> =
        conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).ok();
    match version {
        None => {
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?1)", [SCHEMA_VERSION])?;
        }
        Some(v) if v == SCHEMA_VERSION => {}
        Some(v @ 1..=7) => {
            let steps: [Migration; 7] = [
                migrate_from_1,
                migrate_from_2,
                migrate_from_3,
                migrate_from_4,
                migrate_from_5,
                migrate_from_6,
                migrate_from_7,
            ];
            for step in &steps[(v - 1) as usize..] {
                step(conn)?;
            }
        }
        Some(v) => {
            return Err(StorageError::Invalid(format!(
                "database schema version {v} is not supported by this node (expects {SCHEMA_VERSION})"
            )))
        }
    }
    Ok(())
}

/// Version 1 had no stored state trie: the hashed leaves and trie nodes are built from the
/// plain state, in one transaction (an interrupted migration leaves version 1 behind and runs
/// again at the next start).
fn migrate_from_1(conn: &Connection) -> Result<(), StorageError> {
    tracing::info!("migrating the database to schema version 2: building the stored state trie");
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = super::trie::rebuild(conn).and_then(|_| {
        conn.execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'", [])?;
        Ok(())
    });
    finish_migration(conn, done, 2, "build the stored state trie")
}

/// Version 2 had no per-transaction rows (`block_txs`): they are written from every stored block
/// and its receipts, in one transaction.
fn migrate_from_2(conn: &Connection) -> Result<(), StorageError> {
    tracing::info!("migrating the database to schema version 3: indexing transactions and receipts by block");
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = super::writer::index_stored_blocks(conn).and_then(|blocks| {
        tracing::info!(blocks, "transactions indexed");
        conn.execute("UPDATE meta SET value = 3 WHERE key = 'schema_version'", [])?;
        Ok(())
    });
    finish_migration(conn, done, 3, "index the stored transactions")
}

/// Version 3 kept a block's total difficulty after its body, so reading a header walked the body's
/// overflow pages (a header range of large blocks read every body): the table is rewritten with
/// the small columns first, in one transaction.
fn migrate_from_3(conn: &Connection) -> Result<(), StorageError> {
    tracing::info!("migrating the database to schema version 4: block headers ahead of their bodies");
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = conn
        .execute_batch(
            "CREATE TABLE blocks_v4 (
                hash BLOB PRIMARY KEY,
                number INTEGER NOT NULL,
                td BLOB NOT NULL,
                header BLOB NOT NULL,
                block BLOB NOT NULL,
                senders BLOB NOT NULL,
                receipts BLOB NOT NULL
            ) WITHOUT ROWID;
            INSERT INTO blocks_v4 (hash, number, td, header, block, senders, receipts)
                SELECT hash, number, td, header, block, senders, receipts FROM blocks;
            DROP TABLE blocks;
            ALTER TABLE blocks_v4 RENAME TO blocks;
            CREATE INDEX blocks_number ON blocks(number);
            UPDATE meta SET value = 4 WHERE key = 'schema_version';",
        )
        .map_err(StorageError::from);
    finish_migration(conn, done, 4, "reorder the blocks table")
}

/// Version 4 kept blocks in a WITHOUT ROWID table, where looking up a block whose row overflows
/// reads the whole row (body and receipts) to compare keys: a transaction lookup in a large block
/// cost milliseconds. The table is rewritten as a rowid table with a hash index, in one
/// transaction.
fn migrate_from_4(conn: &Connection) -> Result<(), StorageError> {
    tracing::info!("migrating the database to schema version 5: blocks found through a hash index");
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = conn
        .execute_batch(&format!(
            "{}
            INSERT INTO blocks_v5 (hash, number, td, header, block, senders, receipts)
                SELECT hash, number, td, header, block, senders, receipts FROM blocks ORDER BY number;
            DROP TABLE blocks;
            ALTER TABLE blocks_v5 RENAME TO blocks;
            CREATE INDEX blocks_number ON blocks(number);
            UPDATE meta SET value = 5 WHERE key = 'schema_version';",
            BLOCKS_V5.replace("CREATE TABLE IF NOT EXISTS blocks (", "CREATE TABLE blocks_v5 (")
        ))
        .map_err(StorageError::from);
    finish_migration(conn, done, 5, "rewrite the blocks table")
}

/// Version 5 indexed the explorer's `address_txs` and `sender_txs` by block number too, only to
/// remove a block's rows on a reorg: a second B-tree insert for every row when sealing. The
/// per-block address lists that replace it are built from the index, which is then dropped, in
/// one transaction.
fn migrate_from_5(conn: &Connection) -> Result<(), StorageError> {
    tracing::info!("migrating the database to schema version 6: explorer rows found by key on a reorg");
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = super::explorer::migrate_block_lists(conn).and_then(|blocks| {
        tracing::info!(blocks, "explorer block lists written");
        conn.execute("UPDATE meta SET value = 6 WHERE key = 'schema_version'", [])?;
        Ok(())
    });
    finish_migration(conn, done, 6, "list the explorer's rows by block")
}

/// Version 6 stored receipts with their logs bloom; version 7 writes them without it (see
/// `storage/receipts.rs`) and reads both, so rows are not rewritten: the step only records that
/// the directory may now hold receipts a node of version 6 could not read.
fn migrate_from_6(conn: &Connection) -> Result<(), StorageError> {
    tracing::info!("migrating the database to schema version 7: receipts stored without their bloom");
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = conn
        .execute("UPDATE meta SET value = 7 WHERE key = 'schema_version'", [])
        .map(|_| ())
        .map_err(Into::into);
    finish_migration(conn, done, 7, "record the receipts' format")
}

/// Version 7 keyed the undo rows by address (and slot) first, with a second index by block: the
/// tables are rewritten keyed by block first (`HISTORY_V8`), in one transaction.
fn migrate_from_7(conn: &Connection) -> Result<(), StorageError> {
    tracing::info!("migrating the database to schema version 8: state history keyed by block");
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = conn
        .execute_batch(&format!(
            "{}
            INSERT INTO account_history_v8 (block, address, nonce, balance, code_hash)
                SELECT block, address, nonce, balance, code_hash FROM account_history ORDER BY block, address;
            INSERT INTO storage_history_v8 (block, address, slot, value)
                SELECT block, address, slot, value FROM storage_history ORDER BY block, address, slot;
            DROP TABLE account_history;
            DROP TABLE storage_history;
            ALTER TABLE account_history_v8 RENAME TO account_history;
            ALTER TABLE storage_history_v8 RENAME TO storage_history;
            UPDATE meta SET value = 8 WHERE key = 'schema_version';",
            HISTORY_V8
                .replace("EXISTS account_history (", "EXISTS account_history_v8 (")
                .replace("EXISTS storage_history (", "EXISTS storage_history_v8 (")
        ))
        .map_err(StorageError::from);
    finish_migration(conn, done, 8, "rewrite the state history")
}

/// Commits a migration's transaction, or rolls it back and says what could not be done.
fn finish_migration(
    conn: &Connection,
    done: Result<(), StorageError>,
    version: i64,
    what: &str,
) -> Result<(), StorageError> {
    match done {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(StorageError::Invalid(format!(
                "could not {what} while migrating the database to schema version {version} ({e}); \
                 the database is unchanged: fix the cause and start again, or re-sync into a new --datadir"
            )));
        }
    }
    Ok(())
}

/// Settings for read connections.
pub fn configure_reader(conn: &Connection) -> Result<(), StorageError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}
