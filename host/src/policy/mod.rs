//! The authentication policy, as the rest of the host sees it.
//!
//! Everything about wasmtime (engine, compilation cache, sandbox limits,
//! instance reuse, the WIT bindings) lives in [`runtime`]; handlers only ask a
//! [`PolicyHandle`] for a [`Grant`] or a [`Principal`] and never see a `Store`.
//! The types here are the host's own: the WIT types are converted once, in
//! [`runtime`]. A candidate may shadow the active policy ([`shadow`]): it
//! decides the same requests, and only the comparison is kept.

mod decision_cache;
mod runtime;
mod shadow;
mod signature;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use sha2::{Digest, Sha256};

pub use runtime::{CallDeadlines, ComponentInfo, LoadError};
pub use shadow::{Disagreement, RouteCounts, ShadowCounts, ShadowReport};
pub use signature::{SignatureError, TrustError, TrustedKeys, read_signature, signature_path};

/// A stored user as the policy needs it.
#[derive(Clone)]
pub struct UserRecord {
    pub username: String,
    pub password_hash: String,
    pub scopes: Vec<String>,
}

/// What a lookup is for, which decides where it may be answered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A Bearer decision: from the memory the change feed keeps current,
    /// while the feed is followed.
    Decision,
    /// A grant, which mints a token: from the database.
    Grant,
}

/// A lookup in progress; `Err` means storage is unavailable (the text goes
/// to logs, not clients).
pub type DirectoryFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// What the host knows of an access token beyond the token itself.
#[derive(Clone)]
pub struct TokenStatus {
    /// Revoked by its id (`jti`), or with all of its subject's tokens
    /// issued (`iat`) up to a password change or the account's creation.
    pub revoked: bool,
    /// Its subject as stored; `None`: no such user.
    pub user: Option<UserRecord>,
}

/// Where the policy looks users and token status up: the WIT `host`
/// imports, one method each. Awaited inside a component call, on the
/// request's task.
pub trait Directory: Send + Sync + 'static {
    fn find_user<'a>(
        &'a self,
        username: &'a str,
        lookup: Lookup,
    ) -> DirectoryFuture<'a, Option<UserRecord>>;
    /// The status of the access token `token_id` of `subject`, issued at
    /// `issued_at`, for a Bearer decision or an introspection: both facts
    /// in one answer, so that a decision never combines two moments.
    fn token_status<'a>(
        &'a self,
        token_id: &'a str,
        subject: &'a str,
        issued_at: u64,
    ) -> DirectoryFuture<'a, TokenStatus>;
    /// A number that changes with every change to what the lookups above
    /// answer (revocations, users), while their answers are known to be
    /// current; `None` otherwise. Bearer decisions are remembered only
    /// under a version, and only until it changes.
    fn status_version(&self) -> Option<u64> {
        None
    }
}

/// How a key signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// HMAC-SHA256: a shared secret; never published.
    #[default]
    Hs256,
    /// Ed25519: the secret is a private seed; its public half is published
    /// in the JWKS so that other services can verify tokens.
    EdDsa,
}

impl KeyAlgorithm {
    /// The JOSE `alg` name (RFC 7518, RFC 8037).
    pub fn jose_name(self) -> &'static str {
        match self {
            KeyAlgorithm::Hs256 => "HS256",
            KeyAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm of a JOSE `alg` name, if it is one of ours.
    pub fn from_jose_name(name: &str) -> Option<Self> {
        [KeyAlgorithm::Hs256, KeyAlgorithm::EdDsa]
            .into_iter()
            .find(|a| a.jose_name() == name)
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.jose_name())
    }
}

/// One key the policy signs or verifies with.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    /// The HMAC key, or the Ed25519 private seed.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// What the host hands the policy on every call.
#[derive(Clone, Debug)]
pub struct PolicySettings {
    /// The first key signs; all of them verify.
    pub signing_keys: Vec<SigningKey>,
    pub issuer: String,
    pub audience: String,
    pub token_ttl: Duration,
    pub leeway: Duration,
}

/// How the component is sandboxed and reused.
#[derive(Clone, Debug)]
pub struct SandboxLimits {
    /// Longest a call of each kind may run.
    pub deadlines: CallDeadlines,
    /// Most linear memory one instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Most idle instances kept ready for reuse.
    pub idle_instances: usize,
    /// Most password hashes computed at once; further logins wait.
    pub concurrent_hashes: usize,
    /// Most instances running a call at once; past it, calls fail with 503.
    pub max_instances: usize,
    /// How long a Bearer decision is remembered for the same request
    /// (zero: never); see `decision_cache`.
    pub decision_cache: Duration,
    /// Requests waiting for a shadowing candidate at most; past it they
    /// are dropped (and counted), never waited for.
    pub shadow_queue: usize,
    /// One password grant in this many is shadowed (0: none): each costs
    /// the candidate an argon2 hash.
    pub shadow_password_sample: u64,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            deadlines: CallDeadlines::default(),
            // argon2id with m=19 MiB needs ~20 MiB; leave room for the rest.
            memory_bytes: 64 << 20,
            idle_instances: cores * 4,
            concurrent_hashes: cores,
            max_instances: 256,
            decision_cache: Duration::from_secs(1),
            shadow_queue: 1024,
            shadow_password_sample: 20,
        }
    }
}

/// How to load a policy component.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    pub component: PathBuf,
    /// Where compiled components are kept between runs; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    pub limits: SandboxLimits,
    /// The keys allowed to sign components; with them, every candidate must
    /// carry a valid signature by one, checked before it is compiled.
    pub trust: Option<Arc<TrustedKeys>>,
}

/// A component that may take over: its bytes, its detached signature, and
/// where it came from.
#[derive(Clone)]
pub struct Candidate {
    /// The file, or `revision N` for one stored in the database.
    pub origin: PathBuf,
    pub bytes: Vec<u8>,
    /// The text of its minisign signature, if it has one.
    pub signature: Option<String>,
    /// The database revision, if it is one.
    pub revision: Option<i64>,
}

impl Candidate {
    /// The component file and the signature next to it (`FILE.minisig`).
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let unreadable = |error| LoadError::Read {
            path: path.to_owned(),
            error,
        };
        let bytes = std::fs::read(path).map_err(unreadable)?;
        let signature = read_signature(path).map_err(unreadable)?;
        Ok(Self {
            origin: path.to_owned(),
            bytes,
            signature,
            revision: None,
        })
    }

    /// A revision stored in the database.
    pub fn revision(revision: i64, bytes: Vec<u8>, signature: Option<String>) -> Self {
        Self {
            origin: PathBuf::from(format!("revision {revision}")),
            bytes,
            signature,
            revision: Some(revision),
        }
    }

    /// Checks the signature, if trust is configured, before anything else
    /// looks at the bytes.
    fn verified(self, trust: Option<&TrustedKeys>) -> Result<runtime::ComponentFile, LoadError> {
        if let Some(trust) = trust {
            trust
                .verify(&self.bytes, self.signature.as_deref())
                .map_err(|why| LoadError::Signature {
                    path: self.origin.clone(),
                    why,
                })?;
        }
        Ok(runtime::ComponentFile::new(
            self.origin,
            self.bytes,
            self.revision,
        ))
    }
}

/// The metric label of why a candidate was refused.
pub fn refusal_reason(error: &LoadError) -> &'static str {
    match error {
        LoadError::Read { .. } => "unreadable",
        LoadError::Invalid { .. } | LoadError::NotWasm { .. } | LoadError::CoreModule { .. } => {
            "invalid"
        }
        LoadError::WrongWorld { .. } => "wrong_world",
        LoadError::Check { .. } => "self_check",
        LoadError::Engine(_) => "engine",
        LoadError::Signature { why, .. } => why.reason(),
    }
}

/// A successful password or refresh grant.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    pub access_token: String,
    pub expires_in: u32,
    pub scopes: Vec<String>,
    /// The access token's `jti` and `exp` (Unix seconds), as the policy
    /// says them: what the host revokes it by, and until when.
    pub token_id: String,
    pub expires_at: i64,
}

/// An active access token's claims, as the policy's introspection says
/// them (RFC 7662 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub subject: String,
    /// The token's scopes that its user still holds.
    pub scopes: Vec<String>,
    pub issuer: String,
    pub audience: String,
    /// `exp`, `iat`, `nbf`: Unix seconds.
    pub expires_at: i64,
    pub issued_at: i64,
    pub not_before: Option<i64>,
    pub token_id: String,
}

/// Why the policy refused a grant (RFC 6749 §5.2).
#[derive(Debug, PartialEq, Eq)]
pub enum GrantRefusal {
    InvalidGrant,
    InvalidScope(String),
    InvalidRequest(String),
    /// The active policy has no such grant (a 0.1 policy and a refresh).
    UnsupportedGrant,
}

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub scopes: Vec<String>,
}

/// Why the policy refused a request (RFC 6750 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    NoCredentials,
    InvalidToken(String),
    InsufficientScope(Vec<String>),
}

/// The policy could not give an answer at all. Never the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFailure {
    /// The policy ran and said it cannot work (bad settings, storage down).
    #[error("auth policy unavailable: {0}")]
    Unavailable(String),
    /// The component trapped, ran past its deadline or its memory.
    #[error("auth component failed: {0}")]
    Fault(String),
    /// Every instance slot is taken.
    #[error("all {0} auth component instances are busy")]
    Busy(usize),
    /// The call ran past its normal cost while other long-running calls
    /// took the share of the machine they may have.
    #[error("auth component call {0}")]
    Overrun(String),
}

/// One request to a protected route.
pub struct AccessRequest<'a> {
    pub authorization: Option<&'a str>,
    pub method: &'a str,
    pub route: &'a str,
    pub required_scopes: &'a [&'a str],
}

/// Counters and state of policy swaps, as `/health` and `taskflow auth status` show them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PolicyStatus {
    pub active: ComponentInfo,
    /// Candidates that took over since start.
    pub swaps: u64,
    /// Candidates refused since start.
    pub refused: u64,
    /// Why the last candidate was refused, if one was.
    pub last_refusal: Option<String>,
    /// Refusals since start by reason (`signature_untrusted`, `self_check`, ...).
    #[serde(default)]
    pub refusals: BTreeMap<String, u64>,
    /// The active component failed on each of its last few calls.
    pub degraded: bool,
}

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The file holds the component already serving.
    Unchanged,
    /// The file's component passed its checks and now serves.
    Swapped,
}

/// A candidate refused: why, and which revision it was (if one).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub revision: Option<i64>,
    pub reason: &'static str,
    pub message: String,
}

/// The active policy, swappable while serving; cheap to clone, shared by all
/// requests. Each call takes the component active when it starts and keeps
/// it to its end, so a swap never fails a request in flight.
#[derive(Clone)]
pub struct PolicyHandle {
    inner: Arc<Inner>,
}

struct Inner {
    active: ArcSwap<runtime::PolicyRuntime>,
    sandbox: Arc<runtime::Sandbox>,
    component: PathBuf,
    /// What candidates load with; its keys follow [`PolicyHandle::set_signing_keys`].
    settings: Mutex<PolicySettings>,
    users: Arc<dyn Directory>,
    hashing: Arc<tokio::sync::Semaphore>,
    /// One candidate is checked at a time.
    reloading: tokio::sync::Mutex<()>,
    swaps: AtomicU64,
    refused: AtomicU64,
    last_refusal: Mutex<Option<Refusal>>,
    refusals: Mutex<BTreeMap<String, u64>>,
    trust: Option<Arc<TrustedKeys>>,
    /// Woken on every swap and refusal, for whoever reports them.
    changed: tokio::sync::Notify,
    /// The candidate shadowing the active policy, if one does.
    shadow: ArcSwapOption<shadow::Shadow>,
    /// The last shadow's report once it stopped or was refused.
    shadow_ended: Mutex<Option<ShadowReport>>,
    shadow_queue: usize,
    shadow_password_sample: u64,
}

impl PolicyHandle {
    /// Compiles (or loads from cache) and checks the component named by `config`.
    pub async fn load(
        config: &PolicyConfig,
        settings: PolicySettings,
        users: Arc<dyn Directory>,
    ) -> Result<Self, LoadError> {
        let candidate = Candidate::from_file(&config.component)?;
        Self::load_candidate(config, candidate, settings, users).await
    }

    /// Verifies (with trust configured), compiles and checks `candidate`,
    /// which then serves; the component file of `config` is what later
    /// reloads read.
    pub async fn load_candidate(
        config: &PolicyConfig,
        candidate: Candidate,
        settings: PolicySettings,
        users: Arc<dyn Directory>,
    ) -> Result<Self, LoadError> {
        let file = candidate.verified(config.trust.as_deref())?;
        let sandbox = Arc::new(runtime::Sandbox::new(
            config.limits.clone(),
            config.cache_dir.clone(),
        )?);
        let first = runtime::PolicyRuntime::load(
            &sandbox,
            file,
            &settings,
            Arc::clone(&users),
            runtime::Role::Serving,
        )
        .await?;
        Ok(Self {
            inner: Arc::new(Inner {
                active: ArcSwap::new(first),
                sandbox,
                component: config.component.clone(),
                settings: Mutex::new(settings),
                users,
                hashing: Arc::new(tokio::sync::Semaphore::new(
                    config.limits.concurrent_hashes.max(1),
                )),
                reloading: tokio::sync::Mutex::new(()),
                swaps: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                last_refusal: Mutex::new(None),
                refusals: Mutex::new(BTreeMap::new()),
                trust: config.trust.clone(),
                changed: tokio::sync::Notify::new(),
                shadow: ArcSwapOption::empty(),
                shadow_ended: Mutex::new(None),
                shadow_queue: config.limits.shadow_queue,
                shadow_password_sample: config.limits.shadow_password_sample,
            }),
        })
    }

    /// Signs with the first of `keys` and verifies with all of them, from
    /// the next call on (in the active component and any later candidate).
    pub fn set_signing_keys(&self, keys: Vec<SigningKey>) {
        let mut settings = self.inner.lock_settings();
        self.inner.active.load().set_signing_keys(&keys);
        if let Some(shadow) = self.inner.shadow.load().as_ref() {
            shadow.runtime().set_signing_keys(&keys);
        }
        settings.signing_keys = keys;
    }

    /// The key ids the policy has, the signing one first.
    pub fn signing_key_ids(&self) -> Vec<String> {
        self.inner
            .lock_settings()
            .signing_keys
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    }

    /// The keys the policy has, the signing one first: for publishing the
    /// public halves of the asymmetric ones.
    pub fn signing_keys(&self) -> Vec<SigningKey> {
        self.inner.lock_settings().signing_keys.clone()
    }

    /// Whether the active policy takes refresh grants; the host issues
    /// refresh tokens only while it does.
    pub fn supports_refresh(&self) -> bool {
        self.inner.active.load().supports_refresh()
    }

    /// Name, version and digest of the active component.
    pub fn info(&self) -> ComponentInfo {
        self.inner.active.load().info().clone()
    }

    /// Linear memory of one fresh instance of the active component, in
    /// bytes: what each idle or running instance costs at least.
    pub fn instance_memory_bytes(&self) -> usize {
        self.inner.active.load().instance_memory_bytes()
    }

    /// The active component and the swap counters.
    pub fn status(&self) -> PolicyStatus {
        let active = self.inner.active.load();
        PolicyStatus {
            active: active.info().clone(),
            swaps: self.inner.swaps.load(Ordering::SeqCst),
            refused: self.inner.refused.load(Ordering::Relaxed),
            last_refusal: self.last_refusal().map(|r| r.message),
            refusals: self
                .inner
                .refusals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            degraded: active.degraded(),
        }
    }

    /// The last candidate refused since start, if any.
    pub fn last_refusal(&self) -> Option<Refusal> {
        self.inner
            .last_refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts and reports a candidate refused elsewhere (a desired
    /// revision that could not serve at start).
    pub fn record_refusal(&self, revision: Option<i64>, error: &LoadError) {
        let reason = refusal_reason(error);
        self.inner
            .count_refusal(revision, reason, error.to_string());
        tracing::warn!(reason, error = %error, "auth component candidate refused");
    }

    /// Resolves at the next swap or refusal.
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    /// Whether components must be signed by trusted keys.
    pub fn trust(&self) -> Option<&TrustedKeys> {
        self.inner.trust.as_deref()
    }

    /// Loads the component file (and its signature) again and, if it
    /// changed and passes every check, makes it the active policy. A
    /// refused candidate leaves the active one serving.
    pub async fn reload(&self) -> Result<ReloadOutcome, LoadError> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let candidate = Candidate::from_file(&self.inner.component);
        let outcome = match candidate {
            Ok(candidate) => self.inner.try_candidate(candidate).await,
            Err(e) => Err(e),
        };
        self.inner.record(None, &outcome);
        outcome
    }

    /// Makes `candidate` (a stored revision) the active policy if it passes
    /// every check; a refused one leaves the active one serving.
    pub async fn swap_to(&self, candidate: Candidate) -> Result<ReloadOutcome, LoadError> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let revision = candidate.revision;
        let outcome = self.inner.try_candidate(candidate).await;
        self.inner.record(revision, &outcome);
        outcome
    }

    /// The Bearer check of one request: microseconds, on the caller's task.
    pub async fn decide_access(
        &self,
        request: &AccessRequest<'_>,
    ) -> Result<Result<Principal, Denial>, PolicyFailure> {
        let runtime = self.inner.active.load_full();
        let decision = runtime.decide_access(request).await;
        // The answer is made: a shadow gets a copy of the request, never a
        // wait (see `shadow`).
        if let Some(shadow) = self.inner.shadow.load().as_ref() {
            shadow.offer_access(request, &decision);
        }
        decision
    }

    /// Introspection (RFC 7662) of an access token: its claims while it is
    /// active, by the same checks as a Bearer decision; `None` otherwise.
    /// On the caller's task.
    pub async fn introspect(&self, token: &str) -> Result<Option<TokenClaims>, PolicyFailure> {
        let runtime = self.inner.active.load_full();
        runtime.introspect(token).await
    }

    /// The password grant. Argon2 takes tens of milliseconds, so it runs on
    /// the policy's password threads, at most `concurrent_hashes` at once.
    pub async fn issue_token(
        &self,
        username: String,
        password: String,
        scopes: Option<Vec<String>>,
    ) -> Result<Result<Grant, GrantRefusal>, PolicyFailure> {
        let _permit = self
            .inner
            .hashing
            .acquire()
            .await
            .map_err(|_| PolicyFailure::Unavailable("shutting down".into()))?;
        let runtime = self.inner.active.load_full();
        let shadow = self.inner.shadow.load_full();
        let sampled = shadow
            .filter(|s| s.samples_password())
            .map(|s| (s, username.clone(), password.clone(), scopes.clone()));
        let grant = self
            .inner
            .sandbox
            .on_grant_threads(async move { runtime.issue_token(username, password, scopes).await })
            .await
            .map_err(PolicyFailure::Fault)
            .and_then(|granted| granted);
        if let Some((shadow, username, password, scopes)) = sampled {
            shadow.offer_password(username, password, scopes, &grant);
        }
        grant
    }

    /// The refresh grant (RFC 6749 §6) for `username`, whose refresh token
    /// the host has checked and which was granted `granted`. No password
    /// work: on the caller's task.
    pub async fn refresh_token(
        &self,
        username: String,
        granted: Vec<String>,
        scopes: Option<Vec<String>>,
    ) -> Result<Result<Grant, GrantRefusal>, PolicyFailure> {
        let runtime = self.inner.active.load_full();
        let Some(shadow) = self.inner.shadow.load_full() else {
            return runtime.refresh_token(username, granted, scopes).await;
        };
        let copy = (username.clone(), granted.clone(), scopes.clone());
        let grant = runtime.refresh_token(username, granted, scopes).await;
        shadow.offer_refresh(copy.0, copy.1, copy.2, &grant);
        grant
    }

    /// Verifies (with trust configured), compiles and self-checks
    /// `candidate`, which then shadows the active policy as shadow `seq`
    /// (replacing any other); refused, it reports why and no shadow runs.
    pub async fn start_shadow(&self, seq: i64, candidate: Candidate) -> Result<(), LoadError> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        self.stop_shadow();
        let revision = candidate.revision;
        let loaded = async {
            let file = candidate.verified(self.inner.trust.as_deref())?;
            let settings = self.inner.lock_settings().clone();
            runtime::PolicyRuntime::load(
                &self.inner.sandbox,
                file,
                &settings,
                Arc::clone(&self.inner.users),
                runtime::Role::Shadow,
            )
            .await
        }
        .await;
        let runtime = match loaded {
            Ok(runtime) => runtime,
            Err(e) => {
                let reason = refusal_reason(&e);
                tracing::warn!(reason, error = %e, seq, "shadow candidate refused; no shadow runs");
                *self.inner.lock_shadow_ended() = Some(ShadowReport::refused(
                    seq,
                    revision,
                    format!("{reason}: {e}"),
                ));
                self.inner.changed.notify_waiters();
                return Err(e);
            }
        };
        {
            // Keys that changed while it loaded go with it.
            let settings = self.inner.lock_settings();
            runtime.set_signing_keys(&settings.signing_keys);
            let info = runtime.info().clone();
            self.inner.shadow.store(Some(Arc::new(shadow::Shadow::start(
                seq,
                runtime,
                Arc::clone(&self.inner.sandbox),
                Arc::clone(&self.inner.hashing),
                self.inner.shadow_queue,
                self.inner.shadow_password_sample,
            ))));
            tracing::info!(
                seq, name = %info.name, version = %info.version, sha256 = %info.sha256,
                revision = ?info.revision, "shadow candidate started"
            );
        }
        *self.inner.lock_shadow_ended() = None;
        self.inner.changed.notify_waiters();
        Ok(())
    }

    /// Ends the running shadow, if one runs; its last counts stay in
    /// [`PolicyHandle::shadow_report`]. Work still queued is finished.
    pub fn stop_shadow(&self) {
        if let Some(shadow) = self.inner.shadow.swap(None) {
            tracing::info!(seq = shadow.seq, "shadow candidate stopped");
            *self.inner.lock_shadow_ended() = Some(shadow.report("stopped"));
            self.inner.changed.notify_waiters();
        }
    }

    /// The running shadow's counts, or the last one's once it ended.
    pub fn shadow_report(&self) -> Option<ShadowReport> {
        match self.inner.shadow.load().as_ref() {
            Some(shadow) => Some(shadow.report("running")),
            None => self.inner.lock_shadow_ended().clone(),
        }
    }

    /// The shadow this replica runs, or tried last (`None`: none since start
    /// or since the last stop).
    pub fn shadow_seq(&self) -> Option<i64> {
        match self.inner.shadow.load().as_ref() {
            Some(shadow) => Some(shadow.seq),
            None => self
                .inner
                .lock_shadow_ended()
                .as_ref()
                .filter(|r| r.state == "refused")
                .map(|r| r.seq),
        }
    }

    /// Hashes a new password with the active policy's own scheme.
    pub async fn hash_password(&self, password: String) -> Result<String, PolicyFailure> {
        let _permit = self
            .inner
            .hashing
            .acquire()
            .await
            .map_err(|_| PolicyFailure::Unavailable("shutting down".into()))?;
        let runtime = self.inner.active.load_full();
        self.inner
            .sandbox
            .on_grant_threads(async move { runtime.hash_password(password).await })
            .await
            .map_err(PolicyFailure::Fault)?
    }
}

impl Inner {
    fn lock_settings(&self) -> std::sync::MutexGuard<'_, PolicySettings> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_shadow_ended(&self) -> std::sync::MutexGuard<'_, Option<ShadowReport>> {
        self.shadow_ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts and logs what a candidate came to.
    fn record(&self, revision: Option<i64>, outcome: &Result<ReloadOutcome, LoadError>) {
        match outcome {
            Ok(ReloadOutcome::Swapped) => {}
            Ok(ReloadOutcome::Unchanged) => {
                tracing::debug!("auth component unchanged; nothing to swap");
            }
            Err(e) => {
                let reason = refusal_reason(e);
                self.count_refusal(revision, reason, e.to_string());
                tracing::warn!(reason, error = %e, "auth component candidate refused; the active policy keeps serving");
            }
        }
        self.changed.notify_waiters();
    }

    fn count_refusal(&self, revision: Option<i64>, reason: &'static str, message: String) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        *self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason.to_owned())
            .or_default() += 1;
        *self.last_refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(Refusal {
            revision,
            reason,
            message,
        });
    }

    async fn try_candidate(&self, candidate: Candidate) -> Result<ReloadOutcome, LoadError> {
        let current = self.active.load_full();
        // The same bytes are no candidate: a file that did not change, or
        // the revision already serving. (A revision holding the bytes the
        // file brought in takes over, so that it is reported as serving.)
        let sha256 = hex::encode(Sha256::digest(&candidate.bytes));
        if sha256 == current.info().sha256
            && (candidate.revision.is_none() || candidate.revision == current.info().revision)
        {
            return Ok(ReloadOutcome::Unchanged);
        }
        let file = candidate.verified(self.trust.as_deref())?;
        let settings = self.lock_settings().clone();
        let candidate = runtime::PolicyRuntime::load(
            &self.sandbox,
            file,
            &settings,
            Arc::clone(&self.users),
            runtime::Role::Serving,
        )
        .await?;
        let (to, from) = (candidate.info().clone(), current.info());
        {
            // Keys that changed while the candidate loaded go with it.
            let settings = self.lock_settings();
            candidate.set_signing_keys(&settings.signing_keys);
            // Counted before the swap, so that whoever sees the new
            // component sees a count that includes it.
            self.swaps.fetch_add(1, Ordering::SeqCst);
            self.active.store(candidate);
        }
        tracing::info!(
            from = %from.name, from_version = %from.version, from_sha256 = %from.sha256,
            to = %to.name, to_version = %to.version, to_sha256 = %to.sha256,
            from_revision = ?from.revision, to_revision = ?to.revision,
            "auth policy swapped"
        );
        Ok(ReloadOutcome::Swapped)
    }
}
