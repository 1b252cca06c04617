//! What the HTTP layer refuses or adds for every request, whatever its
//! route: a deadline for the whole request body, the `Host` header
//! RFC 9112 requires, and the response headers that keep pages of ours
//! from being framed, sniffed or made to run someone else's script.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// A request body that must have arrived in full by a deadline set when
/// its request's head did. Unlike a timeout per read, which a client
/// resets with every byte it sends, this one cannot be stretched: one
/// byte every few seconds gets the same 408 as a body that stops.
pub struct DeadlineBody {
    inner: Body,
    deadline: Instant,
    /// The timer, armed at the first read (a body never read costs none).
    timer: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

/// The error a [`DeadlineBody`] ends with once its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within its deadline")]
pub struct BodyDeadlineExceeded;

impl DeadlineBody {
    pub fn new(inner: Body, deadline: Instant) -> Self {
        Self {
            inner,
            deadline,
            timer: None,
            expired: false,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        // The deadline first: a frame ready after it is late all the same.
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            this.expired = true;
            return Poll::Ready(Some(Err(axum::Error::new(BodyDeadlineExceeded))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Gives each request's body `limit` from now (its head has just been
/// read) to arrive in full.
pub async fn body_deadline(limit: Duration, request: Request, next: Next) -> Response {
    let deadline = Instant::now() + limit;
    let request = request.map(|body| {
        if body.is_end_stream() {
            body
        } else {
            Body::new(DeadlineBody::new(body, deadline))
        }
    });
    next.run(request).await
}

/// Whether reading a body failed because its deadline passed.
pub fn is_deadline_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<BodyDeadlineExceeded>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// RFC 9112 §3.2: a request with more than one `Host` header, or an
/// HTTP/1.1 request with none, or one whose value is no host, is answered
/// 400 and goes no further. HTTP/1.0 did not require the header, so a
/// 1.0 request without one is served.
pub async fn require_host(request: Request, next: Next) -> Response {
    match host_problem(&request) {
        Some(problem) => ApiError::BadRequest(problem.into()).into_response(),
        None => next.run(request).await,
    }
}

fn host_problem(request: &Request) -> Option<&'static str> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => Some("the request has more than one Host header"),
        (None, None) if request.version() == Version::HTTP_10 => None,
        (None, None) => Some("the request has no Host header"),
        (Some(host), None) if !is_valid_host(host) => Some("the Host header is not a host"),
        (Some(_), None) => None,
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2), or empty (a target without
/// an authority, RFC 9112 §3.2).
fn is_valid_host(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    bytes.is_empty()
        || (!bytes.contains(&b'@')
            && std::str::from_utf8(bytes)
                .ok()
                .and_then(|host| host.parse::<axum::http::uri::Authority>().ok())
                .is_some())
}

/// The content security policy of the docs page: its scripts and styles
/// come from this server only (the page has no inline script); Swagger UI
/// sets inline styles and uses `data:` images, and calls this server's API
/// only. No page may frame it, and it posts forms nowhere else.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Everything else is JSON or text for programs: nothing in it may run,
/// load or be framed.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Adds `Content-Security-Policy`, `X-Frame-Options: DENY` and
/// `X-Content-Type-Options: nosniff` to every response: the docs page
/// holds a password form, and nothing else of ours is meant to be shown
/// in a frame or read as anything but its declared type.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let docs = request.uri().path() == "/docs" || request.uri().path().starts_with("/docs/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let policy = if docs { DOCS_CSP } else { API_CSP };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn request(version: Version, hosts: &[&str]) -> Request {
        let mut builder = axum::http::Request::builder()
            .uri("/health")
            .version(version);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn host_headers() {
        assert_eq!(host_problem(&request(Version::HTTP_11, &["t"])), None);
        assert_eq!(
            host_problem(&request(Version::HTTP_11, &["127.0.0.1:8080"])),
            None
        );
        assert_eq!(
            host_problem(&request(Version::HTTP_11, &["[::1]:80"])),
            None
        );
        assert_eq!(host_problem(&request(Version::HTTP_11, &[""])), None);
        assert_eq!(host_problem(&request(Version::HTTP_10, &[])), None);
        for bad in [
            request(Version::HTTP_11, &[]),
            request(Version::HTTP_11, &["a", "b"]),
            request(Version::HTTP_10, &["a", "a"]),
            request(Version::HTTP_11, &["user@host"]),
            request(Version::HTTP_11, &["a b"]),
            request(Version::HTTP_11, &["host/path"]),
        ] {
            assert!(host_problem(&bad).is_some(), "{:?}", bad.headers());
        }
    }

    #[tokio::test]
    async fn a_trickled_body_ends_at_the_deadline() {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let started = Instant::now();
        let mut body = DeadlineBody::new(
            Body::new(ChannelBody(receiver)),
            started + Duration::from_millis(600),
        );
        // A byte every 100 ms, until the body is dropped.
        let feeder = tokio::spawn(async move {
            while sender
                .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .is_ok()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut received = 0;
        let error = loop {
            match body.frame().await {
                Some(Ok(_)) => received += 1,
                Some(Err(e)) => break e,
                None => panic!("the body ended without an error"),
            }
        };
        assert!(is_deadline_error(&error), "{error}");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(600) && elapsed < Duration::from_millis(900),
            "{elapsed:?}"
        );
        assert!(received >= 2, "{received}");
        assert!(body.frame().await.is_none());
        drop(body);
        feeder.await.unwrap();
    }

    /// A body fed frame by frame through a channel.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, axum::Error>>);

    impl HttpBody for ChannelBody {
        type Data = Bytes;
        type Error = axum::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
            self.get_mut().0.poll_recv(cx)
        }
    }
}
