//! Refresh tokens (RFC 6749 §6 and §10.4): opaque, stored only as a digest,
//! single use, replaced on each use by a successor of the same family, and a
//! used one presented again revokes the whole family, with the access tokens
//! issued along with it.
//!
//! Within the reuse grace (`--refresh-token-reuse-grace`, off by default),
//! a used token presented again soon after its use (a client whose answer
//! was lost) gets a fresh pair instead: its successor is superseded, so the
//! family still has a single token left to use, and a replay after the
//! grace, or of a superseded token, is a reuse as always.
//!
//! The host keeps them, not the policy: they are storage, and nothing but
//! the host can read them. The policy still decides each refresh (does the
//! user exist, which scopes), through its `refresh-token` export.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::storage::{Credentials, Database, NewRefreshToken, Rotation, StorageError};

/// Random bytes in a refresh token: unguessable, so a plain digest stores it.
const TOKEN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is invalid, expired or revoked")]
    Invalid,
    #[error("the refresh token was used already; every token of its grant is now revoked")]
    Reused,
    #[error("no randomness for a refresh token: {0}")]
    Random(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How long refresh tokens live.
#[derive(Debug, Clone, Copy)]
pub struct RefreshLifetime {
    /// Each token, from its issue: a family left unused this long ends.
    pub idle: Duration,
    /// A family, from its login, however often it is used; `None`: no cap.
    pub absolute: Option<Duration>,
    /// How long after its use a used token may be presented again for a
    /// fresh pair in place of its successor; zero: never (strict reuse
    /// detection).
    pub reuse_grace: Duration,
}

/// A refresh token that may be used: whose grant it carries.
#[derive(Debug)]
pub struct Redeemed {
    token_hash: String,
    family: String,
    family_expires_at: i64,
    pub username: String,
    /// The scopes of the grant that began the family.
    pub scopes: Vec<String>,
    /// A used token presented again within the grace: the successor it
    /// replaces.
    supersedes: Option<String>,
}

impl Redeemed {
    /// Whether this is a used token presented again within the grace.
    pub fn is_grace_replay(&self) -> bool {
        self.supersedes.is_some()
    }
}

/// An active refresh token, as introspection answers it.
#[derive(Debug)]
pub struct ActiveRefreshToken {
    pub username: String,
    /// The scopes of the grant that began the family.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// The refresh tokens of one deployment.
#[derive(Clone)]
pub struct RefreshTokens {
    db: Database,
    lifetime: RefreshLifetime,
}

impl RefreshTokens {
    pub fn new(db: Database, lifetime: RefreshLifetime) -> Self {
        Self { db, lifetime }
    }

    /// Begins a family for a password grant of `scopes` to `username`,
    /// which issued the access token `access` (its `jti` and `exp`, as the
    /// policy said them) deciding on the credentials `seen`;
    /// returns its first refresh token. `None`, storing nothing, if the
    /// user's credentials are no longer `seen`: the grant must not be
    /// handed out ([`Database::confirm_grant`]).
    pub async fn start(
        &self,
        username: &str,
        scopes: &[String],
        access: (&str, i64),
        seen: Option<&Credentials>,
        now: i64,
    ) -> Result<Option<String>, RefreshError> {
        let (token, token_hash) = generate()?;
        let (family, _) = generate()?;
        let scopes = scopes.join(" ");
        let family_expires_at = self
            .lifetime
            .absolute
            .map_or(i64::MAX, |age| seconds_after(now, age));
        let row = self.row(
            &token_hash,
            &family,
            username,
            &scopes,
            family_expires_at,
            now,
        );
        let row = NewRefreshToken {
            access_token: Some(access),
            ..row
        };
        let confirmed = self.db.confirm_grant(username, seen, Some(&row)).await?;
        Ok(confirmed.then_some(token))
    }

    /// Checks `token`. A token used before means it leaked (or a client
    /// retried): the family is revoked, the thief's copy and the client's
    /// alike, and the user must log in again; unless it was used within the
    /// reuse grace and its successor is still unused, which it may then
    /// replace ([`Self::rotate`]).
    pub async fn redeem(&self, token: &str, now: i64) -> Result<Redeemed, RefreshError> {
        let token_hash = digest(token);
        let Some(stored) = self.db.find_refresh_token(&token_hash).await? else {
            return Err(RefreshError::Invalid);
        };
        if stored.revoked_at.is_some() || stored.expires_at <= now {
            return Err(RefreshError::Invalid);
        }
        let mut supersedes = None;
        if let Some(used_at) = stored.used_at {
            let grace_ends = seconds_after(used_at, self.lifetime.reuse_grace);
            match stored.successor_hash {
                // Whether the successor is still unused is checked where
                // it is superseded, in the same statement.
                Some(successor) if now < grace_ends => supersedes = Some(successor),
                _ => {
                    self.revoke_family(&stored.family, &stored.username, now)
                        .await?;
                    return Err(RefreshError::Reused);
                }
            }
        }
        Ok(Redeemed {
            token_hash,
            family: stored.family,
            family_expires_at: stored.family_expires_at,
            username: stored.username,
            scopes: stored
                .scopes
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            supersedes,
        })
    }

    /// Uses up `redeemed` and returns its successor, issued together with
    /// the access token `access` (`jti`, `exp`). If another request used it first (a race, or a
    /// replay), that is a reuse like any other. A replay within the grace
    /// supersedes the successor it got before, unless that one was used
    /// (by the client, or by a replay racing this one): then it is a reuse.
    pub async fn rotate(
        &self,
        redeemed: &Redeemed,
        access: (&str, i64),
        now: i64,
    ) -> Result<String, RefreshError> {
        let (token, token_hash) = generate()?;
        let scopes = redeemed.scopes.join(" ");
        let next = NewRefreshToken {
            access_token: Some(access),
            ..self.row(
                &token_hash,
                &redeemed.family,
                &redeemed.username,
                &scopes,
                redeemed.family_expires_at,
                now,
            )
        };
        let rotation = match &redeemed.supersedes {
            None => {
                self.db
                    .rotate_refresh_token(&redeemed.token_hash, &next)
                    .await?
            }
            Some(successor) => {
                self.db
                    .supersede_refresh_token(&redeemed.token_hash, successor, &next)
                    .await?
            }
        };
        match rotation {
            Rotation::Rotated => Ok(token),
            Rotation::Used => {
                self.revoke_family(&redeemed.family, &redeemed.username, now)
                    .await?;
                Err(RefreshError::Reused)
            }
            // Revoked (a password change, `/revoke`) or gone with its user
            // while the grant was decided: no reuse, just no longer valid.
            Rotation::Ended => Err(RefreshError::Invalid),
        }
    }

    /// RFC 7662: `token`, if it is a refresh token that may be used now
    /// (not used, revoked or expired; its user not removed). Changes
    /// nothing.
    pub async fn introspect(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Option<ActiveRefreshToken>, RefreshError> {
        let Some(stored) = self.db.find_refresh_token(&digest(token)).await? else {
            return Ok(None);
        };
        let active =
            stored.used_at.is_none() && stored.revoked_at.is_none() && stored.expires_at > now;
        Ok(active.then(|| ActiveRefreshToken {
            username: stored.username,
            scopes: stored
                .scopes
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            expires_at: stored.expires_at,
        }))
    }

    /// RFC 7009: revokes the family `token` belongs to. False if it is not
    /// a refresh token of ours.
    pub async fn revoke(&self, token: &str, now: i64) -> Result<bool, RefreshError> {
        let Some(stored) = self.db.find_refresh_token(&digest(token)).await? else {
            return Ok(false);
        };
        self.db
            .revoke_refresh_family(&stored.family, &stored.username, now)
            .await?;
        tracing::info!(family = %stored.family, "refresh token family revoked");
        Ok(true)
    }

    async fn revoke_family(
        &self,
        family: &str,
        username: &str,
        now: i64,
    ) -> Result<(), RefreshError> {
        let revoked = self.db.revoke_refresh_family(family, username, now).await?;
        tracing::warn!(
            family,
            username,
            revoked,
            "refresh token reused; its family is revoked"
        );
        Ok(())
    }

    fn row<'a>(
        &self,
        token_hash: &'a str,
        family: &'a str,
        username: &'a str,
        scopes: &'a str,
        family_expires_at: i64,
        now: i64,
    ) -> NewRefreshToken<'a> {
        NewRefreshToken {
            token_hash,
            family,
            username,
            scopes,
            issued_at: now,
            expires_at: seconds_after(now, self.lifetime.idle).min(family_expires_at),
            family_expires_at,
            access_token: None,
        }
    }
}

fn seconds_after(now: i64, span: Duration) -> i64 {
    now.saturating_add(i64::try_from(span.as_secs()).unwrap_or(i64::MAX))
}

/// A new token and its digest.
fn generate() -> Result<(String, String), RefreshError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| RefreshError::Random(e.to_string()))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = digest(&token);
    Ok((token, hash))
}

/// What is stored of a token: its hex SHA-256. A slow hash would add
/// nothing, since the token has 256 random bits.
fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_database;

    /// An access token long expired, for tests that are not about them.
    const NO_ACCESS: (&str, i64) = ("", 0);

    /// A login's first refresh token, issued at `now`.
    async fn start(refresh: &RefreshTokens, scopes: &[String], now: i64) -> String {
        let seen = refresh.db.credentials("alice").await.unwrap();
        refresh
            .start("alice", scopes, NO_ACCESS, seen.as_ref(), now)
            .await
            .unwrap()
            .expect("the credentials did not change")
    }

    async fn tokens() -> (RefreshTokens, tempfile::TempDir) {
        let (db, dir) = test_database().await;
        db.add_user("alice", "h", &["tasks:read".into()])
            .await
            .unwrap();
        let lifetime = RefreshLifetime {
            idle: Duration::from_secs(100),
            absolute: Some(Duration::from_secs(150)),
            reuse_grace: Duration::ZERO,
        };
        (RefreshTokens::new(db, lifetime), dir)
    }

    async fn with_grace(seconds: u64) -> (RefreshTokens, tempfile::TempDir) {
        let (mut refresh, dir) = tokens().await;
        refresh.lifetime.reuse_grace = Duration::from_secs(seconds);
        (refresh, dir)
    }

    #[tokio::test]
    async fn within_the_grace_a_replay_replaces_the_successor() {
        let (refresh, _dir) = with_grace(10).await;
        let first = start(&refresh, &[], 10).await;
        let redeemed = refresh.redeem(&first, 20).await.unwrap();
        assert!(!redeemed.is_grace_replay());
        let lost = refresh.rotate(&redeemed, NO_ACCESS, 20).await.unwrap();
        // The answer with `lost` never arrived; the client sends `first` again.
        let replay = refresh.redeem(&first, 29).await.unwrap();
        assert!(replay.is_grace_replay());
        let second = refresh.rotate(&replay, NO_ACCESS, 29).await.unwrap();
        // Another replay, still within the grace (counted from the use).
        let replay = refresh.redeem(&first, 29).await.unwrap();
        let third = refresh.rotate(&replay, NO_ACCESS, 29).await.unwrap();
        // Only the newest is left: an older one presented is a reuse...
        assert!(matches!(
            refresh.redeem(&second, 29).await,
            Err(RefreshError::Reused)
        ));
        // ...which revokes the family, the newest included.
        assert!(matches!(
            refresh.redeem(&third, 29).await,
            Err(RefreshError::Invalid)
        ));
        assert!(matches!(
            refresh.redeem(&lost, 29).await,
            Err(RefreshError::Invalid)
        ));
    }

    #[tokio::test]
    async fn past_the_grace_or_after_the_successor_was_used_a_replay_is_a_reuse() {
        let (refresh, _dir) = with_grace(10).await;
        let first = start(&refresh, &[], 10).await;
        let redeemed = refresh.redeem(&first, 20).await.unwrap();
        let second = refresh.rotate(&redeemed, NO_ACCESS, 20).await.unwrap();
        assert!(matches!(
            refresh.redeem(&first, 30).await,
            Err(RefreshError::Reused)
        ));
        assert!(matches!(
            refresh.redeem(&second, 30).await,
            Err(RefreshError::Invalid)
        ));

        let first = start(&refresh, &[], 40).await;
        let redeemed = refresh.redeem(&first, 41).await.unwrap();
        let second = refresh.rotate(&redeemed, NO_ACCESS, 41).await.unwrap();
        // The client got `second` and used it: `first` again is a thief's.
        let redeemed = refresh.redeem(&second, 42).await.unwrap();
        let third = refresh.rotate(&redeemed, NO_ACCESS, 42).await.unwrap();
        let replay = refresh.redeem(&first, 43).await.unwrap();
        assert!(matches!(
            refresh.rotate(&replay, NO_ACCESS, 43).await,
            Err(RefreshError::Reused)
        ));
        assert!(matches!(
            refresh.redeem(&third, 44).await,
            Err(RefreshError::Invalid)
        ));
    }

    #[tokio::test]
    async fn each_use_gives_a_successor_and_uses_the_token_up() {
        let (refresh, _dir) = tokens().await;
        let first = start(&refresh, &["tasks:read".into()], 10).await;
        assert_eq!(first.len(), 43);
        let redeemed = refresh.redeem(&first, 20).await.unwrap();
        assert_eq!(redeemed.username, "alice");
        assert_eq!(redeemed.scopes, vec!["tasks:read"]);
        let second = refresh.rotate(&redeemed, NO_ACCESS, 20).await.unwrap();
        assert_ne!(first, second);
        // The successor lives for the whole lifetime again...
        assert!(refresh.redeem(&second, 115).await.is_ok());
        assert!(matches!(
            refresh.redeem(&second, 120).await,
            Err(RefreshError::Invalid)
        ));
        // ...but never past the family's, counted from the login.
        let redeemed = refresh.redeem(&second, 100).await.unwrap();
        let third = refresh.rotate(&redeemed, NO_ACCESS, 100).await.unwrap();
        assert!(refresh.redeem(&third, 159).await.is_ok());
        assert!(matches!(
            refresh.redeem(&third, 160).await,
            Err(RefreshError::Invalid)
        ));
    }

    #[tokio::test]
    async fn reuse_revokes_the_family() {
        let (refresh, _dir) = tokens().await;
        let first = start(&refresh, &[], 10).await;
        let redeemed = refresh.redeem(&first, 20).await.unwrap();
        let second = refresh.rotate(&redeemed, NO_ACCESS, 20).await.unwrap();
        assert!(matches!(
            refresh.redeem(&first, 30).await,
            Err(RefreshError::Reused)
        ));
        assert!(matches!(
            refresh.redeem(&second, 30).await,
            Err(RefreshError::Invalid)
        ));
    }

    #[tokio::test]
    async fn a_lost_race_is_a_reuse() {
        let (refresh, _dir) = tokens().await;
        let first = start(&refresh, &[], 10).await;
        let a = refresh.redeem(&first, 20).await.unwrap();
        let b = refresh.redeem(&first, 20).await.unwrap();
        let winner = refresh.rotate(&a, NO_ACCESS, 20).await.unwrap();
        assert!(matches!(
            refresh.rotate(&b, NO_ACCESS, 20).await,
            Err(RefreshError::Reused)
        ));
        assert!(matches!(
            refresh.redeem(&winner, 21).await,
            Err(RefreshError::Invalid)
        ));
    }

    #[tokio::test]
    async fn revoking_any_token_revokes_the_family() {
        let (refresh, _dir) = tokens().await;
        let first = start(&refresh, &[], 10).await;
        let redeemed = refresh.redeem(&first, 20).await.unwrap();
        let second = refresh.rotate(&redeemed, NO_ACCESS, 20).await.unwrap();
        assert!(refresh.revoke(&first, 30).await.unwrap());
        assert!(!refresh.revoke("not-a-token", 30).await.unwrap());
        assert!(matches!(
            refresh.redeem(&second, 31).await,
            Err(RefreshError::Invalid)
        ));
    }

    #[tokio::test]
    async fn a_password_change_revokes_refresh_tokens() {
        let (refresh, _dir) = tokens().await;
        let first = start(&refresh, &[], 10).await;
        let second = start(&refresh, &[], 10).await;
        let redeemed = refresh.redeem(&second, 11).await.unwrap();
        refresh
            .db
            .set_password("alice", "h2")
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            refresh.redeem(&first, 20).await,
            Err(RefreshError::Invalid)
        ));
        // A use decided before the change finds its token revoked: no
        // successor, and no reuse either.
        assert!(matches!(
            refresh.rotate(&redeemed, NO_ACCESS, 20).await,
            Err(RefreshError::Invalid)
        ));
    }

    #[test]
    fn only_the_digest_is_stored() {
        let (token, hash) = generate().unwrap();
        assert_eq!(hash, digest(&token));
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&token));
    }
}
