//! WAL checkpoints off the commit path.
//!
//! In WAL mode a commit appends the pages it changed to the write-ahead log and fsyncs the log;
//! a checkpoint later copies them into the database file. SQLite's default has the committing
//! connection checkpoint whenever the log passes 1,000 pages, inside that commit: a block that
//! changes thousands of words of a large state (each in its own B-tree page) then also paid the
//! random writes into the database file and its fsync before it was acknowledged, a cost that
//! grows with the state's size, not the block's work.
//!
//! The writer hands that to [`Checkpointer`]: a thread with its own connection that runs a
//! `PASSIVE` checkpoint (it never waits for the writer or the readers) when a commit leaves more
//! than [`WalLimits::background_pages`] in the log. Durability is unchanged: a commit is on disk
//! once the log is fsynced (`synchronous=FULL`), checkpointed or not. Should the log still grow
//! past [`WalLimits::inline_pages`] (the thread stalled, or a long read kept the log from being
//! copied), the committing connection checkpoints itself, as SQLite would, so the log stays
//! bounded. [`WalStatus`] reports what happened, for the metrics and for tests.

use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

use super::StorageError;
use crate::metrics::names;

/// When the log is checkpointed.
#[derive(Debug, Clone, Copy)]
pub struct WalLimits {
    /// Pages in the log after a commit from which the background thread is woken (SQLite's own
    /// automatic-checkpoint threshold).
    pub background_pages: c_int,
    /// Pages in the log after a commit from which the committing connection checkpoints itself.
    pub inline_pages: c_int,
}

impl Default for WalLimits {
    /// 1,000 pages in the background; inline from 65,536 pages (256 MiB of 4 KiB pages).
    fn default() -> Self {
        Self { background_pages: 1_000, inline_pages: 65_536 }
    }
}

/// What the checkpoints did so far.
#[derive(Debug, Default)]
pub struct WalStatus {
    background: AtomicU64,
    inline: AtomicU64,
    pages_left: AtomicI64,
    log_pages: AtomicI64,
}

impl WalStatus {
    /// Checkpoints the background thread ran.
    pub fn background_checkpoints(&self) -> u64 {
        self.background.load(Ordering::Relaxed)
    }

    /// Checkpoints a commit had to run itself (the log over [`WalLimits::inline_pages`]).
    pub fn inline_checkpoints(&self) -> u64 {
        self.inline.load(Ordering::Relaxed)
    }

    /// Pages of the log not yet copied into the database after the last checkpoint (-1 before
    /// the first).
    pub fn pages_left(&self) -> i64 {
        self.pages_left.load(Ordering::Relaxed)
    }

    /// Pages in the log after the last commit: they count from the start of the log, which a
    /// commit restarts once a checkpoint has copied all of it (-1 before the first commit).
    pub fn log_pages(&self) -> i64 {
        self.log_pages.load(Ordering::Relaxed)
    }

    /// Records a checkpoint's result; SQLite reports -1 pages for a checkpoint that did not run
    /// on a log (a connection not in WAL mode), which is an error, not a checkpoint.
    fn record(&self, counter: &AtomicU64, log: c_int, copied: c_int) -> Result<(), String> {
        if log < 0 || copied < 0 {
            return Err(format!("the checkpoint ran on no write-ahead log ({log} pages)"));
        }
        counter.fetch_add(1, Ordering::Relaxed);
        let left = i64::from(log) - i64::from(copied);
        self.pages_left.store(left, Ordering::Relaxed);
        metrics::gauge!(names::SQLITE_WAL_PAGES).set(left as f64);
        Ok(())
    }
}

/// What the checkpoint thread is asked to do.
enum Wake {
    Checkpoint,
    Stop,
}

/// The background checkpoint thread of one writer connection. Dropping it stops the thread
/// (after the checkpoint it may be running); the writer's hook then has nobody to wake, and its
/// commits checkpoint themselves past the inline limit.
pub struct Checkpointer {
    wake: mpsc::SyncSender<Wake>,
    thread: Option<JoinHandle<()>>,
    status: Arc<WalStatus>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `path` and makes `writer`'s commits hand the
    /// log to it (replacing SQLite's automatic checkpoint on that connection).
    pub fn attach(writer: &mut Connection, path: &Path, limits: WalLimits) -> Result<Self, StorageError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // A connection learns that the database is in WAL mode, and opens the log, on its first
        // read: until then a checkpoint on it does nothing and reports -1 pages.
        let _: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Invalid(format!(
                "the database is in journal mode {mode}, not WAL: nothing to checkpoint"
            )));
        }
        let status = Arc::new(WalStatus {
            pages_left: AtomicI64::new(-1),
            log_pages: AtomicI64::new(-1),
            ..Default::default()
        });
        let (wake, woken) = mpsc::sync_channel::<Wake>(1);
        let thread_status = status.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(conn, woken, thread_status))
            .map_err(|e| StorageError::Invalid(format!("cannot start the checkpoint thread: {e}")))?;
        let (hook_wake, hook_status) = (wake.clone(), status.clone());
        writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: c_int| {
            hook_status.log_pages.store(i64::from(pages), Ordering::Relaxed);
            if pages >= limits.inline_pages {
                let _timer = crate::metrics::Timer::start(names::SQLITE_CHECKPOINT);
                // The commit has happened: an error returned from here would make SQLite report
                // it as the commit's own (the thread may be checkpointing: SQLITE_BUSY), so it
                // is logged and the next commit tries again.
                let done = wal
                    .checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE)
                    .map_err(|e| e.to_string())
                    .and_then(|(log, copied)| hook_status.record(&hook_status.inline, log, copied));
                if let Err(e) = done {
                    tracing::warn!(error = %e, pages, "WAL checkpoint at the log's limit failed");
                }
            } else if pages >= limits.background_pages {
                // A full channel means a wake-up is already pending: that checkpoint covers this log.
                let _ = hook_wake.try_send(Wake::Checkpoint);
            }
            Ok(())
        }))?;
        Ok(Self { wake, thread: Some(thread), status })
    }

    /// What the checkpoints did so far.
    pub fn status(&self) -> &Arc<WalStatus> {
        &self.status
    }

    /// Stops the thread after the checkpoint it may be running; a second call does nothing. The
    /// writer's commits then checkpoint themselves past the inline limit.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // Waits for room behind a pending wake-up; fails only if the thread is gone already.
            let _ = self.wake.send(Wake::Stop);
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: Connection, woken: mpsc::Receiver<Wake>, status: Arc<WalStatus>) {
    while let Ok(Wake::Checkpoint) = woken.recv() {
        let _timer = crate::metrics::Timer::start(names::SQLITE_CHECKPOINT);
        let done = conn
            .wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE)
            .map_err(|e| e.to_string())
            .and_then(|(log, copied)| status.record(&status.background, log, copied));
        if let Err(e) = done {
            tracing::warn!(error = %e, "background WAL checkpoint failed; commits checkpoint themselves past the limit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer with the checkpointer attached, and one table.
    fn writer(dir: &Path, limits: WalLimits) -> (Connection, Checkpointer) {
        let path = dir.join("t.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)").unwrap();
        let cp = Checkpointer::attach(&mut conn, &path, limits).unwrap();
        (conn, cp)
    }

    /// Commits `rows` rows of 3,000 bytes: about `rows` pages of log at 4 KiB.
    fn commit_rows(conn: &Connection, first: i64, rows: i64) {
        conn.execute_batch("BEGIN").unwrap();
        for k in first..first + rows {
            conn.execute("INSERT INTO t (k, v) VALUES (?1, zeroblob(3000))", [k]).unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }

    fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !ok() {
            assert!(start.elapsed().as_secs() < 10, "timed out waiting for {what}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_small_commit_leaves_the_log_alone_a_large_one_is_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, cp) = writer(dir.path(), WalLimits { background_pages: 200, inline_pages: 100_000 });
        commit_rows(&conn, 0, 50);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(cp.status().background_checkpoints(), 0, "under the threshold nothing runs");
        assert_eq!(cp.status().pages_left(), -1);
        commit_rows(&conn, 50, 400);
        wait_for("the background checkpoint", || cp.status().background_checkpoints() >= 1);
        wait_for("the log copied", || cp.status().pages_left() == 0);
        assert_eq!(cp.status().inline_checkpoints(), 0, "the commit did not checkpoint itself");
        assert!(cp.status().log_pages() >= 400, "{}", cp.status().log_pages());
        // The log was copied in full, so the next commit starts it again instead of growing it.
        commit_rows(&conn, 450, 20);
        assert!(cp.status().log_pages() < 100, "the log restarted: {} pages", cp.status().log_pages());
        // Everything committed is readable from a new connection after the checkpoint.
        let n: i64 = Connection::open(dir.path().join("t.sqlite"))
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 470);
    }

    /// Without WAL mode there is no log to checkpoint: attaching says so instead of running a
    /// thread whose checkpoints would do nothing.
    #[test]
    fn a_database_not_in_wal_mode_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)").unwrap();
        let e = Checkpointer::attach(&mut conn, &path, WalLimits::default()).err().expect("refused");
        assert!(e.to_string().contains("not WAL"), "{e}");
    }

    #[test]
    fn a_log_over_the_inline_limit_is_checkpointed_by_the_commit_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, cp) = writer(dir.path(), WalLimits { background_pages: 100, inline_pages: 300 });
        // Under the inline limit: the background thread only.
        commit_rows(&conn, 0, 150);
        wait_for("the background checkpoint", || cp.status().background_checkpoints() >= 1);
        assert_eq!(cp.status().inline_checkpoints(), 0);
        // Over it (one commit of about 400 pages): the commit checkpoints, once.
        commit_rows(&conn, 150, 400);
        assert_eq!(cp.status().inline_checkpoints(), 1, "over the limit the commit checkpoints");
        assert_eq!(cp.status().pages_left(), 0, "and copies the whole log");
    }

    #[test]
    fn dropping_the_checkpointer_stops_the_thread_whatever_the_order_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, cp) = writer(dir.path(), WalLimits { background_pages: 10, inline_pages: 100_000 });
        for i in 0..20 {
            commit_rows(&conn, i * 30, 30);
        }
        drop(cp);
        commit_rows(&conn, 600, 30);
        drop(conn);
        let n: i64 = Connection::open(dir.path().join("t.sqlite"))
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 630);
    }

    /// What the node does when it stops (`Store::checkpoint_all`): the log is emptied into the
    /// database file, so the file copied alone has every commit; calling it again does no harm,
    /// and a commit after it still works (into the log, as before).
    #[test]
    fn checkpoint_all_leaves_the_database_file_complete_and_later_commits_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::storage::Store::open(dir.path(), None).unwrap();
        let put = |store: &crate::storage::Store, key: &str| {
            store
                .connection()
                .execute("INSERT INTO meta (key, value) VALUES (?1, zeroblob(50000))", [key])
                .unwrap();
        };
        let wal = dir.path().join("chain.sqlite-wal");
        put(&store, "first");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0, "the commit is in the log");
        store.checkpoint_all().unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "the log is emptied");
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(dir.path().join("chain.sqlite"), copy.path().join("chain.sqlite")).unwrap();
        let alone = Connection::open(copy.path().join("chain.sqlite")).unwrap();
        let n: i64 =
            alone.query_row("SELECT COUNT(*) FROM meta WHERE key = 'first'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "the database file alone holds the commit");
        store.checkpoint_all().unwrap();
        put(&store, "second");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0, "a later commit goes to the log again");
        store.checkpoint_all().unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    }
}
