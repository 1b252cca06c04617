//! `POST /token`: the OAuth 2.0 password grant (RFC 6749 §4.3).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::form;
use crate::metrics::ComponentCall;
use crate::policy::GrantRefusal;

/// The contract's cap on a token request body.
pub const TOKEN_BODY_LIMIT: usize = 8 * 1024;

/// RFC 6749 §5.1.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// A JWT (RFC 9068); send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u32,
    /// The granted scopes, space separated.
    pub scope: String,
}

/// The form `POST /token` takes (RFC 6749 §4.3.2).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    /// Must be `password`.
    #[schema(pattern = "^password$", example = "password")]
    grant_type: String,
    username: String,
    password: String,
    /// Space separated; absent or blank: all of the user's scopes.
    scope: Option<String>,
}

pub(super) fn oauth(code: &'static str, description: impl Into<String>) -> ApiError {
    ApiError::OAuth {
        code,
        description: description.into(),
    }
}

/// The OAuth 2.0 password grant.
#[utoipa::path(post, path = "/token", tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse, headers(("cache-control" = String, description = "no-store"))),
        (status = 400, description = "invalid_request, unsupported_grant_type, invalid_grant or invalid_scope (RFC 6749 §5.2)", body = ErrorBody),
        (status = 413, description = "the body exceeds 8 KiB", body = ErrorBody),
        (status = 429, description = "too many failed logins; see Retry-After", body = ErrorBody),
        (status = 503, description = "the auth component or storage failed", body = ErrorBody),
    ))]
pub async fn issue_token(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    let answer = grant(&state, client, request).await;
    state.metrics.record_token_request(match &answer {
        Ok(_) => "issued",
        Err(e) => e.code(),
    });
    answer
}

async fn grant(
    state: &AppState,
    client: SocketAddr,
    request: Request,
) -> Result<Response, ApiError> {
    // The size is checked before anything else is done with the body, and
    // long before any password work.
    let mut params = read_form(request, &["grant_type", "username", "password", "scope"]).await?;

    match params.remove("grant_type").as_deref() {
        None => return Err(oauth("invalid_request", "missing parameter `grant_type`")),
        Some("password") => {}
        Some(_) => {
            return Err(oauth(
                "unsupported_grant_type",
                "only grant_type=password is supported",
            ));
        }
    }
    let username = params
        .remove("username")
        .ok_or_else(|| oauth("invalid_request", "missing parameter `username`"))?;
    let password = params
        .remove("password")
        .ok_or_else(|| oauth("invalid_request", "missing parameter `password`"))?;
    let scopes = form::scopes(params.remove("scope"));

    // Past the limit the password is not even checked.
    if let Err(wait) = state.logins.check(&username, client.ip(), Instant::now()) {
        state.metrics.record_login_refusal();
        return Err(ApiError::TooManyAttempts(wait.as_secs_f64().ceil() as u64));
    }
    let started = Instant::now();
    let outcome = state
        .policy
        .issue_token(username.clone(), password, scopes)
        .await;
    state
        .metrics
        .record_call(ComponentCall::IssueToken, started.elapsed());
    let outcome = outcome?;
    match &outcome {
        Err(GrantRefusal::InvalidGrant) => {
            state
                .logins
                .record_failure(&username, client.ip(), Instant::now());
        }
        Err(GrantRefusal::InvalidRequest(_)) => {}
        // The password was right, even if a scope was not.
        Ok(_) | Err(GrantRefusal::InvalidScope(_)) => state.logins.record_success(&username),
    }
    let grant = match outcome {
        Ok(grant) => grant,
        Err(GrantRefusal::InvalidGrant) => {
            return Err(oauth(
                "invalid_grant",
                "the username or password is incorrect",
            ));
        }
        Err(GrantRefusal::InvalidScope(reason)) => return Err(oauth("invalid_scope", reason)),
        Err(GrantRefusal::InvalidRequest(reason)) => return Err(oauth("invalid_request", reason)),
    };
    let body = Json(TokenResponse {
        access_token: grant.access_token,
        token_type: "bearer",
        expires_in: grant.expires_in,
        scope: grant.scopes.join(" "),
    });
    // RFC 6749 §5.1: token answers must not be cached.
    let headers = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ];
    Ok((headers, body).into_response())
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Reads an OAuth form body of at most [`TOKEN_BODY_LIMIT`], keeping the
/// `known` parameters; a wrong content type or a repeated parameter is
/// RFC 6749's `invalid_request`.
pub(super) async fn read_form(
    request: Request,
    known: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let (parts, body) = request.into_parts();
    if !is_form(&parts.headers) {
        return Err(oauth(
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let body = super::read_body(&parts.headers, body, TOKEN_BODY_LIMIT, "invalid_request").await?;
    form::parse(&body, known).map_err(|e| oauth("invalid_request", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_content_type_with_charset() {
        let mut headers = HeaderMap::new();
        assert!(!is_form(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
        );
        assert!(is_form(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_form(&headers));
    }
}
