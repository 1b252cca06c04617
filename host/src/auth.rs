//! The Bearer check: an extractor that asks the policy component whether the
//! request's token grants the route. Each route names what it needs in its
//! handler's signature (`Authorized<ReadTasks>`), and because this runs
//! before any body extractor, authentication precedes reading the body.

use std::marker::PhantomData;
use std::time::Instant;

use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::error::ApiError;
use crate::metrics::Decision;
use crate::policy::{AccessRequest, Denial, Principal};

/// Every scope a route requires, with what it allows: for the API
/// document and the server metadata.
pub const SCOPES: &[(&str, &str)] = &[
    ("tasks:read", "Read your tasks"),
    ("tasks:write", "Create, change and delete your tasks"),
    ("metrics:read", "Read the server's metrics"),
    (
        "tokens:introspect",
        "Ask whether a token is active (POST /introspect)",
    ),
];

/// What a route requires of a token.
pub trait RouteAccess: Send + Sync + 'static {
    /// Every scope the route needs; empty means any valid token.
    const SCOPES: &'static [&'static str];
}

/// Any valid token.
pub struct AnyToken;
/// `tasks:read`.
pub struct ReadTasks;
/// `tasks:write`.
pub struct WriteTasks;
/// `metrics:read`.
pub struct ReadMetrics;

impl RouteAccess for AnyToken {
    const SCOPES: &'static [&'static str] = &[];
}
impl RouteAccess for ReadTasks {
    const SCOPES: &'static [&'static str] = &["tasks:read"];
}
impl RouteAccess for WriteTasks {
    const SCOPES: &'static [&'static str] = &["tasks:write"];
}
impl RouteAccess for ReadMetrics {
    const SCOPES: &'static [&'static str] = &["metrics:read"];
}

/// `tokens:introspect`.
pub struct IntrospectTokens;

impl RouteAccess for IntrospectTokens {
    const SCOPES: &'static [&'static str] = &["tokens:introspect"];
}

/// The principal of a request the policy allowed for route access `A`.
pub struct Authorized<A: RouteAccess> {
    pub principal: Principal,
    _access: PhantomData<A>,
}

impl<A: RouteAccess, S: Send + Sync> FromRequestParts<S> for Authorized<A>
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        // A header that is not valid text cannot hold a Bearer token.
        let authorization = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| {
                ApiError::InvalidToken("the Authorization header is not valid text".into())
            })?),
        };
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path(), MatchedPath::as_str);
        let request = AccessRequest {
            authorization,
            method: parts.method.as_str(),
            route,
            required_scopes: A::SCOPES,
        };
        let started = Instant::now();
        let decision = state.policy.decide_access(&request).await;
        let counted = match &decision {
            Ok(Ok(_)) => Decision::Allowed,
            Ok(Err(Denial::NoCredentials)) => Decision::Denied("no_credentials"),
            Ok(Err(Denial::InvalidToken(_))) => Decision::Denied("invalid_token"),
            Ok(Err(Denial::InsufficientScope(_))) => Decision::Denied("insufficient_scope"),
            Err(_) => Decision::Failed,
        };
        state.metrics.record_decision(counted, started.elapsed());
        match decision? {
            Ok(principal) => Ok(Authorized {
                principal,
                _access: PhantomData,
            }),
            Err(Denial::NoCredentials) => Err(ApiError::NoCredentials),
            Err(Denial::InvalidToken(reason)) => Err(ApiError::InvalidToken(reason)),
            Err(Denial::InsufficientScope(scopes)) => Err(ApiError::InsufficientScope(scopes)),
        }
    }
}
