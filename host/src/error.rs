//! Every error answer of the API, and the one place that maps each to its
//! status, headers and body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::policy::PolicyFailure;
use crate::refresh::RefreshError;
use crate::storage::StorageError;

/// The body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A machine-readable code, e.g. `invalid_token`.
    pub error: String,
    pub error_description: String,
}

/// The realm in every `WWW-Authenticate` challenge.
const REALM: &str = "taskflow";

#[derive(Debug)]
pub enum ApiError {
    /// RFC 6749 §5.2 error of `/token` (status 400).
    OAuth {
        code: &'static str,
        description: String,
    },
    /// RFC 6750 §3.1: no credentials; the challenge carries no error.
    NoCredentials,
    InvalidToken(String),
    InsufficientScope(Vec<String>),
    /// A bad query parameter (status 400).
    InvalidQuery(String),
    /// A request HTTP itself refuses, such as one without a `Host` (status 400).
    BadRequest(String),
    NotFound(&'static str),
    MethodNotAllowed,
    PayloadTooLarge {
        limit: usize,
        code: &'static str,
    },
    /// The client stopped sending its body.
    RequestTimeout,
    InvalidBody(String),
    /// Too many failed logins: retry after this many seconds.
    TooManyAttempts(u64),
    /// Storage or the policy is down. The detail is logged, never sent.
    Unavailable(String),
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            // One description for both: a thief holding a used token must
            // not learn that its owner refreshed it (the reuse revoked the
            // family all the same, and is counted in the metrics).
            RefreshError::Invalid | RefreshError::Reused => ApiError::OAuth {
                code: "invalid_grant",
                description: RefreshError::Invalid.to_string(),
            },
            RefreshError::Random(_) | RefreshError::Storage(_) => {
                ApiError::Unavailable(e.to_string())
            }
        }
    }
}

impl From<PolicyFailure> for ApiError {
    fn from(e: PolicyFailure) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl ApiError {
    /// The `error` code of the answer's body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::OAuth { code, .. } | ApiError::PayloadTooLarge { code, .. } => code,
            ApiError::NoCredentials => "unauthorized",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::InvalidQuery(_) | ApiError::BadRequest(_) => "invalid_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::TooManyAttempts(_) => "too_many_attempts",
            ApiError::Unavailable(_) => "temporarily_unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match self {
            ApiError::TooManyAttempts(seconds) => Some(seconds),
            ApiError::Unavailable(_) => Some(1),
            _ => None,
        };
        let code = self.code();
        let (status, description, challenge) = match self {
            ApiError::OAuth { description, .. } => (StatusCode::BAD_REQUEST, description, None),
            ApiError::NoCredentials => (
                StatusCode::UNAUTHORIZED,
                "a Bearer token is required".to_owned(),
                Some(format!("Bearer realm=\"{REALM}\"")),
            ),
            ApiError::InvalidToken(reason) => {
                let challenge = format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                    quotable(&reason)
                );
                (StatusCode::UNAUTHORIZED, reason, Some(challenge))
            }
            ApiError::InsufficientScope(scopes) => {
                let scopes = scopes.join(" ");
                let challenge = format!(
                    "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
                    quotable(&scopes)
                );
                let description = format!("this route requires the scope `{scopes}`");
                (StatusCode::FORBIDDEN, description, Some(challenge))
            }
            ApiError::InvalidQuery(description) | ApiError::BadRequest(description) => {
                (StatusCode::BAD_REQUEST, description, None)
            }
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found"), None),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not accept that method".to_owned(),
                None,
            ),
            ApiError::PayloadTooLarge { limit, .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body exceeds {limit} bytes"),
                None,
            ),
            ApiError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time".to_owned(),
                None,
            ),
            ApiError::InvalidBody(description) => {
                (StatusCode::UNPROCESSABLE_ENTITY, description, None)
            }
            ApiError::TooManyAttempts(retry_after) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed logins; retry in {retry_after} s"),
                None,
            ),
            ApiError::Unavailable(detail) => {
                tracing::error!(%detail, "request failed: service unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the service is temporarily unavailable; try again".to_owned(),
                    None,
                )
            }
        };
        let body = ErrorBody {
            error: code.to_owned(),
            error_description: description,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// RFC 6750 §3: the characters allowed inside a challenge's quoted values.
fn quotable(text: &str) -> String {
    text.chars()
        .filter(|c| matches!(*c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_values_cannot_break_the_header() {
        assert_eq!(quotable("a \"b\"\\\r\nc\u{e9}"), "a bc");
    }

    #[test]
    fn no_credentials_challenge_has_no_error() {
        let response = ApiError::NoCredentials.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"taskflow\""
        );
    }

    #[tokio::test]
    async fn unavailable_hides_the_detail() {
        let response = ApiError::Unavailable("password=hunter2".into()).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("temporarily_unavailable"), "{body}");
        assert!(!body.contains("hunter2"), "{body}");
    }
}
