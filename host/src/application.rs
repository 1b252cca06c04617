//! The server as a value: [`Application::build`] checks the settings, opens
//! storage, loads the policy and binds the port; [`Application::run`] serves
//! until the shutdown it is handed resolves. Every background task (key
//! refresh, change feed, rollout, component watch, admin socket) belongs to
//! the application and stops with it, so a test can start one in its own
//! process, on port 0, and drop it.
//!
//! Process-wide concerns stay with the binary (`startup::serve`): signal
//! handlers, and the line announcing the address.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::app::{self, AppState};
use crate::config::ServeArgs;
use crate::keys;
use crate::login_limits::LoginLimiter;
use crate::policy::{PolicyHandle, PolicyStatus};
use crate::routes::metadata::ServerMetadata;
use crate::server::{self, ConnectionLimits};
use crate::startup::{load_policy, open_database, preflight};
use crate::storage::Database;
use crate::{admin, reload, rollout};

/// How long in-flight requests get to finish after the shutdown resolves.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why [`Application::run`] ended other than cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("in-flight requests did not finish within {} s of the shutdown", SHUTDOWN_GRACE.as_secs())]
    GraceExpired,
}

/// A built server: bound, its storage open and its policy loaded, not yet
/// serving. Dropping it stops everything it started.
pub struct Application {
    socket: TcpListener,
    address: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    policy: PolicyHandle,
    db: Database,
    /// Owned background tasks, aborted when the set is dropped.
    tasks: JoinSet<()>,
    /// The change feed stops when told, so it ends its reads cleanly.
    feed: ChangeFeed,
}

struct ChangeFeed {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Application {
    /// Checks what can be checked before anything is written, then opens
    /// the database in `data_dir` (or at `--database-url`), loads the
    /// desired policy, starts the background tasks and binds the listener.
    ///
    /// `build` and `run` hand out boxed futures: a crate that awaits an
    /// `async fn` of another compiles (and optimises) the whole tree of
    /// futures under it again, and for these that is most of the server.
    /// Boxed, it is compiled once, here; unboxed, it was a third of the
    /// integration tests' code.
    #[inline(never)]
    pub fn build<'a>(
        data_dir: &'a Path,
        settings: &'a ServeArgs,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<Self>> + Send + 'a>> {
        Box::pin(Self::build_here(data_dir, settings))
    }

    async fn build_here(data_dir: &Path, settings: &ServeArgs) -> anyhow::Result<Self> {
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
        log_policy(&policy, tokens.signing_algorithm);

        let mut tasks = JoinSet::new();
        tasks.spawn(keys::follow(
            ring,
            policy.clone(),
            tokens.key_refresh(),
            tokens.signing_algorithm,
        ));
        let feed = {
            let (stop, stopped) = oneshot::channel::<()>();
            let (db, url) = (db.clone(), storage.database_url(data_dir));
            let task = tokio::spawn(async move {
                db.follow_changes(&url, async {
                    let _ = stopped.await;
                })
                .await;
            });
            ChangeFeed {
                stop: Some(stop),
                task,
            }
        };
        let logins = Arc::new(LoginLimiter::for_database(&db, limits.login_limits()));
        tasks.spawn(admin::serve(
            policy.clone(),
            logins.clone(),
            admin.socket(data_dir),
        )?);
        if let Some(interval) = sandbox.component_watch() {
            tasks.spawn(reload::watch_component(
                policy.clone(),
                sandbox.component(),
                interval,
            ));
        }
        let socket = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let address = socket.local_addr()?;
        tasks.spawn(rollout::follow(
            policy.clone(),
            db.clone(),
            storage.database_url(data_dir),
            rollout::replica_id(address.port()),
            started.desired,
        ));
        let metadata = ServerMetadata::new(&tokens.issuer, &listener.public_url(address)?);
        let router = app::router(
            AppState::new(
                db.clone(),
                policy.clone(),
                logins,
                tokens.refresh_lifetime(),
                metadata,
            ),
            app::HttpLimits {
                body_timeout: limits.body_timeout(),
            },
        );
        Ok(Self {
            socket,
            address,
            router,
            limits: limits.connection_limits(),
            policy,
            db,
            tasks,
            feed,
        })
    }

    /// The address the listener is bound to (the port chosen, for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A view of the running application's state, for waiting on what it
    /// does (a swap, a key change, a change applied) rather than on time.
    pub fn observer(&self) -> Observer {
        Observer {
            policy: self.policy.clone(),
            db: self.db.clone(),
        }
    }

    /// Reloads the policy on every `SIGHUP` while the application runs.
    /// Process-wide, so only the binary asks for it.
    #[cfg(unix)]
    pub fn reload_on_sighup(&mut self) -> anyhow::Result<()> {
        let task = reload::reload_on_sighup(self.policy.clone()).context("cannot handle SIGHUP")?;
        self.tasks.spawn(task);
        Ok(())
    }

    /// Serves until `shutdown` resolves, then stops accepting, gives
    /// in-flight requests [`SHUTDOWN_GRACE`] to finish and stops the
    /// background tasks. Boxed, as [`Application::build`] is.
    pub fn run<'a>(
        self,
        shutdown: impl Future<Output = ()> + Send + 'a,
    ) -> Pin<Box<dyn Future<Output = Result<(), RunError>> + Send + 'a>> {
        self.run_boxed(Box::pin(shutdown))
    }

    #[inline(never)]
    fn run_boxed<'a>(
        self,
        shutdown: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    ) -> Pin<Box<dyn Future<Output = Result<(), RunError>> + Send + 'a>> {
        Box::pin(self.run_here(shutdown))
    }

    async fn run_here(
        mut self,
        shutdown: Pin<Box<dyn Future<Output = ()> + Send + '_>>,
    ) -> Result<(), RunError> {
        let (begun, grace_starts) = oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down; finishing in-flight requests");
            let _ = begun.send(());
        };
        let serving = server::serve(self.socket, self.router, self.limits, shutdown);
        let grace = async move {
            if grace_starts.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let outcome = tokio::select! {
            () = serving => Ok(()),
            () = grace => {
                tracing::warn!("in-flight requests did not finish in time; stopping");
                Err(RunError::GraceExpired)
            }
        };
        self.tasks.shutdown().await;
        if let Some(stop) = self.feed.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.feed.task).await;
        tracing::info!("shut down");
        outcome
    }
}

/// Logs what serves, and whether its signatures are checked.
fn log_policy(policy: &PolicyHandle, wanted: crate::policy::KeyAlgorithm) {
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
        keys::warn_unless_wanted(signing, wanted);
    }
}

/// What a running application has done, read in memory: cheap to clone.
#[derive(Clone)]
pub struct Observer {
    policy: PolicyHandle,
    db: Database,
}

impl Observer {
    /// The active component and the swap and refusal counts.
    pub fn policy_status(&self) -> PolicyStatus {
        self.policy.status()
    }

    /// Resolves at the next swap or refusal.
    pub async fn policy_changed(&self) {
        self.policy.changed().await;
    }

    /// The key ids the policy signs and verifies with, the signing one first.
    pub fn signing_key_ids(&self) -> Vec<String> {
        self.policy.signing_key_ids()
    }

    /// Changes from the change log applied to this server's memory so far
    /// (any revocation, user change or key change made anywhere); `None`
    /// while the feed has never read the log.
    pub fn changes_applied(&self) -> Option<u64> {
        self.db.token_status_version()
    }

    /// The sequence number of the shadow running here, if one is.
    pub fn shadow(&self) -> Option<i64> {
        self.policy.shadow_seq()
    }

    /// Waits until `done` holds, checking at each swap or refusal and at
    /// least every few milliseconds (key and change-log updates are read
    /// in memory, without a notification of their own); `false` if
    /// `within` passes first.
    pub async fn wait_until(&self, within: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let give_up = tokio::time::Instant::now() + within;
        loop {
            if done(self) {
                return true;
            }
            if tokio::time::Instant::now() >= give_up {
                return false;
            }
            tokio::select! {
                () = self.policy_changed() => {}
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    }
}
