//! `taskflow auth ...`: the policy revisions in the database (deploy,
//! status, history, rollback) and, over the admin socket, `reload`.

use std::path::Path;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::rfc3339;
use crate::admin;
use crate::clock::unix_now;
use crate::config::AuthCommand;
use crate::config::admin::AdminArgs;
use crate::policy::{TrustedKeys, read_signature};
use crate::rollout::STALE_AFTER;
use crate::startup::{open_database, open_existing_database};
use crate::storage::{Database, DeployAction, Desired, NewRevision, ReplicaState};

pub(super) async fn auth(data_dir: &Path, command: &AuthCommand) -> anyhow::Result<()> {
    match command {
        AuthCommand::Reload { admin } => reload(data_dir, admin).await,
        AuthCommand::Deploy {
            file,
            signature,
            note,
            storage,
            trust,
        } => {
            let trust = trust.keys()?;
            let db = open_database(data_dir, storage).await?;
            deploy(&db, trust.as_deref(), file, signature.as_deref(), note).await
        }
        AuthCommand::Status { json, settings } => {
            status(
                &open_existing_database(data_dir, &settings.storage).await?,
                *json,
            )
            .await
        }
        AuthCommand::History { json, settings } => {
            history(
                &open_existing_database(data_dir, &settings.storage).await?,
                *json,
            )
            .await
        }
        AuthCommand::Rollback { revision, settings } => {
            rollback(
                &open_existing_database(data_dir, &settings.storage).await?,
                *revision,
            )
            .await
        }
        AuthCommand::Shadow(args) => super::shadow::shadow(data_dir, args).await,
        AuthCommand::Promote { settings } => {
            super::shadow::promote(&open_existing_database(data_dir, &settings.storage).await?)
                .await
        }
    }
}

async fn reload(data_dir: &Path, admin: &AdminArgs) -> anyhow::Result<()> {
    let reply = admin::request(&admin.socket(data_dir), "reload").await?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    if !reply.ok {
        bail!(
            "{}",
            reply
                .error
                .as_deref()
                .unwrap_or("the server refused the request")
        );
    }
    Ok(())
}

/// Stores `file` (with its signature) as a new revision and makes it
/// desired. With trust configured here too, a component whose signature
/// does not verify is refused before it is stored; the replicas verify it
/// again either way.
async fn deploy(
    db: &Database,
    trust: Option<&TrustedKeys>,
    file: &Path,
    signature: Option<&Path>,
    note: &str,
) -> anyhow::Result<()> {
    let (component, signature, sha256) = read_candidate(trust, file, signature, "deployed")?;
    let desired = db
        .deploy_revision(
            &NewRevision {
                component: &component,
                sha256: &sha256,
                signature: signature.as_deref(),
                note,
            },
            DeployAction::Deploy,
            unix_now(),
        )
        .await?;
    println!(
        "revision {} (sha256 {sha256}) is now desired; `taskflow auth status` shows the replicas taking it over",
        desired.revision
    );
    Ok(())
}

/// A component file, its signature (FILE.minisig or `signature`) and its
/// SHA-256, refused (`not {what}`) when trust is configured here and the
/// signature does not verify.
pub(super) fn read_candidate(
    trust: Option<&TrustedKeys>,
    file: &Path,
    signature: Option<&Path>,
    what: &str,
) -> anyhow::Result<(Vec<u8>, Option<String>, String)> {
    let component = std::fs::read(file)
        .with_context(|| format!("cannot read the component {}", file.display()))?;
    let signature = match signature {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the signature {}", path.display()))?,
        ),
        None => read_signature(file).with_context(|| {
            format!(
                "cannot read the signature {}",
                crate::policy::signature_path(file).display()
            )
        })?,
    };
    if let Some(trust) = trust {
        trust
            .verify(&component, signature.as_deref())
            .with_context(|| {
                format!(
                    "{}: not {what}: its signature is refused by {}",
                    file.display(),
                    trust.path().display()
                )
            })?;
    } else if signature.is_none() {
        eprintln!(
            "warning: {} has no signature ({}); replicas with --component-trust will refuse it",
            file.display(),
            crate::policy::signature_path(file).display()
        );
    }
    let sha256 = hex::encode(Sha256::digest(&component));
    Ok((component, signature, sha256))
}

async fn rollback(db: &Database, revision: Option<i64>) -> anyhow::Result<()> {
    let current = db.desired_revision().await?;
    let revision = match revision {
        Some(revision) => revision,
        None => db.previous_revision().await?.context(
            "no earlier revision was desired; name the revision (see `taskflow auth history`)",
        )?,
    };
    if current.map(|d| d.revision) == Some(revision) {
        bail!("revision {revision} is already the desired revision");
    }
    let Some(desired) = db.redeploy(revision, unix_now()).await? else {
        bail!("there is no revision {revision} (see `taskflow auth history`)");
    };
    println!(
        "revision {} is desired again{}",
        desired.revision,
        current.map_or(String::new(), |c| format!(" (was {})", c.revision))
    );
    Ok(())
}

/// One replica as `auth status` shows it.
#[derive(serde::Serialize)]
struct ReplicaView {
    #[serde(flatten)]
    state: ReplicaState,
    /// `current` (serves the desired revision), `behind`, `refused` (it
    /// refused the desired revision) or `stale` (not heard from lately).
    condition: &'static str,
}

fn condition(replica: &ReplicaState, desired: Option<&Desired>, now: i64) -> &'static str {
    if now - replica.last_seen > STALE_AFTER.as_secs() as i64 {
        "stale"
    } else if desired.is_none_or(|d| replica.active_revision == Some(d.revision)) {
        "current"
    } else if desired.is_some_and(|d| replica.last_refusal_revision == Some(d.revision)) {
        "refused"
    } else {
        "behind"
    }
}

async fn status(db: &Database, json: bool) -> anyhow::Result<()> {
    let desired = db.desired_revision().await?;
    let now = unix_now();
    let replicas: Vec<ReplicaView> = db
        .replicas()
        .await?
        .into_iter()
        .map(|state| ReplicaView {
            condition: condition(&state, desired.as_ref(), now),
            state,
        })
        .collect();
    if json {
        let value = serde_json::json!({ "desired": desired, "replicas": replicas });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    match desired {
        Some(d) => println!(
            "desired revision {} (since {})",
            d.revision,
            rfc3339(d.deployed_at)
        ),
        None => println!("no revision deployed yet"),
    }
    println!("REPLICA\tCONDITION\tREVISION\tSINCE\tLAST SEEN\tLAST REFUSAL");
    for view in &replicas {
        let r = &view.state;
        let refusal = match (&r.last_refusal_revision, &r.last_refusal) {
            (_, None) => "-".to_owned(),
            (Some(revision), Some(why)) => format!("revision {revision}: {why}"),
            (None, Some(why)) => why.clone(),
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            r.replica,
            view.condition,
            r.active_revision
                .map_or_else(|| "file".to_owned(), |v| v.to_string()),
            r.active_since,
            rfc3339(r.last_seen),
            refusal
        );
    }
    Ok(())
}

async fn history(db: &Database, json: bool) -> anyhow::Result<()> {
    let desired = db.desired_revision().await?.map(|d| d.revision);
    let revisions = db.revisions().await?;
    if json {
        let value = serde_json::json!({ "desired": desired, "revisions": revisions });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("REVISION\tCREATED\tSHA256\tSIZE\tSIGNED\tNOTE");
    for r in revisions {
        let mark = if Some(r.revision) == desired { "*" } else { "" };
        println!(
            "{}{mark}\t{}\t{}\t{}\t{}\t{}",
            r.revision,
            rfc3339(r.created_at),
            r.sha256,
            r.size,
            if r.signed { "yes" } else { "no" },
            r.note
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(active: Option<i64>, refused: Option<i64>, last_seen: i64) -> ReplicaState {
        ReplicaState {
            replica: "r".into(),
            active_revision: active,
            active_sha256: String::new(),
            active_since: String::new(),
            last_refusal_revision: refused,
            last_refusal_reason: None,
            last_refusal: refused.map(|_| "why".into()),
            started_at: 0,
            last_seen,
        }
    }

    #[test]
    fn replicas_are_current_behind_refused_or_stale() {
        let desired = Desired {
            seq: 1,
            revision: 2,
            deployed_at: 0,
        };
        let d = Some(&desired);
        assert_eq!(condition(&replica(Some(2), None, 100), d, 100), "current");
        assert_eq!(condition(&replica(Some(1), None, 100), d, 100), "behind");
        assert_eq!(
            condition(&replica(Some(1), Some(2), 100), d, 100),
            "refused"
        );
        assert_eq!(condition(&replica(Some(2), None, 50), d, 100), "stale");
    }
}
