//! Command line, environment, config file and the settings derived from them.
//!
//! Every setting has a flag, a `TASKFLOW_*` variable and a key in the optional
//! TOML file ([`file`]); the flag wins over the variable, which wins over the
//! file. The signing secret itself is read from the environment or a file of
//! its own only, so it never shows in a process list, `--help` or a config file.

pub mod file;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};

use crate::files;
use crate::keys::KeyTimings;
use crate::policy::{
    CallDeadlines, KeyAlgorithm, PolicyConfig, PolicySettings, SandboxLimits, SigningKey,
    TrustedKeys,
};
use crate::refresh::RefreshLifetime;
use crate::server::ConnectionLimits;
use crate::storage::PoolSettings;
use crate::throttle::LoginLimits;

/// Where `just build` puts the default policy component.
const BUILT_COMPONENT: &str = "target/wasm32-wasip2/component/guest_auth.wasm";
/// The variable that may hold the signing secret itself.
const SECRET_VARIABLE: &str = "TASKFLOW_JWT_SECRET";
/// Name of the generated signing secret inside the data directory.
const SECRET_FILE: &str = "jwt-secret";
/// HS256 keys shorter than the hash output are refused (RFC 7518 §3.2).
const MIN_SECRET_BYTES: usize = 32;
/// The contract's ceiling on clock skew.
const MAX_LEEWAY_SECONDS: u64 = 60;

#[derive(Debug, Parser)]
#[command(
    name = "taskflow",
    version,
    about = "Task API whose authentication policy runs in a WebAssembly component",
    after_help = "Every option can also be set by its TASKFLOW_* variable or in the TOML file \
        named by --config, under its name with underscores (data_dir = \"/var/lib/taskflow\"). \
        A flag wins over a variable, a variable over the file.\n\
        The signing secret comes from TASKFLOW_JWT_SECRET, the file named by \
        --jwt-secret-file, or one generated in the data directory.",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (until SIGINT or SIGTERM).
    Serve,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Roll the auth policy out to every replica, show, list and roll back
    /// revisions, try a candidate on live traffic (shadow) and promote it.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Manage the signing keys (shared by every replica on the database).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show or check the effective settings.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a signing key; it signs after --key-activation-delay, and the
    /// key signing now is retired at that moment.
    Rotate {
        /// The new key's algorithm, HS256 or EdDSA [default: --signing-algorithm]
        #[arg(long, value_parser = parse_key_algorithm)]
        algorithm: Option<KeyAlgorithm>,
    },
    /// List the keys that still verify, with their state; never their secrets.
    List,
    /// Stop a key signing now; tokens it signed stay valid until they expire.
    Retire {
        /// The key id, as `keys list` shows it.
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings and where each comes from, secrets masked.
    Show,
    /// Check the settings, the signing secret, the database and the auth
    /// component (compiled and self-checked) without serving; exits non-zero
    /// on the first problem.
    Check,
}

#[derive(Debug, Subcommand)]
#[command(
    after_help = "Policies roll out through the database: `deploy` stores a component \
    as a new revision and makes it desired, and every replica on the database verifies its \
    signature (with --component-trust), compiles it, self-checks it and swaps it in without \
    failing a request; a replica that refuses it keeps serving what it has and reports why \
    in `status`. `shadow` has every replica decide the live traffic with a candidate too, \
    off the requests' path, and count where it agrees; `promote` deploys it."
)]
pub enum AuthCommand {
    /// Store a component as a new revision and make it desired on every
    /// replica. Its minisign signature is read from FILE.minisig (or
    /// --signature) and stored with it.
    Deploy {
        /// The component (.wasm).
        file: PathBuf,
        /// Its detached minisign signature [default: FILE.minisig, if present].
        #[arg(long)]
        signature: Option<PathBuf>,
        /// What this revision is, for `auth history`.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Show the desired revision and what every replica serves, when it
    /// took over, what it last refused and why; replicas not heard from
    /// lately are marked stale.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the stored revisions, newest first; the desired one is marked.
    History {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier revision desired again, on every replica.
    Rollback {
        /// The revision, as `auth history` lists it [default: the one
        /// desired before the current one].
        revision: Option<i64>,
    },
    /// Make the running server on this data directory load its component
    /// file (and FILE.minisig) again: it takes over on this replica only,
    /// until the next deploy, if it changed and passes its checks.
    Reload,
    /// Try a candidate on the live traffic of every replica without it
    /// answering anyone: `shadow FILE|REVISION` starts, `shadow status`
    /// shows how often it agreed, `shadow stop` ends it.
    Shadow(ShadowArgs),
    /// Make the shadowing candidate the desired revision on every replica,
    /// and end the shadow.
    Promote,
}

/// `taskflow auth shadow ...`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ShadowArgs {
    #[command(subcommand)]
    pub command: Option<ShadowCommand>,
    /// The candidate: a component file (stored as a new revision, with
    /// FILE.minisig), or a stored revision's number.
    #[arg(required = true, value_name = "FILE|REVISION")]
    pub candidate: Option<String>,
    /// The file's detached minisign signature [default: FILE.minisig, if present].
    #[arg(long)]
    pub signature: Option<PathBuf>,
    /// What the stored revision is, for `auth history`.
    #[arg(long, default_value = "")]
    pub note: String,
}

#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// End the shadow on every replica.
    Stop,
    /// Show the shadow and, per replica, how its decisions compared with
    /// the active policy's, and the most recent disagreements.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from standard input (one line).
    Add {
        /// The name the user logs in with, up to 64 characters; stored in
        /// RFC 8265's canonical form (lower case, NFC, usual width), and
        /// refused if it is another user's in that form.
        username: String,
        /// Space-separated scopes, e.g. "tasks:read tasks:write".
        #[arg(long, default_value = "")]
        scopes: String,
    },
    /// List users and their scopes.
    List,
    /// Set a user's password (read from standard input, one line); every
    /// token issued to the user so far is revoked.
    Passwd {
        /// The user whose password changes.
        username: String,
    },
    /// Replace a user's scopes; their tokens keep only the scopes they still hold.
    Scopes {
        /// The user whose scopes change.
        username: String,
        /// Space-separated scopes, e.g. "tasks:read"; "" withdraws every scope.
        scopes: String,
    },
    /// Remove a user and their tasks.
    Remove {
        /// The user to remove.
        username: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings shared by every subcommand, so `user add` sees what `serve` sees.
#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// TOML file of settings, under the options' names with underscores.
    #[arg(long, env = "TASKFLOW_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address `serve` listens on.
    #[arg(
        long,
        env = "TASKFLOW_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,
    /// Directory for the database, generated secret and compiled-component cache.
    #[arg(
        long,
        env = "TASKFLOW_DATA_DIR",
        default_value = "./taskflow-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
    /// [default: sqlite://DATA_DIR/taskflow.db].
    #[arg(long, env = "TASKFLOW_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Most database connections this process opens.
    #[arg(
        long,
        env = "TASKFLOW_DATABASE_MAX_CONNECTIONS",
        default_value_t = 8,
        global = true
    )]
    pub database_max_connections: u32,
    /// Longest a request waits for a database connection or one statement
    /// runs, in milliseconds; past it, 503.
    #[arg(
        long,
        env = "TASKFLOW_DATABASE_TIMEOUT_MS",
        default_value_t = 5000,
        global = true
    )]
    pub database_timeout_ms: u64,
    /// Removed: Bearer checks answer from memory kept current by the change
    /// log. Accepted so that old settings still start; `config check` and
    /// `serve` say it has no effect.
    #[arg(
        long,
        env = "TASKFLOW_TOKEN_STATUS_CACHE_MS",
        global = true,
        hide = true
    )]
    pub token_status_cache_ms: Option<u64>,
    /// Auth policy component (.wasm) [default: the one `just build` makes].
    #[arg(long, env = "TASKFLOW_AUTH_COMPONENT", global = true)]
    pub auth_component: Option<PathBuf>,
    /// File of minisign public keys allowed to sign auth components. With
    /// it, every component (at start, from the file, on deploy) must carry
    /// a valid signature by one of them (FILE.minisig), or it is refused.
    #[arg(long, env = "TASKFLOW_COMPONENT_TRUST", global = true)]
    pub component_trust: Option<PathBuf>,
    /// Directory for compiled components [default: DATA_DIR/component-cache].
    #[arg(long, env = "TASKFLOW_COMPONENT_CACHE_DIR", global = true)]
    pub component_cache_dir: Option<PathBuf>,
    /// File holding the signing secret (at least 32 bytes). TASKFLOW_JWT_SECRET
    /// in the environment takes precedence; with neither, a secret is generated
    /// once and kept in the data directory.
    #[arg(long, env = "TASKFLOW_JWT_SECRET_FILE", global = true)]
    pub jwt_secret_file: Option<PathBuf>,
    /// `iss` of issued tokens, required of verified ones.
    #[arg(
        long,
        env = "TASKFLOW_ISSUER",
        default_value = "taskflow",
        global = true
    )]
    pub issuer: String,
    /// `aud` of issued tokens, required of verified ones.
    #[arg(
        long,
        env = "TASKFLOW_AUDIENCE",
        default_value = "taskflow-api",
        global = true
    )]
    pub audience: String,
    /// The URL clients reach this server at, for the absolute URLs of
    /// `/.well-known/oauth-authorization-server` (e.g.
    /// https://tasks.example.com) [default: http:// and the listen address].
    #[arg(long, env = "TASKFLOW_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Access-token lifetime in seconds (1 to 4294967295).
    #[arg(
        long,
        env = "TASKFLOW_TOKEN_TTL",
        default_value_t = 1800,
        global = true
    )]
    pub token_ttl: u64,
    /// Refresh-token lifetime in seconds, counted again from each use; 0
    /// issues no refresh tokens.
    #[arg(
        long,
        env = "TASKFLOW_REFRESH_TOKEN_TTL",
        default_value_t = 14 * 24 * 3600,
        global = true
    )]
    pub refresh_token_ttl: u64,
    /// Longest a login's refresh tokens keep working, in seconds from the
    /// login, however often they are used; 0: no limit.
    #[arg(
        long,
        env = "TASKFLOW_REFRESH_TOKEN_MAX_AGE",
        default_value_t = 90 * 24 * 3600,
        global = true
    )]
    pub refresh_token_max_age: u64,
    /// Seconds after its use during which a used refresh token presented
    /// again (a client whose answer was lost) gets a fresh pair in place of
    /// the one it got, instead of revoking its family; 0: never.
    #[arg(
        long,
        env = "TASKFLOW_REFRESH_TOKEN_REUSE_GRACE",
        default_value_t = 0,
        global = true
    )]
    pub refresh_token_reuse_grace: u64,
    /// Clock skew allowed on `exp`/`nbf`, in seconds (at most 60).
    #[arg(long, env = "TASKFLOW_LEEWAY", default_value_t = 30, global = true)]
    pub leeway: u64,
    /// Longest a password grant (or password hashing) in the auth component
    /// may run, in milliseconds.
    #[arg(
        long,
        env = "TASKFLOW_COMPONENT_DEADLINE_MS",
        default_value_t = 2000,
        global = true
    )]
    pub component_deadline_ms: u64,
    /// Longest a Bearer decision or a refresh grant in the auth component may
    /// run, in milliseconds (storage lookups not counted).
    #[arg(
        long,
        env = "TASKFLOW_DECISION_DEADLINE_MS",
        default_value_t = 50,
        global = true
    )]
    pub decision_deadline_ms: u64,
    /// Most memory one component instance may use, in MiB.
    #[arg(
        long,
        env = "TASKFLOW_COMPONENT_MEMORY_MIB",
        default_value_t = 64,
        global = true
    )]
    pub component_memory_mib: usize,
    /// Most component instances running calls at once; past it, requests get 503.
    #[arg(
        long,
        env = "TASKFLOW_COMPONENT_MAX_INSTANCES",
        default_value_t = 256,
        global = true
    )]
    pub component_max_instances: usize,
    /// How long a Bearer decision is reused for the same token and route, in
    /// milliseconds (0: ask the policy on every request). Any revocation,
    /// user or key change or policy swap ends it at once; a token may be
    /// accepted up to this long past its expiry and leeway.
    #[arg(
        long,
        env = "TASKFLOW_DECISION_CACHE_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(0..=60_000),
        global = true
    )]
    pub decision_cache_ms: u64,
    /// While a candidate shadows the policy: one password grant in this
    /// many is also decided by it (0: none), since each costs an argon2
    /// hash; requests waiting for it are at most --shadow-queue, further
    /// ones are dropped and counted, never waited for.
    #[arg(
        long,
        env = "TASKFLOW_SHADOW_PASSWORD_SAMPLE",
        default_value_t = 20,
        global = true
    )]
    pub shadow_password_sample: u64,
    /// Requests waiting for a shadowing candidate at most.
    #[arg(
        long,
        env = "TASKFLOW_SHADOW_QUEUE",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000),
        global = true
    )]
    pub shadow_queue: u64,
    /// How often the component file is checked for changes, in milliseconds (0: never).
    #[arg(
        long,
        env = "TASKFLOW_COMPONENT_WATCH_MS",
        default_value_t = 1000,
        global = true
    )]
    pub component_watch_ms: u64,
    /// Unix socket of the admin channel [default: DATA_DIR/admin.sock].
    #[arg(long, env = "TASKFLOW_ADMIN_SOCKET", global = true)]
    pub admin_socket: Option<PathBuf>,
    /// Failed logins per username within the window before `/token` answers 429.
    #[arg(
        long,
        env = "TASKFLOW_LOGIN_MAX_FAILURES_PER_USER",
        default_value_t = 5,
        global = true
    )]
    pub login_max_failures_per_user: usize,
    /// Failed logins per client address within the window before `/token` answers 429.
    #[arg(
        long,
        env = "TASKFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 100,
        global = true
    )]
    pub login_max_failures_per_address: usize,
    /// The window failed logins are counted in, in seconds.
    #[arg(
        long,
        env = "TASKFLOW_LOGIN_FAILURE_WINDOW",
        default_value_t = 900,
        global = true
    )]
    pub login_failure_window: u64,
    /// Longest a request body may take to arrive, in seconds; past it, 408.
    #[arg(
        long,
        env = "TASKFLOW_BODY_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub body_timeout: u64,
    /// Longest a request's head may take to arrive, in seconds; past it the
    /// connection is closed.
    #[arg(
        long,
        env = "TASKFLOW_HEADER_TIMEOUT",
        default_value_t = 10,
        global = true
    )]
    pub header_timeout: u64,
    /// Largest request head (request line and headers), in bytes; past it, 431.
    #[arg(
        long,
        env = "TASKFLOW_MAX_HEADER_BYTES",
        default_value_t = 16384,
        global = true
    )]
    pub max_header_bytes: usize,
    /// Most client connections open at once; past it, new ones get 503.
    #[arg(
        long,
        env = "TASKFLOW_MAX_CONNECTIONS",
        default_value_t = 1024,
        global = true
    )]
    pub max_connections: usize,
    /// Most client connections open at once from one address (an IPv6
    /// client's /64 counts as one); past it, that address's new ones get
    /// 503. 0: no cap but --max-connections (behind a proxy that is the
    /// only address) [default: a quarter of --max-connections].
    #[arg(long, env = "TASKFLOW_MAX_CONNECTIONS_PER_ADDRESS", global = true)]
    pub max_connections_per_address: Option<usize>,
    /// Seconds from `keys rotate` until the new key signs (every replica
    /// must have read it by then).
    #[arg(
        long,
        env = "TASKFLOW_KEY_ACTIVATION_DELAY",
        default_value_t = 10,
        global = true
    )]
    pub key_activation_delay: u64,
    /// Algorithm of the keys `keys rotate` adds: HS256 (a shared secret) or
    /// EdDSA (Ed25519; public keys published at /.well-known/jwks.json).
    /// Tokens follow the signing key's algorithm.
    #[arg(
        long,
        env = "TASKFLOW_SIGNING_ALGORITHM",
        default_value = "HS256",
        value_parser = parse_key_algorithm,
        global = true
    )]
    pub signing_algorithm: KeyAlgorithm,
    /// How often `serve` reads the signing keys from the database, in milliseconds.
    #[arg(
        long,
        env = "TASKFLOW_KEY_REFRESH_MS",
        default_value_t = 2000,
        global = true
    )]
    pub key_refresh_ms: u64,
    /// Log format.
    #[arg(
        long,
        env = "TASKFLOW_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

/// Settings that make no sense, found before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "signing secret {source_name} is {len} bytes; at least {MIN_SECRET_BYTES} are required"
    )]
    ShortSecret { source_name: String, len: usize },
    #[error(transparent)]
    Trust(#[from] crate::policy::TrustError),
    #[error("signing secret file {}: {source}", path.display())]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SettingsArgs {
    /// Settings that were removed but are still given, each with why it
    /// has no effect now.
    pub fn removed_settings(&self) -> Vec<&'static str> {
        let mut removed = Vec::new();
        if self.token_status_cache_ms.is_some() {
            removed.push(
                "token_status_cache_ms (--token-status-cache-ms, TASKFLOW_TOKEN_STATUS_CACHE_MS) was removed and has no effect: \
                 Bearer checks answer from memory that the change log keeps current, so a revocation, removal or password change \
                 is refused at once on this replica and within milliseconds on the others, with no time-based cache",
            );
        }
        removed
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("taskflow.db").display()))
    }

    /// Connection pool size and timeouts (zeros are raised to one).
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.database_max_connections.max(1),
            timeout: Duration::from_millis(self.database_timeout_ms.max(1)),
        }
    }

    /// The URL clients reach this server at, without a trailing slash:
    /// `--public-url`, or `http://` and `listening` (the address `serve`
    /// is bound to). Only an absolute `http` or `https` URL, without a
    /// query, is taken.
    pub fn public_url(&self, listening: SocketAddr) -> Result<String, ConfigError> {
        let Some(url) = &self.public_url else {
            return Ok(format!("http://{listening}"));
        };
        let invalid = || {
            ConfigError::Invalid(format!(
                "public URL {url:?} is not an absolute http or https URL without a query"
            ))
        };
        let uri: axum::http::Uri = url.parse().map_err(|_| invalid())?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        if !scheme_ok || uri.authority().is_none() || uri.query().is_some() || url.contains('#') {
            return Err(invalid());
        }
        Ok(url.trim_end_matches('/').to_owned())
    }

    /// Why the settings, though usable, go against a standard: RFC 8414
    /// §2 wants the issuer to be an `https` URL (the default `taskflow`
    /// stays, for the tokens issued so far).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.issuer.starts_with("https://") {
            warnings.push(format!(
                "the issuer {:?} is not an https URL; RFC 8414 §2 wants one (e.g. --issuer https://tasks.example.com), \
                 but changing it makes every token issued so far invalid",
                self.issuer
            ));
        }
        warnings
    }

    /// How long refresh tokens live; `None` when they are off.
    pub fn refresh_lifetime(&self) -> Option<RefreshLifetime> {
        (self.refresh_token_ttl > 0).then(|| RefreshLifetime {
            idle: Duration::from_secs(self.refresh_token_ttl),
            absolute: (self.refresh_token_max_age > 0)
                .then(|| Duration::from_secs(self.refresh_token_max_age)),
            reuse_grace: Duration::from_secs(self.refresh_token_reuse_grace),
        })
    }

    /// Brute-force limits of `/token` (zero limits are raised to one).
    pub fn login_limits(&self) -> LoginLimits {
        LoginLimits {
            per_user: self.login_max_failures_per_user.max(1),
            per_address: self.login_max_failures_per_address.max(1),
            window: Duration::from_secs(self.login_failure_window.max(1)),
        }
    }

    /// How long a request body may take to arrive (at least a second).
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout.max(1))
    }

    /// Limits on client connections (zeros are raised to the least that works).
    pub fn connection_limits(&self) -> ConnectionLimits {
        let max_connections = self.max_connections.max(1);
        ConnectionLimits {
            header_timeout: Duration::from_secs(self.header_timeout.max(1)),
            max_header_bytes: self.max_header_bytes.max(1024),
            max_connections,
            max_connections_per_address: match self.max_connections_per_address {
                Some(0) => None,
                Some(cap) => Some(cap.min(max_connections)),
                None => Some((max_connections / 4).max(1)),
            },
        }
    }

    /// How keys change hands: activation delay, and how long a retired key
    /// verifies (the token lifetime plus the leeway).
    pub fn key_timings(&self) -> KeyTimings {
        KeyTimings {
            activation_delay: Duration::from_secs(self.key_activation_delay),
            retention: Duration::from_secs(self.token_ttl + self.leeway),
        }
    }

    /// How often the key ring is read again.
    pub fn key_refresh(&self) -> Duration {
        Duration::from_millis(self.key_refresh_ms.max(100))
    }

    /// The signing secret (generated on first use if none is configured):
    /// the only key until `keys rotate`, then what unseals the stored keys.
    pub fn master_secret(&self) -> Result<Vec<u8>, ConfigError> {
        self.signing_secret()
    }

    /// Where the admin channel listens.
    pub fn admin_socket(&self) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }

    /// How often to look for a new component file; `None`: never.
    pub fn component_watch(&self) -> Option<Duration> {
        (self.component_watch_ms > 0).then(|| Duration::from_millis(self.component_watch_ms))
    }

    /// Every setting whose value makes no sense, by name, with why. Every
    /// command checks them as it starts ([`file::load`]), naming where
    /// each value came from.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (name, value) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if value.trim().is_empty() {
                problems.push((name, "must not be empty".to_owned()));
            }
        }
        if !(1..=u64::from(u32::MAX)).contains(&self.token_ttl) {
            problems.push((
                "token_ttl",
                format!("must be between 1 and {} seconds", u32::MAX),
            ));
        }
        if self.leeway > MAX_LEEWAY_SECONDS {
            problems.push((
                "leeway",
                format!("must be at most {MAX_LEEWAY_SECONDS} seconds"),
            ));
        }
        for (name, value) in [
            ("component_deadline_ms", self.component_deadline_ms),
            ("decision_deadline_ms", self.decision_deadline_ms),
            ("component_memory_mib", self.component_memory_mib as u64),
            (
                "component_max_instances",
                self.component_max_instances as u64,
            ),
        ] {
            if value == 0 {
                problems.push((name, "must be positive".to_owned()));
            }
        }
        problems
    }

    /// The first of [`Self::problems`], as an error naming its setting.
    fn check(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some((name, why)) => Err(ConfigError::Invalid(format!("`{name}` {why}"))),
            None => Ok(()),
        }
    }

    /// Component path and sandbox limits.
    pub fn policy_config(&self) -> Result<PolicyConfig, ConfigError> {
        self.check()?;
        Ok(PolicyConfig {
            component: self
                .auth_component
                .clone()
                .unwrap_or_else(default_component),
            cache_dir: Some(
                self.component_cache_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("component-cache")),
            ),
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
            trust: self.component_trust()?,
        })
    }

    /// The keys allowed to sign components, if trust is configured.
    pub fn component_trust(&self) -> Result<Option<Arc<TrustedKeys>>, ConfigError> {
        match &self.component_trust {
            Some(path) => Ok(Some(Arc::new(TrustedKeys::read(path)?))),
            None => Ok(None),
        }
    }

    /// Token settings and the signing key, validated.
    pub fn policy_settings(&self) -> Result<PolicySettings, ConfigError> {
        self.check()?;
        self.policy_settings_with(self.signing_secret()?)
    }

    /// Token settings, validated, signing with `secret`.
    pub fn policy_settings_with(&self, secret: Vec<u8>) -> Result<PolicySettings, ConfigError> {
        self.policy_settings_with_keys(vec![SigningKey {
            kid: key_id(&secret),
            algorithm: KeyAlgorithm::Hs256,
            secret,
        }])
    }

    /// Token settings, validated, signing with the first of `keys`.
    pub fn policy_settings_with_keys(
        &self,
        keys: Vec<SigningKey>,
    ) -> Result<PolicySettings, ConfigError> {
        self.check()?;
        Ok(PolicySettings {
            signing_keys: keys,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            token_ttl: Duration::from_secs(self.token_ttl),
            leeway: Duration::from_secs(self.leeway),
        })
    }

    /// Where the signing secret comes from.
    pub fn secret_source(&self) -> SecretSource {
        if std::env::var_os(SECRET_VARIABLE).is_some() {
            SecretSource::Environment
        } else if let Some(path) = &self.jwt_secret_file {
            SecretSource::File(path.clone())
        } else {
            SecretSource::Generated(self.data_dir.join(SECRET_FILE))
        }
    }

    /// The signing secret, without generating one: `Ok(None)` when it would be.
    pub fn existing_signing_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        match self.secret_source() {
            SecretSource::Generated(path) if !path.exists() => Ok(None),
            _ => self.signing_secret().map(Some),
        }
    }

    fn signing_secret(&self) -> Result<Vec<u8>, ConfigError> {
        let path = match self.secret_source() {
            SecretSource::Environment => {
                let secret = std::env::var_os(SECRET_VARIABLE)
                    .unwrap_or_default()
                    .into_encoded_bytes();
                return check_length(secret, SECRET_VARIABLE);
            }
            SecretSource::File(path) => return read_secret_file(&path),
            SecretSource::Generated(path) => path,
        };
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh)
            .map_err(|e| ConfigError::Invalid(format!("no randomness for a secret: {e}")))?;
        let created =
            files::create_private(&path, hex::encode(fresh).as_bytes()).map_err(|source| {
                ConfigError::SecretFile {
                    path: path.clone(),
                    source,
                }
            })?;
        if created {
            tracing::info!(file = %path.display(), "generated a new signing secret");
        }
        read_secret_file(&path)
    }
}

/// Where the signing secret is read from (never what it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `TASKFLOW_JWT_SECRET`.
    Environment,
    /// The file named by `--jwt-secret-file`.
    File(PathBuf),
    /// Generated once into the data directory (this file).
    Generated(PathBuf),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Environment => write!(f, "the {SECRET_VARIABLE} variable"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Generated(path) => write!(f, "generated file {}", path.display()),
        }
    }
}

fn check_length(secret: Vec<u8>, source_name: &str) -> Result<Vec<u8>, ConfigError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::ShortSecret {
            source_name: source_name.to_owned(),
            len: secret.len(),
        });
    }
    Ok(secret)
}

/// Reads a secret file; one trailing line break is not part of the secret.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let error = |source| ConfigError::SecretFile {
        path: path.to_owned(),
        source,
    };
    let mut secret = std::fs::read(path).map_err(error)?;
    if files::readable_by_others(path).map_err(error)? {
        tracing::warn!(file = %path.display(), "signing secret file is readable by other users; chmod 600 it");
    }
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    check_length(secret, &format!("file {}", path.display()))
}

fn parse_key_algorithm(name: &str) -> Result<KeyAlgorithm, String> {
    [KeyAlgorithm::Hs256, KeyAlgorithm::EdDsa]
        .into_iter()
        .find(|a| a.jose_name().eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("`{name}` is not HS256 or EdDSA"))
}

/// A key id derived from the key: stable across restarts and replicas that
/// share the secret, and reveals nothing about it.
pub fn key_id(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"taskflow key id\0")
        .chain_update(secret)
        .finalize();
    hex::encode(&digest[..8])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(data_dir: &Path) -> SettingsArgs {
        let cli = Cli::parse_from([
            "taskflow",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "user",
            "list",
        ]);
        cli.settings
    }

    #[test]
    fn key_ids_are_stable_and_distinct() {
        assert_eq!(key_id(b"a"), key_id(b"a"));
        assert_ne!(key_id(b"a"), key_id(b"b"));
        assert_eq!(key_id(b"a").len(), 16);
    }

    #[test]
    fn generated_secret_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let settings = args(dir.path());
        let first = settings.signing_secret().unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(settings.signing_secret().unwrap(), first);
        assert!(!files::readable_by_others(&dir.path().join(SECRET_FILE)).unwrap());
    }

    #[test]
    fn short_secret_file_is_refused_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "tooshort\n").unwrap();
        let mut settings = args(dir.path());
        settings.jwt_secret_file = Some(file);
        let message = settings.signing_secret().unwrap_err().to_string();
        assert!(message.contains("8 bytes"), "{message}");
        assert!(!message.contains("tooshort"));
    }

    #[test]
    fn leeway_over_a_minute_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = args(dir.path());
        settings.leeway = 61;
        assert!(matches!(
            settings.policy_settings(),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn the_public_url_defaults_to_the_listen_address() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = args(dir.path());
        let listening: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert_eq!(
            settings.public_url(listening).unwrap(),
            "http://127.0.0.1:4321"
        );
        settings.public_url = Some("https://tasks.example.com/api/".into());
        assert_eq!(
            settings.public_url(listening).unwrap(),
            "https://tasks.example.com/api"
        );
        for bad in [
            "tasks.example.com",
            "ftp://tasks.example.com",
            "https://tasks.example.com/?a=b",
            "https://tasks.example.com/#x",
            "/relative",
        ] {
            settings.public_url = Some(bad.into());
            assert!(settings.public_url(listening).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_non_https_issuer_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = args(dir.path());
        assert_eq!(settings.warnings().len(), 1);
        settings.issuer = "https://tasks.example.com".into();
        assert!(settings.warnings().is_empty());
    }

    #[test]
    fn default_database_is_in_the_data_dir() {
        let settings = args(Path::new("/srv/tf"));
        assert_eq!(settings.database_url(), "sqlite:///srv/tf/taskflow.db");
    }
}
