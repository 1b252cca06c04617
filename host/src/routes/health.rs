//! `GET /health`: liveness and the active policy component.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::app::AppState;

pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let info = state.policy.info();
    Json(json!({
        "status": "ok",
        "auth_component": {
            "name": info.name,
            "version": info.version,
            "sha256": info.sha256,
            "loaded_at": info.loaded_at,
        }
    }))
}
