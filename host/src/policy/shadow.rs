//! Shadow evaluation: a candidate policy decides what the active one
//! decides, on the live traffic, and only the comparison is kept (the idea
//! of Envoy's RBAC `shadow_rules`).
//!
//! - The request path pays one atomic load when no shadow runs, and when
//!   one does, a copy of the request and one `try_send` into a bounded
//!   queue after the active policy decided. A full queue drops the work and
//!   counts it (`dropped`): a shadow never slows a request down.
//! - A few worker tasks take the work off the queue and ask the candidate.
//!   Its answer goes nowhere but into the counts: the client always gets
//!   the active policy's. The candidate runs as [`Role::Shadow`]: a call
//!   past its normal cost is refused at once instead of taking the share of
//!   the machine the active policy's long calls may have, and its faults
//!   are counted (`candidate_failed`), never delayed or answered.
//! - Remembered decisions: the active policy's answer is compared whether
//!   it came from its decision cache or from a component call, since it is
//!   what the client got. The candidate has a cache of its own (same
//!   lifetime, same invalidation), so every distinct request (token,
//!   method, route) reaches the candidate's component, and repeats within
//!   the cache's lifetime are answered from its cache exactly as the
//!   active's are: like is compared with like, and a shadow costs little
//!   on repetitive traffic.
//! - Grants: a refresh grant is decided by the candidate with the same
//!   request; a password grant only on a sample (one in
//!   `shadow_password_sample`), since each costs an argon2 hash, and only
//!   when a password thread is free. The candidate's token is compared
//!   (granted or refused, scopes, lifetime) and dropped: never stored,
//!   never sent.
//! - What is kept names the call, method and route and both outcomes
//!   (allowed with scopes, or the denial's kind): never a token, password,
//!   key, or a reason text a policy wrote.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc};

use super::runtime::{ComponentInfo, PolicyRuntime, Sandbox};
use super::{AccessRequest, Denial, Grant, GrantRefusal, PolicyFailure, Principal};

/// Tasks asking the candidate at once.
const WORKERS: usize = 2;
/// Disagreements kept for `auth shadow status`, newest last.
const RECENT: usize = 20;

/// The calls a shadow compares, as labelled.
const DECISION: &str = "decision";
const REFRESH_GRANT: &str = "refresh_grant";
const PASSWORD_GRANT: &str = "password_grant";

/// What one comparison came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comparison {
    Agree,
    /// One allowed (or granted) what the other denied (or refused).
    AllowedVsDenied,
    /// Both denied, for different reasons or scopes.
    DifferentDenial,
    /// Both allowed, with different scopes, subject or token lifetime.
    DifferentScopes,
    /// The candidate failed (trap, deadline, memory, busy).
    CandidateFailed,
    /// The queue was full: the candidate never saw the request.
    Dropped,
}

impl Comparison {
    fn name(self) -> &'static str {
        match self {
            Comparison::Agree => "agree",
            Comparison::AllowedVsDenied => "allowed_vs_denied",
            Comparison::DifferentDenial => "different_denial",
            Comparison::DifferentScopes => "different_scopes",
            Comparison::CandidateFailed => "candidate_failed",
            Comparison::Dropped => "dropped",
        }
    }

    fn is_disagreement(self) -> bool {
        matches!(
            self,
            Comparison::AllowedVsDenied | Comparison::DifferentDenial | Comparison::DifferentScopes
        )
    }
}

/// Comparisons counted by what they came to.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShadowCounts {
    pub agree: u64,
    pub allowed_vs_denied: u64,
    pub different_denial: u64,
    pub different_scopes: u64,
    pub candidate_failed: u64,
    pub dropped: u64,
}

impl ShadowCounts {
    fn slot(&mut self, comparison: Comparison) -> &mut u64 {
        match comparison {
            Comparison::Agree => &mut self.agree,
            Comparison::AllowedVsDenied => &mut self.allowed_vs_denied,
            Comparison::DifferentDenial => &mut self.different_denial,
            Comparison::DifferentScopes => &mut self.different_scopes,
            Comparison::CandidateFailed => &mut self.candidate_failed,
            Comparison::Dropped => &mut self.dropped,
        }
    }

    /// Each count with its name, in a fixed order.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("agree", self.agree),
            ("allowed_vs_denied", self.allowed_vs_denied),
            ("different_denial", self.different_denial),
            ("different_scopes", self.different_scopes),
            ("candidate_failed", self.candidate_failed),
            ("dropped", self.dropped),
        ]
    }

    /// Every request offered to the shadow.
    pub fn total(&self) -> u64 {
        self.named().iter().map(|(_, n)| n).sum()
    }

    fn add(&mut self, other: &ShadowCounts) {
        self.agree += other.agree;
        self.allowed_vs_denied += other.allowed_vs_denied;
        self.different_denial += other.different_denial;
        self.different_scopes += other.different_scopes;
        self.candidate_failed += other.candidate_failed;
        self.dropped += other.dropped;
    }
}

/// The counts of one call on one route.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteCounts {
    /// `decision`, `refresh_grant` or `password_grant`.
    pub call: String,
    /// The route template (`/tasks/{id}`), or `/token`.
    pub route: String,
    #[serde(flatten)]
    pub counts: ShadowCounts,
}

/// One request the candidate answered differently.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Disagreement {
    /// Unix seconds.
    pub at: i64,
    pub call: String,
    pub method: String,
    pub route: String,
    /// `allowed_vs_denied`, `different_denial` or `different_scopes`.
    pub kind: String,
    /// What the active policy answered (and the client got).
    pub active: String,
    /// What the candidate would have answered.
    pub candidate: String,
}

/// A replica's shadow, as `auth shadow status` and `/metrics` show it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ShadowReport {
    /// The shadow (`policy_shadows.seq`) this reports on.
    pub seq: i64,
    pub revision: Option<i64>,
    /// `running`, `refused` (the candidate failed its checks here) or `stopped`.
    pub state: String,
    /// Why the candidate was refused.
    pub refusal: Option<String>,
    pub component: Option<ComponentInfo>,
    pub totals: ShadowCounts,
    pub routes: Vec<RouteCounts>,
    /// The most recent disagreements, oldest first.
    pub recent: Vec<Disagreement>,
}

impl ShadowReport {
    /// A candidate refused by its checks.
    pub(super) fn refused(seq: i64, revision: Option<i64>, refusal: String) -> Self {
        Self {
            seq,
            revision,
            state: "refused".into(),
            refusal: Some(refusal),
            component: None,
            totals: ShadowCounts::default(),
            routes: Vec::new(),
            recent: Vec::new(),
        }
    }
}

/// What a call came to, as compared and shown.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Allowed {
        subject: String,
        scopes: Vec<String>,
        /// A grant's token lifetime.
        expires_in: Option<u32>,
    },
    Denied {
        reason: &'static str,
        scopes: Vec<String>,
    },
    Failed(&'static str),
}

impl Outcome {
    fn of_access(decision: &Result<Result<Principal, Denial>, PolicyFailure>) -> Self {
        match decision {
            Ok(Ok(principal)) => Outcome::Allowed {
                subject: principal.subject.clone(),
                scopes: principal.scopes.clone(),
                expires_in: None,
            },
            Ok(Err(Denial::NoCredentials)) => Outcome::denied("no_credentials"),
            Ok(Err(Denial::InvalidToken(_))) => Outcome::denied("invalid_token"),
            Ok(Err(Denial::InsufficientScope(scopes))) => Outcome::Denied {
                reason: "insufficient_scope",
                scopes: scopes.clone(),
            },
            Err(failure) => Outcome::failed(failure),
        }
    }

    /// The grant is looked at and dropped by the caller: only its scopes
    /// and lifetime are kept.
    fn of_grant(grant: &Result<Result<Grant, GrantRefusal>, PolicyFailure>) -> Self {
        match grant {
            Ok(Ok(grant)) => Outcome::Allowed {
                subject: String::new(),
                scopes: grant.scopes.clone(),
                expires_in: Some(grant.expires_in),
            },
            Ok(Err(GrantRefusal::InvalidGrant)) => Outcome::denied("invalid_grant"),
            Ok(Err(GrantRefusal::InvalidScope(_))) => Outcome::denied("invalid_scope"),
            Ok(Err(GrantRefusal::InvalidRequest(_))) => Outcome::denied("invalid_request"),
            Ok(Err(GrantRefusal::UnsupportedGrant)) => Outcome::denied("unsupported_grant_type"),
            Err(failure) => Outcome::failed(failure),
        }
    }

    fn denied(reason: &'static str) -> Self {
        Outcome::Denied {
            reason,
            scopes: Vec::new(),
        }
    }

    /// Only the kind of failure: its text may quote what a guest wrote.
    fn failed(failure: &PolicyFailure) -> Self {
        Outcome::Failed(match failure {
            PolicyFailure::Unavailable(_) => "unavailable",
            PolicyFailure::Fault(_) => "fault",
            PolicyFailure::Busy(_) => "busy",
            PolicyFailure::Overrun(_) => "overrun",
        })
    }

    fn compare(active: &Outcome, candidate: &Outcome) -> Comparison {
        match (active, candidate) {
            _ if active == candidate => Comparison::Agree,
            (_, Outcome::Failed(_)) => Comparison::CandidateFailed,
            (Outcome::Allowed { .. }, Outcome::Allowed { .. }) => Comparison::DifferentScopes,
            (Outcome::Denied { .. }, Outcome::Denied { .. }) => Comparison::DifferentDenial,
            _ => Comparison::AllowedVsDenied,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Allowed {
                scopes, expires_in, ..
            } => {
                write!(f, "allowed ({})", scopes.join(" "))?;
                if let Some(seconds) = expires_in {
                    write!(f, ", expires in {seconds} s")?;
                }
                Ok(())
            }
            Outcome::Denied { reason, scopes } if scopes.is_empty() => {
                write!(f, "denied: {reason}")
            }
            Outcome::Denied { reason, scopes } => {
                write!(f, "denied: {reason} ({})", scopes.join(" "))
            }
            Outcome::Failed(kind) => write!(f, "failed: {kind}"),
        }
    }
}

/// What the candidate is asked, with the active policy's outcome.
struct Job {
    call: &'static str,
    method: String,
    route: String,
    active: Outcome,
    work: Work,
}

enum Work {
    Access {
        authorization: Option<String>,
        required_scopes: Vec<String>,
    },
    Refresh {
        username: String,
        granted: Vec<String>,
        scopes: Option<Vec<String>>,
    },
    Password {
        username: String,
        password: String,
        scopes: Option<Vec<String>>,
    },
}

/// A candidate shadowing the active policy on this replica.
pub(super) struct Shadow {
    pub(super) seq: i64,
    runtime: Arc<PolicyRuntime>,
    queue: mpsc::Sender<Job>,
    tally: Arc<Tally>,
    /// Password grants seen, for the sample.
    passwords: AtomicU64,
    password_sample: u64,
}

impl Shadow {
    /// Starts the workers of `runtime` (loaded as a shadow), with a queue
    /// of `queue` requests; one password grant in `password_sample` is
    /// shadowed (0: none). The workers end once the shadow is dropped and
    /// the queue is empty.
    pub(super) fn start(
        seq: i64,
        runtime: Arc<PolicyRuntime>,
        sandbox: Arc<Sandbox>,
        hashing: Arc<Semaphore>,
        queue: usize,
        password_sample: u64,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let tally = Arc::new(Tally::default());
        for _ in 0..WORKERS {
            tokio::spawn(work(
                Arc::clone(&receiver),
                Arc::clone(&runtime),
                Arc::clone(&tally),
                Arc::clone(&sandbox),
                Arc::clone(&hashing),
            ));
        }
        Self {
            seq,
            runtime,
            queue: sender,
            tally,
            passwords: AtomicU64::new(0),
            password_sample,
        }
    }

    pub(super) fn runtime(&self) -> &PolicyRuntime {
        &self.runtime
    }

    /// Hands the candidate a Bearer decision the active policy made.
    pub(super) fn offer_access(
        &self,
        request: &AccessRequest<'_>,
        active: &Result<Result<Principal, Denial>, PolicyFailure>,
    ) {
        // The client got an error, not a decision: nothing to compare.
        if active.is_err() {
            return;
        }
        self.offer(Job {
            call: DECISION,
            method: request.method.to_owned(),
            route: request.route.to_owned(),
            active: Outcome::of_access(active),
            work: Work::Access {
                authorization: request.authorization.map(str::to_owned),
                required_scopes: request
                    .required_scopes
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
        });
    }

    /// Hands the candidate a refresh grant the active policy decided.
    pub(super) fn offer_refresh(
        &self,
        username: String,
        granted: Vec<String>,
        scopes: Option<Vec<String>>,
        active: &Result<Result<Grant, GrantRefusal>, PolicyFailure>,
    ) {
        if active.is_err() {
            return;
        }
        self.offer(Job {
            call: REFRESH_GRANT,
            method: "POST".into(),
            route: "/token".into(),
            active: Outcome::of_grant(active),
            work: Work::Refresh {
                username,
                granted,
                scopes,
            },
        });
    }

    /// Whether the next password grant is in the sample.
    pub(super) fn samples_password(&self) -> bool {
        self.password_sample > 0
            && self
                .passwords
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(self.password_sample)
    }

    /// Hands the candidate a sampled password grant the active policy decided.
    pub(super) fn offer_password(
        &self,
        username: String,
        password: String,
        scopes: Option<Vec<String>>,
        active: &Result<Result<Grant, GrantRefusal>, PolicyFailure>,
    ) {
        if active.is_err() {
            return;
        }
        self.offer(Job {
            call: PASSWORD_GRANT,
            method: "POST".into(),
            route: "/token".into(),
            active: Outcome::of_grant(active),
            work: Work::Password {
                username,
                password,
                scopes,
            },
        });
    }

    fn offer(&self, job: Job) {
        if let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
            self.queue.try_send(job)
        {
            self.tally.dropped(job.call, &job.route);
        }
    }

    /// The counts so far, in `state`.
    pub(super) fn report(&self, state: &str) -> ShadowReport {
        let info = self.runtime.info().clone();
        let (routes, recent) = self.tally.snapshot();
        let mut totals = ShadowCounts::default();
        for route in &routes {
            totals.add(&route.counts);
        }
        ShadowReport {
            seq: self.seq,
            revision: info.revision,
            state: state.into(),
            refusal: None,
            component: Some(info),
            totals,
            routes,
            recent,
        }
    }
}

/// Takes work off the queue until the shadow is dropped and it is empty.
async fn work(
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    runtime: Arc<PolicyRuntime>,
    tally: Arc<Tally>,
    sandbox: Arc<Sandbox>,
    hashing: Arc<Semaphore>,
) {
    loop {
        let job = jobs.lock().await.recv().await;
        let Some(Job {
            call,
            method,
            route,
            active,
            work,
        }) = job
        else {
            return;
        };
        let candidate = match work {
            Work::Access {
                authorization,
                required_scopes,
            } => {
                let required: Vec<&str> = required_scopes.iter().map(String::as_str).collect();
                let request = AccessRequest {
                    authorization: authorization.as_deref(),
                    method: &method,
                    route: &route,
                    required_scopes: &required,
                };
                Outcome::of_access(&runtime.decide_access(&request).await)
            }
            Work::Refresh {
                username,
                granted,
                scopes,
            } => Outcome::of_grant(&runtime.refresh_token(username, granted, scopes).await),
            Work::Password {
                username,
                password,
                scopes,
            } => {
                // Never makes a real login wait for a password thread.
                let Ok(_permit) = hashing.try_acquire() else {
                    tally.dropped(call, &route);
                    continue;
                };
                let runtime = Arc::clone(&runtime);
                let grant = sandbox
                    .on_grant_threads(async move {
                        runtime.issue_token(username, password, scopes).await
                    })
                    .await
                    .map_err(PolicyFailure::Fault)
                    .and_then(|granted| granted);
                Outcome::of_grant(&grant)
            }
        };
        let comparison = Outcome::compare(&active, &candidate);
        let seen = Seen {
            call,
            method: &method,
            route: &route,
            active: &active,
            candidate: &candidate,
        };
        tally.record(&seen, comparison);
    }
}

/// One request both policies decided.
struct Seen<'a> {
    call: &'static str,
    method: &'a str,
    route: &'a str,
    active: &'a Outcome,
    candidate: &'a Outcome,
}

/// The counts by call and route, and the recent disagreements.
#[derive(Default)]
struct Tally {
    inner: Mutex<TallyInner>,
}

#[derive(Default)]
struct TallyInner {
    routes: BTreeMap<(&'static str, String), ShadowCounts>,
    recent: VecDeque<Disagreement>,
}

impl Tally {
    fn lock(&self) -> std::sync::MutexGuard<'_, TallyInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dropped(&self, call: &'static str, route: &str) {
        let mut inner = self.lock();
        *inner
            .routes
            .entry((call, route.to_owned()))
            .or_default()
            .slot(Comparison::Dropped) += 1;
    }

    fn record(&self, seen: &Seen<'_>, comparison: Comparison) {
        let mut inner = self.lock();
        *inner
            .routes
            .entry((seen.call, seen.route.to_owned()))
            .or_default()
            .slot(comparison) += 1;
        if comparison.is_disagreement() {
            if inner.recent.len() == RECENT {
                inner.recent.pop_front();
            }
            inner.recent.push_back(Disagreement {
                at: crate::clock::unix_now(),
                call: seen.call.into(),
                method: seen.method.to_owned(),
                route: seen.route.to_owned(),
                kind: comparison.name().into(),
                active: seen.active.to_string(),
                candidate: seen.candidate.to_string(),
            });
        }
    }

    fn snapshot(&self) -> (Vec<RouteCounts>, Vec<Disagreement>) {
        let inner = self.lock();
        let routes = inner
            .routes
            .iter()
            .map(|((call, route), counts)| RouteCounts {
                call: (*call).into(),
                route: route.clone(),
                counts: counts.clone(),
            })
            .collect();
        (routes, inner.recent.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(scopes: &[&str]) -> Outcome {
        Outcome::Allowed {
            subject: "alice".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_in: None,
        }
    }

    #[test]
    fn outcomes_compare_by_kind() {
        let denied = |reason| Outcome::denied(reason);
        let cases = [
            (allowed(&["a"]), allowed(&["a"]), Comparison::Agree),
            (
                allowed(&["a"]),
                denied("invalid_token"),
                Comparison::AllowedVsDenied,
            ),
            (
                denied("invalid_token"),
                allowed(&["a"]),
                Comparison::AllowedVsDenied,
            ),
            (
                allowed(&["a"]),
                allowed(&["a", "b"]),
                Comparison::DifferentScopes,
            ),
            (
                denied("invalid_token"),
                denied("no_credentials"),
                Comparison::DifferentDenial,
            ),
            (
                Outcome::Denied {
                    reason: "insufficient_scope",
                    scopes: vec!["a".into()],
                },
                Outcome::Denied {
                    reason: "insufficient_scope",
                    scopes: vec!["b".into()],
                },
                Comparison::DifferentDenial,
            ),
            (
                allowed(&["a"]),
                Outcome::Failed("fault"),
                Comparison::CandidateFailed,
            ),
        ];
        for (active, candidate, expected) in cases {
            assert_eq!(
                Outcome::compare(&active, &candidate),
                expected,
                "{active} / {candidate}"
            );
        }
    }

    #[test]
    fn outcomes_show_no_reason_text() {
        let decision = Ok(Err(Denial::InvalidToken("secret-looking text".into())));
        let shown = Outcome::of_access(&decision).to_string();
        assert_eq!(shown, "denied: invalid_token");
        let failure = Err(PolicyFailure::Fault("guest wrote this".into()));
        assert_eq!(Outcome::of_access(&failure).to_string(), "failed: fault");
        let grant = Ok(Ok(Grant {
            access_token: "eyJ.token".into(),
            expires_in: 60,
            scopes: vec!["tasks:read".into()],
            token_id: "jti".into(),
            expires_at: 1,
        }));
        let shown = Outcome::of_grant(&grant).to_string();
        assert_eq!(shown, "allowed (tasks:read), expires in 60 s");
    }
}
