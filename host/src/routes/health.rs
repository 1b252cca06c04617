//! `GET /health`: liveness and the active policy component.

use axum::Json;
use axum::extract::State;

use crate::app::AppState;

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
    /// Components swapped in since start.
    pub swaps: u64,
    /// Candidates refused since start.
    pub refused_candidates: u64,
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
            swaps: status.swaps,
            refused_candidates: status.refused,
        },
    })
}
