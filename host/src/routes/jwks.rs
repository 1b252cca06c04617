//! `GET /.well-known/jwks.json`: the public keys of the asymmetric signing
//! keys (RFC 7517 §5), so that other services can verify TaskFlow's tokens
//! without a shared secret. HS256 keys are secrets and never appear.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::keys;

/// How long verifiers may cache the set. Keys are published from the
/// moment they are added, `--key-activation-delay` before they sign; a
/// delay longer than this lets every verifier know a key before it meets it.
const MAX_AGE: &str = "public, max-age=60";

/// A JSON Web Key Set (RFC 7517 §5).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct KeySet {
    /// One OKP/Ed25519 key (RFC 8037) per EdDSA signing key that still
    /// signs or verifies, pending ones included; empty when only HS256 keys exist.
    keys: Vec<serde_json::Value>,
}

/// The public keys that verify TaskFlow's EdDSA access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses(
        (status = 200, body = KeySet, headers(("cache-control" = String, description = "public, max-age=60"))),
    ))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let set = keys::jwks(&state.policy.signing_keys());
    let headers = [(header::CACHE_CONTROL, HeaderValue::from_static(MAX_AGE))];
    (headers, Json(set)).into_response()
}
