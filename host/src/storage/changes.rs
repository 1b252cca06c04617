//! The change log (`auth_changes`): every change that can turn a valid
//! access token invalid is written to it in the transaction that makes the
//! change, so that whoever keeps token status in memory (this process,
//! other replicas, the server behind the CLI) learns of it by sequence
//! number.

use sqlx::{Any, Transaction};

use super::{Backend, Database, StorageError};

/// The PostgreSQL channel a committed change is announced on.
pub const CHANGES_CHANNEL: &str = "taskflow_auth_changes";

/// How long a change stays in the log: a follower that was away longer
/// reloads what it keeps instead of catching up.
pub(super) const LOG_RETENTION_SECONDS: i64 = 3600;

/// A change that can make a valid access token invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChange {
    /// An access token revoked until its `exp`.
    TokenRevoked { jti: String, expires_at: i64 },
    /// A user added, removed, given a new password or new scopes: whatever
    /// is remembered of them is stale.
    UserChanged { username: String },
}

/// A change as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedChange {
    pub seq: i64,
    pub change: AuthChange,
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    seq: i64,
    username: Option<String>,
    jti: Option<String>,
    expires_at: Option<i64>,
}

impl Database {
    /// Writes `changes` to the log inside `tx`. On PostgreSQL the table is
    /// locked until `tx` commits (sequence numbers then commit in order, so
    /// a follower reading "after N" never skips one), and the commit wakes
    /// every listener.
    pub(super) async fn log_changes(
        &self,
        tx: &mut Transaction<'_, Any>,
        changes: &[AuthChange],
        now: i64,
    ) -> Result<(), StorageError> {
        if changes.is_empty() {
            return Ok(());
        }
        if self.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE auth_changes IN EXCLUSIVE MODE")
                .execute(&mut **tx)
                .await?;
        }
        for change in changes {
            let (username, jti, expires_at) = match change {
                AuthChange::TokenRevoked { jti, expires_at } => {
                    (None, Some(jti.as_str()), Some(*expires_at))
                }
                AuthChange::UserChanged { username } => (Some(username.as_str()), None, None),
            };
            sqlx::query(
                "INSERT INTO auth_changes (username, jti, expires_at, changed_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(username)
            .bind(jti)
            .bind(expires_at)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANGES_CHANNEL)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Changes logged after `seq`, oldest first.
    pub async fn changes_since(&self, seq: i64) -> Result<Vec<LoggedChange>, StorageError> {
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT seq, username, jti, expires_at FROM auth_changes WHERE seq > $1 ORDER BY seq",
        )
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let change = match (row.username, row.jti, row.expires_at) {
                    (Some(username), _, _) => AuthChange::UserChanged { username },
                    (None, Some(jti), Some(expires_at)) => {
                        AuthChange::TokenRevoked { jti, expires_at }
                    }
                    _ => return None,
                };
                Some(LoggedChange {
                    seq: row.seq,
                    change,
                })
            })
            .collect())
    }

    /// The newest sequence number in the log (0 when it is empty).
    pub async fn latest_change(&self) -> Result<i64, StorageError> {
        let (seq,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM auth_changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// Drops log entries older than the retention.
    pub(super) async fn prune_changes(
        &self,
        tx: &mut Transaction<'_, Any>,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM auth_changes WHERE changed_at < $1")
            .bind(now - LOG_RETENTION_SECONDS)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
