//! The application: shared state and the router with its middleware.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, header};
use axum::routing::{get, post};
use axum::{Router, middleware};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::error::ApiError;
use crate::hardening;
use crate::login_limits::LoginLimiter;
use crate::metrics::{self, Metrics};
use crate::policy::PolicyHandle;
use crate::refresh::{RefreshLifetime, RefreshTokens};
use crate::routes::metadata::{self, ServerMetadata};
use crate::routes::{health, introspect, jwks, revoke, tasks, token, users};
use crate::storage::Database;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub policy: PolicyHandle,
    pub logins: Arc<LoginLimiter>,
    pub metrics: Arc<Metrics>,
    /// `None` when refresh tokens are off.
    pub refresh: Option<RefreshTokens>,
    /// What `/.well-known/oauth-authorization-server` answers.
    pub metadata: Arc<ServerMetadata>,
}

impl AppState {
    /// State for a server on `db` with `policy`, counting into fresh
    /// metrics, issuing refresh tokens of `refresh` lifetime (if any).
    pub fn new(
        db: Database,
        policy: PolicyHandle,
        logins: Arc<LoginLimiter>,
        refresh: Option<RefreshLifetime>,
        metadata: ServerMetadata,
    ) -> Self {
        let metrics = Arc::new(Metrics::new(policy.clone()));
        Self {
            refresh: refresh.map(|lifetime| RefreshTokens::new(db.clone(), lifetime)),
            db,
            policy,
            logins,
            metrics,
            metadata: Arc::new(metadata),
        }
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Limits on how clients use a connection.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest a request body may take to arrive, in all, counted from
    /// the end of its head; past it, 408.
    pub body_timeout: Duration,
}

/// Builds the whole application, so tests can drive it in process too.
pub fn router(state: AppState, limits: HttpLimits) -> Router {
    let router = Router::new();
    #[cfg(feature = "bench-control")]
    let router = router.route(
        "/bench/unauthenticated/tasks",
        get(tasks::list_unauthenticated),
    );
    router
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/token", post(token::issue_token))
        .route("/revoke", post(revoke::revoke))
        .route("/introspect", post(introspect::introspect))
        .route("/.well-known/jwks.json", get(jwks::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::metadata),
        )
        .route("/users/me", get(users::me))
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route(
            "/tasks/{id}",
            get(tasks::get).patch(tasks::update).delete(tasks::delete),
        )
        .merge(crate::openapi::routes())
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            metrics::track_requests,
        ))
        .with_state(state)
        // Handlers read bodies themselves with their own limits; this is the
        // backstop for anything that does not.
        .layer(DefaultBodyLimit::max(tasks::TASK_BODY_LIMIT))
        // A client that stops sending its body, or sends it a byte at a
        // time, cannot hold a handler past the deadline.
        .layer(middleware::from_fn(move |request, next| {
            hardening::body_deadline(limits.body_timeout, request, next)
        }))
        // RFC 9112 §3.2: no Host, or two, is a 400 (logged, as any answer).
        .layer(middleware::from_fn(hardening::require_host))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("-", MatchedPath::as_str);
                    let id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The path only: neither query strings nor headers, which
                    // may carry credentials, reach the logs.
                    tracing::info_span!(
                        "request",
                        request_id = %id,
                        method = %request.method(),
                        path = %request.uri().path(),
                        route,
                    )
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .layer(middleware::map_request(keep_plain_request_id))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(middleware::from_fn(hardening::security_headers))
}

/// A client's own `x-request-id` is kept only when it is one short, plain
/// value: it goes into every log line of the request, where anything else
/// (spaces, `=`, braces, control bytes, kilobytes) could forge log fields
/// or lines. Otherwise it is dropped, and the request gets an id of ours.
async fn keep_plain_request_id(mut request: Request) -> Request {
    let ids = request.headers().get_all(REQUEST_ID);
    let mut values = ids.iter();
    let plain = match (values.next(), values.next()) {
        (Some(id), None) => is_plain_request_id(id.as_bytes()),
        _ => false,
    };
    if !plain {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

fn is_plain_request_id(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A 96-bit random id for requests that arrive without one.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut bytes = [0u8; 12];
        getrandom::fill(&mut bytes).ok()?;
        hex::encode(bytes).parse().ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::is_plain_request_id;

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        for kept in ["abc", "0f9e-12.a_B", &"x".repeat(64)] {
            assert!(is_plain_request_id(kept.as_bytes()), "{kept}");
        }
        for dropped in [
            "",
            "x} method=DELETE path=/tasks/1 status=204",
            "a b",
            "a\nb",
            "caf\u{e9}",
            &"x".repeat(65),
        ] {
            assert!(!is_plain_request_id(dropped.as_bytes()), "{dropped:?}");
        }
    }
}
