//! Login attempts counted against the brute-force limits in the database
//! (PostgreSQL), so that every replica sharing it shares the counts.
//!
//! An attempt takes its place under every limit in one transaction that
//! holds a lock on each of its keys (advisory, per key, taken in one order
//! so two attempts never wait on each other in a cycle): of attempts racing
//! on any number of replicas, no more get a place than the limit allows.

use super::{Database, StorageError};

/// One reservation in this many also deletes the attempts of every key
/// that left the window, so the table holds about one window of attempts.
const PRUNE_EVERY: i64 = 32;

/// What a reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginReservation {
    /// The attempt's number; it counts under every key from now on.
    Reserved(i64),
    /// A limit is reached: retry after this many milliseconds.
    Limited(i64),
}

/// How a reserved attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// A wrong password: it stays counted until the window passes.
    Failed,
    /// The right password: `user_key`'s failures settled before this
    /// attempt began are forgotten, and the attempt itself is not counted.
    Succeeded,
    /// No password was checked: the attempt is not counted.
    NotChecked,
}

impl Database {
    /// Reserves a place for one attempt under each of `limits` (a key and
    /// the most attempts it may have in the window), counting every attempt
    /// reserved within `window_ms` before `now_ms`, failed or still being
    /// checked. Now and then, attempts older than the window are deleted:
    /// in a statement of its own, after the reservation's transaction, so
    /// that it never holds a row another reservation waits for.
    pub async fn reserve_login(
        &self,
        limits: &[(String, usize)],
        window_ms: i64,
        now_ms: i64,
    ) -> Result<LoginReservation, StorageError> {
        let mut tx = self.pool.begin().await?;
        let mut keys: Vec<&str> = limits.iter().map(|(key, _)| key.as_str()).collect();
        keys.sort_unstable();
        for key in keys {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 14))::text")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        }
        let since = now_ms.saturating_sub(window_ms);
        let mut wait = 0i64;
        for (key, limit) in limits {
            // The limit-th newest attempt: once it leaves the window, there
            // is room for one more.
            let offset = i64::try_from(limit.saturating_sub(1)).unwrap_or(i64::MAX);
            let oldest: Option<(i64,)> = sqlx::query_as(
                "SELECT at_ms FROM login_attempts WHERE key = $1 AND at_ms > $3
                 ORDER BY at_ms DESC, attempt DESC LIMIT 1 OFFSET $2",
            )
            .bind(key)
            .bind(offset)
            .bind(since)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((at_ms,)) = oldest {
                wait = wait.max(window_ms - (now_ms - at_ms));
            }
        }
        if wait > 0 {
            tx.rollback().await?;
            return Ok(LoginReservation::Limited(wait));
        }
        let (attempt,): (i64,) = sqlx::query_as("SELECT nextval('login_attempt_seq')")
            .fetch_one(&mut *tx)
            .await?;
        for (key, _) in limits {
            sqlx::query("INSERT INTO login_attempts (key, attempt, at_ms) VALUES ($1, $2, $3)")
                .bind(key)
                .bind(attempt)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if attempt % PRUNE_EVERY == 0 {
            sqlx::query("DELETE FROM login_attempts WHERE at_ms <= $1")
                .bind(since)
                .execute(&self.pool)
                .await?;
        }
        Ok(LoginReservation::Reserved(attempt))
    }

    /// Deletes `key`'s failed attempts (an operator's unlock) and returns
    /// how many there were; attempts still being checked keep their places.
    /// Under the key's lock, like a reservation, so that it never lands
    /// between a reservation's count and its insert.
    pub async fn forget_login_failures(&self, key: &str) -> Result<u64, StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 14))::text")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        let deleted =
            sqlx::query("DELETE FROM login_attempts WHERE key = $1 AND failed IS NOT NULL")
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// Records how `attempt` ended; `user_key` is its username's key.
    pub async fn settle_login(
        &self,
        attempt: i64,
        user_key: &str,
        outcome: LoginOutcome,
    ) -> Result<(), StorageError> {
        let query = match outcome {
            LoginOutcome::Failed => sqlx::query(
                "UPDATE login_attempts SET failed = nextval('login_attempt_seq')
                 WHERE attempt = $1",
            )
            .bind(attempt),
            LoginOutcome::Succeeded => sqlx::query(
                "DELETE FROM login_attempts
                 WHERE attempt = $1 OR (key = $2 AND failed IS NOT NULL AND failed < $1)",
            )
            .bind(attempt)
            .bind(user_key),
            LoginOutcome::NotChecked => {
                sqlx::query("DELETE FROM login_attempts WHERE attempt = $1").bind(attempt)
            }
        };
        query.execute(&self.pool).await?;
        Ok(())
    }
}
