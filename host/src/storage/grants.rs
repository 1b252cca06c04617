//! What a grant was decided on, and the check, when its tokens are handed
//! out, that it still holds.
//!
//! A grant reads the user's credentials, the policy checks the password
//! (tens of milliseconds), and only then are the tokens handed out; a
//! password change (or a removal) can commit in between. So the grant's
//! tokens go out only after [`Database::confirm_grant`] finds the
//! credentials unchanged, holding the user's row; and whoever changes them
//! takes that same row before reading the clock for its cutoff. Then every
//! grant confirmed before a change issued its access token (`iat`, read
//! when the policy's call began) no later than the change's cutoff second,
//! and stored its refresh token before the change revokes the user's; and
//! every grant confirmed after a change sees it, and is decided again.

use sqlx::{Any, Transaction};

use super::refresh_tokens::insert_refresh_token;
use super::{Backend, Database, NewRefreshToken, StorageError};

/// A user's account and credentials as a grant is decided on them: any
/// password change changes them (each hash has its own salt), and so does a
/// removal, or the name's re-creation (another account).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Credentials {
    pub password_hash: String,
    /// Tokens issued (`iat`) at or before this Unix second are refused.
    pub tokens_revoked_through: i64,
    /// When the account was made (RFC 3339, to the nanosecond): tells it
    /// from an earlier account of the same name.
    pub created_at: String,
}

/// How a transaction holds a user's row until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowLock {
    /// Others may read it and hold it so too, but not change it: a grant
    /// handing out tokens.
    Share,
    /// No one else may hold or change it: a change of credentials, a
    /// family's revocation.
    Update,
}

const CREDENTIALS: &str =
    "SELECT password_hash, tokens_revoked_through, created_at FROM users WHERE username = $1";

impl Database {
    /// `username`'s credentials as they are now; `None`: no such user.
    pub async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StorageError> {
        Ok(sqlx::query_as::<_, Credentials>(CREDENTIALS)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Holds `username`'s row until `tx` ends, and reads its credentials.
    /// On PostgreSQL a row lock; on SQLite the transaction holds the whole
    /// database's write lock already ([`Database::begin_write`]).
    pub(super) async fn lock_user(
        &self,
        tx: &mut Transaction<'_, Any>,
        username: &str,
        lock: RowLock,
    ) -> Result<Option<Credentials>, StorageError> {
        let clause = match (self.backend, lock) {
            (Backend::Sqlite, _) => "",
            (Backend::Postgres, RowLock::Share) => " FOR SHARE",
            // Not FOR UPDATE: inserting a task or a refresh token of the
            // user (which only needs the row to exist) need not wait.
            (Backend::Postgres, RowLock::Update) => " FOR NO KEY UPDATE",
        };
        Ok(
            sqlx::query_as::<_, Credentials>(&format!("{CREDENTIALS}{clause}"))
                .bind(username)
                .fetch_optional(&mut **tx)
                .await?,
        )
    }

    /// Lets a password grant for `username`, decided on `seen`, hand its
    /// tokens out: true if the credentials are still `seen`, and then
    /// `first_refresh` (the first refresh token of the grant's family) is
    /// stored in the same step. False, storing nothing, if they changed
    /// meanwhile (the grant may have checked a password no longer valid).
    pub async fn confirm_grant(
        &self,
        username: &str,
        seen: Option<&Credentials>,
        first_refresh: Option<&NewRefreshToken<'_>>,
    ) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        let current = self.lock_user(&mut tx, username, RowLock::Share).await?;
        if current.as_ref() != seen {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(token) = first_refresh {
            insert_refresh_token(token).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
                .bind(token.issued_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::{NewRefreshToken, test_database};

    fn first_refresh(hash: &str) -> NewRefreshToken<'_> {
        NewRefreshToken {
            token_hash: hash,
            family: "f1",
            username: "alice",
            scopes: "tasks:read",
            issued_at: 10,
            expires_at: i64::MAX,
            family_expires_at: i64::MAX,
            access_token: None,
        }
    }

    #[tokio::test]
    async fn a_grant_is_confirmed_only_on_the_credentials_it_saw() {
        let (db, _dir) = test_database().await;
        assert_eq!(db.credentials("alice").await.unwrap(), None);
        db.add_user("alice", "h1", &["tasks:read".into()])
            .await
            .unwrap();
        // Decided before the user existed: not confirmed.
        assert!(
            !db.confirm_grant("alice", None, Some(&first_refresh("a")))
                .await
                .unwrap()
        );
        assert_eq!(db.find_refresh_token("a").await.unwrap(), None);
        let seen = db.credentials("alice").await.unwrap().unwrap();
        assert_eq!(seen.password_hash, "h1");
        assert!(
            db.confirm_grant("alice", Some(&seen), Some(&first_refresh("b")))
                .await
                .unwrap()
        );
        assert!(db.find_refresh_token("b").await.unwrap().is_some());
        // A password change in between: not confirmed, nothing stored.
        db.set_password("alice", "h2").await.unwrap().unwrap();
        assert!(
            !db.confirm_grant("alice", Some(&seen), Some(&first_refresh("c")))
                .await
                .unwrap()
        );
        assert_eq!(db.find_refresh_token("c").await.unwrap(), None);
        let seen = db.credentials("alice").await.unwrap();
        assert!(
            db.confirm_grant("alice", seen.as_ref(), None)
                .await
                .unwrap()
        );
        db.remove_user("alice").await.unwrap();
        assert!(
            !db.confirm_grant("alice", seen.as_ref(), None)
                .await
                .unwrap()
        );
    }
}
