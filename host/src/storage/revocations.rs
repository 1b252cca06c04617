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

    /// Whether the token `jti` of `subject`, issued at `issued_at` (Unix
    /// seconds), was revoked: by itself, or by a password change at or
    /// after its issue.
    pub async fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: i64,
    ) -> Result<bool, StorageError> {
        let (hits,): (i64,) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1)
                  + (SELECT COUNT(*) FROM users
                     WHERE username = $2 AND tokens_revoked_through >= $3)",
        )
        .bind(jti)
        .bind(subject)
        .bind(issued_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(hits > 0)
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
        assert!(db.is_revoked("a", "alice", 100).await.unwrap());
        assert!(!db.is_revoked("b", "alice", 100).await.unwrap());
        // Revoking another token later prunes what expired long enough ago.
        db.revoke_token("b", 5_000, 1_000 + 61).await.unwrap();
        assert!(!db.is_revoked("a", "alice", 100).await.unwrap());
        assert!(db.is_revoked("b", "alice", 100).await.unwrap());
    }

    #[tokio::test]
    async fn a_password_change_revokes_the_tokens_issued_before() {
        let (db, _dir) = test_database().await;
        db.add_user("alice", "h1", &[]).await.unwrap();
        assert!(!db.is_revoked("j", "alice", 100).await.unwrap());
        assert!(db.set_password("alice", "h2", 150).await.unwrap());
        assert!(db.is_revoked("j", "alice", 100).await.unwrap());
        assert!(db.is_revoked("j", "alice", 150).await.unwrap());
        assert!(!db.is_revoked("j", "alice", 151).await.unwrap());
        assert_eq!(
            db.find_user("alice").await.unwrap().unwrap().password_hash,
            "h2"
        );
        assert!(!db.set_password("nobody", "h", 150).await.unwrap());
    }
}
