//! Fleet rollout: every replica serves the revision the database names as
//! desired (`taskflow auth deploy`, `taskflow auth rollback`), and reports
//! what it serves and what it refused.
//!
//! - At start, the desired revision is loaded; on an empty database the
//!   component file becomes the first revision; when the desired revision
//!   cannot be loaded here, the file serves instead (and the refusal is
//!   reported).
//! - While serving, a new deployment (woken by PostgreSQL `NOTIFY`, or
//!   found by polling on SQLite) is verified, compiled, self-checked and
//!   swapped in by [`PolicyHandle::swap_to`], which keeps the current
//!   policy on refusal. Only a new deployment is acted on: a component the
//!   file watch, `SIGHUP` or `auth reload` brings in serves on this replica
//!   until the next deployment.
//! - A shadow (`taskflow auth shadow`) is followed the same way: a new
//!   one is loaded (with the same checks) and shadows the active policy; a
//!   stop or promotion ends it.
//! - A heartbeat records this replica's state every [`HEARTBEAT`], and at
//!   once after each swap or refusal, with the shadow's counts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::clock::unix_now;
use crate::policy::{Candidate, Directory, PolicyConfig, PolicyHandle, PolicySettings};
use crate::storage::{
    Backend, Database, DeployAction, Desired, NewRevision, POLICY_CHANNEL, ReplicaState,
    ShadowReplicaRow, Wakeups,
};

/// How often each replica records its state.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A replica not seen for this long is shown as stale.
pub const STALE_AFTER: Duration = Duration::from_secs(10);
/// Replicas not seen for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest between two looks at the desired revision: SQLite has no
/// notifications; on PostgreSQL this only catches a lost one.
fn poll_interval(backend: Backend) -> Duration {
    match backend {
        Backend::Sqlite => Duration::from_millis(200),
        Backend::Postgres => Duration::from_secs(1),
    }
}

/// The policy a replica starts with, and the deployment it reflects.
pub struct Started {
    pub policy: PolicyHandle,
    pub desired: Desired,
}

/// Loads the desired revision (storing the component file as the first
/// revision on an empty database), or the component file when the desired
/// revision cannot be loaded here.
pub async fn load_desired(
    config: &PolicyConfig,
    settings: PolicySettings,
    users: Arc<dyn Directory>,
    db: &Database,
) -> anyhow::Result<Started> {
    let desired = match db.desired_revision().await? {
        Some(desired) => desired,
        None => {
            // The file proves itself (signature, compilation, self-check)
            // before the fleet is told to serve it.
            let file = Candidate::from_file(&config.component)?;
            PolicyHandle::load_candidate(config, file.clone(), settings.clone(), users.clone())
                .await?;
            let sha256 = hex::encode(Sha256::digest(&file.bytes));
            let note = format!("component file {}", config.component.display());
            let desired = db
                .deploy_revision(
                    &NewRevision {
                        component: &file.bytes,
                        sha256: &sha256,
                        signature: file.signature.as_deref(),
                        note: &note,
                    },
                    DeployAction::Initial,
                    unix_now(),
                )
                .await
                .context("cannot store the component file as the first revision")?;
            tracing::info!(
                revision = desired.revision,
                "no revision was deployed; the component file is the first"
            );
            desired
        }
    };
    let candidate = stored_candidate(db, desired.revision).await?;
    let loaded =
        PolicyHandle::load_candidate(config, candidate, settings.clone(), users.clone()).await;
    let policy = match loaded {
        Ok(policy) => policy,
        Err(refused) => {
            tracing::warn!(
                revision = desired.revision,
                error = %refused,
                "the desired revision cannot serve here; serving the component file instead"
            );
            let policy = PolicyHandle::load(config, settings, users)
                .await
                .with_context(|| {
                    format!(
                        "the desired revision {} was refused ({refused}), and so was the component file",
                        desired.revision
                    )
                })?;
            policy.record_refusal(Some(desired.revision), &refused);
            policy
        }
    };
    Ok(Started { policy, desired })
}

async fn stored_candidate(db: &Database, revision: i64) -> anyhow::Result<Candidate> {
    let stored = db
        .revision(revision)
        .await?
        .with_context(|| format!("revision {revision} is desired but not stored"))?;
    Ok(Candidate::revision(
        stored.revision,
        stored.component,
        stored.signature,
    ))
}

/// Follows the desired revision and the running shadow, and reports this
/// replica's state, from the deployment `seen` on; runs until dropped.
pub fn follow(
    policy: PolicyHandle,
    db: Database,
    url: String,
    replica: String,
    seen: Desired,
) -> impl Future<Output = ()> + Send + 'static {
    let started_at = unix_now();
    async move {
        let prune = async {
            let forget_before = started_at - FORGET_AFTER.as_secs() as i64;
            let _ = db.prune_replicas(forget_before).await;
        };
        let heartbeat = async {
            loop {
                report(&policy, &db, &replica, started_at).await;
                tokio::select! {
                    () = tokio::time::sleep(HEARTBEAT) => {}
                    () = policy.changed() => {}
                }
            }
        };
        let deployments = async {
            let poll = poll_interval(db.backend());
            let mut wakeups = Wakeups::new(db.backend(), &url, POLICY_CHANNEL);
            let mut seen = seen.seq;
            let mut shadow_seen = None;
            loop {
                wakeups.wait(poll).await;
                // The desired revision first: a promotion swaps, then stops
                // the shadow.
                follow_desired(&policy, &db, &mut seen).await;
                follow_shadow(&policy, &db, &mut shadow_seen).await;
            }
        };
        tokio::join!(prune, heartbeat, deployments);
    }
}

/// Acts on a deployment newer than `seen`.
async fn follow_desired(policy: &PolicyHandle, db: &Database, seen: &mut i64) {
    let desired = match db.desired_revision().await {
        Ok(Some(desired)) if desired.seq != *seen => desired,
        Ok(_) => return,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the desired revision");
            return;
        }
    };
    match apply(policy, db, desired).await {
        // Tried (swapped, unchanged or refused): not again until
        // the next deployment.
        Ok(()) => *seen = desired.seq,
        Err(e) => {
            tracing::warn!(revision = desired.revision, error = %e, "cannot read the desired revision; trying again")
        }
    }
}

/// Starts the running shadow if it is not the one `seen` (tried) last, or
/// stops this replica's when none runs.
async fn follow_shadow(policy: &PolicyHandle, db: &Database, seen: &mut Option<i64>) {
    let running = match db.running_shadow().await {
        Ok(running) => running,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the running shadow");
            return;
        }
    };
    let wanted = running.as_ref().map(|run| run.seq);
    if wanted == *seen {
        return;
    }
    match running {
        None => policy.stop_shadow(),
        Some(run) => match stored_candidate(db, run.revision).await {
            // A refusal is logged and reported by the heartbeat.
            Ok(candidate) => {
                let _ = policy.start_shadow(run.seq, candidate).await;
            }
            Err(e) => {
                tracing::warn!(revision = run.revision, error = %e, "cannot read the shadow's revision; trying again");
                return;
            }
        },
    }
    *seen = wanted;
}

/// Swaps to the `desired` revision unless it serves already.
async fn apply(policy: &PolicyHandle, db: &Database, desired: Desired) -> anyhow::Result<()> {
    if policy.info().revision == Some(desired.revision) {
        return Ok(());
    }
    tracing::info!(
        revision = desired.revision,
        "a new revision is desired; loading it"
    );
    let candidate = stored_candidate(db, desired.revision).await?;
    // A refusal is counted, logged and reported by the heartbeat.
    let _ = policy.swap_to(candidate).await;
    Ok(())
}

/// Writes this replica's heartbeat; failures are logged, not fatal.
async fn report(policy: &PolicyHandle, db: &Database, replica: &str, started_at: i64) {
    let info = policy.info();
    let refusal = policy.last_refusal();
    let now = unix_now();
    let state = ReplicaState {
        replica: replica.to_owned(),
        active_revision: info.revision,
        active_sha256: info.sha256,
        active_since: info.loaded_at,
        last_refusal_revision: refusal.as_ref().and_then(|r| r.revision),
        last_refusal_reason: refusal.as_ref().map(|r| r.reason.to_owned()),
        last_refusal: refusal.map(|r| r.message),
        started_at,
        last_seen: now,
    };
    if let Err(e) = db.record_replica(&state).await {
        tracing::debug!(error = %e, "cannot record this replica's state");
    }
    if let Some(shadow) = policy.shadow_report() {
        let row = ShadowReplicaRow {
            replica: replica.to_owned(),
            shadow_seq: shadow.seq,
            report: serde_json::to_string(&shadow).unwrap_or_default(),
            last_seen: now,
        };
        if let Err(e) = db.record_shadow_report(&row).await {
            tracing::debug!(error = %e, "cannot record this replica's shadow counts");
        }
    }
}

/// This replica's id in `auth status`: host name and listening port.
pub fn replica_id(port: u16) -> String {
    format!("{}:{port}", host_name())
}

fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "localhost".to_owned(),
    }
}
