//! `POST /revoke`: token revocation (RFC 7009) for access and refresh tokens.
//!
//! The token is its own credential: whoever holds it may revoke it. A
//! refresh token (opaque: no dots) revokes its whole family. For an access
//! token (a JWT), the policy's introspection decides whether it is active
//! and says its `jti` and `exp`; the host records the revocation, which
//! every later Bearer check (on every replica sharing the database) consults.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::token::{no_store, oauth, read_form};
use crate::app::AppState;
use crate::clock::unix_now;
use crate::error::{ApiError, ErrorBody};

/// The form `POST /revoke` takes (RFC 7009 §2.1).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RevokeForm {
    /// The access token or refresh token to revoke.
    token: String,
    /// `access_token` or `refresh_token`; a hint only.
    token_type_hint: Option<String>,
}

/// Revokes an access token (every later request with it gets 401) or a
/// refresh token (it and every token of its family stop working).
#[utoipa::path(post, path = "/revoke", tag = "auth",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "revoked, or not a valid token (RFC 7009 §2.2: the answer is the same)",
            headers(("cache-control" = String, description = "no-store"))),
        (status = 400, description = "invalid_request: no `token`, a repeated parameter, or the wrong content type", body = ErrorBody),
        (status = 413, description = "the body exceeds 8 KiB", body = ErrorBody),
        (status = 503, description = "the auth component or storage failed", body = ErrorBody),
    ))]
pub async fn revoke(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let mut params = read_form(request, &["token", "token_type_hint"]).await?;
    let token = params
        .remove("token")
        .ok_or_else(|| oauth("invalid_request", "missing parameter `token`"))?;

    // The hint is only a hint (§2.1): the token's shape says what it is.
    if !token.contains('.') {
        if let Some(refresh) = &state.refresh {
            refresh.revoke(&token, unix_now()).await?;
        }
        return Ok((StatusCode::OK, no_store()).into_response());
    }
    // The policy decides whether the token is active and says its `jti`
    // and `exp`; one already unusable (expired, revoked, malformed, not
    // ours) needs nothing done.
    if let Some(claims) = state.policy.introspect(&token).await? {
        let jti = claims.token_id;
        state
            .db
            .revoke_token(&jti, claims.expires_at, unix_now())
            .await?;
        tracing::info!(jti, "access token revoked");
    }
    Ok((StatusCode::OK, no_store()).into_response())
}
