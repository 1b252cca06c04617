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
//!
//! - [`ring`]: the ring itself: the keys the policy gets now, their
//!   states, rotation and retirement;
//! - [`schedule`]: which key signs and which verify at a moment, and what
//!   a retirement writes (no storage, no clock);
//! - [`seal`]: keys sealed under the signing secret for the database;
//! - [`jwks`]: the published public halves of EdDSA keys;
//! - [`follow`]: the task that keeps a running policy's keys in step.

mod follow;
mod jwks;
mod ring;
mod schedule;
mod seal;

use sha2::{Digest, Sha256};

use crate::storage::StorageError;

pub(crate) use follow::{follow, warn_unless_wanted};
pub(crate) use jwks::jwks;
pub(crate) use ring::{KeyRing, KeyTimings, Retired};

/// A key id derived from the key: stable across restarts and replicas that
/// share the secret, and reveals nothing about it.
pub fn key_id(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"taskflow key id\0")
        .chain_update(secret)
        .finalize();
    hex::encode(&digest[..8])
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_stable_and_distinct() {
        assert_eq!(key_id(b"a"), key_id(b"a"));
        assert_ne!(key_id(b"a"), key_id(b"b"));
        assert_eq!(key_id(b"a").len(), 16);
    }
}
