//! The JSON Web Key Set: the public halves of EdDSA keys.

use base64::Engine as _;

use crate::policy::{KeyAlgorithm, SigningKey};

/// The Ed25519 public key of a 32-byte seed.
pub(super) fn ed25519_public(seed: &[u8]) -> Option<[u8; 32]> {
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
