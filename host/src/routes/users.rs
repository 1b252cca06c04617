//! `GET /users/me`: who the token speaks for.

use axum::Json;
use serde_json::{Value, json};

use crate::auth::{AnyToken, Authorized};

pub async fn me(auth: Authorized<AnyToken>) -> Json<Value> {
    Json(json!({
        "username": auth.principal.subject,
        "scopes": auth.principal.scopes,
    }))
}
