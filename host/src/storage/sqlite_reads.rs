//! Reads from the embedded SQLite database on the request's own thread.
//!
//! sqlx runs every SQLite connection on a thread of its own and hands each
//! statement and each row to it and back over channels: for the two small
//! indexed queries of `GET /tasks`, those hand-offs (context switches) cost
//! far more than SQLite itself (`sqlite3VdbeExec` was under 1% of a profile
//! under load). So reads on SQLite take a read-only connection from this
//! small pool and run in place, with prepared statements cached per
//! connection; writes stay on sqlx, where a write waiting for the lock waits
//! on sqlx's thread, never on a thread that serves requests.
//!
//! In WAL mode a reader never waits for a writer, so a read in place takes
//! microseconds. A reader does wait (up to the busy timeout, then 503) only
//! while the database is being recovered or held exclusively by another
//! process.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Idle connections kept for reuse; more are opened when more reads run at
/// once, and closed after use beyond this many.
const IDLE_CONNECTIONS: usize = 16;

/// Read-only connections to one SQLite file, used in place.
#[derive(Debug)]
pub(super) struct SqliteReads {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReads {
    pub(super) fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        Self {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on a read-only connection, on this thread.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = read(&connection);
        if !connection.is_autocommit() {
            // A read that failed inside a transaction: end it, or the
            // connection would keep its snapshot (and hold back checkpoints).
            if connection.execute_batch("ROLLBACK").is_err() {
                return result;
            }
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(connection);
        }
        result
    }

    /// Runs `read` in one read transaction: its statements see one snapshot
    /// and take the file's shared lock once (two statements in one
    /// transaction measured 10-13 µs against 13-15 µs in two).
    pub(super) fn read_consistent<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.read(|c| {
            c.prepare_cached("BEGIN")?.execute([])?;
            let value = read(c)?;
            c.prepare_cached("COMMIT")?.execute([])?;
            Ok(value)
        })
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(self.busy_timeout)?;
        connection.set_prepared_statement_cache_capacity(32);
        Ok(connection)
    }
}

/// The file a `sqlite:` URL names, unless it is an in-memory database
/// (which only the connection that made it can see).
pub(super) fn file_of(url: &str) -> Option<PathBuf> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_what_another_connection_committed_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER)")
            .unwrap();
        let reads = SqliteReads::new(path, Duration::from_millis(100));
        let count = |reads: &SqliteReads| {
            reads
                .read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0)))
                .unwrap()
        };
        assert_eq!(count(&reads), 0);
        writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
        assert_eq!(count(&reads), 1);
        let write = reads.read(|c| c.execute("INSERT INTO t VALUES (2)", []));
        assert!(write.is_err(), "a reader's connection is read-only");
    }

    #[test]
    fn a_failed_read_does_not_leave_its_transaction_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER)")
            .unwrap();
        let reads = SqliteReads::new(path, Duration::from_millis(100));
        let failed = reads
            .read_consistent(|c| c.query_row("SELECT nope FROM t", [], |r| r.get::<_, i64>(0)));
        assert!(failed.is_err());
        let open = reads.read(|c| Ok(!c.is_autocommit())).unwrap();
        assert!(!open, "the connection went back with a transaction open");
    }

    #[test]
    fn urls_name_their_file() {
        assert_eq!(
            file_of("sqlite:///var/lib/t.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/t.db"))
        );
        assert_eq!(file_of("sqlite://t.db"), Some(PathBuf::from("t.db")));
        assert_eq!(file_of("sqlite::memory:"), None);
    }
}
