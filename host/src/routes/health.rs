//! `GET /health`: liveness and the active policy component; `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;
use crate::auth::{Authorized, ReadMetrics};
use crate::error::ErrorBody;
use crate::metrics;

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the active component failed on each of its last calls.
    pub status: &'static str,
    pub auth_component: ActiveComponent,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ActiveComponent {
    pub name: String,
    pub version: String,
    /// Hex SHA-256 of the component file.
    pub sha256: String,
    /// RFC 3339.
    pub loaded_at: String,
    /// The WIT contract the component implements, e.g. `taskflow:auth@0.3.0`.
    pub contract: String,
    /// Components swapped in since start.
    pub swaps: u64,
    /// Candidates refused since start.
    pub refused_candidates: u64,
    /// The database revision serving (`taskflow auth history`); null while
    /// a component file that is no revision serves.
    pub revision: Option<i64>,
    /// Whether the component's signature was checked against trusted keys.
    pub signature_verified: bool,
}

/// Liveness and the active auth policy component.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let status = state.policy.status();
    let info = status.active;
    Json(Health {
        status: if status.degraded { "degraded" } else { "ok" },
        auth_component: ActiveComponent {
            name: info.name,
            version: info.version,
            sha256: info.sha256,
            loaded_at: info.loaded_at,
            contract: info.contract,
            swaps: status.swaps,
            refused_candidates: status.refused,
            revision: info.revision,
            signature_verified: state.policy.trust().is_some(),
        },
    })
}

/// Counters and latency histograms in the Prometheus (OpenMetrics) text
/// format: requests by route and status, auth decisions by outcome and
/// reason, component call latency, token grants by outcome, brute-force
/// refusals, the active component and its swap counters.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("oauth2" = ["metrics:read"])),
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "no token, or an invalid one", body = ErrorBody),
        (status = 403, description = "the token lacks `metrics:read`", body = ErrorBody),
        (status = 503, description = "the auth component failed", body = ErrorBody),
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    _: Authorized<ReadMetrics>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}
