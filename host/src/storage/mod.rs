//! The host's storage: users and tasks, in SQLite (embedded, the default) or
//! PostgreSQL (shared by several replicas), through `sqlx`'s `Any` driver.
//!
//! Queries are plain SQL that runs unchanged on both (`$n` parameters,
//! `RETURNING`, text timestamps); each backend has its own migrations,
//! embedded in the binary and run at start. On PostgreSQL the migrator holds
//! an advisory lock, so replicas starting together apply each migration once.

mod change_feed;
mod changes;
mod grants;
mod keys;
mod login_attempts;
mod policy_revisions;
mod policy_shadows;
mod refresh_tokens;
mod revocations;
mod sqlite_reads;
mod tasks;
mod token_status;
mod users;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Transaction};

pub(crate) use change_feed::Wakeups;
pub use changes::AuthChange;
pub use grants::Credentials;
pub use keys::{KeyChange, StoredKey};
pub use login_attempts::{LoginOutcome, LoginReservation};
pub use policy_revisions::{DeployAction, Desired, NewRevision, POLICY_CHANNEL, ReplicaState};
pub use policy_shadows::{ShadowEnd, ShadowReplicaRow};
pub use refresh_tokens::{NewRefreshToken, Rotation};
pub use token_status::UserStatus;
pub use users::StoredUser;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("unsupported database URL (expected sqlite://PATH or postgres://...)")]
    UnsupportedUrl,
    #[error(
        "no database at {0}: `taskflow serve` (or `taskflow user add`) creates it; is --data-dir (or --database-url) right?"
    )]
    Missing(String),
    #[error("user `{0}` already exists")]
    UserExists(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    SqliteRead(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Self, StorageError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StorageError::UnsupportedUrl)
        }
    }

    fn migrations(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// How the connection pool behaves.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// Most connections this process opens.
    pub max_connections: u32,
    /// Longest a request waits for a connection, and longest one statement
    /// may run (PostgreSQL `statement_timeout`; SQLite: wait for a writer).
    /// Past either, the request gets 503.
    pub timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A pool of connections to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// What Bearer checks need, in memory while [`Database::follow_changes`]
    /// keeps it current; writes through this value apply their changes to
    /// it before they return.
    status: std::sync::Arc<token_status::TokenStatusMemory>,
    /// On SQLite, the connections reads run on in place (see
    /// [`sqlite_reads`]); `None` on PostgreSQL.
    reads: Option<std::sync::Arc<sqlite_reads::SqliteReads>>,
}

impl Database {
    /// Connects (creating a SQLite file if needed) and runs migrations.
    pub async fn connect(url: &str, settings: PoolSettings) -> Result<Self, StorageError> {
        let db = Self::open(url, settings, true).await?;
        db.backend.migrations().run(&db.pool).await?;
        Ok(db)
    }

    /// Connects to a database that exists already and runs migrations; a
    /// SQLite file that does not exist is [`StorageError::Missing`], not
    /// made. What commands that only read (or change what must be there)
    /// open, so that a mistyped path creates nothing.
    pub async fn connect_existing(url: &str, settings: PoolSettings) -> Result<Self, StorageError> {
        if Backend::of(url)? == Backend::Sqlite && !sqlite_file_exists(url) {
            let path = sqlite_reads::file_of(url)
                .map_or_else(|| url.to_owned(), |path| path.display().to_string());
            return Err(StorageError::Missing(path));
        }
        let db = Self::open(url, settings, false).await?;
        db.backend.migrations().run(&db.pool).await?;
        Ok(db)
    }

    /// Whether `url` names a database no server has started on yet: a
    /// SQLite file that does not exist, or a PostgreSQL database without
    /// TaskFlow's tables. Finding out changes nothing.
    pub async fn is_new(url: &str) -> Result<bool, StorageError> {
        match Backend::of(url)? {
            Backend::Sqlite => Ok(!sqlite_file_exists(url)),
            Backend::Postgres => {
                let db = Self::open(url, PoolSettings::default(), false).await?;
                let new: bool =
                    sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NULL")
                        .fetch_one(&db.pool)
                        .await?;
                db.pool.close().await;
                Ok(new)
            }
        }
    }

    /// Connects to an existing database and runs one query, changing
    /// nothing; a SQLite file that does not exist yet is reported, not made.
    pub async fn probe(url: &str) -> Result<String, StorageError> {
        if Backend::of(url)? == Backend::Sqlite && !sqlite_file_exists(url) {
            return Ok("SQLite, created at first start".into());
        }
        let db = Self::open(url, PoolSettings::default(), false).await?;
        db.pool.execute("SELECT 1").await?;
        let applied = db
            .backend
            .migrations()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .count();
        Ok(format!(
            "{}, reachable; {applied} migrations embedded",
            db.backend
        ))
    }

    async fn open(url: &str, settings: PoolSettings, create: bool) -> Result<Self, StorageError> {
        install_default_drivers();
        let backend = Backend::of(url)?;
        let url = match backend {
            // `mode=rwc` creates the file; the caller's own options win.
            Backend::Sqlite if create && !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let timeout_ms = settings.timeout.as_millis();
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    let setup = match backend {
                        // The busy timeout first, so that the statements
                        // after it wait for a lock too. WAL lets readers
                        // proceed while one writer commits, and with NORMAL
                        // sync a committed write survives a crash of this
                        // process.
                        Backend::Sqlite => format!(
                            "PRAGMA busy_timeout = {timeout_ms}; PRAGMA journal_mode = WAL; \
                             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON"
                        ),
                        Backend::Postgres => format!("SET statement_timeout = {timeout_ms}"),
                    };
                    conn.execute(setup.as_str()).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let reads = match backend {
            Backend::Sqlite => sqlite_reads::file_of(&url).map(|path| {
                std::sync::Arc::new(sqlite_reads::SqliteReads::new(path, settings.timeout))
            }),
            Backend::Postgres => None,
        };
        Ok(Self {
            pool,
            backend,
            status: std::sync::Arc::new(token_status::TokenStatusMemory::new()),
            reads,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction that writes. On SQLite it takes the write lock
    /// at its start (`BEGIN IMMEDIATE`), waiting for it up to the busy
    /// timeout: a deferred transaction takes it at its first write, and if
    /// it has read before and another connection has written since (or is
    /// writing), SQLite refuses it at once ("database is locked"), whatever
    /// the busy timeout, since waiting could not help. PostgreSQL's writers
    /// wait for the rows they need, up to the statement timeout.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StorageError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

fn sqlite_file_exists(url: &str) -> bool {
    sqlite_reads::file_of(url).is_none_or(|path| path.exists())
}

/// The current time as stored: RFC 3339, UTC.
fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) async fn test_database() -> (Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (
        Database::connect(&url, PoolSettings::default())
            .await
            .unwrap(),
        dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_sqlite_connection_waits_for_the_configured_time() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let settings = PoolSettings {
            max_connections: 3,
            timeout: Duration::from_millis(1234),
        };
        let db = Database::connect(&url, settings).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut connection = db.pool.acquire().await.unwrap();
            let (timeout,): (i64,) = sqlx::query_as("PRAGMA busy_timeout")
                .fetch_one(&mut *connection)
                .await
                .unwrap();
            assert_eq!(timeout, 1234);
            let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                .fetch_one(&mut *connection)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            held.push(connection);
        }
    }
}
