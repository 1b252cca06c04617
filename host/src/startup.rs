//! Opening storage, loading the policy, and `taskflow serve`: the
//! [`Application`] with the process's signals.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::application::Application;
use crate::commands::NoUsers;
use crate::config::ServeArgs;
use crate::config::sandbox::SandboxArgs;
use crate::config::secret::stand_in_secret;
use crate::config::storage::StorageArgs;
use crate::config::tokens::TokenArgs;
use crate::files;
use crate::keys::KeyRing;
use crate::policy::{Directory, DirectoryFuture, Lookup, PolicyHandle, TokenStatus, UserRecord};
use crate::rollout;
use crate::storage::{Database, StoredUser};

/// Opens a database that exists already, creating nothing (no data
/// directory, no SQLite file): what commands that read, or change what must
/// be there, use, so that a mistyped `--data-dir` is reported, not made.
pub(crate) async fn open_existing_database(
    data_dir: &Path,
    storage: &StorageArgs,
) -> anyhow::Result<Database> {
    Ok(
        Database::connect_existing(&storage.database_url(data_dir), storage.pool_settings())
            .await?,
    )
}

/// Opens the database in the data directory (created 0700 if missing).
pub(crate) async fn open_database(
    data_dir: &Path,
    storage: &StorageArgs,
) -> anyhow::Result<Database> {
    files::ensure_private_dir(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    Database::connect(&storage.database_url(data_dir), storage.pool_settings())
        .await
        .context("cannot open the database")
}

/// Loads the desired policy revision (see [`rollout`]) with users,
/// revocations and signing keys from `db`; the key ring is returned for
/// [`keys::follow`].
pub(crate) async fn load_policy(
    data_dir: &Path,
    tokens: &TokenArgs,
    sandbox: &SandboxArgs,
    db: &Database,
) -> anyhow::Result<(rollout::Started, KeyRing)> {
    let config = sandbox.policy_config(data_dir)?;
    let ring = KeyRing::new(
        db.clone(),
        tokens.master_secret(data_dir)?,
        tokens.key_timings(),
    );
    let keys = ring
        .current(crate::clock::unix_now())
        .await
        .context("cannot read the signing keys")?;
    let policy_settings = tokens.policy_settings_with_keys(keys)?;
    let users = Arc::new(DatabaseDirectory { db: db.clone() });
    Ok((
        rollout::load_desired(&config, policy_settings, users, db).await?,
        ring,
    ))
}

/// `taskflow serve`: builds the [`Application`], announces its address and
/// serves until SIGINT or SIGTERM, then lets in-flight requests finish.
pub(crate) async fn serve(data_dir: &Path, settings: &ServeArgs) -> anyhow::Result<()> {
    let mut application = Application::build(data_dir, settings).await?;
    #[cfg(unix)]
    application.reload_on_sighup()?;
    let shutdown = shutdown_signal()?;
    // On stdout, for people and for scripts that started us on port 0.
    println!("taskflow listening on http://{}", application.address());
    application.run(shutdown).await?;
    Ok(())
}

/// What can be checked before anything is written: the signing secret if
/// one exists (none is generated), and, on the first start (no SQLite file
/// yet, or a PostgreSQL database without our tables, so the component file
/// is what will serve), the component: read,
/// its signature verified, compiled and self-checked. Without this, a
/// first start with a bad component would leave a secret, a data
/// directory and an empty schema behind. The compiled component is cached only where a cache
/// directory already exists; on a first start it is compiled again, once,
/// when the policy loads.
pub(crate) async fn preflight(
    data_dir: &Path,
    storage: &StorageArgs,
    tokens: &TokenArgs,
    sandbox: &SandboxArgs,
) -> anyhow::Result<()> {
    let secret = tokens.existing_signing_secret(data_dir)?;
    let new = Database::is_new(&storage.database_url(data_dir))
        .await
        .context("cannot open the database")?;
    if !new {
        // An existing database may name a revision that serves instead
        // of the file; it is checked as it loads.
        return Ok(());
    }
    let mut config = sandbox.policy_config(data_dir)?;
    config.cache_dir = config.cache_dir.filter(|dir| dir.is_dir());
    let secret = secret.map_or_else(stand_in_secret, Ok)?;
    PolicyHandle::load(
        &config,
        tokens.policy_settings_with(secret)?,
        Arc::new(NoUsers),
    )
    .await?;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed
/// here, before the server announces itself, so a signal sent right after
/// the announcement is never lost to the default action.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Looks users and revoked tokens up for the policy.
struct DatabaseDirectory {
    db: Database,
}

impl Directory for DatabaseDirectory {
    fn find_user<'a>(
        &'a self,
        username: &'a str,
        lookup: Lookup,
    ) -> DirectoryFuture<'a, Option<UserRecord>> {
        Box::pin(async move {
            let found = match lookup {
                Lookup::Decision => self.db.user_for_decision(username).await,
                Lookup::Grant => self.db.find_user(username).await,
            };
            Ok(found.map_err(|e| e.to_string())?.map(user_record))
        })
    }

    fn token_status<'a>(
        &'a self,
        token_id: &'a str,
        subject: &'a str,
        issued_at: u64,
    ) -> DirectoryFuture<'a, TokenStatus> {
        Box::pin(async move {
            let issued_at = i64::try_from(issued_at).unwrap_or(i64::MAX);
            let (revoked, user) = self
                .db
                .token_status_for_decision(token_id, subject, issued_at)
                .await
                .map_err(|e| e.to_string())?;
            Ok(TokenStatus {
                revoked,
                user: user.map(user_record),
            })
        })
    }

    fn status_version(&self) -> Option<u64> {
        self.db.token_status_version()
    }
}

fn user_record(user: StoredUser) -> UserRecord {
    UserRecord {
        username: user.username,
        password_hash: user.password_hash,
        scopes: user.scopes,
    }
}
