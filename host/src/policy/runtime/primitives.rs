//! The optional `primitives` import: argon2id, Ed25519 and HMAC-SHA256 run
//! natively for a policy that imports them (a Python policy has none of
//! them at a usable speed, and in WebAssembly SHA-256 runs without the
//! CPU's SHA extensions). Passwords, seeds and messages are arguments of the
//! one call that needs them; none is kept, logged or put into an error.
//! What is kept is public: Ed25519 public keys, for the next decision
//! ([`Ed25519Keys`]).
//!
//! Argon2id takes ~20 ms of CPU, so it never runs on the task that called
//! it: it goes to tokio's blocking pool, at most one hash per core at once
//! (a policy could call it from a Bearer decision, on a request's task, as
//! well as from a grant on the password threads), and the call awaits it.

use std::sync::Arc;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::imports::StoreState;
use super::worlds::current::taskflow::auth::primitives::Host;

/// Hashes `password` with argon2id and `Argon2::default()`'s parameters
/// (m=19456, t=2, p=1: `policy-kit`'s), off the calling thread, holding
/// `slot` until done.
pub(super) async fn argon2id_hash(
    slot: OwnedSemaphorePermit,
    password: String,
) -> Result<String, String> {
    if password.is_empty() {
        return Err("password must not be empty".into());
    }
    off_the_workers(slot, move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| format!("password hashing failed: {e}"))
    })
    .await
    .unwrap_or_else(Err)
}

/// Whether `password` matches the PHC string `phc`, off the calling thread,
/// holding `slot` until done. A string that does not parse never matches.
pub(super) async fn argon2id_verify(
    slot: OwnedSemaphorePermit,
    password: String,
    phc: String,
) -> bool {
    off_the_workers(slot, move || {
        Argon2::default()
            .verify_password(password.as_bytes(), phc.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// One of `slots`, once free: at most that many hashes compute at once.
/// `Err`: shutting down.
async fn hash_slot(slots: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, String> {
    Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(|_| "shutting down".to_owned())
}

/// Runs `work` on tokio's blocking pool, holding `slot` until it is done.
/// `Err`: the work could not run (shutting down, or it panicked).
async fn off_the_workers<T: Send + 'static>(
    slot: OwnedSemaphorePermit,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .map_err(|_| "password hashing failed".to_owned())
}

/// Longest message `hmac-sha256` and Ed25519 take: a token is at most
/// 4 KiB, and the hashing runs on the calling thread, outside the wasm code
/// the epoch deadline can stop. (A message as large as an instance's 64 MiB
/// would hold a request's thread for tens of milliseconds.)
const MAX_MESSAGE_BYTES: usize = 64 << 10;

fn message_too_long(what: &str, message: &[u8]) -> Option<String> {
    (message.len() > MAX_MESSAGE_BYTES).then(|| {
        format!(
            "a message to {what} is at most {MAX_MESSAGE_BYTES} bytes, not {}",
            message.len()
        )
    })
}

/// HMAC-SHA256 of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
    if key.is_empty() {
        return Err("an HMAC key must not be empty".into());
    }
    if let Some(refused) = message_too_long("HMAC", message) {
        return Err(refused);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().to_vec())
}

fn signing_key(seed: &[u8]) -> Result<SigningKey, String> {
    let seed: &[u8; 32] = seed
        .try_into()
        .map_err(|_| format!("an Ed25519 seed has 32 bytes, not {}", seed.len()))?;
    Ok(SigningKey::from_bytes(seed))
}

fn ed25519_sign(seed: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(refused) = message_too_long("sign", message) {
        return Err(refused);
    }
    Ok(signing_key(seed)?.sign(message).to_bytes().to_vec())
}

/// Ed25519 keys worked out for earlier calls, so that each EdDSA decision
/// does not work them out again: a seed's public key (SHA-512 and a scalar
/// multiplication, ~25 µs here, a third of what verifying costs) and a
/// public key's decompressed point (~7 µs). A decision asks for both, for
/// the same few signing keys, every time.
///
/// A seed is known here only by its SHA-256: the seed itself is not kept.
/// Each map holds at most [`REMEMBERED_KEYS`], so a policy that asks about
/// ever new keys only makes them be worked out again.
pub(in crate::policy) struct Ed25519Keys {
    public_keys: Cache<[u8; 32], [u8; 32]>,
    verifying_keys: Cache<[u8; 32], VerifyingKey>,
}

/// Keys each of [`Ed25519Keys`]' maps holds: a key ring holds a few (the
/// signing key, the next, those retired but still trusted).
const REMEMBERED_KEYS: usize = 64;

impl Ed25519Keys {
    pub(in crate::policy) fn new() -> Self {
        Self {
            public_keys: Cache::new(REMEMBERED_KEYS),
            verifying_keys: Cache::new(REMEMBERED_KEYS),
        }
    }

    /// The public key of the 32-byte private `seed`.
    fn public_key(&self, seed: &[u8]) -> Result<[u8; 32], String> {
        let digest: [u8; 32] = Sha256::digest(seed).into();
        // `SigningKey::from_bytes` works the public key out: only on a miss.
        self.public_keys.get_or_insert_with(&digest, || {
            Ok(signing_key(seed)?.verifying_key().to_bytes())
        })
    }

    /// Whether `signature` is a valid signature of `message` by
    /// `public_key`; strict (RFC 8032, no malleability, no small-order key).
    fn verify(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        if message_too_long("verify", message).is_some() {
            return false;
        }
        let (Ok(public_key), Ok(signature)) = (
            <[u8; 32]>::try_from(public_key),
            Signature::from_slice(signature),
        ) else {
            return false;
        };
        // A point that does not decompress is refused each time, not kept.
        let key = self
            .verifying_keys
            .get_or_insert_with(&public_key, || VerifyingKey::from_bytes(&public_key));
        key.is_ok_and(|key| key.verify_strict(message, &signature).is_ok())
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.public_keys.len(), self.verifying_keys.len())
    }
}

// Waiting for a hash slot is queueing behind other password work, not the
// policy's running: it is kept off the call's deadline, as a storage lookup
// is. The hashing itself, and Ed25519, count as the call's own time.
impl Host for StoreState {
    async fn argon2id_hash(&mut self, password: String) -> Result<String, String> {
        let slots = Arc::clone(&self.env.hash_slots);
        let slot = self.outside_deadline(hash_slot(&slots)).await?;
        self.in_primitive(argon2id_hash(slot, password)).await
    }

    async fn argon2id_verify(&mut self, password: String, phc: String) -> bool {
        let slots = Arc::clone(&self.env.hash_slots);
        let Ok(slot) = self.outside_deadline(hash_slot(&slots)).await else {
            return false;
        };
        self.in_primitive(argon2id_verify(slot, password, phc))
            .await
    }

    async fn ed25519_public_key(&mut self, seed: Vec<u8>) -> Result<Vec<u8>, String> {
        let keys = Arc::clone(&self.env.ed25519_keys);
        self.in_primitive(async { keys.public_key(&seed).map(Vec::from) })
            .await
    }

    async fn ed25519_sign(&mut self, seed: Vec<u8>, message: Vec<u8>) -> Result<Vec<u8>, String> {
        self.in_primitive(async { ed25519_sign(&seed, &message) })
            .await
    }

    async fn ed25519_verify(
        &mut self,
        public_key: Vec<u8>,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> bool {
        let keys = Arc::clone(&self.env.ed25519_keys);
        self.in_primitive(async { keys.verify(&public_key, &message, &signature) })
            .await
    }

    async fn hmac_sha256(&mut self, key: Vec<u8>, message: Vec<u8>) -> Result<Vec<u8>, String> {
        self.in_primitive(async { hmac_sha256(&key, &message) })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// The hashes are `policy-kit`'s: the same parameters, and each verifies
    /// where the other was made.
    #[tokio::test]
    async fn hashes_are_interchangeable_with_policy_kit() {
        let slots = Arc::new(Semaphore::new(1));
        let slot = || hash_slot(&slots);
        let ours = argon2id_hash(slot().await.unwrap(), "correct horse".into())
            .await
            .unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(policy_kit::password::matches("correct horse", &ours));
        let theirs = policy_kit::password::hash("battery staple").unwrap();
        assert!(
            argon2id_verify(
                slot().await.unwrap(),
                "battery staple".into(),
                theirs.clone()
            )
            .await
        );
        assert!(!argon2id_verify(slot().await.unwrap(), "battery stapl".into(), theirs).await);
        assert!(
            !argon2id_verify(slot().await.unwrap(), "x".into(), "not a phc string".into()).await
        );
        assert_eq!(
            argon2id_hash(slot().await.unwrap(), String::new()).await,
            Err("password must not be empty".into())
        );
    }

    /// Hashing awaits the blocking pool instead of holding the thread that
    /// called it: on a one-thread runtime, a task queued after the hashing
    /// one runs before the hash is done. (Hashed inline, the first poll of
    /// the hashing task would finish the hash before the other task ran.)
    #[test]
    fn hashing_leaves_the_calling_thread_free() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let other_ran = Arc::new(AtomicBool::new(false));
        let seen = runtime.block_on(async {
            let slots = Arc::new(Semaphore::new(1));
            let flag = Arc::clone(&other_ran);
            let hashing = tokio::spawn(async move {
                let hash = argon2id_hash(hash_slot(&slots).await.unwrap(), "pw".into())
                    .await
                    .unwrap();
                let verified =
                    argon2id_verify(hash_slot(&slots).await.unwrap(), "pw".into(), hash).await;
                (verified, flag.load(Ordering::SeqCst))
            });
            let flag = Arc::clone(&other_ran);
            tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
            hashing.await.unwrap()
        });
        assert_eq!(seen, (true, true));
    }

    /// A burst of hashes computes at most as many at once as there are
    /// slots, however many calls ask together.
    #[test]
    fn a_burst_of_hashes_holds_to_the_slots() {
        use std::sync::atomic::AtomicUsize;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        runtime.block_on(async {
            let slots = Arc::new(Semaphore::new(2));
            let calls: Vec<_> = (0..16)
                .map(|_| {
                    let (slots, running, peak) = (slots.clone(), running.clone(), peak.clone());
                    tokio::spawn(async move {
                        off_the_workers(hash_slot(&slots).await.unwrap(), move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            // Real work, so that the calls overlap if allowed to.
                            let _ = Argon2::default().hash_password(b"burst");
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                        .unwrap()
                    })
                })
                .collect();
            for call in calls {
                call.await.unwrap();
            }
        });
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=2).contains(&peak), "{peak} hashes at once");
    }

    /// A call that waits for a hash slot (others are hashing) is not charged
    /// for the wait, only for its own hash: the wait is queueing, as a slow
    /// storage lookup is, and must not push a password call past its deadline.
    #[tokio::test]
    async fn waiting_for_a_hash_slot_is_off_the_deadline() {
        use crate::policy::runtime::budget::{CallClock, CallDeadlines, CallKind};
        use crate::policy::runtime::imports::{HostEnv, StoreState};
        use crate::policy::runtime::output::GuestOutput;

        let slots = Arc::new(Semaphore::new(1));
        let env = Arc::new(HostEnv {
            settings: arc_swap::ArcSwap::from_pointee(crate::policy::runtime::convert::settings(
                &crate::policy::PolicySettings {
                    signing_keys: Vec::new(),
                    issuer: "i".into(),
                    audience: "a".into(),
                    token_ttl: std::time::Duration::from_secs(60),
                    leeway: std::time::Duration::ZERO,
                },
            )),
            users: Arc::new(crate::commands::NoUsers),
            output: GuestOutput::new("test".into()),
            hash_slots: Arc::clone(&slots),
            ed25519_keys: Arc::new(Ed25519Keys::new()),
        });
        let mut clock = CallClock::new(Arc::new(Semaphore::new(1)), 1);
        clock.start(CallKind::Password, &CallDeadlines::default());
        let mut store = StoreState::new(env, wasmtime::StoreLimits::default(), clock);
        let held = Arc::clone(&slots).acquire_owned().await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            drop(held);
        });
        let hash = Host::argon2id_hash(&mut store, "pw".into()).await.unwrap();
        release.await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let (waited, hashing) = (store.clock.import_time(), store.clock.primitive_time());
        assert!(
            waited >= std::time::Duration::from_millis(250),
            "{waited:?}"
        );
        assert!(
            hashing > std::time::Duration::ZERO && hashing < waited,
            "{hashing:?}"
        );
    }

    /// The tags are RFC 4231's (test cases 1 and 2), a key shorter or
    /// longer than SHA-256's block included; empty keys and over-long
    /// messages are refused.
    #[test]
    fn hmac_sha256_is_rfc_4231s() {
        let tag = |key: &[u8], message: &[u8]| hex::encode(hmac_sha256(key, message).unwrap());
        assert_eq!(
            tag(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            tag(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            tag(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert!(hmac_sha256(b"", b"message").is_err());
        assert!(hmac_sha256(b"key", &vec![0; MAX_MESSAGE_BYTES]).is_ok());
        let refused = hmac_sha256(b"key", &vec![0; MAX_MESSAGE_BYTES + 1]).unwrap_err();
        assert!(refused.contains("at most 65536 bytes"), "{refused}");
    }

    /// Signatures are RFC 8032 Ed25519: they verify with `ed25519-dalek`
    /// directly, and a changed message, signature or key does not verify.
    #[test]
    fn ed25519_signs_and_verifies_strictly() {
        let keys = Ed25519Keys::new();
        let seed = [7u8; 32];
        let key = signing_key(&seed).unwrap();
        let public = key.verifying_key().to_bytes();
        assert_eq!(keys.public_key(&seed).unwrap(), public);
        let signature = key.sign(b"message").to_bytes();
        assert!(keys.verify(&public, b"message", &signature));
        assert!(!keys.verify(&public, b"messagf", &signature));
        let mut bad = signature;
        bad[0] ^= 1;
        assert!(!keys.verify(&public, b"message", &bad));
        assert!(!keys.verify(&public[..31], b"message", &signature));
        assert!(!keys.verify(&public, b"message", &signature[..63]));
        assert!(signing_key(&seed[..31]).is_err());
        assert!(keys.public_key(&seed[..31]).is_err());
        assert_eq!(ed25519_sign(&seed, b"message").unwrap(), signature);
    }

    /// Messages past the cap are refused before any work: signing fails,
    /// verifying says no, even for a signature made over the same bytes.
    #[test]
    fn ed25519_refuses_messages_past_the_cap() {
        let keys = Ed25519Keys::new();
        let seed = [7u8; 32];
        let key = signing_key(&seed).unwrap();
        let public = key.verifying_key().to_bytes();
        let at_cap = vec![1u8; MAX_MESSAGE_BYTES];
        let signature = ed25519_sign(&seed, &at_cap).unwrap();
        assert!(keys.verify(&public, &at_cap, &signature));
        let past = vec![1u8; MAX_MESSAGE_BYTES + 1];
        let refused = ed25519_sign(&seed, &past).unwrap_err();
        assert!(refused.contains("at most 65536 bytes"), "{refused}");
        let signature = key.sign(&past).to_bytes();
        assert!(!keys.verify(&public, &past, &signature));
    }

    /// Keys worked out once answer the next calls, each for its own seed
    /// or public key only: another seed gets its own public key, a key
    /// remembered does not verify another key's signatures, and a point
    /// that does not decompress is refused each time, not remembered.
    #[test]
    fn ed25519_keys_are_remembered_each_for_its_own() {
        let keys = Ed25519Keys::new();
        let (one, two) = ([7u8; 32], [8u8; 32]);
        let public_one = keys.public_key(&one).unwrap();
        assert_eq!(keys.public_key(&one).unwrap(), public_one);
        let public_two = keys.public_key(&two).unwrap();
        assert_ne!(public_one, public_two);
        assert_eq!(
            public_two,
            signing_key(&two).unwrap().verifying_key().to_bytes()
        );
        assert_eq!(keys.len().0, 2);

        let signed_by_one = ed25519_sign(&one, b"message").unwrap();
        for _ in 0..2 {
            assert!(keys.verify(&public_one, b"message", &signed_by_one));
            assert!(!keys.verify(&public_two, b"message", &signed_by_one));
            assert!(!keys.verify(&public_one, b"other", &signed_by_one));
        }
        assert_eq!(keys.len().1, 2);

        // Not a point on the curve (y = 2 has no x).
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert!(VerifyingKey::from_bytes(&not_a_point).is_err());
        assert!(!keys.verify(&not_a_point, b"message", &signed_by_one));
        assert_eq!(keys.len().1, 2);
    }

    /// A policy asking about ever new keys cannot make the host keep them
    /// all: each map stays within its bound.
    #[test]
    fn remembered_ed25519_keys_stay_bounded() {
        let keys = Ed25519Keys::new();
        for i in 0..(REMEMBERED_KEYS * 4) as u32 {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let public = keys.public_key(&seed).unwrap();
            assert!(!keys.verify(&public, b"message", &[0; 64]));
        }
        let (public, verifying) = keys.len();
        assert!(public <= REMEMBERED_KEYS, "{public}");
        assert!(verifying <= REMEMBERED_KEYS, "{verifying}");
    }
}
