//! What the server counts, exposed in the Prometheus (OpenMetrics) text
//! format at `GET /metrics`.
//!
//! Label values come from small fixed sets (matched route templates, status
//! codes, outcome names), never from what a client typed, so a client cannot
//! grow the series count.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::policy::PolicyHandle;

/// The media type of the OpenMetrics text format, which Prometheus scrapes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// How an auth decision ended, as counted.
#[derive(Debug, Clone, Copy)]
pub enum Decision {
    Allowed,
    /// Refused for the client's reason (`no_credentials`, `invalid_token`, `insufficient_scope`).
    Denied(&'static str),
    /// No answer: the component or storage failed.
    Failed,
}

/// A call into the policy component, as timed.
#[derive(Debug, Clone, Copy)]
pub enum ComponentCall {
    DecideAccess,
    IssueToken,
    RefreshToken,
    Introspect,
}

/// Every metric of one server. Cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    decisions: Family<DecisionLabels, Counter>,
    component_calls: HistogramFamily<CallLabels>,
    token_requests: Family<OutcomeLabels, Counter>,
    login_refusals: Counter,
    refresh_reuses: Counter,
    refresh_grace_replays: Counter,
}

impl Metrics {
    /// Metrics for a server whose active component `policy` reports.
    pub fn new(policy: PolicyHandle) -> Self {
        let mut registry = Registry::with_prefix("taskflow");
        let requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, matched route and status",
            requests.clone(),
        );
        let request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from request to response head, by matched route",
            Unit::Seconds,
            request_duration.clone(),
        );
        let decisions = Family::default();
        registry.register(
            "auth_decisions",
            "Bearer checks, by outcome (allowed, denied, failed) and reason",
            decisions.clone(),
        );
        let component_calls: HistogramFamily<CallLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "auth_component_call_duration",
            "Latency of calls into the auth component (issue_token includes the wait for a hashing slot)",
            Unit::Seconds,
            component_calls.clone(),
        );
        let token_requests = Family::default();
        registry.register(
            "token_requests",
            "POST /token answers, by outcome: issued, or the error code",
            token_requests.clone(),
        );
        let login_refusals = Counter::default();
        registry.register(
            "login_throttled",
            "Token requests refused by the brute-force limits, before any password check",
            login_refusals.clone(),
        );
        let refresh_reuses = Counter::default();
        registry.register(
            "refresh_token_reuse",
            "Refresh tokens presented again after their use; each revoked its family",
            refresh_reuses.clone(),
        );
        let refresh_grace_replays = Counter::default();
        registry.register(
            "refresh_token_grace_replays",
            "Used refresh tokens presented again within the reuse grace; each got a fresh pair in place of the one it got",
            refresh_grace_replays.clone(),
        );
        registry.register_collector(Box::new(ComponentCollector(policy)));
        Self {
            registry,
            requests,
            request_duration,
            decisions,
            component_calls,
            token_requests,
            login_refusals,
            refresh_reuses,
            refresh_grace_replays,
        }
    }

    pub fn record_decision(&self, decision: Decision, took: Duration) {
        let (outcome, reason) = match decision {
            Decision::Allowed => ("allowed", "granted"),
            Decision::Denied(reason) => ("denied", reason),
            Decision::Failed => ("failed", "unavailable"),
        };
        self.decisions
            .get_or_create(&DecisionLabels { outcome, reason })
            .inc();
        self.record_call(ComponentCall::DecideAccess, took);
    }

    pub fn record_call(&self, call: ComponentCall, took: Duration) {
        let call = match call {
            ComponentCall::DecideAccess => "decide_access",
            ComponentCall::IssueToken => "issue_token",
            ComponentCall::RefreshToken => "refresh_token",
            ComponentCall::Introspect => "introspect",
        };
        self.component_calls
            .get_or_create(&CallLabels { call })
            .observe(took.as_secs_f64());
    }

    /// A `/token` answer: `issued`, or the error code sent.
    pub fn record_token_request(&self, outcome: &'static str) {
        self.token_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A login refused by a brute-force limit.
    pub fn record_refresh_reuse(&self) {
        self.refresh_reuses.inc();
    }

    /// A used refresh token presented again within the reuse grace.
    pub fn record_refresh_grace_replay(&self) {
        self.refresh_grace_replays.inc();
    }

    pub fn record_login_refusal(&self) {
        self.login_refusals.inc();
    }

    fn record_request(&self, method: &Method, route: String, status: u16, took: Duration) {
        self.request_duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method),
                route,
                status,
            })
            .inc();
    }

    /// The text Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Middleware counting every answer by its matched route (the template, not
/// the path: `/tasks/{id}`), so ids and unknown paths add no series.
pub async fn track_requests(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record_request(
        &method,
        route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// 50 µs to ~3.3 s: decisions take microseconds, password grants tens of
/// milliseconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 4.0, 9))
}

/// The active component and its swap counters, read at each scrape.
struct ComponentCollector(PolicyHandle);

impl std::fmt::Debug for ComponentCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ComponentCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    name: String,
    version: String,
    sha256: String,
}

impl Collector for ComponentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.0.status();
        let info = Info::new(ComponentLabels {
            name: status.active.name,
            version: status.active.version,
            sha256: status.active.sha256,
        });
        info.encode(encoder.encode_descriptor(
            "auth_component",
            "The active auth policy component",
            None,
            info.metric_type(),
        )?)?;
        let counters = [
            (
                "auth_component_swaps",
                "Components that took over since start",
                status.swaps,
            ),
            (
                "auth_component_refused_candidates",
                "Candidate components refused since start",
                status.refused,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        // Additive to the total above: the refusals by reason
        // (`signature_untrusted`, `signature_mismatch`, `self_check`, ...),
        // a small fixed set named by the host.
        let mut refusals = encoder.encode_descriptor(
            "auth_component_refusals",
            "Candidate components refused since start, by reason",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, count) in &status.refusals {
            ConstCounter::new(*count).encode(refusals.encode_family(&[("reason", reason)])?)?;
        }
        let revision = ConstGauge::new(status.active.revision.unwrap_or(0));
        revision.encode(encoder.encode_descriptor(
            "auth_component_revision",
            "The database revision of the active component (0: the component file)",
            None,
            revision.metric_type(),
        )?)?;
        // The running (or last) shadow's comparisons, by call, route
        // (templates, `/token`) and what they came to: small fixed sets.
        if let Some(shadow) = self.0.shadow_report() {
            let mut comparisons = encoder.encode_descriptor(
                "auth_shadow_comparisons",
                "Requests also decided by the shadowing candidate, by call, route and outcome",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for route in &shadow.routes {
                for (outcome, count) in route.counts.named() {
                    ConstCounter::new(count).encode(comparisons.encode_family(&[
                        ("call", route.call.as_str()),
                        ("route", route.route.as_str()),
                        ("outcome", outcome),
                    ])?)?;
                }
            }
            let running = ConstGauge::new(i64::from(shadow.state == "running"));
            running.encode(encoder.encode_descriptor(
                "auth_shadow_running",
                "1 while a candidate shadows the active policy",
                None,
                running.metric_type(),
            )?)?;
        }
        let degraded = ConstGauge::new(i64::from(status.degraded));
        degraded.encode(encoder.encode_descriptor(
            "auth_component_degraded",
            "1 when the active component failed on each of its last calls",
            None,
            degraded.metric_type(),
        )?)?;
        Ok(())
    }
}
