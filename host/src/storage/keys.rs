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

    /// Adds `new` and retires the keys in `retire` at `retire_at`, at once.
    pub async fn add_signing_key(
        &self,
        new: &[StoredKey],
        retire: &[String],
        retire_at: i64,
    ) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        for key in new {
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
            .await?;
        }
        for kid in retire {
            sqlx::query(
                "UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL",
            )
            .bind(retire_at)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Retires `kid` at `at` (sooner, if a rotation planned it for later);
    /// false if there is no such key not retired by then.
    pub async fn retire_signing_key(&self, kid: &str, at: i64) -> Result<bool, StorageError> {
        let result = sqlx::query(
            "UPDATE signing_keys SET retired_at = $1
             WHERE kid = $2 AND (retired_at IS NULL OR retired_at > $1)",
        )
        .bind(at)
        .bind(kid)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
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
