//! Access tokens revoked before they expire (RFC 7009), by `jti`.

use super::{AuthChange, Database, StorageError, StoredUser, UserStatus};

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
        let change = AuthChange::TokenRevoked {
            jti: jti.to_owned(),
            expires_at,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        self.log_changes(&mut tx, std::slice::from_ref(&change), now)
            .await?;
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(now - KEEP_AFTER_EXPIRY_SECONDS)
            .execute(&mut *tx)
            .await?;
        self.prune_changes(&mut tx, now).await?;
        tx.commit().await?;
        self.status.apply(&change);
        Ok(())
    }

    /// The revocations of tokens that expire at or after `from`: what the
    /// in-memory token status starts from.
    pub(super) async fn revoked_tokens(
        &self,
        from: i64,
    ) -> Result<Vec<(String, i64)>, StorageError> {
        Ok(
            sqlx::query_as("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at >= $1")
                .bind(from)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The Bearer check's whole question about a token, answered at once:
    /// whether the token `jti` of `subject`, issued at `issued_at`, was
    /// revoked (by itself, or by a password change at or after its issue),
    /// and `subject` as stored. From
    /// memory while it is current (one lookup of the user's status serves
    /// both answers), from one query otherwise.
    pub async fn token_status_for_decision(
        &self,
        jti: &str,
        subject: &str,
        issued_at: i64,
    ) -> Result<(bool, Option<StoredUser>), StorageError> {
        if !self.status.is_current() {
            return self.token_status(jti, subject, issued_at).await;
        }
        let user = self.user_status_for_decision(subject).await?;
        let cut_off = user
            .as_ref()
            .is_some_and(|u| u.tokens_revoked_through >= issued_at);
        Ok((
            self.status.is_revoked(jti) || cut_off,
            user.map(|status| status.user),
        ))
    }

    /// The version of what [`Self::token_status_for_decision`] and
    /// [`Self::user_for_decision`] answer while they answer from memory;
    /// `None` while they read the database.
    pub fn token_status_version(&self) -> Option<u64> {
        // The version first: a lease that runs out after this read makes
        // the answer `None`, never a version the memory no longer vouches for.
        let version = self.status.version();
        self.status.is_current().then_some(version)
    }

    /// `username` for a Bearer check: from memory while it is current.
    pub async fn user_for_decision(
        &self,
        username: &str,
    ) -> Result<Option<StoredUser>, StorageError> {
        if !self.status.is_current() {
            return self.find_user(username).await;
        }
        Ok(self
            .user_status_for_decision(username)
            .await?
            .map(|status| status.user))
    }

    async fn user_status_for_decision(
        &self,
        username: &str,
    ) -> Result<Option<UserStatus>, StorageError> {
        if let Some(remembered) = self.status.user(username) {
            return Ok(remembered);
        }
        let generation = self.status.generation();
        let status = self.user_status(username).await?;
        self.status.remember(username, status.clone(), generation);
        Ok(status)
    }

    /// Whether the token `jti` of `subject`, issued at `issued_at` (Unix
    /// seconds), was revoked (by itself, or by a password change at or after
    /// its issue), and `subject` as stored: one query, straight from the
    /// database.
    pub async fn token_status(
        &self,
        jti: &str,
        subject: &str,
        issued_at: i64,
    ) -> Result<(bool, Option<StoredUser>), StorageError> {
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
        Ok((row.revocations > 0 || cut_off, user))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::clock::unix_now;
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
        let issued = unix_now();
        let (revoked, user) = db.token_status("j", "alice", issued).await.unwrap();
        assert!(!revoked);
        assert_eq!(user.unwrap().scopes, vec!["tasks:read"]);
        assert_eq!(
            db.token_status("j", "nobody", issued).await.unwrap(),
            (false, None)
        );
        let cutoff = db.set_password("alice", "h2").await.unwrap().unwrap();
        assert!(db.token_status("j", "alice", issued).await.unwrap().0);
        assert!(db.token_status("j", "alice", cutoff).await.unwrap().0);
        assert!(!db.token_status("j", "alice", cutoff + 1).await.unwrap().0);
        assert_eq!(
            db.find_user("alice").await.unwrap().unwrap().password_hash,
            "h2"
        );
        assert_eq!(db.set_password("nobody", "h").await.unwrap(), None);
    }

    /// Whether a token of the name's earlier account, issued at `issued`,
    /// is refused for the account made again, by the database and by the
    /// memory a running server keeps.
    async fn earlier_account_token_refused(issued: i64) -> (bool, bool, i64) {
        let (db, _dir) = test_database().await;
        db.add_user("alice", "h1", &[]).await.unwrap();
        db.status.renew(Duration::from_secs(60));
        // Remembered as it is now, then forgotten by the removal and the
        // addition (as every replica forgets it, from the change log).
        assert!(
            !db.token_status_for_decision("j", "alice", issued)
                .await
                .unwrap()
                .0
        );
        assert!(db.remove_user("alice").await.unwrap());
        db.add_user("alice", "h2", &[]).await.unwrap();
        let from_memory = db
            .token_status_for_decision("j", "alice", issued)
            .await
            .unwrap()
            .0;
        let from_database = db.token_status("j", "alice", issued).await.unwrap().0;
        let cutoff = db
            .credentials("alice")
            .await
            .unwrap()
            .unwrap()
            .tokens_revoked_through;
        (from_database, from_memory, cutoff)
    }

    #[tokio::test]
    async fn an_account_made_again_refuses_the_earlier_ones_tokens() {
        let issued = unix_now();
        let (from_database, from_memory, cutoff) = earlier_account_token_refused(issued).await;
        assert!(from_database && from_memory);
        // Its cutoff is its creation's second (the name was removed in it)
        // or, if the removal was in an earlier second, the one before.
        let now = unix_now();
        assert!((now - 1..=now).contains(&cutoff), "{cutoff} vs {now}");
        assert!(cutoff >= issued);
    }

    #[tokio::test]
    async fn a_new_name_refuses_only_tokens_from_before_its_second() {
        let (db, _dir) = test_database().await;
        let before = unix_now();
        db.add_user("bob", "h", &[]).await.unwrap();
        let cutoff = db
            .credentials("bob")
            .await
            .unwrap()
            .unwrap()
            .tokens_revoked_through;
        // No earlier account: a login in the creation's own second need
        // not wait.
        assert!(cutoff < before || cutoff == unix_now() - 1);
        assert!(!db.token_status("j", "bob", cutoff + 1).await.unwrap().0);
        assert!(db.token_status("j", "bob", cutoff).await.unwrap().0);
    }
}
