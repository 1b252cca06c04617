//! Refresh tokens as stored: by digest, in families that share one grant.

use super::grants::RowLock;
use super::{AuthChange, Database, StorageError};

/// A refresh token's row, found by its digest.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredRefreshToken {
    pub family: String,
    pub username: String,
    /// Space-separated scopes of the grant that began the family.
    pub scopes: String,
    pub expires_at: i64,
    pub family_expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The digest of the token that replaced this one, once used.
    pub successor_hash: Option<String>,
}

/// What became of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The token is used up and its successor stored.
    Rotated,
    /// Another request used the token first: a reuse.
    Used,
    /// The token was revoked, expired or removed with its user meanwhile.
    Ended,
}

/// A new refresh token to store.
pub struct NewRefreshToken<'a> {
    pub token_hash: &'a str,
    pub family: &'a str,
    pub username: &'a str,
    pub scopes: &'a str,
    pub issued_at: i64,
    pub expires_at: i64,
    pub family_expires_at: i64,
    /// `jti` and `exp` of the access token issued with it, if it has them.
    pub access_token: Option<(&'a str, i64)>,
}

const INSERT: &str = "INSERT INTO refresh_tokens
    (token_hash, family, username, scopes, issued_at, expires_at, family_expires_at,
     access_jti, access_expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

impl Database {
    /// Stores the first token of a new family, and forgets tokens that have
    /// expired: what the tests start a family with.
    #[cfg(test)]
    pub async fn add_refresh_token(&self, token: &NewRefreshToken<'_>) -> Result<(), StorageError> {
        insert_refresh_token(token).execute(&self.pool).await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(token.issued_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<StoredRefreshToken>, StorageError> {
        Ok(sqlx::query_as::<_, StoredRefreshToken>(
            "SELECT family, username, scopes, expires_at, family_expires_at, used_at, revoked_at,
                    successor_hash
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Marks `used` used and stores `next` in its place, at once, unless
    /// `used` was used, revoked or expired by then: the check and the mark
    /// are one statement, so of two uses racing, on any number of replicas,
    /// exactly one wins. The user's row is held first, as a password change
    /// or a family's revocation holds it before revoking: either that
    /// revocation sees `next`, or this sees `used` revoked.
    pub async fn rotate_refresh_token(
        &self,
        used: &str,
        next: &NewRefreshToken<'_>,
    ) -> Result<Rotation, StorageError> {
        let mut tx = self.begin_write().await?;
        self.lock_user(&mut tx, next.username, RowLock::Share)
            .await?;
        let marked = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1, successor_hash = $3
             WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL
               AND expires_at > $1",
        )
        .bind(next.issued_at)
        .bind(used)
        .bind(next.token_hash)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() != 1 {
            let (used_at,): (Option<i64>,) =
                sqlx::query_as("SELECT used_at FROM refresh_tokens WHERE token_hash = $1")
                    .bind(used)
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or((None,));
            // Rolled back now, not whenever the connection is next used: on
            // SQLite the transaction holds the write lock until then, and the
            // family's revocation that follows would wait for it.
            tx.rollback().await?;
            return Ok(if used_at.is_some() {
                Rotation::Used
            } else {
                Rotation::Ended
            });
        }
        insert_refresh_token(next).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Rotation::Rotated)
    }

    /// Within the reuse grace: `used` (a used token presented again) gets
    /// `next` as its successor in place of `successor`, which is marked
    /// used (presented later, it is a reuse) and whose access token is
    /// revoked. Only while `successor` itself is unused: the check and the
    /// mark are one statement, so of several replays at once exactly one
    /// supersedes it and the others find it used, and the family never has
    /// more than one token left to use.
    pub async fn supersede_refresh_token(
        &self,
        used: &str,
        successor: &str,
        next: &NewRefreshToken<'_>,
    ) -> Result<Rotation, StorageError> {
        let now = next.issued_at;
        let mut tx = self.begin_write().await?;
        self.lock_user(&mut tx, next.username, RowLock::Share)
            .await?;
        let marked = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1
             WHERE token_hash = $2 AND family = $3 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(successor)
        .bind(next.family)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() != 1 {
            let (revoked_at,): (Option<i64>,) =
                sqlx::query_as("SELECT revoked_at FROM refresh_tokens WHERE token_hash = $1")
                    .bind(successor)
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or((Some(now),));
            tx.rollback().await?;
            return Ok(if revoked_at.is_some() {
                Rotation::Ended
            } else {
                Rotation::Used
            });
        }
        let replaced = sqlx::query(
            "UPDATE refresh_tokens SET successor_hash = $1
             WHERE token_hash = $2 AND successor_hash = $3 AND revoked_at IS NULL",
        )
        .bind(next.token_hash)
        .bind(used)
        .bind(successor)
        .execute(&mut *tx)
        .await?;
        if replaced.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(Rotation::Ended);
        }
        insert_refresh_token(next).execute(&mut *tx).await?;
        // The superseded successor's access token went to whoever got the
        // lost answer, if anyone: it goes too.
        let access: Vec<(String, i64)> = sqlx::query_as(
            "SELECT access_jti, access_expires_at FROM refresh_tokens
             WHERE token_hash = $1 AND access_jti IS NOT NULL AND access_expires_at >= $2",
        )
        .bind(successor)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let changes = self.revoke_access_tokens(&mut tx, access, now).await?;
        tx.commit().await?;
        for change in &changes {
            self.status.apply(change);
        }
        Ok(Rotation::Rotated)
    }

    /// Records `access` (`jti`, `exp`) revoked in `tx`, with their changes
    /// logged; the changes to apply to the memory once `tx` commits.
    async fn revoke_access_tokens(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        access: Vec<(String, i64)>,
        now: i64,
    ) -> Result<Vec<AuthChange>, StorageError> {
        for (jti, expires_at) in &access {
            sqlx::query(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)
                 ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(expires_at)
            .execute(&mut **tx)
            .await?;
        }
        let changes: Vec<AuthChange> = access
            .into_iter()
            .map(|(jti, expires_at)| AuthChange::TokenRevoked { jti, expires_at })
            .collect();
        self.log_changes(tx, &changes, now).await?;
        Ok(changes)
    }

    /// Revokes every refresh token of `family`, and every access token
    /// issued with one of them that has not expired (RFC 7009 §2.1: the
    /// whole grant goes). The number of refresh tokens newly revoked.
    /// `username` is the family's user, whose row is held first: a
    /// rotation racing this either stored its successor before (and it is
    /// revoked here) or finds its token revoked.
    pub async fn revoke_refresh_family(
        &self,
        family: &str,
        username: &str,
        now: i64,
    ) -> Result<u64, StorageError> {
        let mut tx = self.begin_write().await?;
        self.lock_user(&mut tx, username, RowLock::Update).await?;
        let access: Vec<(String, i64)> = sqlx::query_as(
            "SELECT access_jti, access_expires_at FROM refresh_tokens
             WHERE family = $1 AND access_jti IS NOT NULL AND access_expires_at >= $2",
        )
        .bind(family)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let changes = self.revoke_access_tokens(&mut tx, access, now).await?;
        let result = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(family)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for change in &changes {
            self.status.apply(change);
        }
        Ok(result.rows_affected())
    }
}

pub(super) fn insert_refresh_token<'q>(
    token: &'q NewRefreshToken<'q>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(INSERT)
        .bind(token.token_hash)
        .bind(token.family)
        .bind(token.username)
        .bind(token.scopes)
        .bind(token.issued_at)
        .bind(token.expires_at)
        .bind(token.family_expires_at)
        .bind(token.access_token.map(|(jti, _)| jti))
        .bind(token.access_token.map(|(_, expires_at)| expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_database;

    fn token<'a>(hash: &'a str, issued_at: i64) -> NewRefreshToken<'a> {
        NewRefreshToken {
            token_hash: hash,
            family: "f1",
            username: "alice",
            scopes: "tasks:read",
            issued_at,
            expires_at: issued_at + 100,
            family_expires_at: issued_at + 1000,
            access_token: None,
        }
    }

    #[tokio::test]
    async fn a_token_rotates_once() {
        let (db, _dir) = test_database().await;
        db.add_user("alice", "h", &["tasks:read".into()])
            .await
            .unwrap();
        db.add_refresh_token(&token("a", 10)).await.unwrap();
        let rotate = async |used, next| db.rotate_refresh_token(used, &next).await.unwrap();
        assert_eq!(rotate("a", token("b", 20)).await, Rotation::Rotated);
        assert_eq!(rotate("a", token("c", 21)).await, Rotation::Used);
        assert_eq!(db.find_refresh_token("c").await.unwrap(), None);
        let used = db.find_refresh_token("a").await.unwrap().unwrap();
        assert_eq!(used.used_at, Some(20));
        let next = db.find_refresh_token("b").await.unwrap().unwrap();
        assert_eq!((next.family.as_str(), next.used_at), ("f1", None));
        // Expired tokens do not rotate.
        assert_eq!(rotate("b", token("d", 200)).await, Rotation::Ended);
    }

    #[tokio::test]
    async fn a_successor_is_superseded_once_and_only_while_unused() {
        let (db, _dir) = test_database().await;
        db.add_user("alice", "h", &["tasks:read".into()])
            .await
            .unwrap();
        db.add_refresh_token(&token("a", 10)).await.unwrap();
        let b = NewRefreshToken {
            access_token: Some(("jb", 500)),
            ..token("b", 20)
        };
        assert_eq!(
            db.rotate_refresh_token("a", &b).await.unwrap(),
            Rotation::Rotated
        );
        let a = db.find_refresh_token("a").await.unwrap().unwrap();
        assert_eq!(a.successor_hash.as_deref(), Some("b"));
        let supersede = async |successor, next| {
            db.supersede_refresh_token("a", successor, &next)
                .await
                .unwrap()
        };
        assert_eq!(supersede("b", token("c", 21)).await, Rotation::Rotated);
        // b is spent, its access token revoked, and a points at c.
        let b = db.find_refresh_token("b").await.unwrap().unwrap();
        assert_eq!(b.used_at, Some(21));
        assert!(
            db.token_status("jb", "alice", crate::clock::unix_now())
                .await
                .unwrap()
                .0
        );
        assert_eq!(
            db.find_refresh_token("a")
                .await
                .unwrap()
                .unwrap()
                .successor_hash
                .as_deref(),
            Some("c")
        );
        // b again (a replay that raced the first): it is used now.
        assert_eq!(supersede("b", token("d", 22)).await, Rotation::Used);
        assert_eq!(db.find_refresh_token("d").await.unwrap(), None);
        // c used normally: superseding it is a reuse too.
        assert_eq!(
            db.rotate_refresh_token("c", &token("e", 23)).await.unwrap(),
            Rotation::Rotated
        );
        assert_eq!(supersede("c", token("f", 24)).await, Rotation::Used);
        db.revoke_refresh_family("f1", "alice", 25).await.unwrap();
        assert_eq!(supersede("e", token("g", 26)).await, Rotation::Ended);
    }

    #[tokio::test]
    async fn a_family_is_revoked_whole_and_goes_with_its_user() {
        let (db, _dir) = test_database().await;
        db.add_user("alice", "h", &["tasks:read".into()])
            .await
            .unwrap();
        db.add_refresh_token(&token("a", 10)).await.unwrap();
        assert_eq!(
            db.rotate_refresh_token("a", &token("b", 20)).await.unwrap(),
            Rotation::Rotated
        );
        assert_eq!(
            db.revoke_refresh_family("f1", "alice", 30).await.unwrap(),
            2
        );
        assert_eq!(
            db.rotate_refresh_token("b", &token("c", 31)).await.unwrap(),
            Rotation::Ended
        );
        assert_eq!(
            db.find_refresh_token("b")
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(30)
        );
        assert!(db.remove_user("alice").await.unwrap());
        assert_eq!(db.find_refresh_token("b").await.unwrap(), None);
    }

    #[tokio::test]
    async fn revoking_a_family_revokes_its_access_tokens() {
        let (db, _dir) = test_database().await;
        db.add_user("alice", "h", &["tasks:read".into()])
            .await
            .unwrap();
        db.add_refresh_token(&NewRefreshToken {
            access_token: Some(("j1", 50)),
            ..token("a", 10)
        })
        .await
        .unwrap();
        let next = NewRefreshToken {
            access_token: Some(("j2", 60)),
            ..token("b", 20)
        };
        assert_eq!(
            db.rotate_refresh_token("a", &next).await.unwrap(),
            Rotation::Rotated
        );
        db.revoke_refresh_family("f1", "alice", 55).await.unwrap();
        // j1 expired already; j2 is revoked until it expires. (Both asked
        // about as if issued now, after alice's account was made.)
        let issued = crate::clock::unix_now();
        assert!(!db.token_status("j1", "alice", issued).await.unwrap().0);
        assert!(db.token_status("j2", "alice", issued).await.unwrap().0);
    }

    /// Each revocation reads the family before it writes; racing ones wait
    /// for each other instead of failing with "database is locked".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simultaneous_family_revocations_all_succeed() {
        let (db, _dir) = test_database().await;
        db.add_user("alice", "h", &["tasks:read".into()])
            .await
            .unwrap();
        let families: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
        for (i, family) in families.iter().enumerate() {
            let hash = format!("t{i}");
            let jti = format!("j{i}");
            db.add_refresh_token(&NewRefreshToken {
                family,
                access_token: Some((&jti, 1_000)),
                ..token(&hash, 10)
            })
            .await
            .unwrap();
        }
        let revocations = families.iter().map(|family| {
            let db = db.clone();
            let family = family.clone();
            tokio::spawn(async move { db.revoke_refresh_family(&family, "alice", 20).await })
        });
        for revocation in revocations.collect::<Vec<_>>() {
            assert_eq!(revocation.await.unwrap().unwrap(), 1);
        }
    }

    #[tokio::test]
    async fn expired_tokens_are_pruned() {
        let (db, _dir) = test_database().await;
        db.add_user("alice", "h", &["tasks:read".into()])
            .await
            .unwrap();
        db.add_refresh_token(&token("a", 10)).await.unwrap();
        db.add_refresh_token(&NewRefreshToken {
            family: "f2",
            ..token("b", 500)
        })
        .await
        .unwrap();
        assert_eq!(db.find_refresh_token("a").await.unwrap(), None);
        assert!(db.find_refresh_token("b").await.unwrap().is_some());
    }
}
