//! Opening storage, loading the policy and serving.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::runtime::Handle;

use crate::app::{self, AppState};
use crate::config::SettingsArgs;
use crate::files;
use crate::policy::{PolicyHandle, UserDirectory, UserRecord};
use crate::storage::Database;

/// Opens the database in the data directory (created 0700 if missing).
pub async fn open_database(settings: &SettingsArgs) -> anyhow::Result<Database> {
    files::ensure_private_dir(&settings.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            settings.data_dir.display()
        )
    })?;
    Database::connect(&settings.database_url())
        .await
        .context("cannot open the database")
}

/// Loads the policy component with users looked up in `db`.
pub fn load_policy(settings: &SettingsArgs, db: &Database) -> anyhow::Result<PolicyHandle> {
    let config = settings.policy_config()?;
    let policy_settings = settings.policy_settings()?;
    let users = Arc::new(DatabaseDirectory {
        db: db.clone(),
        runtime: Handle::current(),
    });
    Ok(PolicyHandle::load(&config, policy_settings, users)?)
}

/// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
pub async fn serve(settings: &SettingsArgs, listen: SocketAddr) -> anyhow::Result<()> {
    let db = open_database(settings).await?;
    let policy = load_policy(settings, &db)?;
    let info = policy.info();
    tracing::info!(
        component = %info.path.display(),
        name = %info.name,
        version = %info.version,
        sha256 = %info.sha256,
        "auth policy loaded"
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    // On stdout, for people and for scripts that started us on port 0.
    println!("taskflow listening on http://{address}");
    let app = app::router(AppState { db, policy });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or(()),
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or(());
    tracing::info!("shutdown signal received; finishing in-flight requests");
    tokio::spawn(async {
        tokio::time::sleep(app::SHUTDOWN_GRACE).await;
        tracing::warn!("in-flight requests did not finish in time; exiting");
        std::process::exit(1);
    });
}

/// Looks users up for the policy. The component calls it synchronously,
/// from the blocking pool, so it blocks on the async query.
struct DatabaseDirectory {
    db: Database,
    runtime: Handle,
}

impl UserDirectory for DatabaseDirectory {
    fn find_user(&self, username: &str) -> Result<Option<UserRecord>, String> {
        let found =
            tokio::task::block_in_place(|| self.runtime.block_on(self.db.find_user(username)))
                .map_err(|e| e.to_string())?;
        Ok(found.map(|u| UserRecord {
            username: u.username,
            password_hash: u.password_hash,
            scopes: u.scopes,
        }))
    }
}
