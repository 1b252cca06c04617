//! wasmtime behind one door: compiling (and caching) the component, the
//! sandbox each call runs in, reusing instances, and converting between the
//! WIT types and the host's.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{
    AccessRequest, Denial, Grant, GrantRefusal, PolicyConfig, PolicyFailure, PolicySettings,
    Principal, UserDirectory,
};

wasmtime::component::bindgen!({
    world: "auth-policy",
    path: "../wit",
});

use taskflow::auth::types as wit;

/// How often the epoch advances; the granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// An instance is replaced after this many calls, so that whatever state a
/// policy accumulates (allocator fragmentation, caches) stays bounded.
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;

/// What is known about the loaded component.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ComponentInfo {
    pub name: String,
    pub version: String,
    /// Hex SHA-256 of the component file.
    pub sha256: String,
    pub path: PathBuf,
    /// RFC 3339 time the component was loaded.
    pub loaded_at: String,
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
    #[error("auth component {}: does not implement the taskflow:auth@0.1.0 auth-policy world: {reason}", path.display())]
    WrongWorld { path: PathBuf, reason: String },
    #[error("auth component {}: failed its start-up check: {reason}", path.display())]
    Check { path: PathBuf, reason: String },
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}

/// What the host provides to every instance through the `host` import.
struct HostEnv {
    settings: wit::PolicySettings,
    users: Arc<dyn UserDirectory>,
}

/// The data of one instance's `Store`.
struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    env: Arc<HostEnv>,
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

impl taskflow::auth::host::Host for StoreState {
    fn settings(&mut self) -> wit::PolicySettings {
        self.env.settings.clone()
    }

    fn find_user(&mut self, username: String) -> Result<Option<wit::UserRecord>, String> {
        let user = self.env.users.find_user(&username)?;
        Ok(user.map(|u| wit::UserRecord {
            username: u.username,
            password_hash: u.password_hash,
            scopes: u.scopes,
        }))
    }
}

/// A ready instance and the store it lives in.
struct ReadyInstance {
    store: Store<StoreState>,
    policy: AuthPolicy,
    calls: u32,
}

pub(super) struct PolicyRuntime {
    engine: Engine,
    pre: AuthPolicyPre<StoreState>,
    env: Arc<HostEnv>,
    idle: Mutex<Vec<ReadyInstance>>,
    max_idle: usize,
    memory_bytes: usize,
    deadline_ticks: u64,
    info: ComponentInfo,
}

impl PolicyRuntime {
    pub(super) fn load(
        config: &PolicyConfig,
        settings: PolicySettings,
        users: Arc<dyn UserDirectory>,
    ) -> Result<Self, LoadError> {
        let path = &config.component;
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.clone(),
            source,
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let engine = new_engine()?;
        let component = compile(&engine, path, &bytes, &sha256, config.cache_dir.as_deref())?;

        let mut linker = Linker::<StoreState>::new(&engine);
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.clone(),
            reason: format!("{e:#}"),
        };
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        AuthPolicy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
        let pre = AuthPolicyPre::new(pre).map_err(wrong_world)?;

        let env = Arc::new(HostEnv {
            settings: to_wit_settings(&settings),
            users,
        });
        let mut runtime = Self {
            engine,
            pre,
            env,
            idle: Mutex::new(Vec::new()),
            max_idle: config.limits.idle_instances,
            memory_bytes: config.limits.memory_bytes,
            deadline_ticks: config
                .limits
                .call_deadline
                .div_duration_f64(EPOCH_TICK)
                .ceil() as u64
                + 1,
            info: ComponentInfo {
                name: String::new(),
                version: String::new(),
                sha256,
                path: path.clone(),
                loaded_at: now_rfc3339(),
            },
        };
        start_epoch_ticker(&runtime.engine);
        let info = runtime
            .call(|policy, store| policy.taskflow_auth_policy().call_info(store))
            .map_err(|e| LoadError::Check {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        runtime.info.name = info.name;
        runtime.info.version = info.version;
        Ok(runtime)
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
        let decision = self.call(|policy, store| {
            policy
                .taskflow_auth_policy()
                .call_decide_access(store, &request)
        })?;
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
        let outcome = self.call(|policy, store| {
            policy
                .taskflow_auth_policy()
                .call_issue_token(store, &request)
        })?;
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

    pub(super) fn hash_password(&self, password: String) -> Result<String, PolicyFailure> {
        self.call(|policy, store| {
            policy
                .taskflow_auth_policy()
                .call_hash_password(store, &password)
        })?
        .map_err(PolicyFailure::Unavailable)
    }

    /// Runs `f` on a ready instance under the call deadline. An instance that
    /// fails in any way is dropped, never reused: its state is unknown.
    fn call<R>(
        &self,
        f: impl FnOnce(&AuthPolicy, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyFailure> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut instance = match idle {
            Some(instance) => instance,
            None => self.instantiate()?,
        };
        instance.store.set_epoch_deadline(self.deadline_ticks);
        let result = f(&instance.policy, &mut instance.store).map_err(describe_fault)?;
        instance.calls += 1;
        if instance.calls < MAX_CALLS_PER_INSTANCE {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.max_idle {
                idle.push(instance);
            }
        }
        Ok(result)
    }

    fn instantiate(&self) -> Result<ReadyInstance, PolicyFailure> {
        // No preopens, environment, arguments, stdio or network: the guest
        // reaches nothing but the `host` import, clocks and randomness.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            .instances(32)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.engine,
            StoreState {
                wasi,
                table: ResourceTable::new(),
                limits,
                env: Arc::clone(&self.env),
            },
        );
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.deadline_ticks);
        let policy = self.pre.instantiate(&mut store).map_err(describe_fault)?;
        Ok(ReadyInstance {
            store,
            policy,
            calls: 0,
        })
    }
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

fn to_wit_settings(settings: &PolicySettings) -> wit::PolicySettings {
    wit::PolicySettings {
        signing_keys: settings
            .signing_keys
            .iter()
            .map(|k| wit::SigningKey {
                kid: k.kid.clone(),
                secret: k.secret.clone(),
            })
            .collect(),
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
