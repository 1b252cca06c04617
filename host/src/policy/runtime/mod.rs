//! wasmtime behind one door: loading a component, the sandbox each call
//! runs in, and the calls themselves.
//!
//! - [`engine`]: the engine, linker, compiled-component cache and the
//!   threads for password work, shared by every loaded component;
//! - [`imports`]: what a store holds and the host imports the policy calls;
//! - [`output`]: the policy's stdout and stderr, into the log;
//! - [`budget`]: deadlines per kind of call, and the share of the machine
//!   that calls running long may take;
//! - [`pool`]: ready instances kept for reuse;
//! - [`primitives`]: argon2id, Ed25519 and HMAC-SHA256, natively, for
//!   policies that import them;
//! - [`self_check`]: the check a component passes before it serves;
//! - [`worlds`]: the WIT worlds (current and older) and their bindings;
//! - [`convert`]: WIT types to the host's.
//!
//! Every call is async: a Bearer decision runs on the request's own task,
//! yields at each epoch tick, and awaits storage in its imports, so no call
//! ever blocks a thread that serves requests.

mod budget;
mod convert;
mod engine;
mod imports;
mod output;
mod pool;
mod primitives;
mod self_check;
mod worlds;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};
use wasmtime::{Store, StoreLimitsBuilder, Trap};

pub use self::budget::CallDeadlines;
use self::budget::{CallClock, CallKind, DeadlineExceeded, Overrun};
pub(super) use self::engine::Sandbox;
use self::imports::{HostEnv, StoreState};
use self::output::GuestOutput;
use self::pool::{InstancePool, ReadyInstance};
use self::worlds::{PolicyPre, wit};
use super::decision_cache::{DecisionCache, Stamp};
use super::{
    AccessRequest, Denial, Directory, Grant, GrantRefusal, PolicyFailure, PolicySettings,
    Principal, SigningKey, TokenClaims,
};

/// What is known about the loaded component.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ComponentInfo {
    pub name: String,
    pub version: String,
    /// Hex SHA-256 of the component file.
    pub sha256: String,
    pub path: PathBuf,
    /// RFC 3339 time the component was loaded.
    pub loaded_at: String,
    /// The WIT contract it implements: `taskflow:auth@0.3.0`, or
    /// `taskflow:auth@0.2.0` or `taskflow:auth@0.1` for a policy built
    /// before 0.3.
    #[serde(default)]
    pub contract: String,
    /// The database revision it came from; `None` for a component file.
    #[serde(default)]
    pub revision: Option<i64>,
}

/// Why a component could not be loaded. Each names the file.
/// Why a component cannot serve. Each message is one line that names the
/// component and what to do about it, for an operator to act on.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("auth component {}: cannot read it ({error}); build it with `just build`, or name the component with --auth-component", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("auth component {}: not a valid WebAssembly component: the file is not WebAssembly at all (it does not begin with \"\\0asm\"); name the .wasm file that `cargo build --target wasm32-wasip2` writes", path.display())]
    NotWasm { path: PathBuf },
    #[error("auth component {}: not a valid WebAssembly component: it is a core WebAssembly module; build the policy for the wasm32-wasip2 target, which makes a component", path.display())]
    CoreModule { path: PathBuf },
    #[error("auth component {}: not a valid WebAssembly component: {reason}; rebuild it for the wasm32-wasip2 target", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("auth component {}: does not implement the taskflow:auth@0.3.0 (or 0.2, 0.1) auth-policy world: {reason}; build it against wit/auth.wit", path.display())]
    WrongWorld { path: PathBuf, reason: String },
    #[error("auth component {}: failed its start-up check: {reason}; a policy must accept the tokens it issues and refuse forged ones: fix the policy and build it again", path.display())]
    Check { path: PathBuf, reason: String },
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    #[error("auth component {}: signature refused: {why}; sign it (`minisign -Sm FILE`) with a key listed in the --component-trust file", path.display())]
    Signature {
        path: PathBuf,
        why: super::SignatureError,
    },
}

/// `reason` on one line: wasmtime's messages span several (byte dumps,
/// causes), and an operator reads one.
pub(super) fn one_line(reason: &str) -> String {
    reason.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Refuses what is not a component before wasmtime parses it, so that the
/// two common mistakes get their own answer: a file that is not
/// WebAssembly at all, and a core module (version 1) where a component
/// (layer 1) belongs.
pub(super) fn check_shape(path: &std::path::Path, bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) {
        return Err(LoadError::NotWasm {
            path: path.to_owned(),
        });
    }
    if bytes.get(4..8) == Some(CORE_MODULE) {
        return Err(LoadError::CoreModule {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// A component file as read from disk, with its digest.
pub(super) struct ComponentFile {
    pub(super) path: PathBuf,
    pub(super) bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub(super) sha256: String,
    /// The database revision it came from, if any.
    pub(super) revision: Option<i64>,
}

impl ComponentFile {
    /// `bytes` as loaded from `path` (a file, or `revision N` for a stored one).
    pub(super) fn new(path: PathBuf, bytes: Vec<u8>, revision: Option<i64>) -> Self {
        Self {
            path,
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes,
            revision,
        }
    }
}

/// What a loaded component is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// It answers requests.
    Serving,
    /// It shadows the serving one: its answers are only compared. It takes
    /// no overrun slot (a call past its normal cost is refused at once), so
    /// that it never takes the share of the machine the serving policy's
    /// long calls may have, and its failures are not delayed: no client
    /// waits for them.
    Shadow,
}

/// One loaded, checked policy component and its ready instances.
pub(super) struct PolicyRuntime {
    role: Role,
    /// The overrun slots its calls take, and how many there are.
    overrun_slots: Arc<Semaphore>,
    overrun_slot_count: usize,
    sandbox: Arc<Sandbox>,
    pre: PolicyPre,
    env: Arc<HostEnv>,
    pool: InstancePool,
    /// Calls that failed in a row; reset by any success.
    consecutive_faults: AtomicU32,
    info: ComponentInfo,
    /// Bearer decisions remembered; `None` when the setting is zero.
    decisions: Option<DecisionCache>,
    /// Bumped after each change of the signing keys in `env.settings`.
    keys_version: AtomicU64,
    /// Linear memory of a fresh instance, in bytes (0 until one exists).
    instance_memory: AtomicUsize,
}

/// Calls failing in a row before the policy counts as degraded.
const DEGRADED_AFTER_FAULTS: u32 = 3;

impl PolicyRuntime {
    /// Compiles `file` (on the blocking pool), links it against the world,
    /// and runs the self-check (on the password threads).
    pub(super) async fn load(
        sandbox: &Arc<Sandbox>,
        file: ComponentFile,
        settings: &PolicySettings,
        users: Arc<dyn Directory>,
        role: Role,
    ) -> Result<Arc<Self>, LoadError> {
        let ComponentFile {
            path,
            bytes,
            sha256,
            revision,
        } = file;
        let component = {
            let (sandbox, path, sha256) = (Arc::clone(sandbox), path.clone(), sha256.clone());
            tokio::task::spawn_blocking(move || sandbox.compile(&path, &bytes, &sha256))
                .await
                .map_err(|e| LoadError::Engine(format!("compilation task failed: {e}")))??
        };
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.clone(),
            reason: one_line(&format!("{e:#}")),
        };
        let pre = sandbox
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = PolicyPre::new(pre).map_err(wrong_world)?;
        let fallback_name = path
            .file_name()
            .map_or_else(|| sha256.clone(), |n| n.to_string_lossy().into_owned());
        let (overrun_slots, overrun_slot_count) = match role {
            Role::Serving => (
                Arc::clone(&sandbox.overrun_slots),
                sandbox.overrun_slot_count,
            ),
            Role::Shadow => (Arc::new(Semaphore::new(0)), 0),
        };
        let mut runtime = Self {
            role,
            overrun_slots,
            overrun_slot_count,
            sandbox: Arc::clone(sandbox),
            pre,
            env: Arc::new(HostEnv {
                settings: ArcSwap::from_pointee(convert::settings(settings)),
                users,
                output: GuestOutput::new(fallback_name),
                hash_slots: Arc::clone(&sandbox.hash_slots),
                ed25519_keys: Arc::clone(&sandbox.ed25519_keys),
            }),
            pool: InstancePool::new(sandbox.limits.idle_instances),
            consecutive_faults: AtomicU32::new(0),
            decisions: DecisionCache::new(sandbox.limits.decision_cache),
            keys_version: AtomicU64::new(0),
            instance_memory: AtomicUsize::new(0),
            info: ComponentInfo {
                name: String::new(),
                version: String::new(),
                sha256,
                path: path.clone(),
                loaded_at: now_rfc3339(),
                contract: String::new(),
                revision,
            },
        };
        let check_failed = |reason: String| LoadError::Check {
            path: path.clone(),
            reason: one_line(&reason),
        };
        let info = runtime
            .info_call()
            .await
            .map_err(|e| check_failed(e.to_string()))?;
        runtime.env.output.set_name(&info.name);
        runtime.info.name = info.name;
        runtime.info.version = info.version;
        runtime.info.contract = runtime.pre.world().to_owned();
        let instance_memory = runtime.instance_memory_bytes();
        runtime.pool.fit(instance_memory);
        tracing::info!(
            component = %runtime.info.name,
            instance_memory_kib = instance_memory / 1024,
            idle_instances = runtime.pool.capacity(),
            "auth component instance size"
        );
        if runtime.pre.is_legacy() && runtime.pre.has_refresh() {
            tracing::warn!(
                component = %runtime.info.name,
                world = runtime.pre.world(),
                "the component is built for an older contract: it has no introspection of its own (its Bearer decision answers), and the host reads the id and expiry of its tokens itself"
            );
        }
        if !runtime.pre.has_refresh() {
            tracing::warn!(
                component = %runtime.info.name,
                world = runtime.pre.world(),
                "the component is built for an older contract: no refresh grant (no refresh tokens are issued while it serves), HS256 keys only"
            );
        }
        let runtime = Arc::new(runtime);
        let passed_marker = sandbox
            .cache_dir()
            .map(|dir| dir.join(format!("{}.self-check-passed", runtime.check_key(settings))));
        if passed_marker.as_ref().is_some_and(|m| m.exists()) {
            tracing::debug!(component = %runtime.info.name, "self-check passed before with these settings");
        } else {
            let checking = Arc::clone(&runtime);
            sandbox
                .on_grant_threads(async move { checking.self_check().await })
                .await
                .and_then(|checked| checked)
                .map_err(check_failed)?;
            if let Some(marker) = passed_marker {
                let _ = crate::files::write_private(&marker, b"");
            }
        }
        Ok(runtime)
    }

    /// Whether the last few calls all failed.
    pub(super) fn degraded(&self) -> bool {
        self.consecutive_faults.load(Ordering::Relaxed) >= DEGRADED_AFTER_FAULTS
    }

    /// Hands the component new signing keys from its next call on.
    pub(super) fn set_signing_keys(&self, keys: &[SigningKey]) {
        let mut settings = wit::PolicySettings::clone(&self.env.settings.load());
        settings.signing_keys = convert::keys(keys);
        self.env.settings.store(Arc::new(settings));
        // After the store: a decision stamped with the old version may have
        // seen the old keys, one stamped with the new cannot have.
        self.keys_version.fetch_add(1, Ordering::AcqRel);
    }

    /// Linear memory of a fresh instance, in bytes.
    pub(super) fn instance_memory_bytes(&self) -> usize {
        self.instance_memory.load(Ordering::Relaxed)
    }

    pub(super) fn supports_refresh(&self) -> bool {
        self.pre.has_refresh()
    }

    pub(super) fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// The first call of a loaded component: on a fresh instance, measured
    /// for the memory caps and the pool, and not kept (its cap was set
    /// before its size was known).
    ///
    /// Held to the password deadline, as the self-check is: it is part of
    /// the component's start, off any request's path, and the first
    /// instance of an interpreter (CPython) can take longer to start than a
    /// request's 50 ms, more so on a busy machine.
    async fn info_call(&self) -> Result<wit::PolicyInfo, PolicyFailure> {
        let mut lease = self.lease(CallKind::Password, Instances::Fresh).await?;
        let (policy, store) = lease.parts();
        let outcome = guarded(policy.info(store)).await;
        lease.finish(outcome)
    }

    /// The Bearer check of one request, on the caller's task: the same
    /// request's decision if one was made recently under the same keys and
    /// token status, otherwise the policy's.
    pub(super) async fn decide_access(
        &self,
        request: &AccessRequest<'_>,
    ) -> Result<Result<Principal, Denial>, PolicyFailure> {
        let Some(cache) = &self.decisions else {
            return self.decide_access_now(request).await;
        };
        // Read before deciding, so that a change made while the decision
        // runs leaves it stamped with a version that is already stale.
        let stamp = self.env.users.status_version().map(|status| Stamp {
            keys: self.keys_version.load(Ordering::Acquire),
            status,
        });
        let Some(stamp) = stamp else {
            return self.decide_access_now(request).await;
        };
        if let Some(decision) = cache.get(request, stamp) {
            return Ok(decision);
        }
        let decision = self.decide_access_now(request).await?;
        cache.insert(request, stamp, &decision);
        Ok(decision)
    }

    /// The policy's Bearer decision of one request.
    async fn decide_access_now(
        &self,
        request: &AccessRequest<'_>,
    ) -> Result<Result<Principal, Denial>, PolicyFailure> {
        let request = wit::AccessRequest {
            authorization: request.authorization.map(str::to_owned),
            method: request.method.to_owned(),
            route: request.route.to_owned(),
            required_scopes: request
                .required_scopes
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let decided = async {
            let mut lease = self.lease(CallKind::Decision, Instances::Pooled).await?;
            let (policy, store) = lease.parts();
            let outcome = guarded(policy.decide_access(store, &request)).await;
            lease.finish(outcome)
        };
        convert::access_decision(self.slow_down_failures(decided.await).await?)
    }

    /// Introspection of an access token, on the caller's task.
    pub(super) async fn introspect(
        &self,
        token: &str,
    ) -> Result<Option<TokenClaims>, PolicyFailure> {
        let introspected = async {
            let mut lease = self.lease(CallKind::Decision, Instances::Pooled).await?;
            let (policy, store) = lease.parts();
            let outcome = guarded(policy.introspect(store, token)).await;
            lease.finish(outcome)
        };
        convert::introspection(self.slow_down_failures(introspected.await).await?)
    }

    /// The password grant: argon2, so on a fresh instance (its 19 MiB
    /// never stays resident) and meant for the password threads.
    pub(super) async fn issue_token(
        &self,
        username: String,
        password: String,
        scopes: Option<Vec<String>>,
    ) -> Result<Result<Grant, GrantRefusal>, PolicyFailure> {
        let request = wit::TokenRequest {
            username,
            password,
            scopes,
        };
        let mut lease = self.lease(CallKind::Password, Instances::Fresh).await?;
        let (policy, store) = lease.parts();
        let outcome = guarded(policy.issue_token(store, &request)).await;
        convert::grant_outcome(lease.finish(outcome)?)
    }

    /// The refresh grant: no password work, on the caller's task.
    pub(super) async fn refresh_token(
        &self,
        username: String,
        granted_scopes: Vec<String>,
        scopes: Option<Vec<String>>,
    ) -> Result<Result<Grant, GrantRefusal>, PolicyFailure> {
        let request = wit::RefreshRequest {
            username,
            granted_scopes,
            scopes,
        };
        let refreshed = async {
            let mut lease = self.lease(CallKind::Refresh, Instances::Pooled).await?;
            let (policy, store) = lease.parts();
            let outcome = guarded(policy.refresh_token(store, &request)).await;
            lease.finish(outcome)
        };
        match self.slow_down_failures(refreshed.await).await? {
            Some(outcome) => convert::grant_outcome(outcome),
            None => Ok(Err(GrantRefusal::UnsupportedGrant)),
        }
    }

    /// Hashes a new password: argon2, meant for the password threads.
    pub(super) async fn hash_password(&self, password: String) -> Result<String, PolicyFailure> {
        let mut lease = self.lease(CallKind::Password, Instances::Fresh).await?;
        let (policy, store) = lease.parts();
        let outcome = guarded(policy.hash_password(store, &password)).await;
        lease.finish(outcome)?.map_err(PolicyFailure::Unavailable)
    }

    /// An instance to run one call of `kind` on, under its deadline.
    /// Fails fast rather than queue when every instance slot is taken: a
    /// full sandbox means the component is slower than the traffic, and
    /// waiting would only pile requests up.
    async fn lease(
        &self,
        kind: CallKind,
        instances: Instances,
    ) -> Result<Lease<'_>, PolicyFailure> {
        let running = self
            .sandbox
            .running
            .try_acquire()
            .map_err(|_| PolicyFailure::Busy(self.sandbox.limits.max_instances))?;
        let idle = match instances {
            Instances::Pooled => self.pool.take(),
            Instances::Fresh => None,
        };
        let mut instance = match idle {
            Some(instance) => instance,
            None => self
                .instantiate(Arc::clone(&self.env), kind)
                .await
                .inspect_err(|_| self.count_fault())?,
        };
        self.begin(&mut instance, kind);
        Ok(Lease {
            runtime: self,
            instance: Some(instance),
            reuse: matches!(instances, Instances::Pooled),
            _running: running,
        })
    }

    /// Starts the clock of a call of `kind` on `instance`.
    fn begin(&self, instance: &mut ReadyInstance, kind: CallKind) {
        instance
            .store
            .data_mut()
            .clock
            .start(kind, &self.sandbox.limits.deadlines);
        instance.store.set_epoch_deadline(1);
    }

    async fn instantiate(
        &self,
        env: Arc<HostEnv>,
        kind: CallKind,
    ) -> Result<ReadyInstance, PolicyFailure> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(kind.memory_cap(
                self.sandbox.limits.memory_bytes,
                self.instance_memory_bytes(),
            ))
            .instances(32)
            .trap_on_grow_failure(true)
            .build();
        let clock = CallClock::new(Arc::clone(&self.overrun_slots), self.overrun_slot_count);
        let mut store = Store::new(&self.sandbox.engine, StoreState::new(env, limits, clock));
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|mut store| store.data_mut().clock.on_tick());
        store
            .data_mut()
            .clock
            .start_instantiation(kind, &self.sandbox.limits.deadlines);
        store.set_epoch_deadline(1);
        let policy = guarded(self.pre.instantiate(&mut store))
            .await
            .map_err(describe_fault)?;
        store.data_mut().clock.finish();
        self.instance_memory
            .store(store.data().limits.memory_bytes, Ordering::Relaxed);
        Ok(ReadyInstance {
            store,
            policy,
            calls: 0,
        })
    }

    fn count_fault(&self) {
        self.consecutive_faults.fetch_add(1, Ordering::Relaxed);
    }

    /// Delays a faulted call's answer (see [`FAULT_ANSWER_DELAY`]), unless
    /// it is a shadow's, which no client waits for.
    async fn slow_down_failures<R>(
        &self,
        outcome: Result<R, PolicyFailure>,
    ) -> Result<R, PolicyFailure> {
        if self.role == Role::Serving
            && matches!(
                outcome,
                Err(PolicyFailure::Fault(_) | PolicyFailure::Overrun(_))
            )
        {
            tokio::time::sleep(FAULT_ANSWER_DELAY).await;
        }
        outcome
    }
}

/// Which instance a call runs on.
#[derive(Clone, Copy)]
enum Instances {
    /// A ready instance from the pool, returned to it afterwards.
    Pooled,
    /// A new instance, dropped afterwards: for password work, which grows
    /// an instance's memory by argon2's ~19 MiB when the policy hashes
    /// itself (one that asks the host's `primitives` grows nothing).
    /// Instantiating costs ~0.15 ms (CPython's: ~4 ms) next to argon2's
    /// tens of milliseconds, and pooled instances stay small.
    Fresh,
}

/// One call's instance and instance slot. Dropped without
/// [`Lease::finish`] (the request went away mid-call), the instance is
/// dropped too: its state is unknown.
struct Lease<'a> {
    runtime: &'a PolicyRuntime,
    instance: Option<ReadyInstance>,
    reuse: bool,
    _running: SemaphorePermit<'a>,
}

impl Lease<'_> {
    fn parts(&mut self) -> (&worlds::Policy, &mut Store<StoreState>) {
        let instance = self.instance.as_mut().expect("a lease holds its instance");
        (&instance.policy, &mut instance.store)
    }

    /// Ends the call: a failed call's instance is dropped, never reused.
    fn finish<R>(mut self, outcome: wasmtime::Result<R>) -> Result<R, PolicyFailure> {
        let mut instance = self.instance.take().expect("a lease holds its instance");
        instance.store.data_mut().clock.finish();
        let runtime = self.runtime;
        match outcome {
            Ok(result) => {
                runtime.consecutive_faults.store(0, Ordering::Relaxed);
                instance.calls += 1;
                if self.reuse {
                    runtime.pool.give_back(instance);
                }
                Ok(result)
            }
            Err(error) => {
                runtime.count_fault();
                let failure = describe_fault(error);
                tracing::warn!(component = %runtime.info.name, sha256 = %runtime.info.sha256, error = %failure, "auth component call failed; instance discarded");
                Err(failure)
            }
        }
    }
}

/// How long a request whose decision faulted (trapped, ran out of time or
/// memory, or was refused for running long) waits for its 503. It costs
/// the server nothing (the request's task sleeps) and keeps a client that
/// sends such requests back to back from keeping the sandbox busy: measured
/// on 2 cores with 4 clients spinning and 2 panicking or exhausting memory,
/// it is what keeps valid traffic above half its throughput (see
/// docs/benchmarks.md, hostile neighbours).
const FAULT_ANSWER_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs a call into the component, turning a panic in a host function
/// into an error: a guest must never turn one into a dropped connection.
async fn guarded<R>(call: impl Future<Output = wasmtime::Result<R>>) -> wasmtime::Result<R> {
    std::panic::AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(wasmtime::Error::msg(format!(
                "a host function panicked: {what}"
            )))
        })
}

fn describe_fault(error: wasmtime::Error) -> PolicyFailure {
    if let Some(overrun) = error.downcast_ref::<Overrun>() {
        return PolicyFailure::Overrun(overrun.to_string());
    }
    if let Some(deadline) = error.downcast_ref::<DeadlineExceeded>() {
        return PolicyFailure::Fault(deadline.to_string());
    }
    let reason = match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => "deadline exceeded".to_owned(),
        Some(trap) => format!("trapped: {trap}"),
        None => format!("{error:#}"),
    };
    PolicyFailure::Fault(reason)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
