//! Users: name, argon2id hash (made by the policy component) and scopes.

use super::grants::RowLock;
use super::{AuthChange, Database, StorageError, UserStatus, now};
use crate::clock::unix_now;

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub username: String,
    pub password_hash: String,
    pub scopes: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    username: String,
    password_hash: String,
    scopes: String,
}

#[derive(sqlx::FromRow)]
struct UserStatusRow {
    username: String,
    password_hash: String,
    scopes: String,
    tokens_revoked_through: i64,
}

impl From<UserRow> for StoredUser {
    fn from(row: UserRow) -> Self {
        StoredUser {
            username: row.username,
            password_hash: row.password_hash,
            scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
        }
    }
}

impl Database {
    /// Adds a user. Tokens issued to an earlier account of the same name
    /// (removed since) are refused for this one: its cutoff is set to the
    /// second before its creation, or to the creation's second itself when
    /// the name changed in that second (a removal just before; logins then
    /// wait for the next second, see `past_cutoff` in the `/token` route).
    /// The earlier account's tokens were all issued by its removal, whose
    /// second the change log holds.
    pub async fn add_user(
        &self,
        username: &str,
        password_hash: &str,
        scopes: &[String],
    ) -> Result<(), StorageError> {
        let change = user_changed(username);
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(
            "INSERT INTO users (username, password_hash, scopes, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(username)
        .bind(password_hash)
        .bind(scopes.join(" "))
        .bind(now())
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                tx.rollback().await?;
                return Err(StorageError::UserExists(username.to_owned()));
            }
            Err(e) => return Err(e.into()),
        }
        // Read only now that the row is this transaction's: a removal of the
        // name racing this one has committed, its log entry with it.
        let (last_change,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(changed_at) FROM auth_changes WHERE username = $1")
                .bind(username)
                .fetch_one(&mut *tx)
                .await?;
        let created = unix_now();
        let cutoff = last_change.map_or(created - 1, |changed| changed.max(created - 1));
        sqlx::query("UPDATE users SET tokens_revoked_through = $1 WHERE username = $2")
            .bind(cutoff)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        self.log_changes(&mut tx, std::slice::from_ref(&change), created)
            .await?;
        tx.commit().await?;
        self.status.apply(&change);
        Ok(())
    }

    pub async fn find_user(&self, username: &str) -> Result<Option<StoredUser>, StorageError> {
        let row = sqlx::query_as::<_, UserRow>(
            "SELECT username, password_hash, scopes FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(StoredUser::from))
    }

    /// `username` with their password-change cutoff: what a Bearer check needs.
    pub(super) async fn user_status(
        &self,
        username: &str,
    ) -> Result<Option<UserStatus>, StorageError> {
        let row = sqlx::query_as::<_, UserStatusRow>(
            "SELECT username, password_hash, scopes, tokens_revoked_through
             FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| UserStatus {
            user: StoredUser::from(UserRow {
                username: row.username,
                password_hash: row.password_hash,
                scopes: row.scopes,
            }),
            tokens_revoked_through: row.tokens_revoked_through,
        }))
    }

    pub async fn list_users(&self) -> Result<Vec<StoredUser>, StorageError> {
        let rows = sqlx::query_as::<_, UserRow>(
            "SELECT username, password_hash, scopes FROM users ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(StoredUser::from).collect())
    }

    /// Sets a new password hash and revokes every token issued to the user
    /// up to now: access tokens issued (`iat`) up to this Unix second,
    /// refresh tokens outright. Returns that second (the cutoff), or `None`
    /// if there is no such user.
    ///
    /// The clock is read only once the user's row is held: a grant that
    /// confirmed the old password before then issued its token before then
    /// (see [`super::grants`]), so the cutoff covers it.
    pub async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<Option<i64>, StorageError> {
        let change = user_changed(username);
        let mut tx = self.begin_write().await?;
        let Some(current) = self.lock_user(&mut tx, username, RowLock::Update).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        // Never back: a clock behind the one that set the current cutoff
        // must not let the tokens it covers back in.
        let now = unix_now().max(current.tokens_revoked_through);
        sqlx::query(
            "UPDATE users SET password_hash = $1, tokens_revoked_through = $2 WHERE username = $3",
        )
        .bind(password_hash)
        .bind(now)
        .bind(username)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE username = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(username)
        .execute(&mut *tx)
        .await?;
        self.log_changes(&mut tx, std::slice::from_ref(&change), now)
            .await?;
        tx.commit().await?;
        self.status.apply(&change);
        Ok(Some(now))
    }

    /// Replaces a user's scopes; tokens keep only the scopes the user still
    /// holds. Returns whether the user exists.
    pub async fn set_scopes(
        &self,
        username: &str,
        scopes: &[String],
    ) -> Result<bool, StorageError> {
        let change = user_changed(username);
        let mut tx = self.begin_write().await?;
        let result = sqlx::query("UPDATE users SET scopes = $1 WHERE username = $2")
            .bind(scopes.join(" "))
            .bind(username)
            .execute(&mut *tx)
            .await?;
        self.log_changes(&mut tx, std::slice::from_ref(&change), unix_now())
            .await?;
        tx.commit().await?;
        self.status.apply(&change);
        Ok(result.rows_affected() > 0)
    }

    /// Removes a user and, by cascade, their tasks and refresh tokens. Returns whether one existed.
    pub async fn remove_user(&self, username: &str) -> Result<bool, StorageError> {
        let change = user_changed(username);
        let mut tx = self.begin_write().await?;
        let result = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        self.log_changes(&mut tx, std::slice::from_ref(&change), unix_now())
            .await?;
        tx.commit().await?;
        self.status.apply(&change);
        Ok(result.rows_affected() > 0)
    }
}

fn user_changed(username: &str) -> AuthChange {
    AuthChange::UserChanged {
        username: username.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::test_database;

    #[tokio::test]
    async fn add_find_list_remove() {
        let (db, _dir) = test_database().await;
        db.add_user("bob", "h1", &["a".into(), "b".into()])
            .await
            .unwrap();
        db.add_user("alice", "h2", &[]).await.unwrap();
        let bob = db.find_user("bob").await.unwrap().unwrap();
        assert_eq!(bob.scopes, vec!["a", "b"]);
        assert_eq!(bob.password_hash, "h1");
        let names: Vec<_> = db
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names, vec!["alice", "bob"]);
        assert!(db.remove_user("bob").await.unwrap());
        assert!(!db.remove_user("bob").await.unwrap());
        assert!(db.find_user("bob").await.unwrap().is_none());
    }

    /// Accounts made before their creation counted as a cutoff get their
    /// creation second as one when the database is migrated.
    #[tokio::test]
    async fn existing_accounts_get_their_creation_second_as_cutoff() {
        let (db, _dir) = test_database().await;
        sqlx::query(
            "INSERT INTO users (username, password_hash, scopes, created_at)
             VALUES ('old', 'h', '', '2024-05-01T12:00:00.123456789Z')",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::raw_sql(include_str!(
            "../../migrations/sqlite/0008_account_token_cutoff.sql"
        ))
        .execute(&db.pool)
        .await
        .unwrap();
        let old = db.credentials("old").await.unwrap().unwrap();
        assert_eq!(old.tokens_revoked_through, 1_714_564_800);
    }

    #[tokio::test]
    async fn duplicate_user_is_a_conflict() {
        let (db, _dir) = test_database().await;
        db.add_user("bob", "h", &[]).await.unwrap();
        let err = db.add_user("bob", "h", &[]).await.unwrap_err();
        assert!(matches!(err, super::StorageError::UserExists(name) if name == "bob"));
    }
}
