//! The auth component and the sandbox it runs in: which file, who may
//! sign it, its deadlines, memory and instances, and how often the file
//! is looked at again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::ConfigError;
use crate::policy::{CallDeadlines, PolicyConfig, SandboxLimits, TrustedKeys};

/// Where `just build` puts the default policy component.
const BUILT_COMPONENT: &str = "target/wasm32-wasip2/component/guest_auth.wasm";

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Auth policy component (.wasm) [default: the one `just build` makes].
    #[arg(long, env = "TASKFLOW_AUTH_COMPONENT")]
    pub auth_component: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Directory for compiled components [default: DATA_DIR/component-cache].
    #[arg(long, env = "TASKFLOW_COMPONENT_CACHE_DIR")]
    pub component_cache_dir: Option<PathBuf>,
    /// Longest a password grant (or password hashing) in the auth component
    /// may run, in milliseconds.
    #[arg(long, env = "TASKFLOW_COMPONENT_DEADLINE_MS", default_value_t = 2000)]
    pub component_deadline_ms: u64,
    /// Longest a Bearer decision or a refresh grant in the auth component may
    /// run, in milliseconds (storage lookups not counted).
    #[arg(long, env = "TASKFLOW_DECISION_DEADLINE_MS", default_value_t = 50)]
    pub decision_deadline_ms: u64,
    /// Most memory one component instance may use, in MiB.
    #[arg(long, env = "TASKFLOW_COMPONENT_MEMORY_MIB", default_value_t = 64)]
    pub component_memory_mib: usize,
    /// Most component instances running calls at once; past it, requests get 503.
    #[arg(long, env = "TASKFLOW_COMPONENT_MAX_INSTANCES", default_value_t = 256)]
    pub component_max_instances: usize,
    /// How long a Bearer decision is reused for the same token and route, in
    /// milliseconds (0: ask the policy on every request). Any revocation,
    /// user or key change or policy swap ends it at once; a token may be
    /// accepted up to this long past its expiry and leeway.
    #[arg(
        long,
        env = "TASKFLOW_DECISION_CACHE_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(0..=60_000)
    )]
    pub decision_cache_ms: u64,
    /// While a candidate shadows the policy: one password grant in this
    /// many is also decided by it (0: none), since each costs an argon2
    /// hash; requests waiting for it are at most --shadow-queue, further
    /// ones are dropped and counted, never waited for.
    #[arg(long, env = "TASKFLOW_SHADOW_PASSWORD_SAMPLE", default_value_t = 20)]
    pub shadow_password_sample: u64,
    /// Requests waiting for a shadowing candidate at most.
    #[arg(
        long,
        env = "TASKFLOW_SHADOW_QUEUE",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub shadow_queue: u64,
    /// How often the component file is checked for changes, in milliseconds (0: never).
    #[arg(long, env = "TASKFLOW_COMPONENT_WATCH_MS", default_value_t = 1000)]
    pub component_watch_ms: u64,
}

/// Who may sign auth components.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// File of minisign public keys allowed to sign auth components. With
    /// it, every component (at start, from the file, on deploy) must carry
    /// a valid signature by one of them (FILE.minisig), or it is refused.
    #[arg(long, env = "TASKFLOW_COMPONENT_TRUST")]
    pub component_trust: Option<PathBuf>,
}

impl TrustArgs {
    /// The keys allowed to sign components, if trust is configured.
    pub fn keys(&self) -> Result<Option<Arc<TrustedKeys>>, ConfigError> {
        match &self.component_trust {
            Some(path) => Ok(Some(Arc::new(TrustedKeys::read(path)?))),
            None => Ok(None),
        }
    }
}

impl SandboxArgs {
    /// The component file: `--auth-component`, or the one `just build` makes.
    pub fn component(&self) -> PathBuf {
        self.auth_component
            .clone()
            .unwrap_or_else(default_component)
    }

    /// Where compiled components are kept.
    pub fn cache_dir(&self, data_dir: &Path) -> PathBuf {
        self.component_cache_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("component-cache"))
    }

    /// How often to look for a new component file; `None`: never.
    pub fn component_watch(&self) -> Option<Duration> {
        (self.component_watch_ms > 0).then(|| Duration::from_millis(self.component_watch_ms))
    }

    /// Every sandbox setting whose value makes no sense, by name, with why.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        [
            ("component_deadline_ms", self.component_deadline_ms),
            ("decision_deadline_ms", self.decision_deadline_ms),
            ("component_memory_mib", self.component_memory_mib as u64),
            (
                "component_max_instances",
                self.component_max_instances as u64,
            ),
        ]
        .into_iter()
        .filter(|(_, value)| *value == 0)
        .map(|(name, _)| (name, "must be positive".to_owned()))
        .collect()
    }

    /// Component path, cache and sandbox limits, validated.
    pub fn policy_config(&self, data_dir: &Path) -> Result<PolicyConfig, ConfigError> {
        if let Some((name, why)) = self.problems().into_iter().next() {
            return Err(ConfigError::Invalid(format!("`{name}` {why}")));
        }
        Ok(PolicyConfig {
            component: self.component(),
            cache_dir: Some(self.cache_dir(data_dir)),
            limits: SandboxLimits {
                deadlines: CallDeadlines {
                    decision: Duration::from_millis(self.decision_deadline_ms),
                    password: Duration::from_millis(self.component_deadline_ms),
                },
                memory_bytes: self.component_memory_mib << 20,
                max_instances: self.component_max_instances,
                decision_cache: Duration::from_millis(self.decision_cache_ms),
                shadow_queue: self.shadow_queue as usize,
                shadow_password_sample: self.shadow_password_sample,
                ..SandboxLimits::default()
            },
            trust: self.trust.keys()?,
        })
    }
}

/// The component `just build` produces: next to the working directory's
/// `target/`, or next to this executable when run from `target/release`.
fn default_component() -> PathBuf {
    let from_cwd = PathBuf::from(BUILT_COMPONENT);
    if from_cwd.exists() {
        return from_cwd;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            Some(
                exe.parent()?
                    .parent()?
                    .join("wasm32-wasip2/component/guest_auth.wasm"),
            )
        })
        .filter(|p| p.exists())
        .unwrap_or(from_cwd)
}
