//! What makes the server swap its policy while serving: the component file
//! changing on disk, and `SIGHUP`. (`taskflow auth reload` arrives through
//! [`crate::admin`].) Each only asks [`PolicyHandle::reload`], which checks
//! the candidate off the request path and keeps the old policy on refusal.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::policy::PolicyHandle;

/// Polls `path` every `interval` and reloads once a change has settled
/// (two polls alike), so a file still being written is not loaded half-way.
/// Polling, unlike change notifications, also sees a file replaced by a
/// rename or on a network filesystem. Runs until dropped.
pub fn watch_component(
    policy: PolicyHandle,
    path: PathBuf,
    interval: Duration,
) -> impl Future<Output = ()> + Send + 'static {
    // Taken now, not when the task first runs: a change made between the
    // load and the task's first turn would otherwise look like the start.
    let mut seen = fingerprint(&path);
    async move {
        loop {
            tokio::time::sleep(interval).await;
            let now = fingerprint(&path);
            if now == seen {
                continue;
            }
            tokio::time::sleep(interval).await;
            let settled = fingerprint(&path);
            if settled != now {
                continue;
            }
            seen = settled;
            tracing::info!(file = %path.display(), "auth component file changed; reloading");
            let _ = policy.reload().await;
        }
    }
}

/// What tells one version of the component file and its signature
/// (`FILE.minisig`) from another without reading them: a signature written
/// after the component is seen too.
fn fingerprint(path: &Path) -> (Option<FileStamp>, Option<FileStamp>) {
    (stamp(path), stamp(&crate::policy::signature_path(path)))
}

type FileStamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Some((metadata.modified().ok()?, metadata.len(), inode))
}

/// Reloads on every `SIGHUP`, until dropped. The handler is installed
/// now, so a SIGHUP sent once this returns is never lost.
#[cfg(unix)]
pub fn reload_on_sighup(
    policy: PolicyHandle,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading the auth component");
            let _ = policy.reload().await;
        }
    })
}
