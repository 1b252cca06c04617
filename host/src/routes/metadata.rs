//! `GET /.well-known/oauth-authorization-server`: the server's metadata
//! (RFC 8414), so that resource servers and client libraries find the
//! token, revocation and introspection endpoints and the key set by
//! themselves.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth;

/// How long clients may cache the document: it changes only with the
/// server's settings, which a restart changes.
const MAX_AGE: &str = "public, max-age=3600";

/// The metadata (RFC 8414 §2). Built once at start from the settings.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServerMetadata {
    /// The `iss` of every access token.
    pub issuer: String,
    pub token_endpoint: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub jwks_uri: String,
    /// `password` and `refresh_token`.
    pub grant_types_supported: Vec<&'static str>,
    pub scopes_supported: Vec<&'static str>,
    /// Empty: there is no authorization endpoint.
    pub response_types_supported: Vec<&'static str>,
    /// `none`: there are no registered clients.
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `none`: a token is its own credential (RFC 7009).
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
}

impl ServerMetadata {
    /// The metadata of a server whose tokens carry `issuer` and which is
    /// reached at `public_url` (absolute, without a trailing slash).
    pub fn new(issuer: &str, public_url: &str) -> Self {
        let at = |path: &str| format!("{public_url}{path}");
        Self {
            issuer: issuer.to_owned(),
            token_endpoint: at("/token"),
            revocation_endpoint: at("/revoke"),
            introspection_endpoint: at("/introspect"),
            jwks_uri: at("/.well-known/jwks.json"),
            grant_types_supported: vec!["password", "refresh_token"],
            scopes_supported: auth::SCOPES.iter().map(|(scope, _)| *scope).collect(),
            response_types_supported: Vec::new(),
            token_endpoint_auth_methods_supported: vec!["none"],
            revocation_endpoint_auth_methods_supported: vec!["none"],
        }
    }
}

/// Where the token, revocation and introspection endpoints and the key set
/// are, and what they support (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "auth",
    responses(
        (status = 200, body = ServerMetadata, headers(("cache-control" = String, description = "public, max-age=3600"))),
    ))]
pub async fn metadata(State(state): State<AppState>) -> Response {
    let headers = [(header::CACHE_CONTROL, HeaderValue::from_static(MAX_AGE))];
    (headers, Json(state.metadata.as_ref().clone())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_under_the_public_url() {
        let metadata = ServerMetadata::new("https://auth.example", "https://api.example/tf");
        assert_eq!(metadata.token_endpoint, "https://api.example/tf/token");
        assert_eq!(
            metadata.jwks_uri,
            "https://api.example/tf/.well-known/jwks.json"
        );
        assert!(metadata.scopes_supported.contains(&"tokens:introspect"));
        assert!(!metadata.grant_types_supported.contains(&"none"));
    }
}
