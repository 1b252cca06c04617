//! `GET /users/me`: who the token speaks for.

use axum::Json;

use crate::auth::{AnyToken, Authorized};
use crate::error::ErrorBody;

/// The caller, as the token says.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Me {
    pub username: String,
    /// The token's scopes (not necessarily all of the user's).
    pub scopes: Vec<String>,
}

/// The token's user and scopes.
#[utoipa::path(get, path = "/users/me", tag = "users",
    security(("oauth2" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, description = "no or an invalid token", body = ErrorBody),
    ))]
pub async fn me(auth: Authorized<AnyToken>) -> Json<Me> {
    Json(Me {
        username: auth.principal.subject,
        scopes: auth.principal.scopes,
    })
}
