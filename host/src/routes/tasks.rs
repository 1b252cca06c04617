//! `/tasks`: a user's own tasks. Another user's task answers 404, exactly
//! like one that does not exist.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::{Authorized, ReadTasks, WriteTasks};
use crate::error::{ApiError, ErrorBody};
use crate::task::{NewTask, NewTaskBody, Task, TaskPatch, TaskPatchBody};

/// The contract's cap on a task body.
pub const TASK_BODY_LIMIT: usize = 64 * 1024;
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;

/// One page of the caller's tasks.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TaskList {
    pub items: Vec<Task>,
    /// How many tasks the caller has in all.
    pub total: i64,
}

/// The caller's tasks, oldest first.
#[utoipa::path(get, path = "/tasks", tag = "tasks",
    security(("oauth2" = ["tasks:read"])),
    params(
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50", minimum = 1, maximum = 200),
        ("offset" = Option<i64>, Query, description = "default 0", minimum = 0),
    ),
    responses(
        (status = 200, body = TaskList),
        (status = 400, description = "a bad limit or offset", body = ErrorBody),
        (status = 401, description = "no or an invalid token", body = ErrorBody),
        (status = 403, description = "the token lacks tasks:read", body = ErrorBody),
    ))]
pub async fn list(
    auth: Authorized<ReadTasks>,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    list_page(&state, &auth.principal.subject, query.as_deref()).await
}

/// The control of the server benchmark: `GET /tasks` of the user `bench`
/// without any authentication. Only in builds with the `bench-control`
/// feature, which `just bench` makes and nothing else does.
#[cfg(feature = "bench-control")]
pub async fn list_unauthenticated(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    list_page(&state, "bench", query.as_deref()).await
}

async fn list_page(
    state: &AppState,
    owner: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let (limit, offset) = paging(query.unwrap_or(""))?;
    let (items, total) = state.db.list_tasks(owner, limit, offset).await?;
    Ok(Json(TaskList { items, total }).into_response())
}

/// Creates a task.
#[utoipa::path(post, path = "/tasks", tag = "tasks",
    security(("oauth2" = ["tasks:write"])),
    request_body = NewTaskBody,
    responses(
        (status = 201, body = Task, headers(("location" = String, description = "/tasks/{id}"))),
        (status = 401, description = "no or an invalid token", body = ErrorBody),
        (status = 403, description = "the token lacks tasks:write", body = ErrorBody),
        (status = 413, description = "the body exceeds 64 KiB", body = ErrorBody),
        (status = 422, description = "not JSON, or not a task; names the field", body = ErrorBody),
    ))]
pub async fn create(
    auth: Authorized<WriteTasks>,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = super::read_body(&headers, body, TASK_BODY_LIMIT, "payload_too_large").await?;
    let task = NewTask::from_json(&body).map_err(|e| ApiError::InvalidBody(e.0))?;
    let task = state
        .db
        .create_task(&auth.principal.subject, &task)
        .await?
        .ok_or_else(|| ApiError::InvalidToken("the token's user no longer exists".into()))?;
    let location = HeaderValue::from_str(&format!("/tasks/{}", task.id))
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(task),
    )
        .into_response())
}

/// One of the caller's tasks.
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks",
    security(("oauth2" = ["tasks:read"])),
    params(("id" = i64, Path)),
    responses(
        (status = 200, body = Task),
        (status = 401, description = "no or an invalid token", body = ErrorBody),
        (status = 403, description = "the token lacks tasks:read", body = ErrorBody),
        (status = 404, description = "no such task of the caller's", body = ErrorBody),
    ))]
pub async fn get(
    auth: Authorized<ReadTasks>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = state
        .db
        .get_task(&auth.principal.subject, task_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    Ok(Json(task).into_response())
}

/// Changes the fields given.
#[utoipa::path(patch, path = "/tasks/{id}", tag = "tasks",
    security(("oauth2" = ["tasks:write"])),
    params(("id" = i64, Path)),
    request_body = TaskPatchBody,
    responses(
        (status = 200, body = Task),
        (status = 401, description = "no or an invalid token", body = ErrorBody),
        (status = 403, description = "the token lacks tasks:write", body = ErrorBody),
        (status = 404, description = "no such task of the caller's", body = ErrorBody),
        (status = 413, description = "the body exceeds 64 KiB", body = ErrorBody),
        (status = 422, description = "not JSON, or not a task patch; names the field", body = ErrorBody),
    ))]
pub async fn update(
    auth: Authorized<WriteTasks>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
    let body = super::read_body(&headers, body, TASK_BODY_LIMIT, "payload_too_large").await?;
    let patch = TaskPatch::from_json(&body).map_err(|e| ApiError::InvalidBody(e.0))?;
    let task = state
        .db
        .update_task(&auth.principal.subject, id, &patch)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    Ok(Json(task).into_response())
}

/// Deletes a task.
#[utoipa::path(delete, path = "/tasks/{id}", tag = "tasks",
    security(("oauth2" = ["tasks:write"])),
    params(("id" = i64, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no or an invalid token", body = ErrorBody),
        (status = 403, description = "the token lacks tasks:write", body = ErrorBody),
        (status = 404, description = "no such task of the caller's", body = ErrorBody),
    ))]
pub async fn delete(
    auth: Authorized<WriteTasks>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state
        .db
        .delete_task(&auth.principal.subject, task_id(&id)?)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("task"))
    }
}

/// An id that is not a number names no task.
fn task_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("task"))
}

/// `limit` (1..=200, default 50) and `offset` (>= 0, default 0).
fn paging(query: &str) -> Result<(i64, i64), ApiError> {
    let mut limit = DEFAULT_PAGE;
    let mut offset = 0;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::InvalidQuery(format!(
                            "`limit` must be an integer from 1 to {MAX_PAGE}"
                        ))
                    })?;
            }
            "offset" => {
                offset = value.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::InvalidQuery("`offset` must be a non-negative integer".into())
                })?;
            }
            _ => {}
        }
    }
    Ok((limit, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_and_bounds() {
        assert_eq!(paging("").unwrap(), (50, 0));
        assert_eq!(paging("limit=5&offset=10&x=y").unwrap(), (5, 10));
        for bad in ["limit=0", "limit=201", "limit=x", "offset=-1", "offset=1.5"] {
            assert!(
                matches!(paging(bad), Err(ApiError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn non_numeric_ids_are_not_found() {
        assert!(matches!(task_id("abc"), Err(ApiError::NotFound(_))));
        assert_eq!(task_id("42").unwrap(), 42);
    }
}
