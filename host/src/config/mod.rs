//! Command line, environment, config file and the settings derived from them.
//!
//! Every setting has a flag, a `TASKFLOW_*` variable and a key in the optional
//! TOML file ([`file`]); the flag wins over the variable, which wins over the
//! file. Options come in groups, one per subsystem, and each command
//! ([`cli`]) takes only the groups it uses:
//!
//! - [`listener`]: the address `serve` binds and the public URL;
//! - [`storage`]: the database and its pool;
//! - [`tokens`]: what tokens say, how long they live, how keys change hands;
//!   [`secret`]: where the signing secret comes from;
//! - [`sandbox`]: the auth component, its signers and its sandbox;
//! - [`limits`]: connections, request heads and bodies, failed logins;
//! - [`admin`]: the admin socket.

pub mod admin;
pub mod cli;
pub mod file;
pub mod limits;
pub mod listener;
pub mod sandbox;
pub mod secret;
pub mod storage;
pub mod tokens;

use std::path::PathBuf;

pub use cli::{
    AuthCommand, Cli, Command, ConfigCommand, GlobalArgs, KeysCommand, LogFormat, ServeArgs,
    ShadowArgs, ShadowCommand, UserCommand,
};
pub use secret::SecretSource;

/// Settings that make no sense, found before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "signing secret {source_name} is {len} bytes; at least {} are required",
        secret::MIN_SECRET_BYTES
    )]
    ShortSecret { source_name: String, len: usize },
    #[error(transparent)]
    Trust(#[from] crate::policy::TrustError),
    #[error(
        "no signing secret yet: {0} does not exist. `taskflow serve` generates it at its first start \
         (is --data-dir right?), or give one with TASKFLOW_JWT_SECRET or --jwt-secret-file"
    )]
    NoSecret(String),
    #[error("signing secret file {}: {error}", path.display())]
    SecretFile {
        path: PathBuf,
        error: std::io::Error,
    },
}
