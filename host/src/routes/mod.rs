//! HTTP handlers: thin glue between requests, the policy and storage.

pub mod health;
pub mod introspect;
pub mod jwks;
pub mod metadata;
pub mod revoke;
pub mod tasks;
pub mod token;
pub mod users;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use bytes::BytesMut;
use http_body_util::BodyExt;

use crate::error::ApiError;

/// Past a body's limit, up to this much more is read and dropped, so that a
/// client still sending gets the 413 rather than a reset connection.
const DRAIN_BYTES: usize = 1 << 20;
/// ...and for at most this long, so a slow client cannot hold the handler.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads a body of at most `limit` bytes; a longer one is a 413, found from
/// `Content-Length` when sent or else while reading, never after buffering it.
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
    if let Some(declared) = declared.filter(|len| *len > limit as u64) {
        if declared <= (limit + DRAIN_BYTES) as u64 {
            drain(body, 0).await;
        }
        return Err(too_large);
    }
    let mut body = body;
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if crate::hardening::is_deadline_error(&e) {
                ApiError::RequestTimeout
            } else {
                ApiError::InvalidBody("the body could not be read".into())
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buffer.len() + data.len() > limit {
            drain(body, buffer.len() + data.len() - limit).await;
            return Err(too_large);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
}

/// Reads and drops what is left of `body`, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain(mut body: Body, mut excess: usize) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            excess += frame.data_ref().map_or(0, |d| d.len());
            if excess > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}
