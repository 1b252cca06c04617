//! `POST /introspect`: token introspection (RFC 7662) for other services,
//! authorized by a Bearer token with `tokens:introspect` (§2.1).
//!
//! Whether an access token is active is the policy's decision, by the same
//! checks as a Bearer decision; a refresh token is the host's (it stores
//! them). Anything not active answers exactly `{"active":false}`: never why.

use std::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::token::{no_store, oauth, read_form};
use crate::app::AppState;
use crate::auth::{Authorized, IntrospectTokens};
use crate::clock::unix_now;
use crate::error::{ApiError, ErrorBody};
use crate::metrics::ComponentCall;
use crate::policy::TokenClaims;
use crate::refresh::ActiveRefreshToken;

/// The form `POST /introspect` takes (RFC 7662 §2.1).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IntrospectForm {
    /// The access token or refresh token to ask about.
    token: String,
    /// `access_token` or `refresh_token`; a hint only.
    token_type_hint: Option<String>,
}

/// RFC 7662 §2.2. Inactive: `{"active":false}` and nothing else.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    /// `access_token` or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// The username, as `sub` and `username` alike.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Space separated: an access token's scopes its user still holds; a
    /// refresh token's grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl Introspection {
    fn inactive() -> Self {
        Self {
            active: false,
            token_type: None,
            sub: None,
            username: None,
            scope: None,
            exp: None,
            iat: None,
            nbf: None,
            iss: None,
            aud: None,
            jti: None,
        }
    }

    fn access(claims: TokenClaims) -> Self {
        Self {
            active: true,
            token_type: Some("access_token"),
            sub: Some(claims.subject.clone()),
            username: Some(claims.subject),
            scope: Some(claims.scopes.join(" ")),
            exp: Some(claims.expires_at),
            iat: Some(claims.issued_at),
            nbf: claims.not_before,
            iss: Some(claims.issuer),
            aud: Some(claims.audience),
            jti: Some(claims.token_id),
        }
    }

    fn refresh(token: ActiveRefreshToken) -> Self {
        Self {
            active: true,
            token_type: Some("refresh_token"),
            sub: Some(token.username.clone()),
            username: Some(token.username),
            scope: Some(token.scopes.join(" ")),
            exp: Some(token.expires_at),
            ..Self::inactive()
        }
    }
}

/// Whether a token is active and, if it is, what it grants (RFC 7662).
#[utoipa::path(post, path = "/introspect", tag = "auth",
    security(("oauth2" = ["tokens:introspect"])),
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = Introspection, description = "the token's state; exactly {\"active\":false} for any token not active",
            headers(("cache-control" = String, description = "no-store"))),
        (status = 400, description = "invalid_request: no `token`, a repeated parameter, or the wrong content type", body = ErrorBody),
        (status = 401, description = "no token, or an invalid one, to authorize the request", body = ErrorBody),
        (status = 403, description = "the token lacks `tokens:introspect`", body = ErrorBody),
        (status = 413, description = "the body exceeds 8 KiB", body = ErrorBody),
        (status = 503, description = "the auth component or storage failed", body = ErrorBody),
    ))]
pub async fn introspect(
    State(state): State<AppState>,
    _: Authorized<IntrospectTokens>,
    request: Request,
) -> Result<Response, ApiError> {
    let mut params = read_form(request, &["token", "token_type_hint"]).await?;
    let token = params
        .remove("token")
        .ok_or_else(|| oauth("invalid_request", "missing parameter `token`"))?;
    // The hint is only a hint (§2.1): the token's shape says what it is.
    let answer = if token.contains('.') {
        let started = Instant::now();
        let claims = state.policy.introspect(&token).await;
        state
            .metrics
            .record_call(ComponentCall::Introspect, started.elapsed());
        claims?.map_or_else(Introspection::inactive, Introspection::access)
    } else {
        let active = match &state.refresh {
            Some(refresh) => refresh.introspect(&token, unix_now()).await?,
            None => None,
        };
        active.map_or_else(Introspection::inactive, Introspection::refresh)
    };
    Ok((no_store(), Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inactive_answer_says_nothing_else() {
        assert_eq!(
            serde_json::to_string(&Introspection::inactive()).unwrap(),
            r#"{"active":false}"#
        );
    }
}
