//! The authentication policy, as the rest of the host sees it.
//!
//! Everything about wasmtime (engine, compilation cache, sandbox limits,
//! instance reuse, the WIT bindings) lives in [`runtime`]; handlers only ask a
//! [`PolicyHandle`] for a [`Grant`] or a [`Principal`] and never see a `Store`.
//! The types here are the host's own: the WIT types are converted once, in
//! [`runtime`].

mod runtime;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use runtime::{ComponentInfo, LoadError};

/// A stored user as the policy needs it.
#[derive(Clone)]
pub struct UserRecord {
    pub username: String,
    pub password_hash: String,
    pub scopes: Vec<String>,
}

/// Where the policy looks users up. Called from inside a component call, on
/// a thread that may block.
pub trait UserDirectory: Send + Sync + 'static {
    /// `Err` means storage is unavailable; the text goes to logs, not clients.
    fn find_user(&self, username: &str) -> Result<Option<UserRecord>, String>;
}

/// One HMAC key the policy signs or verifies with.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
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
    /// Longest a single call into the component may run.
    pub call_deadline: Duration,
    /// Most linear memory one instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Most idle instances kept ready for reuse.
    pub idle_instances: usize,
    /// Most password hashes computed at once; further logins wait.
    pub concurrent_hashes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            call_deadline: Duration::from_secs(2),
            // argon2id with m=19 MiB needs ~20 MiB; leave room for the rest.
            memory_bytes: 64 << 20,
            idle_instances: cores * 4,
            concurrent_hashes: cores,
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
}

/// A successful password grant.
#[derive(Debug)]
pub struct Grant {
    pub access_token: String,
    pub expires_in: u32,
    pub scopes: Vec<String>,
}

/// Why the policy refused a grant (RFC 6749 §5.2).
#[derive(Debug, PartialEq, Eq)]
pub enum GrantRefusal {
    InvalidGrant,
    InvalidScope(String),
    InvalidRequest(String),
}

/// Who a request acts for.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub scopes: Vec<String>,
}

/// Why the policy refused a request (RFC 6750 §3.1).
#[derive(Debug, PartialEq, Eq)]
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
}

/// One request to a protected route.
pub struct AccessRequest<'a> {
    pub authorization: Option<&'a str>,
    pub method: &'a str,
    pub route: &'a str,
    pub required_scopes: &'a [&'a str],
}

/// The loaded policy; cheap to clone, shared by all requests.
#[derive(Clone)]
pub struct PolicyHandle {
    runtime: Arc<runtime::PolicyRuntime>,
    hashing: Arc<tokio::sync::Semaphore>,
}

impl PolicyHandle {
    /// Compiles (or loads from cache) and checks the component.
    pub fn load(
        config: &PolicyConfig,
        settings: PolicySettings,
        users: Arc<dyn UserDirectory>,
    ) -> Result<Self, LoadError> {
        let hashing = Arc::new(tokio::sync::Semaphore::new(
            config.limits.concurrent_hashes.max(1),
        ));
        let runtime = runtime::PolicyRuntime::load(config, settings, users)?;
        Ok(Self {
            runtime: Arc::new(runtime),
            hashing,
        })
    }

    /// Name, version and digest of the loaded component.
    pub fn info(&self) -> &ComponentInfo {
        self.runtime.info()
    }

    /// The Bearer check of one request. Microseconds: runs on the caller's thread.
    pub fn decide_access(
        &self,
        request: &AccessRequest<'_>,
    ) -> Result<Result<Principal, Denial>, PolicyFailure> {
        self.runtime.decide_access(request)
    }

    /// The password grant. Argon2 takes tens of milliseconds, so it runs on
    /// the blocking pool, at most `concurrent_hashes` at once.
    pub async fn issue_token(
        &self,
        username: String,
        password: String,
        scopes: Option<Vec<String>>,
    ) -> Result<Result<Grant, GrantRefusal>, PolicyFailure> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| PolicyFailure::Unavailable("shutting down".into()))?;
        let runtime = Arc::clone(&self.runtime);
        tokio::task::spawn_blocking(move || runtime.issue_token(username, password, scopes))
            .await
            .map_err(|e| PolicyFailure::Fault(format!("token task failed: {e}")))?
    }

    /// Hashes a new password with the policy's own scheme.
    pub async fn hash_password(&self, password: String) -> Result<String, PolicyFailure> {
        let runtime = Arc::clone(&self.runtime);
        tokio::task::spawn_blocking(move || runtime.hash_password(password))
            .await
            .map_err(|e| PolicyFailure::Fault(format!("hash task failed: {e}")))?
    }
}
