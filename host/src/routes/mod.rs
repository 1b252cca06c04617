//! HTTP handlers: thin glue between requests, the policy and storage.

pub mod health;
pub mod tasks;
pub mod token;
pub mod users;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use crate::error::ApiError;

/// Reads a body of at most `limit` bytes; a longer one is a 413 before its
/// end is read (`Content-Length` is checked first when sent).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    code: &'static str,
) -> Result<Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit, code };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large);
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over_limit {
            too_large
        } else {
            ApiError::InvalidBody("the body could not be read".into())
        }
    })
}
