//! Keys as the database holds them: each sealed (XChaCha20-Poly1305) under
//! a key derived from the signing secret, bound to its kid and algorithm.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{KeyError, KeyRing};
use crate::policy::{KeyAlgorithm, SigningKey};
use crate::storage::StoredKey;

impl KeyRing {
    fn cipher(&self) -> XChaCha20Poly1305 {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.master)
            .expect("HMAC takes keys of any length");
        mac.update(b"taskflow signing-key seal v1");
        let kek: [u8; 32] = mac.finalize().into_bytes().into();
        XChaCha20Poly1305::new(&kek.into())
    }

    pub(super) fn seal_row(
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

    pub(super) fn unseal(&self, key: &StoredKey) -> Result<SigningKey, KeyError> {
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
