//! `POST /token`: the OAuth 2.0 password grant (RFC 6749 §4.3) and the
//! refresh grant (§6).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::clock::unix_now;
use crate::error::{ApiError, ErrorBody};
use crate::form;
use crate::login_limits::Refusal;
use crate::metrics::ComponentCall;
use crate::policy::{Grant, GrantRefusal};
use crate::refresh::{RefreshError, RefreshTokens};
use crate::storage::LoginOutcome;
use crate::username;

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
    /// Opaque; send it with `grant_type=refresh_token` for a new access
    /// token. Single use: each use returns its successor. Absent when the
    /// server issues no refresh tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// The form `POST /token` takes (RFC 6749 §4.3.2 and §6).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    /// `password`, or `refresh_token`.
    #[schema(pattern = "^(password|refresh_token)$", example = "password")]
    grant_type: String,
    /// Required by the password grant.
    username: Option<String>,
    /// Required by the password grant.
    password: Option<String>,
    /// Required by the refresh grant: the last refresh token received.
    refresh_token: Option<String>,
    /// Space separated. Password grant: absent or blank means all of the
    /// user's scopes. Refresh grant: absent or blank means all of the
    /// original grant's; never more.
    scope: Option<String>,
}

pub(super) fn oauth(code: &'static str, description: impl Into<String>) -> ApiError {
    ApiError::OAuth {
        code,
        description: description.into(),
    }
}

/// The OAuth 2.0 password and refresh grants.
#[utoipa::path(post, path = "/token", tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse, headers(("cache-control" = String, description = "no-store"))),
        (status = 400, description = "invalid_request, unsupported_grant_type, invalid_grant (also: a refresh token invalid, expired, revoked or used before) or invalid_scope (RFC 6749 §5.2)", body = ErrorBody),
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
    let known = [
        "grant_type",
        "username",
        "password",
        "refresh_token",
        "scope",
    ];
    let mut params = read_form(request, &known).await?;
    let scopes = form::scopes(params.remove("scope"));
    match (params.remove("grant_type").as_deref(), &state.refresh) {
        (None, _) => Err(oauth("invalid_request", "missing parameter `grant_type`")),
        (Some("password"), _) => password_grant(state, client, params, scopes).await,
        (Some("refresh_token"), Some(refresh)) => {
            refresh_grant(state, refresh, params, scopes).await
        }
        (Some(_), Some(_)) => Err(oauth(
            "unsupported_grant_type",
            "grant_type must be password or refresh_token",
        )),
        (Some(_), None) => Err(oauth(
            "unsupported_grant_type",
            "only grant_type=password is supported",
        )),
    }
}

/// RFC 6749 §4.3: a username and password for an access token (and, when
/// they are on, the first refresh token of a new family).
async fn password_grant(
    state: &AppState,
    client: SocketAddr,
    mut params: HashMap<String, String>,
    scopes: Option<Vec<String>>,
) -> Result<Response, ApiError> {
    let given = params
        .remove("username")
        .ok_or_else(|| oauth("invalid_request", "missing parameter `username`"))?;
    let password = params
        .remove("password")
        .ok_or_else(|| oauth("invalid_request", "missing parameter `password`"))?;
    // RFC 8265: `Alice`, `ALICE` and `ａｌｉｃｅ` are `alice`, and count
    // against one limit. A name that cannot be canonical counts as given.
    let canonical = username::canonical(&given).ok();
    let limited = canonical.as_deref().unwrap_or(&given);
    let shown = username::printable(limited);

    // Past the limit the password is not even checked. Below it, this
    // attempt takes its place under the limit before the check, so that
    // guesses arriving together are counted together.
    let reservation = match state.logins.reserve(limited, client.ip()).await {
        Ok(reservation) => reservation,
        Err(Refusal::Limited(wait)) => {
            let retry_after = wait.as_secs_f64().ceil() as u64;
            tracing::warn!(
                username = %shown,
                client = %client.ip(),
                retry_after,
                "login refused, password not checked: too many failed logins for this user or address"
            );
            state.metrics.record_login_refusal();
            return Err(ApiError::TooManyAttempts(retry_after));
        }
        // The counts cannot be read: no password is checked uncounted.
        Err(e @ Refusal::Unavailable(_)) => return Err(ApiError::Unavailable(e.to_string())),
    };
    let username = match login_name(state, &given, canonical).await {
        Ok(Some(username)) => username,
        // Not a name any account can have: nothing to check.
        Ok(None) => {
            reservation.settle(LoginOutcome::NotChecked).await;
            tracing::info!(username = %shown, client = %client.ip(), "login failed: not a valid username");
            return Err(oauth(
                "invalid_grant",
                "the username or password is incorrect",
            ));
        }
        Err(e) => {
            reservation.settle(LoginOutcome::NotChecked).await;
            return Err(e);
        }
    };
    let outcome = decide_password_grant(state, &username, password, scopes).await;
    let settled = match &outcome {
        // No answer: whether the password was checked is unknown, and an
        // overloaded or failing policy or database must not lock users out.
        Err(_) => LoginOutcome::NotChecked,
        Ok(Err(GrantRefusal::InvalidGrant)) => {
            // The name only: never the password, not even its length.
            tracing::info!(
                username = %shown,
                client = %client.ip(),
                "login failed: unknown user or wrong password"
            );
            LoginOutcome::Failed
        }
        Ok(Err(GrantRefusal::InvalidRequest(_) | GrantRefusal::UnsupportedGrant)) => {
            LoginOutcome::NotChecked
        }
        // The password was right, even if a scope was not.
        Ok(Ok(_) | Err(GrantRefusal::InvalidScope(_))) => LoginOutcome::Succeeded,
    };
    reservation.settle(settled).await;
    let (grant, refresh_token) =
        outcome?.map_err(|refusal| refused(refusal, "the username or password is incorrect"))?;
    Ok(token_response(grant, refresh_token))
}

/// The account a login names: its canonical form (RFC 8265), or, when no
/// account has that name, an account stored before names were made
/// canonical whose name is exactly as given. `None`: the name cannot be
/// any account's.
async fn login_name(
    state: &AppState,
    given: &str,
    canonical: Option<String>,
) -> Result<Option<String>, ApiError> {
    if let Some(canonical) = canonical {
        if canonical == given || state.db.credentials(&canonical).await?.is_some() {
            return Ok(Some(canonical));
        }
        if state.db.credentials(given).await?.is_some() {
            return Ok(Some(given.to_owned()));
        }
        return Ok(Some(canonical));
    }
    Ok(state.db.credentials(given).await?.map(|_| given.to_owned()))
}

/// How many times a password grant is decided when the user's credentials
/// keep changing while it is, before the login fails with 503.
const GRANT_ATTEMPTS: usize = 3;

/// Decides a password grant and, if the policy grants it, the first refresh
/// token of its family. The tokens are handed out only if the user's
/// credentials are still those read before the policy checked the password
/// ([`crate::storage::Database::confirm_grant`]), so that a password change
/// (or a removal) committed meanwhile leaves nothing issued on the old
/// password; if they changed, the grant is decided again on the new ones.
async fn decide_password_grant(
    state: &AppState,
    username: &str,
    password: String,
    scopes: Option<Vec<String>>,
) -> Result<Result<(Grant, Option<String>), GrantRefusal>, ApiError> {
    for _ in 0..GRANT_ATTEMPTS {
        let seen = state.db.credentials(username).await?;
        if let Some(seen) = &seen {
            past_cutoff(seen.tokens_revoked_through).await?;
        }
        let started = Instant::now();
        let outcome = state
            .policy
            .issue_token(username.to_owned(), password.clone(), scopes.clone())
            .await;
        state
            .metrics
            .record_call(ComponentCall::IssueToken, started.elapsed());
        let grant = match outcome? {
            Ok(grant) => grant,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let confirmed = match &state.refresh {
            Some(refresh) if state.policy.supports_refresh() => refresh
                .start(
                    username,
                    &grant.scopes,
                    (&grant.token_id, grant.expires_at),
                    seen.as_ref(),
                    unix_now(),
                )
                .await?
                .map(Some),
            _ => state
                .db
                .confirm_grant(username, seen.as_ref(), None)
                .await?
                .then_some(None),
        };
        if let Some(refresh_token) = confirmed {
            return Ok(Ok((grant, refresh_token)));
        }
        tracing::info!("a user's credentials changed during their login; deciding it again");
    }
    Err(ApiError::Unavailable(format!(
        "a user's credentials changed during each of {GRANT_ATTEMPTS} decisions of a login"
    )))
}

/// RFC 6749 §6: a refresh token for a new access token and the refresh
/// token's successor. The host checks the token; the policy decides the grant.
async fn refresh_grant(
    state: &AppState,
    refresh: &RefreshTokens,
    mut params: HashMap<String, String>,
    scopes: Option<Vec<String>>,
) -> Result<Response, ApiError> {
    let token = params
        .remove("refresh_token")
        .ok_or_else(|| oauth("invalid_request", "missing parameter `refresh_token`"))?;
    let now = unix_now();
    let reuse = |e: &RefreshError| {
        if matches!(e, RefreshError::Reused) {
            state.metrics.record_refresh_reuse();
        }
    };
    let redeemed = refresh.redeem(&token, now).await.inspect_err(reuse)?;
    if let Some(seen) = state.db.credentials(&redeemed.username).await? {
        past_cutoff(seen.tokens_revoked_through).await?;
    }
    let started = Instant::now();
    let outcome = state
        .policy
        .refresh_token(redeemed.username.clone(), redeemed.scopes.clone(), scopes)
        .await;
    state
        .metrics
        .record_call(ComponentCall::RefreshToken, started.elapsed());
    let grant = outcome?
        .map_err(|refusal| refused(refusal, "the refresh token's user may no longer sign in"))?;
    // Only now is the token used up: a failure above leaves it usable.
    let next = refresh
        .rotate(&redeemed, (&grant.token_id, grant.expires_at), unix_now())
        .await
        .inspect_err(reuse)?;
    if redeemed.is_grace_replay() {
        state.metrics.record_refresh_grace_replay();
    }
    Ok(token_response(grant, Some(next)))
}

/// Longest a grant waits for its user's cutoff second to pass.
const CUTOFF_WAIT: Duration = Duration::from_secs(2);

/// Waits until this server's clock is past `cutoff`, a user's token cutoff
/// (Unix seconds). Tokens carry their issue time in whole seconds, and
/// those issued in the cutoff's second are refused with the ones before
/// the change that set it; so a grant in that same second, after the
/// change (a login right after `user passwd`), waits for the next second
/// rather than get a token that is refused at once. The policy reads the
/// same clock when its call begins. A cutoff further ahead than
/// [`CUTOFF_WAIT`] means clocks disagree: 503.
async fn past_cutoff(cutoff: i64) -> Result<(), ApiError> {
    let deadline = Instant::now() + CUTOFF_WAIT;
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let second = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if second > cutoff {
            return Ok(());
        }
        let seconds_left =
            u64::try_from(cutoff.saturating_sub(second).saturating_add(1)).unwrap_or(u64::MAX);
        let wait = Duration::from_secs(seconds_left)
            .saturating_sub(Duration::from_nanos(now.subsec_nanos().into()))
            .saturating_add(Duration::from_millis(1));
        if wait > deadline.saturating_duration_since(Instant::now()) {
            return Err(ApiError::Unavailable(
                "a user's token cutoff is ahead of this server's clock; are the clocks in sync?"
                    .into(),
            ));
        }
        tokio::time::sleep(wait).await;
    }
}

/// The answer to a refused grant (RFC 6749 §5.2).
fn refused(refusal: GrantRefusal, invalid_grant: &str) -> ApiError {
    match refusal {
        GrantRefusal::InvalidGrant => oauth("invalid_grant", invalid_grant),
        GrantRefusal::InvalidScope(reason) => oauth("invalid_scope", reason),
        GrantRefusal::InvalidRequest(reason) => oauth("invalid_request", reason),
        GrantRefusal::UnsupportedGrant => oauth(
            "unsupported_grant_type",
            "the active auth policy does not support this grant",
        ),
    }
}

/// RFC 6749 §5.1, uncacheable.
fn token_response(grant: Grant, refresh_token: Option<String>) -> Response {
    let body = Json(TokenResponse {
        access_token: grant.access_token,
        token_type: "bearer",
        expires_in: grant.expires_in,
        scope: grant.scopes.join(" "),
        refresh_token,
    });
    (no_store(), body).into_response()
}

/// RFC 6749 §5.1: answers carrying or concerning tokens are not cached.
pub(super) fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
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

    #[tokio::test]
    async fn a_grant_waits_out_its_users_cutoff_second_only() {
        let started = Instant::now();
        past_cutoff(unix_now() - 1).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(10));
        let cutoff = unix_now();
        past_cutoff(cutoff).await.unwrap();
        assert!(unix_now() > cutoff);
        assert!(started.elapsed() <= Duration::from_millis(1500));
        // Far ahead of this clock: refused at once, not waited for.
        let started = Instant::now();
        assert!(matches!(
            past_cutoff(unix_now() + 10).await,
            Err(ApiError::Unavailable(_))
        ));
        assert!(started.elapsed() < Duration::from_millis(10));
    }

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
