//! Signing keys as stored: sealed secrets and their lifetimes.

use super::{Database, StorageError};

/// One row of `signing_keys`; the secret still sealed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredKey {
    pub kid: String,
    /// The JOSE `alg` name: `HS256` or `EdDSA`.
    pub algorithm: String,
    pub sealed: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
}

/// What a rotation or a retirement writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// Keys to add.
    pub insert: Vec<StoredKey>,
    /// Keys whose retirement moves: to this time, or (`None`) to never.
    pub retire: Vec<(String, Option<i64>)>,
}

impl Database {
    /// Every stored key, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<StoredKey>, StorageError> {
        Ok(sqlx::query_as::<_, StoredKey>(
            "SELECT kid, algorithm, sealed, created_at, activates_at, retired_at
             FROM signing_keys ORDER BY activates_at, created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Changes the stored keys as `decide` says, deciding on the rows as
    /// they are at that moment: no other rotation or retirement runs
    /// between the read and the write (SQLite's write lock, taken at the
    /// start; on PostgreSQL, the table locked against other writers).
    /// Nothing is written if `decide` refuses.
    pub async fn change_signing_keys<E: From<StorageError>>(
        &self,
        decide: impl FnOnce(&[StoredKey]) -> Result<KeyChange, E>,
    ) -> Result<(), E> {
        let mut tx = self.begin_write().await?;
        if self.backend == super::Backend::Postgres {
            sqlx::query("LOCK TABLE signing_keys IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .map_err(StorageError::from)?;
        }
        let stored = sqlx::query_as::<_, StoredKey>(
            "SELECT kid, algorithm, sealed, created_at, activates_at, retired_at
             FROM signing_keys ORDER BY activates_at, created_at, kid",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(StorageError::from)?;
        let change = match decide(&stored) {
            Ok(change) => change,
            Err(e) => {
                // At once: a dropped SQLite transaction keeps the write lock
                // until its connection is next used.
                tx.rollback().await.map_err(StorageError::from)?;
                return Err(e);
            }
        };
        for key in &change.insert {
            sqlx::query(
                "INSERT INTO signing_keys (kid, algorithm, sealed, created_at, activates_at, retired_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&key.kid)
            .bind(&key.algorithm)
            .bind(&key.sealed)
            .bind(key.created_at)
            .bind(key.activates_at)
            .bind(key.retired_at)
            .execute(&mut *tx)
            .await
            .map_err(StorageError::from)?;
        }
        for (kid, retired_at) in &change.retire {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE kid = $2")
                .bind(*retired_at)
                .bind(kid)
                .execute(&mut *tx)
                .await
                .map_err(StorageError::from)?;
        }
        tx.commit().await.map_err(StorageError::from)?;
        Ok(())
    }

    /// Forgets keys retired before `before`: no token they signed is still valid.
    pub async fn prune_signing_keys(&self, before: i64) -> Result<u64, StorageError> {
        let result = sqlx::query("DELETE FROM signing_keys WHERE retired_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}
