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
//!
//! The ring always has a key that signs: a retirement that would leave none,
//! at any time from now on, is refused, and retiring a key that is still
//! pending undoes its rotation (the key that was to hand over to it keeps
//! signing). A ring found without one all the same (a database edited by
//! hand) is an error the server reports, keeping the keys it has.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::policy::{KeyAlgorithm, PolicyHandle, SigningKey};
use crate::storage::{Database, KeyChange, StorageError, StoredKey};

/// A key id derived from the key: stable across restarts and replicas that
/// share the secret, and reveals nothing about it.
pub fn key_id(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"taskflow key id\0")
        .chain_update(secret)
        .finalize();
    hex::encode(&digest[..8])
}

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
    #[error(
        "no stored signing key signs or is due to: every one is retired; run `taskflow keys rotate`"
    )]
    NoSigner,
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
/// first, then every other key still verifying, newest first; `None` if no
/// key can sign. The signing key is the latest activated one not retired,
/// or, if none is active (the signing key was retired before its successor
/// activated), the newest pending one not retired, which then signs early.
/// Pending keys verify already, so a replica whose clock runs ahead does
/// not produce tokens the others refuse.
fn arrange(keys: &[StoredKey], now: i64, retention: i64) -> Option<Vec<usize>> {
    let not_retired = |k: &StoredKey| k.retired_at.is_none_or(|r| r > now);
    let newest = |&i: &usize| (keys[i].activates_at, keys[i].created_at);
    let active = (0..keys.len())
        .filter(|&i| keys[i].activates_at <= now && not_retired(&keys[i]))
        .max_by_key(newest);
    let signer = active.or_else(|| {
        (0..keys.len())
            .filter(|&i| not_retired(&keys[i]))
            .max_by_key(newest)
    })?;
    let others = verifying(keys, now, retention)
        .into_iter()
        .filter(|&i| i != signer);
    Some(std::iter::once(signer).chain(others).collect())
}

/// The keys that verify at `now`, newest first.
fn verifying(keys: &[StoredKey], now: i64, retention: i64) -> Vec<usize> {
    let mut verifying: Vec<usize> = (0..keys.len())
        .filter(|&i| keys[i].retired_at.is_none_or(|r| r + retention > now))
        .collect();
    verifying.sort_by_key(|&i| std::cmp::Reverse((keys[i].activates_at, keys[i].created_at)));
    verifying
}

/// What retiring `kid` at `now` writes. A pending key is retired at once,
/// and a key whose retirement was set for its activation (the hand-over
/// its rotation planned) is retired when the pending key would have been
/// instead: never, unless a later rotation planned it. Refused if no key
/// would be left that is not retired (so none would sign, at some moment
/// from now on), or if there is no such key not retired already.
fn plan_retirement(
    stored: &[StoredKey],
    kid: &str,
    now: i64,
) -> Result<(KeyChange, Retired), KeyError> {
    let key = stored
        .iter()
        .find(|k| k.kid == kid && k.retired_at.is_none_or(|r| r > now))
        .ok_or_else(|| KeyError::NoSuchKey(kid.to_owned()))?;
    let mut change = KeyChange::default();
    change.retire.push((kid.to_owned(), Some(now)));
    let pending = key.activates_at > now;
    if pending {
        for other in stored {
            if other.kid != kid && other.retired_at == Some(key.activates_at) {
                change.retire.push((other.kid.clone(), key.retired_at));
            }
        }
    }
    let retired_at = |k: &StoredKey| {
        change
            .retire
            .iter()
            .find(|(kid, _)| *kid == k.kid)
            .map_or(k.retired_at, |(_, at)| *at)
    };
    if !stored.iter().any(|k| retired_at(k).is_none()) {
        return Err(KeyError::LastSigner(kid.to_owned()));
    }
    let retired = if pending {
        Retired::Pending
    } else {
        Retired::Signing
    };
    Ok((change, retired))
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What [`follow`] keeps in step with the database: the policy's keys.
pub trait KeyHolder: Send + Sync + 'static {
    /// The key ids held, the signing one first.
    fn key_ids(&self) -> Vec<String>;
    /// Replaces the keys, the signing one first (never empty).
    fn set_keys(&self, keys: Vec<SigningKey>);
}

impl KeyHolder for PolicyHandle {
    fn key_ids(&self) -> Vec<String> {
        self.signing_key_ids()
    }

    fn set_keys(&self, keys: Vec<SigningKey>) {
        self.set_signing_keys(keys);
    }
}

/// Keeps the policy's keys in step with the database: a rotation made by
/// any replica's CLI, and a pending key's activation, take effect within
/// `every`. A read that fails (or finds no key to sign with) is logged and
/// keeps the keys the policy has; the next tick tries again. The task is
/// watched: should it ever panic, that is logged and it starts again.
/// When the signing key changes to one whose algorithm is not `wanted`,
/// that is logged as at start.
pub fn follow<H: KeyHolder>(ring: KeyRing, holder: H, every: Duration, wanted: KeyAlgorithm) {
    let ring = std::sync::Arc::new(ring);
    let holder = std::sync::Arc::new(holder);
    tokio::spawn(async move {
        loop {
            let task = tokio::spawn(follow_keys(
                std::sync::Arc::clone(&ring),
                std::sync::Arc::clone(&holder),
                every,
                wanted,
            ));
            match task.await {
                Err(e) if e.is_panic() => {
                    let reason = e.into_panic();
                    let reason = reason
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| reason.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(
                        %reason,
                        "the signing-key follower panicked; keeping the current keys and starting it again"
                    );
                    tokio::time::sleep(every).await;
                }
                // Cancelled (the runtime is shutting down), or returned,
                // which it never does.
                _ => return,
            }
        }
    });
}

async fn follow_keys<H: KeyHolder>(
    ring: std::sync::Arc<KeyRing>,
    holder: std::sync::Arc<H>,
    every: Duration,
    wanted: KeyAlgorithm,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let keys = match ring.current(unix_now()).await {
            Ok(keys) => keys,
            Err(e) => {
                report_failure(&e, &mut failing);
                continue;
            }
        };
        // Never handed on empty: the policy signs with the first key.
        let Some(signing) = keys.first() else {
            report_failure(&KeyError::NoSigner, &mut failing);
            continue;
        };
        if std::mem::take(&mut failing) {
            tracing::info!("the signing keys are readable again");
        }
        let kids: Vec<String> = keys.iter().map(|k| k.kid.clone()).collect();
        let held = holder.key_ids();
        if kids == held {
            continue;
        }
        tracing::info!(signing = %signing.kid, keys = kids.len(), "signing keys changed");
        if held.first() != Some(&signing.kid) {
            warn_unless_wanted(signing, wanted);
        }
        holder.set_keys(keys);
    }
}

/// Logs a failed read of the keys: as a warning the first time in a row,
/// then quietly, until a read succeeds.
fn report_failure(e: &KeyError, failing: &mut bool) {
    if *failing {
        tracing::debug!(error = %e, "cannot read the signing keys still; keeping the current ones");
    } else {
        tracing::warn!(error = %e, "cannot read the signing keys; keeping the current ones");
    }
    *failing = true;
}

/// Says so when the signing key's algorithm is not `--signing-algorithm`.
pub fn warn_unless_wanted(signing: &SigningKey, wanted: KeyAlgorithm) {
    if signing.algorithm != wanted {
        tracing::warn!(
            kid = %signing.kid,
            signing = %signing.algorithm,
            wanted = %wanted,
            "the signing key's algorithm is not --signing-algorithm; run `taskflow keys rotate` to add a key of that algorithm"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_stable_and_distinct() {
        assert_eq!(key_id(b"a"), key_id(b"a"));
        assert_ne!(key_id(b"a"), key_id(b"b"));
        assert_eq!(key_id(b"a").len(), 16);
    }

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
            .unwrap_or_default()
            .into_iter()
            .map(|i| keys[i].kid.as_str())
            .collect()
    }

    /// `keys` after `change`.
    fn apply(keys: &[StoredKey], change: &KeyChange) -> Vec<StoredKey> {
        keys.iter()
            .map(|k| {
                let mut k = k.clone();
                if let Some((_, at)) = change.retire.iter().find(|(kid, _)| *kid == k.kid) {
                    k.retired_at = *at;
                }
                k
            })
            .chain(change.insert.iter().cloned())
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

    #[test]
    fn retiring_a_pending_key_undoes_its_rotation() {
        // `old` signs and hands over to `new` at 50; `new` is retired at 10.
        let keys = [row("old", 0, Some(50)), row("new", 50, None)];
        let (change, retired) = plan_retirement(&keys, "new", 10).unwrap();
        assert_eq!(retired, Retired::Pending);
        let after = apply(&keys, &change);
        for now in [10, 49, 50, 51, 1_000, 1_000_000] {
            assert_eq!(kids(&after, now)[0], "old", "at {now}");
        }
        assert_eq!(
            kids(&after, 10),
            ["old", "new"],
            "new still verifies a while"
        );
        assert_eq!(kids(&after, 1_000), ["old"]);
    }

    #[test]
    fn retiring_a_pending_key_of_two_rotations_keeps_the_chain() {
        // Two rotations: `a` hands over to `b` at 50, `b` to `c` at 80.
        let keys = [
            row("a", 0, Some(50)),
            row("b", 50, Some(80)),
            row("c", 80, None),
        ];
        let (change, _) = plan_retirement(&keys, "b", 10).unwrap();
        let after = apply(&keys, &change);
        assert_eq!(kids(&after, 60)[0], "a", "a signs on in b's place");
        assert_eq!(kids(&after, 80)[0], "c");
        assert_eq!(kids(&after, 500), ["c"]);
    }

    #[test]
    fn no_retirement_leaves_the_ring_without_a_signer() {
        let keys = [row("old", 0, Some(50)), row("new", 50, None)];
        // Retiring both, one after the other: the second is refused.
        let (change, _) = plan_retirement(&keys, "new", 10).unwrap();
        let after = apply(&keys, &change);
        assert!(matches!(
            plan_retirement(&after, "old", 11),
            Err(KeyError::LastSigner(_))
        ));
        // The signing key may go while another key is due: that one signs early.
        let (change, retired) = plan_retirement(&keys, "old", 10).unwrap();
        assert_eq!(retired, Retired::Signing);
        let after = apply(&keys, &change);
        assert_eq!(kids(&after, 10), ["new", "old"]);
        assert!(matches!(
            plan_retirement(&after, "new", 11),
            Err(KeyError::LastSigner(_))
        ));
        // Unknown, or retired already.
        assert!(matches!(
            plan_retirement(&keys, "nope", 10),
            Err(KeyError::NoSuchKey(_))
        ));
        assert!(matches!(
            plan_retirement(&after, "old", 11),
            Err(KeyError::NoSuchKey(_))
        ));
    }

    #[test]
    fn a_ring_with_every_key_retired_has_no_signer() {
        let keys = [row("a", 0, Some(50)), row("b", 20, Some(10))];
        assert_eq!(arrange(&keys, 60, 100), None);
        // Never a retired key first, even while it verifies.
        assert_eq!(arrange(&keys, 5, 100).map(|o| o[0]), Some(0));
    }

    fn timings() -> KeyTimings {
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

    /// Holds keys like the policy; panics on its first change, to show the
    /// follower survives a panic.
    #[derive(Default)]
    struct Holder {
        keys: std::sync::Mutex<Vec<String>>,
        panicked: std::sync::atomic::AtomicBool,
    }

    impl KeyHolder for std::sync::Arc<Holder> {
        fn key_ids(&self) -> Vec<String> {
            self.keys.lock().unwrap().clone()
        }

        fn set_keys(&self, keys: Vec<SigningKey>) {
            if !self
                .panicked
                .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                panic!("a holder that fails once");
            }
            assert!(!keys.is_empty());
            *self.keys.lock().unwrap() = keys.into_iter().map(|k| k.kid).collect();
        }
    }

    #[tokio::test]
    async fn the_follower_survives_a_panic_and_an_unreadable_ring() {
        let (db, _dir) = crate::storage::test_database().await;
        let master = b"a master secret of 32 bytes or more".to_vec();
        let ring = KeyRing::new(db.clone(), master.clone(), timings());
        let holder = std::sync::Arc::new(Holder::default());
        follow(
            ring,
            std::sync::Arc::clone(&holder),
            Duration::from_millis(20),
            KeyAlgorithm::Hs256,
        );
        let wait_for = async |what: &str, check: &dyn Fn(&[String]) -> bool| {
            for _ in 0..250 {
                if check(&holder.key_ids()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("{what}: {:?}", holder.key_ids());
        };
        wait_for("the keys after a panic", &|ids| ids == [key_id(&master)]).await;

        // A row no secret unseals: reported, and the held keys stay.
        db.change_signing_keys(|_| {
            Ok::<_, KeyError>(KeyChange {
                insert: vec![StoredKey {
                    kid: "broken".into(),
                    algorithm: "HS256".into(),
                    sealed: "AAAA".into(),
                    created_at: 0,
                    activates_at: 0,
                    retired_at: None,
                }],
                retire: Vec::new(),
            })
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(holder.key_ids(), [key_id(&master)]);

        // Mended: followed again.
        let ring = KeyRing::new(db.clone(), master.clone(), timings());
        db.change_signing_keys(|_| {
            Ok::<_, KeyError>(KeyChange {
                insert: Vec::new(),
                retire: vec![("broken".into(), Some(0))],
            })
        })
        .await
        .unwrap();
        db.prune_signing_keys(unix_now()).await.unwrap();
        let added = ring
            .rotate(unix_now() - 10, KeyAlgorithm::Hs256)
            .await
            .unwrap();
        wait_for("the rotated key", &|ids| ids.first() == Some(&added.kid)).await;
    }
}
