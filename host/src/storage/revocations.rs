//! Access tokens revoked before they expire (RFC 7009), by `jti`.

use super::{Database, StorageError, StoredUser};

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
        if let Some(cache) = &self.token_cache {
            cache.forget(jti);
        }
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(now - KEEP_AFTER_EXPIRY_SECONDS)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// What [`Database::token_status`] remembers of this token, if the
    /// cache is on and the entry fresh; answers without waiting on anything.
    pub fn remembered_token_status(
        &self,
        jti: &str,
        subject: &str,
        issued_at: i64,
    ) -> Option<(bool, Option<StoredUser>)> {
        self.token_cache.as_ref()?.get(jti, subject, issued_at)
    }

    /// Whether the token `jti` of `subject`, issued at `issued_at` (Unix
    /// seconds), was revoked (by itself, or by a password change at or after
    /// its issue), and `subject` as stored: one query for the Bearer check.
    pub async fn token_status(
        &self,
        jti: &str,
        subject: &str,
        issued_at: i64,
    ) -> Result<(bool, Option<StoredUser>), StorageError> {
        if let Some(status) = self.remembered_token_status(jti, subject, issued_at) {
            return Ok(status);
        }
        #[derive(sqlx::FromRow)]
        struct Row {
            revocations: i64,
            username: Option<String>,
            password_hash: Option<String>,
            scopes: Option<String>,
            tokens_revoked_through: Option<i64>,
        }
        let row: Row = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1) AS revocations,
                    u.username, u.password_hash, u.scopes, u.tokens_revoked_through
             FROM (SELECT 1 AS anchor) AS one
             LEFT JOIN users u ON u.username = $2",
        )
        .bind(jti)
        .bind(subject)
        .fetch_one(&self.pool)
        .await?;
        let cut_off = row.tokens_revoked_through.is_some_and(|t| t >= issued_at);
        let user = match (row.username, row.password_hash, row.scopes) {
            (Some(username), Some(password_hash), Some(scopes)) => Some(StoredUser {
                username,
                password_hash,
                scopes: scopes.split_whitespace().map(str::to_owned).collect(),
            }),
            _ => None,
        };
        let status = (row.revocations > 0 || cut_off, user);
        if let Some(cache) = &self.token_cache {
            cache.put(jti, subject, issued_at, &status);
        }
        Ok(status)
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
        assert!(db.token_status("a", "alice", 100).await.unwrap().0);
        assert!(!db.token_status("b", "alice", 100).await.unwrap().0);
        // Revoking another token later prunes what expired long enough ago.
        db.revoke_token("b", 5_000, 1_000 + 61).await.unwrap();
        assert!(!db.token_status("a", "alice", 100).await.unwrap().0);
        assert!(db.token_status("b", "alice", 100).await.unwrap().0);
    }

    #[tokio::test]
    async fn a_password_change_revokes_the_tokens_issued_before() {
        let (db, _dir) = test_database().await;
        db.add_user("alice", "h1", &["tasks:read".into()])
            .await
            .unwrap();
        let (revoked, user) = db.token_status("j", "alice", 100).await.unwrap();
        assert!(!revoked);
        assert_eq!(user.unwrap().scopes, vec!["tasks:read"]);
        assert_eq!(
            db.token_status("j", "nobody", 100).await.unwrap(),
            (false, None)
        );
        assert!(db.set_password("alice", "h2", 150).await.unwrap());
        assert!(db.token_status("j", "alice", 100).await.unwrap().0);
        assert!(db.token_status("j", "alice", 150).await.unwrap().0);
        assert!(!db.token_status("j", "alice", 151).await.unwrap().0);
        assert_eq!(
            db.find_user("alice").await.unwrap().unwrap().password_hash,
            "h2"
        );
        assert!(!db.set_password("nobody", "h", 150).await.unwrap());
    }
}
