//! Opening storage, loading the policy and serving.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::app::{self, AppState};
use crate::commands::NoUsers;
use crate::config::ServeArgs;
use crate::config::sandbox::SandboxArgs;
use crate::config::secret::stand_in_secret;
use crate::config::storage::StorageArgs;
use crate::config::tokens::TokenArgs;
use crate::files;
use crate::keys::{self, KeyRing};
use crate::login_limits::LoginLimiter;
use crate::policy::{Directory, DirectoryFuture, Lookup, PolicyHandle, TokenStatus, UserRecord};
use crate::routes::metadata::ServerMetadata;
use crate::storage::{Database, StoredUser};
use crate::{admin, reload, rollout, server};

/// Opens a database that exists already, creating nothing (no data
/// directory, no SQLite file): what commands that read, or change what must
/// be there, use, so that a mistyped `--data-dir` is reported, not made.
pub async fn open_existing_database(
    data_dir: &Path,
    storage: &StorageArgs,
) -> anyhow::Result<Database> {
    Ok(
        Database::connect_existing(&storage.database_url(data_dir), storage.pool_settings())
            .await?,
    )
}

/// Opens the database in the data directory (created 0700 if missing).
pub async fn open_database(data_dir: &Path, storage: &StorageArgs) -> anyhow::Result<Database> {
    files::ensure_private_dir(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    Database::connect(&storage.database_url(data_dir), storage.pool_settings())
        .await
        .context("cannot open the database")
}

/// Loads the desired policy revision (see [`rollout`]) with users,
/// revocations and signing keys from `db`; the key ring is returned for
/// [`keys::follow`].
pub async fn load_policy(
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

/// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
pub async fn serve(data_dir: &Path, settings: &ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        listener,
        storage,
        tokens,
        sandbox,
        limits,
        admin,
    } = settings;
    for removed in storage.removed_settings() {
        tracing::warn!("{removed}");
    }
    let listen = listener.listen;
    // Refused before anything starts; the default is known once bound.
    listener.public_url(listen)?;
    for warning in tokens.warnings() {
        tracing::warn!("{warning}");
    }
    preflight(data_dir, storage, tokens, sandbox).await?;
    let db = open_database(data_dir, storage).await?;
    let (started, ring) = load_policy(data_dir, tokens, sandbox, &db).await?;
    let policy = started.policy;
    keys::follow(
        ring,
        policy.clone(),
        tokens.key_refresh(),
        tokens.signing_algorithm,
    );
    let (stop_feed, feed_stopped) = tokio::sync::oneshot::channel::<()>();
    let feed = {
        let (db, url) = (db.clone(), storage.database_url(data_dir));
        tokio::spawn(async move {
            db.follow_changes(&url, async {
                let _ = feed_stopped.await;
            })
            .await;
        })
    };
    let info = policy.info();
    tracing::info!(
        component = %info.path.display(),
        revision = ?info.revision,
        name = %info.name,
        version = %info.version,
        sha256 = %info.sha256,
        "auth policy loaded"
    );
    match policy.trust() {
        Some(trust) => tracing::info!(
            trust = %trust.path().display(),
            keys = trust.len(),
            "auth components must be signed by a trusted key"
        ),
        None => tracing::warn!(
            "no --component-trust configured: any component file or deployed revision is accepted unsigned; \
             whoever can write the component file or the database replaces the auth policy"
        ),
    }
    if let Some(signing) = policy.signing_keys().first() {
        keys::warn_unless_wanted(signing, tokens.signing_algorithm);
    }
    let logins = Arc::new(LoginLimiter::for_database(&db, limits.login_limits()));
    admin::serve(policy.clone(), logins.clone(), admin.socket(data_dir))?;
    if let Some(interval) = sandbox.component_watch() {
        reload::watch_component(policy.clone(), sandbox.component(), interval);
    }
    #[cfg(unix)]
    reload::reload_on_sighup(policy.clone()).context("cannot handle SIGHUP")?;
    let socket = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = socket.local_addr()?;
    rollout::follow(
        policy.clone(),
        db.clone(),
        storage.database_url(data_dir),
        rollout::replica_id(address.port()),
        started.desired,
    );
    let shutdown = shutdown_signal()?;
    // On stdout, for people and for scripts that started us on port 0.
    println!("taskflow listening on http://{address}");
    let metadata = ServerMetadata::new(&tokens.issuer, &listener.public_url(address)?);
    let app = app::router(
        AppState::new(db, policy, logins, tokens.refresh_lifetime(), metadata),
        app::HttpLimits {
            body_timeout: limits.body_timeout(),
        },
    );
    server::serve(socket, app, limits.connection_limits(), shutdown).await;
    let _ = stop_feed.send(());
    let _ = feed.await;
    tracing::info!("shut down");
    Ok(())
}

/// What can be checked before anything is written: the signing secret if
/// one exists (none is generated), and, on the first start (no database
/// yet, so the component file is what will serve), the component: read,
/// its signature verified, compiled and self-checked. Without this, a
/// first start with a bad component would leave a secret and an empty
/// database behind. The compiled component is cached only where a cache
/// directory already exists; on a first start it is compiled again, once,
/// when the policy loads.
async fn preflight(
    data_dir: &Path,
    storage: &StorageArgs,
    tokens: &TokenArgs,
    sandbox: &SandboxArgs,
) -> anyhow::Result<()> {
    let secret = tokens.existing_signing_secret(data_dir)?;
    if !Database::is_new_sqlite_file(&storage.database_url(data_dir)) {
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

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed
/// here, before the server announces itself, so a signal sent right after
/// the announcement is never lost to the default action.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        begin_shutdown();
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        begin_shutdown();
    })
}

/// In-flight requests get [`SHUTDOWN_GRACE`] to finish.
fn begin_shutdown() {
    tracing::info!("shutdown signal received; finishing in-flight requests");
    tokio::spawn(async {
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::warn!("in-flight requests did not finish in time; exiting");
        std::process::exit(1);
    });
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
