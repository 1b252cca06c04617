//! Signing keys: the ring every replica signs and verifies with.
//!
//! Until the first `taskflow keys rotate`, the ring is the signing secret
//! alone. From then on the keys live in the database, shared by every
//! replica, each sealed (XChaCha20-Poly1305, the kid as associated data)
//! under a key derived from the signing secret, which then only unseals them.
//!
//! Keys are HS256 (a shared secret, never published) or EdDSA (an Ed25519
//! seed, whose public half [`jwks`] publishes); each rotation picks one.
//!
//! A rotation adds a key that signs from a short delay on (so every replica
//! knows it before any token carries it) and retires the signing key at that
//! moment. A retired key signs no more but still verifies until every token
//! it signed has expired, and is then forgotten.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::key_id;
use crate::policy::{KeyAlgorithm, PolicyHandle, SigningKey};
use crate::storage::{Database, StorageError, StoredKey};

/// Bytes of a generated signing key (the HMAC-SHA256 output size).
const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "signing key {0} cannot be unsealed: the signing secret is not the one it was sealed with"
    )]
    Unseal(String),
    #[error("there is no signing key {0} that is not retired already")]
    NoSuchKey(String),
    #[error("key {0} is the only key that signs: run `taskflow keys rotate` first")]
    LastSigner(String),
    #[error("no randomness for a new key: {0}")]
    Random(String),
    #[error("signing key {kid} has an algorithm this version does not know: {algorithm}")]
    UnknownAlgorithm { kid: String, algorithm: String },
}

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
    master: Vec<u8>,
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
        let order = arrange(&stored, now, self.retention());
        order.into_iter().map(|i| self.unseal(&stored[i])).collect()
    }

    /// Every key that still verifies, oldest first.
    pub async fn status(&self, now: i64) -> Result<Vec<KeyStatus>, KeyError> {
        let mut stored = self.db.signing_keys().await?;
        if stored.is_empty() {
            stored.push(self.seal_row(&self.secret_key(), now, 0)?);
        }
        let order = arrange(&stored, now, self.retention());
        let signer = order.first().copied();
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
    /// activation delay, and retires the signing key at that moment.
    pub async fn rotate(&self, now: i64, algorithm: KeyAlgorithm) -> Result<KeyStatus, KeyError> {
        let stored = self.db.signing_keys().await?;
        let mut new = Vec::new();
        let signer = if stored.is_empty() {
            // The signing secret becomes a stored key like any other, so
            // that it can be retired and forgotten.
            let row = self.seal_row(&self.secret_key(), now, 0)?;
            let kid = row.kid.clone();
            new.push(row);
            Some(kid)
        } else {
            arrange(&stored, now, self.retention())
                .first()
                .map(|&i| stored[i].kid.clone())
        };
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
        new.push(row);
        let retire: Vec<String> = signer.into_iter().collect();
        self.db.add_signing_key(&new, &retire, activates_at).await?;
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
    pub async fn retire(&self, kid: &str, now: i64) -> Result<(), KeyError> {
        let stored = self.db.signing_keys().await?;
        let others_sign = stored
            .iter()
            .any(|k| k.kid != kid && k.retired_at.is_none_or(|r| r > now));
        if !others_sign {
            return Err(
                if stored.is_empty() || stored.iter().any(|k| k.kid == kid) {
                    KeyError::LastSigner(kid.to_owned())
                } else {
                    KeyError::NoSuchKey(kid.to_owned())
                },
            );
        }
        if !self.db.retire_signing_key(kid, now).await? {
            return Err(KeyError::NoSuchKey(kid.to_owned()));
        }
        self.db.prune_signing_keys(now - self.retention()).await?;
        tracing::info!(kid, "signing key retired");
        Ok(())
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

    fn cipher(&self) -> XChaCha20Poly1305 {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.master)
            .expect("HMAC takes keys of any length");
        mac.update(b"taskflow signing-key seal v1");
        let kek: [u8; 32] = mac.finalize().into_bytes().into();
        XChaCha20Poly1305::new(&kek.into())
    }

    fn seal_row(
        &self,
        key: &SigningKey,
        now: i64,
        activates_at: i64,
    ) -> Result<StoredKey, KeyError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
        let sealed = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &key.secret,
                    aad: &associated_data(&key.kid, key.algorithm),
                },
            )
            .map_err(|_| KeyError::Unseal(key.kid.clone()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(StoredKey {
            kid: key.kid.clone(),
            algorithm: key.algorithm.jose_name().to_owned(),
            sealed: B64.encode(blob),
            created_at: now,
            activates_at,
            retired_at: None,
        })
    }

    fn unseal(&self, key: &StoredKey) -> Result<SigningKey, KeyError> {
        let algorithm = KeyAlgorithm::from_jose_name(&key.algorithm).ok_or_else(|| {
            KeyError::UnknownAlgorithm {
                kid: key.kid.clone(),
                algorithm: key.algorithm.clone(),
            }
        })?;
        let unseal_error = || KeyError::Unseal(key.kid.clone());
        let blob = B64.decode(&key.sealed).map_err(|_| unseal_error())?;
        if blob.len() < 24 {
            return Err(unseal_error());
        }
        let (nonce, sealed) = blob.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| unseal_error())?;
        let secret = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &associated_data(&key.kid, algorithm),
                },
            )
            .map_err(|_| unseal_error())?;
        Ok(SigningKey {
            kid: key.kid.clone(),
            algorithm,
            secret,
        })
    }
}

/// What a sealed key is bound to: its kid, and its algorithm unless HS256
/// (keys sealed before there was a choice are bound to the kid alone). A
/// row whose algorithm was changed in the database does not unseal.
fn associated_data(kid: &str, algorithm: KeyAlgorithm) -> Vec<u8> {
    match algorithm {
        KeyAlgorithm::Hs256 => kid.as_bytes().to_vec(),
        KeyAlgorithm::EdDsa => format!("{kid}\0{algorithm}").into_bytes(),
    }
}

/// The Ed25519 public key of a 32-byte seed.
fn ed25519_public(seed: &[u8]) -> Option<[u8; 32]> {
    let seed: &[u8; 32] = seed.try_into().ok()?;
    Some(
        ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes(),
    )
}

/// The JSON Web Key Set (RFC 7517 §5) of the public halves of `keys`'
/// EdDSA keys (RFC 8037 §2), for other services to verify tokens with.
/// HS256 keys are shared secrets and never appear.
pub fn jwks(keys: &[SigningKey]) -> serde_json::Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .filter(|k| k.algorithm == KeyAlgorithm::EdDsa)
        .filter_map(|k| {
            let public = ed25519_public(&k.secret)?;
            Some(serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(public),
                "kid": k.kid,
                "alg": "EdDSA",
                "use": "sig",
            }))
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

/// Which stored keys the policy gets at `now`, by index: the signing key
/// (the latest activated one not yet retired) first, then every other key
/// still verifying, newest first. Pending keys verify already, so a replica
/// whose clock runs ahead does not produce tokens the others refuse.
fn arrange(keys: &[StoredKey], now: i64, retention: i64) -> Vec<usize> {
    let verifies = |k: &StoredKey| k.retired_at.is_none_or(|r| r + retention > now);
    let signs = |k: &StoredKey| k.activates_at <= now && k.retired_at.is_none_or(|r| r > now);
    let signer = (0..keys.len())
        .filter(|&i| signs(&keys[i]))
        .max_by_key(|&i| (keys[i].activates_at, keys[i].created_at));
    let mut others: Vec<usize> = (0..keys.len())
        .filter(|&i| Some(i) != signer && verifies(&keys[i]))
        .collect();
    others.sort_by_key(|&i| std::cmp::Reverse((keys[i].activates_at, keys[i].created_at)));
    signer.into_iter().chain(others).collect()
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Keeps the policy's keys in step with the database: a rotation made by
/// any replica's CLI, and a pending key's activation, take effect within
/// `every`. A failed read keeps the keys the policy has.
pub fn follow(ring: KeyRing, policy: PolicyHandle, every: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match ring.current(unix_now()).await {
                Ok(keys) => {
                    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
                    if kids != policy.signing_key_ids() {
                        tracing::info!(
                            signing = kids[0],
                            keys = kids.len(),
                            "signing keys changed"
                        );
                        policy.set_signing_keys(keys);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the signing keys; keeping the current ones")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kid: &str, activates_at: i64, retired_at: Option<i64>) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            algorithm: "HS256".into(),
            sealed: String::new(),
            created_at: 0,
            activates_at,
            retired_at,
        }
    }

    fn kids(keys: &[StoredKey], now: i64) -> Vec<&str> {
        arrange(keys, now, 100)
            .into_iter()
            .map(|i| keys[i].kid.as_str())
            .collect()
    }

    #[test]
    fn a_rotation_hands_over_at_activation() {
        // `old` was retired at the moment `new` activates (t = 50).
        let keys = [row("old", 0, Some(50)), row("new", 50, None)];
        assert_eq!(
            kids(&keys, 10),
            ["old", "new"],
            "new verifies before it signs"
        );
        assert_eq!(kids(&keys, 50), ["new", "old"]);
        assert_eq!(
            kids(&keys, 149),
            ["new", "old"],
            "old verifies until its tokens expire"
        );
        assert_eq!(kids(&keys, 150), ["new"]);
    }

    #[test]
    fn the_latest_active_key_signs() {
        let keys = [row("a", 0, None), row("b", 20, None), row("c", 90, None)];
        assert_eq!(kids(&keys, 30), ["b", "c", "a"]);
        assert_eq!(kids(&keys, 95), ["c", "b", "a"]);
    }
}
