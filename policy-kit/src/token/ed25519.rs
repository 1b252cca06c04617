//! Ed25519 (RFC 8032) for the crypto provider: the public key of a seed,
//! signing and strict verification.
//!
//! In a component the host computes them, through the `primitives` import:
//! natively, with the same strict verification. Curve arithmetic compiled
//! to WebAssembly has no 64-bit multiply and was about four times slower
//! (docs/benchmarks.md), and its tables were a third of the component.
//! Natively (this crate's tests, the fuzz targets) `ed25519-dalek` does.

use super::ED25519_SEED_BYTES;

/// An Ed25519 public key: 32 bytes (RFC 8032 §5.1.5).
pub(super) type PublicKey = [u8; 32];

#[cfg(target_arch = "wasm32")]
use crate::bindings::taskflow::auth::primitives;

/// The public key of the private key `seed`.
#[cfg(target_arch = "wasm32")]
pub(super) fn public_key(seed: &[u8; ED25519_SEED_BYTES]) -> Option<PublicKey> {
    primitives::ed25519_public_key(seed).ok()?.try_into().ok()
}

/// The 64-byte signature of `message` by `seed`.
#[cfg(target_arch = "wasm32")]
pub(super) fn sign(seed: &[u8; ED25519_SEED_BYTES], message: &[u8]) -> Option<Vec<u8>> {
    primitives::ed25519_sign(seed, message).ok()
}

/// Whether `signature` is `public`'s over `message`. Strict: no malleable
/// signatures, no small-order keys.
#[cfg(target_arch = "wasm32")]
pub(super) fn verify(public: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    primitives::ed25519_verify(public, message, signature)
}

#[cfg(not(target_arch = "wasm32"))]
pub(super) fn public_key(seed: &[u8; ED25519_SEED_BYTES]) -> Option<PublicKey> {
    Some(
        ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes(),
    )
}

#[cfg(not(target_arch = "wasm32"))]
pub(super) fn sign(seed: &[u8; ED25519_SEED_BYTES], message: &[u8]) -> Option<Vec<u8>> {
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    Some(key.sign(message).to_bytes().to_vec())
}

#[cfg(not(target_arch = "wasm32"))]
pub(super) fn verify(public: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    let (Ok(public), Ok(signature)) = (
        ed25519_dalek::VerifyingKey::from_bytes(public),
        ed25519_dalek::Signature::from_slice(signature),
    ) else {
        return false;
    };
    public.verify_strict(message, &signature).is_ok()
}
