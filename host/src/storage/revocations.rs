//! Access tokens revoked before they expire (RFC 7009), by `jti`.

use super::{Database, StorageError};

/// How long past its `exp` a revoked token is remembered: the most clock
/// skew a verifier allows, so no verifier can still accept it.
const KEEP_AFTER_EXPIRY_SECONDS: i64 = 60;

impl Database {
    /// Records `jti` as revoked until `expires_at` (Unix seconds), and drops
    /// entries no verifier could still need.
    pub async fn revoke_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(now - KEEP_AFTER_EXPIRY_SECONDS)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn is_revoked(&self, jti: &str) -> Result<bool, StorageError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT expires_at FROM revoked_tokens WHERE jti = $1")
                .bind(jti)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::test_database;

    #[tokio::test]
    async fn revocations_are_kept_until_expiry_then_pruned() {
        let (db, _dir) = test_database().await;
        db.revoke_token("a", 1_000, 500).await.unwrap();
        db.revoke_token("a", 1_000, 500).await.unwrap();
        assert!(db.is_revoked("a").await.unwrap());
        assert!(!db.is_revoked("b").await.unwrap());
        // Revoking another token later prunes what expired long enough ago.
        db.revoke_token("b", 5_000, 1_000 + 61).await.unwrap();
        assert!(!db.is_revoked("a").await.unwrap());
        assert!(db.is_revoked("b").await.unwrap());
    }
}
