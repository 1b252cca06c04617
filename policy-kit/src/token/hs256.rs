//! HMAC-SHA256 (RFC 2104) for the crypto provider: a token's tag, and its
//! constant-time check.
//!
//! In a component the host computes the tag, through the `primitives`
//! import: SHA-256 compiled to WebAssembly runs without the CPU's SHA
//! extensions, and was most of an HS256 decision's time
//! (docs/benchmarks.md). Natively (this crate's tests, the fuzz targets)
//! `hmac` and `sha2` do. Either way the tag received is compared here, in
//! constant time.

use subtle::ConstantTimeEq;

/// The tag of `message` under `key`. `None`: the key is empty, or the
/// message longer than the host hashes (64 KiB, past any token's 4 KiB).
#[cfg(target_arch = "wasm32")]
pub(super) fn tag(key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    crate::bindings::taskflow::auth::primitives::hmac_sha256(key, message).ok()
}

#[cfg(not(target_arch = "wasm32"))]
pub(super) fn tag(key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    use hmac::{Hmac, Mac};
    if key.is_empty() {
        return None;
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).ok()?;
    mac.update(message);
    Some(mac.finalize().into_bytes().to_vec())
}

/// Whether `received` is the tag of `message` under `key`, compared in
/// constant time.
pub(super) fn verify(key: &[u8], message: &[u8], received: &[u8]) -> bool {
    tag(key, message).is_some_and(|tag| bool::from(tag.as_slice().ct_eq(received)))
}
