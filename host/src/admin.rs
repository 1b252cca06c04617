//! The admin channel: a Unix socket (mode 0600, in the 0700 data directory)
//! that only local users with access to the data directory reach, never the
//! public listener. One request line in, one JSON line out.
//!
//! `reload` swaps in the component file if it changed and passes its
//! checks; `status` reports the active component and the swap counters;
//! `unlock NAME` forgets NAME's failed logins where this server counts
//! them (its memory, on SQLite).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::login_limits::LoginLimiter;
use crate::policy::{PolicyHandle, PolicyStatus, ReloadOutcome};

/// The longest request line accepted: a command and a username.
const MAX_REQUEST: u64 = 1024;

/// One answer on the admin socket.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AdminReply {
    pub ok: bool,
    /// For `reload`: `swapped` or `unchanged`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<PolicyStatus>,
    /// For `unlock`: how many failed logins were forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgotten: Option<u64>,
}

/// Binds the socket at `path`; the future returned serves it until
/// dropped, and its connections end with it.
pub fn serve(
    policy: PolicyHandle,
    logins: Arc<LoginLimiter>,
    path: PathBuf,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            bail!(
                "another taskflow server answers on the admin socket {}",
                path.display()
            );
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove stale admin socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot bind the admin socket {}", path.display()))?;
    set_private(&path)?;
    Ok(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = listener.accept().await;
            // Reaps the finished ones, so the set holds only open connections.
            while connections.try_join_next().is_some() {}
            match accepted {
                Ok((stream, _)) => {
                    let (policy, logins) = (policy.clone(), logins.clone());
                    connections.spawn(async move {
                        if let Err(e) = answer(stream, &policy, &logins).await {
                            tracing::debug!(error = %e, "admin connection failed");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "admin socket accept failed"),
            }
        }
    })
}

fn set_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict the admin socket {}", path.display()))
}

async fn answer(
    stream: UnixStream,
    policy: &PolicyHandle,
    logins: &LoginLimiter,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read)
        .take(MAX_REQUEST)
        .read_line(&mut line)
        .await?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    if let Some(username) = line.strip_prefix("unlock ") {
        let reply = match logins.unlock(username).await {
            Ok(forgotten) => AdminReply {
                ok: true,
                forgotten: Some(forgotten),
                ..AdminReply::default()
            },
            Err(e) => AdminReply {
                ok: false,
                error: Some(e.to_string()),
                ..AdminReply::default()
            },
        };
        return write_reply(&mut write, &reply).await;
    }
    let reply = match line.trim() {
        "status" => AdminReply {
            ok: true,
            outcome: None,
            error: None,
            status: Some(policy.status()),
            forgotten: None,
        },
        "reload" => match policy.reload().await {
            Ok(outcome) => AdminReply {
                ok: true,
                outcome: Some(
                    match outcome {
                        ReloadOutcome::Unchanged => "unchanged",
                        ReloadOutcome::Swapped => "swapped",
                    }
                    .into(),
                ),
                error: None,
                status: Some(policy.status()),
                forgotten: None,
            },
            Err(e) => AdminReply {
                ok: false,
                outcome: None,
                error: Some(e.to_string()),
                status: Some(policy.status()),
                forgotten: None,
            },
        },
        other => AdminReply {
            ok: false,
            outcome: None,
            error: Some(format!(
                "unknown command {other:?}; expected reload, status or unlock NAME"
            )),
            status: None,
            forgotten: None,
        },
    };
    write_reply(&mut write, &reply).await
}

async fn write_reply(
    write: &mut (impl AsyncWriteExt + Unpin),
    reply: &AdminReply,
) -> std::io::Result<()> {
    let mut json = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    json.push(b'\n');
    write.write_all(&json).await
}

/// Sends `command` to the server listening on `path`; the client side of
/// `taskflow auth ...`.
pub async fn request(path: &Path, command: &str) -> anyhow::Result<AdminReply> {
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach a running taskflow server on {} (is `taskflow serve` running with this data directory?)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{command}\n").as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line).context("the server's answer is not valid JSON")
}
