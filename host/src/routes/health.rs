//! `GET /health`: liveness and the active policy component.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::app::AppState;

/// `degraded` when the active component failed on each of its last calls.
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let status = state.policy.status();
    let info = status.active;
    Json(json!({
        "status": if status.degraded { "degraded" } else { "ok" },
        "auth_component": {
            "name": info.name,
            "version": info.version,
            "sha256": info.sha256,
            "loaded_at": info.loaded_at,
            "swaps": status.swaps,
            "refused_candidates": status.refused,
        }
    }))
}
