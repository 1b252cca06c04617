//! wasmtime behind one door: compiling (and caching) the component, the
//! sandbox each call runs in, reusing instances, and converting between the
//! WIT types and the host's.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{
    AccessRequest, Denial, Directory, Grant, GrantRefusal, PolicyFailure, PolicySettings,
    Principal, SandboxLimits,
};

mod worlds;

use self::worlds::{Policy, PolicyPre, current, wit};

/// How often the epoch advances; the granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// An instance is replaced after this many calls, so that whatever state a
/// policy accumulates (allocator fragmentation, caches) stays bounded.
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;

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
    /// The WIT contract it implements: `taskflow:auth@0.2.0`, or
    /// `taskflow:auth@0.1` for a policy built before 0.2.
    #[serde(default)]
    pub contract: String,
}

/// Why a component could not be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("auth component {}: cannot read the file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("auth component {}: not a valid WebAssembly component: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("auth component {}: does not implement the taskflow:auth@0.2.0 (or 0.1) auth-policy world: {reason}", path.display())]
    WrongWorld { path: PathBuf, reason: String },
    #[error("auth component {}: failed its start-up check: {reason}", path.display())]
    Check { path: PathBuf, reason: String },
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}

/// What the host provides to every instance through the `host` import.
struct HostEnv {
    /// Swapped whole when the signing keys change.
    settings: ArcSwap<wit::PolicySettings>,
    users: Arc<dyn Directory>,
}

/// The data of one instance's `Store`.
struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    env: Arc<HostEnv>,
    /// A user record fetched by `is-revoked` during the current call, kept
    /// for the `find-user` that follows it. Cleared before every call.
    looked_up: Option<(String, Option<super::UserRecord>)>,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for StoreState {}

impl current::taskflow::auth::host::Host for StoreState {
    fn settings(&mut self) -> wit::PolicySettings {
        wit::PolicySettings::clone(&self.env.settings.load())
    }

    fn find_user(&mut self, username: String) -> Result<Option<wit::UserRecord>, String> {
        let user = match self.looked_up.take() {
            Some((name, user)) if name == username => user,
            _ => self.env.users.find_user(&username)?,
        };
        Ok(user.map(|u| wit::UserRecord {
            username: u.username,
            password_hash: u.password_hash,
            scopes: u.scopes,
        }))
    }

    fn is_revoked(
        &mut self,
        token_id: String,
        subject: String,
        issued_at: u64,
    ) -> Result<bool, String> {
        let (revoked, user) = self.env.users.check_token(&token_id, &subject, issued_at)?;
        self.looked_up = Some((subject, user));
        Ok(revoked)
    }
}

/// A component file as read from disk, with its digest.
pub(super) struct ComponentFile {
    pub(super) path: PathBuf,
    pub(super) bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub(super) sha256: String,
}

impl ComponentFile {
    pub(super) fn read(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes,
        })
    }
}

/// A ready instance and the store it lives in.
struct ReadyInstance {
    store: Store<StoreState>,
    policy: Policy,
    calls: u32,
}

/// What every loaded policy shares: one engine (and its epoch ticker), one
/// linker, the sandbox limits, and the cap on instances running at once.
pub(super) struct Sandbox {
    engine: Engine,
    linker: Linker<StoreState>,
    limits: SandboxLimits,
    deadline_ticks: u64,
    running: tokio::sync::Semaphore,
    cache_dir: Option<PathBuf>,
}

impl Sandbox {
    pub(super) fn new(
        limits: SandboxLimits,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self, LoadError> {
        let engine = new_engine()?;
        let mut linker = Linker::<StoreState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        worlds::add_to_linker(&mut linker).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        start_epoch_ticker(&engine);
        Ok(Self {
            engine,
            linker,
            deadline_ticks: limits.call_deadline.div_duration_f64(EPOCH_TICK).ceil() as u64 + 1,
            running: tokio::sync::Semaphore::new(limits.max_instances.max(1)),
            limits,
            cache_dir,
        })
    }
}

/// One loaded, checked policy component and its ready instances.
pub(super) struct PolicyRuntime {
    sandbox: Arc<Sandbox>,
    pre: PolicyPre,
    env: Arc<HostEnv>,
    idle: Mutex<Vec<ReadyInstance>>,
    /// Calls that failed in a row; reset by any success.
    consecutive_faults: AtomicU32,
    info: ComponentInfo,
}

/// Calls failing in a row before the policy counts as degraded.
const DEGRADED_AFTER_FAULTS: u32 = 3;

impl PolicyRuntime {
    /// Compiles `file`, links it against the world, and runs the
    /// self-check. Slow (compilation): keep off the request path.
    pub(super) fn load(
        sandbox: &Arc<Sandbox>,
        file: &ComponentFile,
        settings: &PolicySettings,
        users: Arc<dyn Directory>,
    ) -> Result<Self, LoadError> {
        let (path, bytes, sha256) = (file.path.as_path(), &file.bytes[..], file.sha256.clone());
        let component = compile(
            &sandbox.engine,
            path,
            bytes,
            &sha256,
            sandbox.cache_dir.as_deref(),
        )?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };
        let pre = sandbox
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = PolicyPre::new(pre).map_err(wrong_world)?;
        let mut runtime = Self {
            sandbox: Arc::clone(sandbox),
            pre,
            env: Arc::new(HostEnv {
                settings: ArcSwap::from_pointee(to_wit_settings(settings)),
                users,
            }),
            idle: Mutex::new(Vec::new()),
            consecutive_faults: AtomicU32::new(0),
            info: ComponentInfo {
                name: String::new(),
                version: String::new(),
                sha256,
                path: path.to_owned(),
                loaded_at: now_rfc3339(),
                contract: String::new(),
            },
        };
        let check_failed = |reason: String| LoadError::Check {
            path: path.to_owned(),
            reason,
        };
        let info = runtime
            .call(|policy, store| policy.info(store))
            .map_err(|e| check_failed(e.to_string()))?;
        runtime.info.name = info.name;
        runtime.info.version = info.version;
        runtime.info.contract = runtime.pre.world().to_owned();
        if !runtime.pre.has_refresh() {
            tracing::warn!(
                component = %runtime.info.name,
                world = runtime.pre.world(),
                "the component is built for an older contract: no refresh grant (no refresh tokens are issued while it serves), HS256 keys only"
            );
        }
        let passed_marker = sandbox
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{}.self-check-passed", runtime.check_key(settings))));
        if passed_marker.as_ref().is_some_and(|m| m.exists()) {
            tracing::debug!(component = %runtime.info.name, "self-check passed before with these settings");
        } else {
            runtime.self_check().map_err(check_failed)?;
            if let Some(marker) = passed_marker {
                let _ = crate::files::write_private(&marker, b"");
            }
        }
        Ok(runtime)
    }

    /// Proves the policy does its job before it may serve: a probe user it
    /// has never seen gets a token, the token is accepted, and a tampered
    /// copy, a missing header and a wrong password are refused; a refresh
    /// grant gives the probe an accepted token and an unknown user nothing. The probe
    /// exists only in a throwaway instance's imports, never in the directory
    /// that real requests reach.
    fn self_check(&self) -> Result<(), String> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| e.to_string())?;
        let password = hex::encode(random);
        let username = format!("self-check-{}", &password[..8]);
        let hash = self
            .hash_password(password.clone())
            .map_err(|e| format!("hash-password: {e}"))?;
        let probe_env = Arc::new(HostEnv {
            settings: ArcSwap::from_pointee(wit::PolicySettings::clone(&self.env.settings.load())),
            users: Arc::new(ProbeDirectory(super::UserRecord {
                username: username.clone(),
                password_hash: hash,
                scopes: vec![SELF_CHECK_SCOPE.to_owned()],
            })),
        });
        let mut probe = self
            .instantiate(probe_env)
            .map_err(|e| format!("instantiate: {e}"))?;
        let deadline = self.sandbox.deadline_ticks;
        let mut issue = |password: &str| {
            let request = wit::TokenRequest {
                username: username.clone(),
                password: password.to_owned(),
                scopes: None,
            };
            probe.store.set_epoch_deadline(deadline);
            probe
                .policy
                .issue_token(&mut probe.store, &request)
                .map_err(|e| describe_fault(e).to_string())
        };
        let token = match issue(&password)? {
            Ok(grant) => grant.access_token,
            Err(e) => return Err(format!("the probe user's grant was refused: {e:?}")),
        };
        if !matches!(issue("wrong")?, Err(wit::TokenError::InvalidGrant)) {
            return Err("a wrong password was not refused with invalid-grant".into());
        }
        let mut refresh = |username: &str| {
            let request = wit::RefreshRequest {
                username: username.to_owned(),
                granted_scopes: vec![SELF_CHECK_SCOPE.to_owned()],
                scopes: None,
            };
            probe.store.set_epoch_deadline(deadline);
            probe
                .policy
                .refresh_token(&mut probe.store, &request)
                .map_err(|e| describe_fault(e).to_string())
        };
        // A 0.1 policy has no refresh grant to check.
        let refreshed = match refresh(&username)? {
            None => None,
            Some(Ok(grant)) => Some(grant.access_token),
            Some(Err(e)) => return Err(format!("the probe user's refresh was refused: {e:?}")),
        };
        if refreshed.is_some()
            && !matches!(
                refresh("self-check-nobody")?,
                Some(Err(wit::TokenError::InvalidGrant))
            )
        {
            return Err("a refresh for an unknown user was not refused with invalid-grant".into());
        }
        let mut decide = |authorization: Option<String>| {
            let request = wit::AccessRequest {
                authorization,
                method: "GET".into(),
                route: "/users/me".into(),
                required_scopes: vec![SELF_CHECK_SCOPE.to_owned()],
            };
            probe.store.set_epoch_deadline(deadline);
            probe
                .policy
                .decide_access(&mut probe.store, &request)
                .map_err(|e| describe_fault(e).to_string())
        };
        match decide(Some(format!("Bearer {token}")))? {
            Ok(principal) if principal.subject == username => {}
            other => return Err(format!("the probe's own token was not accepted: {other:?}")),
        }
        if !matches!(
            decide(Some(format!("Bearer {}", tamper(&token))))?,
            Err(wit::AccessDenial::InvalidToken(_))
        ) {
            return Err("a tampered token was not refused as invalid".into());
        }
        if !matches!(decide(None)?, Err(wit::AccessDenial::NoCredentials)) {
            return Err("a request without credentials was not refused".into());
        }
        let Some(refreshed) = refreshed else {
            return Ok(());
        };
        match decide(Some(format!("Bearer {refreshed}")))? {
            Ok(principal) if principal.subject == username => Ok(()),
            other => Err(format!(
                "the probe's refreshed token was not accepted: {other:?}"
            )),
        }
    }

    /// Names this component with these settings. A self-check that passed
    /// once is not repeated for the same key (a restart with a warm cache
    /// then skips three argon2 runs); any change of component, key ids,
    /// issuer, audience or lifetimes checks again.
    fn check_key(&self, settings: &PolicySettings) -> String {
        let mut digest = Sha256::new();
        digest.update(self.info.sha256.as_bytes());
        for key in &settings.signing_keys {
            digest.update(b"\0kid\0");
            digest.update(key.kid.as_bytes());
            digest.update(key.algorithm.jose_name().as_bytes());
        }
        for part in [&settings.issuer, &settings.audience] {
            digest.update(b"\0");
            digest.update(part.as_bytes());
        }
        digest.update(settings.token_ttl.as_secs().to_le_bytes());
        digest.update(settings.leeway.as_secs().to_le_bytes());
        hex::encode(digest.finalize())
    }

    /// Whether the last few calls all failed.
    pub(super) fn degraded(&self) -> bool {
        self.consecutive_faults.load(Ordering::Relaxed) >= DEGRADED_AFTER_FAULTS
    }

    /// Hands the component new signing keys from its next call on.
    pub(super) fn set_signing_keys(&self, keys: &[super::SigningKey]) {
        let mut settings = wit::PolicySettings::clone(&self.env.settings.load());
        settings.signing_keys = to_wit_keys(keys);
        self.env.settings.store(Arc::new(settings));
    }

    pub(super) fn supports_refresh(&self) -> bool {
        self.pre.has_refresh()
    }

    pub(super) fn info(&self) -> &ComponentInfo {
        &self.info
    }

    pub(super) fn decide_access(
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
        let decision = self.call(|policy, store| policy.decide_access(store, &request))?;
        match decision {
            Ok(p) => Ok(Ok(Principal {
                subject: p.subject,
                scopes: p.scopes,
            })),
            Err(wit::AccessDenial::NoCredentials) => Ok(Err(Denial::NoCredentials)),
            Err(wit::AccessDenial::InvalidToken(reason)) => Ok(Err(Denial::InvalidToken(reason))),
            Err(wit::AccessDenial::InsufficientScope(scopes)) => {
                Ok(Err(Denial::InsufficientScope(scopes)))
            }
            Err(wit::AccessDenial::Unavailable(reason)) => Err(PolicyFailure::Unavailable(reason)),
        }
    }

    pub(super) fn issue_token(
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
        let outcome = self.call_on(Instances::Fresh, |policy, store| {
            policy.issue_token(store, &request)
        })?;
        from_wit_grant(outcome)
    }

    pub(super) fn refresh_token(
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
        match self.call(|policy, store| policy.refresh_token(store, &request))? {
            Some(outcome) => from_wit_grant(outcome),
            None => Ok(Err(GrantRefusal::UnsupportedGrant)),
        }
    }

    pub(super) fn hash_password(&self, password: String) -> Result<String, PolicyFailure> {
        self.call_on(Instances::Fresh, |policy, store| {
            policy.hash_password(store, &password)
        })?
        .map_err(PolicyFailure::Unavailable)
    }

    /// Runs `f` on an instance under the call deadline. An instance that
    /// fails in any way is dropped, never reused: its state is unknown.
    ///
    /// Why a pool of reused instances (measured on 2 cores, see
    /// docs/benchmarks.md): a Bearer check on a reused instance costs ~7 µs,
    /// on a fresh one ~60 µs even with the pooling allocator, against ~3 µs
    /// for native verification. Reuse is safe because the policy's decisions
    /// take everything they need as arguments or from imports; instances are
    /// still recycled after [`MAX_CALLS_PER_INSTANCE`] calls.
    fn call<R>(
        &self,
        f: impl FnOnce(&Policy, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyFailure> {
        self.call_on(Instances::Pooled, f)
    }

    fn call_on<R>(
        &self,
        instances: Instances,
        f: impl FnOnce(&Policy, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyFailure> {
        // Fail fast rather than queue: a full sandbox means the component is
        // slower than the traffic, and waiting would only pile requests up.
        let _running = self
            .sandbox
            .running
            .try_acquire()
            .map_err(|_| PolicyFailure::Busy(self.sandbox.limits.max_instances))?;
        let idle = match instances {
            Instances::Pooled => self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop(),
            Instances::Fresh => None,
        };
        let mut instance = match idle {
            Some(instance) => instance,
            None => self.instantiate(Arc::clone(&self.env))?,
        };
        instance
            .store
            .set_epoch_deadline(self.sandbox.deadline_ticks);
        instance.store.data_mut().looked_up = None;
        // A host function can panic under a guest's call (the WASI streams
        // block on the async runtime, which panics on a runtime thread); the
        // guest must not turn that into a dropped connection.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&instance.policy, &mut instance.store)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(wasmtime::Error::msg(format!(
                "a host function panicked: {what}"
            )))
        });
        let result = match outcome {
            Ok(result) => result,
            Err(error) => {
                self.consecutive_faults.fetch_add(1, Ordering::Relaxed);
                let failure = describe_fault(error);
                tracing::warn!(component = %self.info.name, sha256 = %self.info.sha256, error = %failure, "auth component call failed; instance discarded");
                return Err(failure);
            }
        };
        self.consecutive_faults.store(0, Ordering::Relaxed);
        instance.calls += 1;
        if matches!(instances, Instances::Pooled) && instance.calls < MAX_CALLS_PER_INSTANCE {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.sandbox.limits.idle_instances {
                idle.push(instance);
            }
        }
        Ok(result)
    }

    fn instantiate(&self, env: Arc<HostEnv>) -> Result<ReadyInstance, PolicyFailure> {
        // No preopens, environment, arguments, stdio or network: the guest
        // reaches nothing but the `host` import, clocks and randomness.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.sandbox.limits.memory_bytes)
            .instances(32)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.sandbox.engine,
            StoreState {
                wasi,
                table: ResourceTable::new(),
                limits,
                env,
                looked_up: None,
            },
        );
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.sandbox.deadline_ticks);
        let policy = self.pre.instantiate(&mut store).map_err(describe_fault)?;
        Ok(ReadyInstance {
            store,
            policy,
            calls: 0,
        })
    }
}

/// Which instance a call runs on.
#[derive(Clone, Copy)]
enum Instances {
    /// A ready instance from the pool, returned to it afterwards.
    Pooled,
    /// A new instance, dropped afterwards: for password work, which grows
    /// an instance's memory by argon2's ~19 MiB. Instantiating costs well
    /// under 0.1 ms next to argon2's ~40 ms, and pooled instances stay small.
    Fresh,
}

/// The scope the self-check's probe user holds; no real route uses it.
const SELF_CHECK_SCOPE: &str = "taskflow:self-check";

/// The only user the self-check's throwaway instance can find.
struct ProbeDirectory(super::UserRecord);

impl Directory for ProbeDirectory {
    fn find_user(&self, username: &str) -> Result<Option<super::UserRecord>, String> {
        Ok((username == self.0.username).then(|| self.0.clone()))
    }

    fn check_token(
        &self,
        _: &str,
        subject: &str,
        _: u64,
    ) -> Result<(bool, Option<super::UserRecord>), String> {
        Ok((false, self.find_user(subject)?))
    }
}

/// `token` with one character of its signature changed.
fn tamper(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last = if *last == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn describe_fault(error: wasmtime::Error) -> PolicyFailure {
    let reason = match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => "deadline exceeded".to_owned(),
        Some(trap) => format!("trapped: {trap}"),
        None => format!("{error:#}"),
    };
    PolicyFailure::Fault(reason)
}

fn new_engine() -> Result<Engine, LoadError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// Compiles the component, or loads the result of an earlier compilation
/// from `cache_dir` (keyed by the file's digest and the engine's settings).
fn compile(
    engine: &Engine,
    path: &Path,
    bytes: &[u8],
    sha256: &str,
    cache_dir: Option<&Path>,
) -> Result<Component, LoadError> {
    let invalid = |e: wasmtime::Error| LoadError::Invalid {
        path: path.to_owned(),
        reason: format!("{e:#}"),
    };
    let Some(cache_dir) = cache_dir else {
        return Component::new(engine, bytes).map_err(invalid);
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let cached = cache_dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
    if cached.exists() {
        // SAFETY: the cache directory is created 0700 by this program, and
        // entries are only ever written by `precompile_component` below with
        // an engine of the same settings (the file name carries their hash).
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(file = %cached.display(), error = %e, "ignoring unusable compiled component")
            }
        }
    }
    let compiled = engine.precompile_component(bytes).map_err(invalid)?;
    if let Err(e) = crate::files::write_private(&cached, &compiled) {
        tracing::warn!(file = %cached.display(), error = %e, "cannot cache the compiled component");
    }
    // SAFETY: `compiled` was produced just now by this engine.
    unsafe { Component::deserialize(engine, &compiled) }.map_err(invalid)
}

/// A grant's outcome in the host's types.
fn from_wit_grant(
    outcome: Result<wit::TokenGrant, wit::TokenError>,
) -> Result<Result<Grant, GrantRefusal>, PolicyFailure> {
    match outcome {
        Ok(g) => Ok(Ok(Grant {
            access_token: g.access_token,
            expires_in: g.expires_in,
            scopes: g.scopes,
        })),
        Err(wit::TokenError::InvalidGrant) => Ok(Err(GrantRefusal::InvalidGrant)),
        Err(wit::TokenError::InvalidScope(s)) => Ok(Err(GrantRefusal::InvalidScope(s))),
        Err(wit::TokenError::InvalidRequest(s)) => Ok(Err(GrantRefusal::InvalidRequest(s))),
        Err(wit::TokenError::Unavailable(s)) => Err(PolicyFailure::Unavailable(s)),
    }
}

/// The keys in the form the component takes.
fn to_wit_keys(keys: &[super::SigningKey]) -> Vec<wit::SigningKey> {
    keys.iter()
        .map(|k| wit::SigningKey {
            kid: k.kid.clone(),
            algorithm: match k.algorithm {
                super::KeyAlgorithm::Hs256 => wit::KeyAlgorithm::Hs256,
                super::KeyAlgorithm::EdDsa => wit::KeyAlgorithm::EdDsa,
            },
            secret: k.secret.clone(),
        })
        .collect()
}

fn to_wit_settings(settings: &PolicySettings) -> wit::PolicySettings {
    wit::PolicySettings {
        signing_keys: to_wit_keys(&settings.signing_keys),
        issuer: settings.issuer.clone(),
        audience: settings.audience.clone(),
        token_ttl_seconds: u32::try_from(settings.token_ttl.as_secs()).unwrap_or(u32::MAX),
        leeway_seconds: u32::try_from(settings.leeway.as_secs()).unwrap_or(u32::MAX),
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
