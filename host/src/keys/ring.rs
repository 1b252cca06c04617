//! The ring of one deployment: the keys the policy gets now, what
//! `keys list` shows, rotation and retirement.

use std::time::Duration;

use super::jwks::ed25519_public;
use super::schedule::{arrange, plan_retirement, verifying};
use super::{KeyError, key_id};
use crate::policy::{KeyAlgorithm, SigningKey};
use crate::storage::{Database, KeyChange};

/// Bytes of a generated signing key (the HMAC-SHA256 output size).
const KEY_BYTES: usize = 32;

/// How fast keys change hands.
#[derive(Debug, Clone, Copy)]
pub struct KeyTimings {
    /// From `keys rotate` until the new key signs.
    pub activation_delay: Duration,
    /// How long a retired key keeps verifying: the longest a token lives
    /// plus the clock-skew leeway.
    pub retention: Duration,
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Verifies; signs from its activation on.
    Pending,
    /// Signs new tokens (and verifies).
    Signing,
    /// Signs no more; verifies until `verifies_until`.
    Retired,
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyState::Pending => "pending",
            KeyState::Signing => "signing",
            KeyState::Retired => "retired",
        })
    }
}

/// What a retirement stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// A key that signed (or verified only, already handed over).
    Signing,
    /// A pending key, which now never signs; the key it was to take over
    /// from keeps signing as it would have without that rotation.
    Pending,
}

/// A key as `taskflow keys list` shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    pub state: KeyState,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    /// When it stops verifying, if it is retired.
    pub verifies_until: Option<i64>,
}

/// The signing keys of one deployment.
pub struct KeyRing {
    db: Database,
    /// The signing secret.
    pub(super) master: Vec<u8>,
    timings: KeyTimings,
}

impl KeyRing {
    /// `master` is the signing secret: the only key until the first
    /// rotation, and what unseals the stored keys after it.
    pub fn new(db: Database, master: Vec<u8>, timings: KeyTimings) -> Self {
        Self {
            db,
            master,
            timings,
        }
    }

    /// The keys to hand the policy at `now`: the signing key first, then
    /// every other key that still verifies.
    pub async fn current(&self, now: i64) -> Result<Vec<SigningKey>, KeyError> {
        let stored = self.db.signing_keys().await?;
        if stored.is_empty() {
            return Ok(vec![self.secret_key()]);
        }
        let order = arrange(&stored, now, self.retention()).ok_or(KeyError::NoSigner)?;
        order.into_iter().map(|i| self.unseal(&stored[i])).collect()
    }

    /// Every key that still verifies, oldest first.
    pub async fn status(&self, now: i64) -> Result<Vec<KeyStatus>, KeyError> {
        let mut stored = self.db.signing_keys().await?;
        if stored.is_empty() {
            stored.push(self.seal_row(&self.secret_key(), now, 0)?);
        }
        let order = arrange(&stored, now, self.retention());
        let signer = order.as_ref().and_then(|order| order.first().copied());
        // A ring without a signer (edited by hand) still lists what verifies.
        let order = order.unwrap_or_else(|| verifying(&stored, now, self.retention()));
        let mut status: Vec<KeyStatus> = order
            .iter()
            .map(|&i| {
                let key = &stored[i];
                // Every stored key must unseal: a wrong secret shows here.
                let algorithm = self.unseal(key)?.algorithm;
                let state = if Some(i) == signer {
                    KeyState::Signing
                } else if key.activates_at > now && key.retired_at.is_none_or(|r| r > now) {
                    KeyState::Pending
                } else {
                    KeyState::Retired
                };
                Ok(KeyStatus {
                    kid: key.kid.clone(),
                    algorithm,
                    state,
                    created_at: key.created_at,
                    activates_at: key.activates_at,
                    retired_at: key.retired_at,
                    verifies_until: key.retired_at.map(|r| r + self.retention()),
                })
            })
            .collect::<Result<_, KeyError>>()?;
        status.sort_by_key(|k| (k.activates_at, k.created_at));
        Ok(status)
    }

    /// Adds a new key of `algorithm` that signs from `now` plus the
    /// activation delay, and retires every other key at that moment (the
    /// signing one, and any still pending from an earlier rotation).
    pub async fn rotate(&self, now: i64, algorithm: KeyAlgorithm) -> Result<KeyStatus, KeyError> {
        let mut secret = vec![0u8; KEY_BYTES];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        let kid = match algorithm {
            KeyAlgorithm::Hs256 => key_id(&secret),
            // Named by its public half, which is published.
            KeyAlgorithm::EdDsa => key_id(&ed25519_public(&secret).unwrap_or_default()),
        };
        let key = SigningKey {
            kid,
            algorithm,
            secret,
        };
        let activates_at = now + self.timings.activation_delay.as_secs() as i64;
        let row = self.seal_row(&key, now, activates_at)?;
        self.db
            .change_signing_keys(|stored| {
                // A key this secret cannot unseal is a wrong secret: adding a
                // key to that ring would retire keys for one no replica reads.
                for key in stored {
                    self.unseal(key)?;
                }
                let mut insert = Vec::new();
                if stored.is_empty() {
                    // The signing secret becomes a stored key like any other,
                    // so that it can be retired and forgotten.
                    insert.push(self.seal_row(&self.secret_key(), now, 0)?);
                }
                let retire = insert
                    .iter()
                    .chain(stored)
                    .filter(|k| k.retired_at.is_none_or(|r| r > activates_at))
                    .map(|k| (k.kid.clone(), Some(activates_at)))
                    .collect();
                insert.push(row);
                Ok::<_, KeyError>(KeyChange { insert, retire })
            })
            .await?;
        self.db.prune_signing_keys(now - self.retention()).await?;
        tracing::info!(kid = %key.kid, %algorithm, activates_at, "signing key added");
        Ok(KeyStatus {
            kid: key.kid,
            algorithm,
            state: KeyState::Pending,
            created_at: now,
            activates_at,
            retired_at: None,
            verifies_until: None,
        })
    }

    /// Stops `kid` signing from `now`; it verifies until its tokens expire.
    /// A pending key never signs: its rotation is undone. Refused if no key
    /// would be left to sign.
    pub async fn retire(&self, kid: &str, now: i64) -> Result<Retired, KeyError> {
        let secret_kid = key_id(&self.master);
        let mut outcome = Retired::Signing;
        self.db
            .change_signing_keys(|stored| {
                if stored.is_empty() && kid == secret_kid {
                    return Err(KeyError::LastSigner(kid.to_owned()));
                }
                let (change, retired) = plan_retirement(stored, kid, now)?;
                outcome = retired;
                Ok(change)
            })
            .await?;
        self.db.prune_signing_keys(now - self.retention()).await?;
        tracing::info!(
            kid,
            pending = outcome == Retired::Pending,
            "signing key retired"
        );
        Ok(outcome)
    }

    fn retention(&self) -> i64 {
        self.timings.retention.as_secs() as i64
    }

    fn secret_key(&self) -> SigningKey {
        SigningKey {
            kid: key_id(&self.master),
            algorithm: KeyAlgorithm::Hs256,
            secret: self.master.clone(),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::keys) fn timings() -> KeyTimings {
        KeyTimings {
            activation_delay: Duration::from_secs(5),
            retention: Duration::from_secs(4),
        }
    }

    /// The sequence on a real database: rotate, retire the pending
    /// key, then let every retirement window pass; the ring signs with the
    /// first key throughout, and a later rotation takes over as usual.
    #[tokio::test]
    async fn the_ring_keeps_a_signer_after_a_pending_key_is_retired() {
        let (db, _dir) = crate::storage::test_database().await;
        let ring = KeyRing::new(
            db,
            b"a master secret of 32 bytes or more".to_vec(),
            timings(),
        );
        let first = key_id(b"a master secret of 32 bytes or more");
        let t = 1_000_000;
        let pending = ring.rotate(t, KeyAlgorithm::Hs256).await.unwrap();
        assert_eq!(
            ring.retire(&pending.kid, t + 1).await.unwrap(),
            Retired::Pending
        );
        for now in [t + 1, t + 5, t + 6, t + 100, t + 10_000] {
            let keys = ring.current(now).await.unwrap();
            assert_eq!(keys[0].kid, first, "at {now}");
        }
        let status = ring.status(t + 2).await.unwrap();
        let state = |kid: &str| status.iter().find(|k| k.kid == kid).unwrap().state;
        assert_eq!(state(&first), KeyState::Signing);
        assert_eq!(state(&pending.kid), KeyState::Retired);
        // The last signer cannot go; a new rotation hands over as usual.
        assert!(matches!(
            ring.retire(&first, t + 10_000).await,
            Err(KeyError::LastSigner(_))
        ));
        let next = ring.rotate(t + 10_000, KeyAlgorithm::EdDsa).await.unwrap();
        assert_eq!(ring.current(t + 10_005).await.unwrap()[0].kid, next.kid);
    }

    #[tokio::test]
    async fn a_rotation_with_another_secret_is_refused() {
        let (db, _dir) = crate::storage::test_database().await;
        let ring = KeyRing::new(
            db.clone(),
            b"the right secret, 32 bytes long!".to_vec(),
            timings(),
        );
        ring.rotate(1_000, KeyAlgorithm::Hs256).await.unwrap();
        let wrong = KeyRing::new(db, b"the wrong secret, 32 bytes long!".to_vec(), timings());
        assert!(matches!(
            wrong.rotate(1_001, KeyAlgorithm::Hs256).await,
            Err(KeyError::Unseal(_))
        ));
        assert_eq!(ring.status(1_001).await.unwrap().len(), 2);
    }
}
