//! `taskflow auth shadow ...` and `taskflow auth promote`: a candidate
//! decides the live traffic of every replica next to the active policy
//! (see `policy::shadow`), is watched, then promoted or stopped.

use std::path::Path;

use anyhow::{Context, bail};

use super::auth::read_candidate;
use super::rfc3339;
use crate::clock::unix_now;
use crate::config::{ShadowArgs, ShadowCommand};
use crate::policy::{ShadowCounts, ShadowReport};
use crate::rollout::STALE_AFTER;
use crate::startup::open_existing_database;
use crate::storage::{Database, NewRevision, ShadowEnd};

pub(super) async fn shadow(data_dir: &Path, args: &ShadowArgs) -> anyhow::Result<()> {
    match (&args.command, &args.candidate) {
        (Some(ShadowCommand::Stop { settings }), _) => {
            stop(&open_existing_database(data_dir, &settings.storage).await?).await
        }
        (Some(ShadowCommand::Status { json, settings }), _) => {
            status(
                &open_existing_database(data_dir, &settings.storage).await?,
                *json,
            )
            .await
        }
        (None, Some(candidate)) => {
            let trust = args.trust.keys()?;
            let db = open_existing_database(data_dir, &args.storage).await?;
            let revision = match stored_or_file(candidate) {
                Target::Revision(revision) => {
                    db.revision(revision).await?.with_context(|| {
                        format!("there is no revision {revision} (see `taskflow auth history`)")
                    })?;
                    revision
                }
                Target::File(file) => {
                    let (component, signature, sha256) = read_candidate(
                        trust.as_deref(),
                        file,
                        args.signature.as_deref(),
                        "shadowed",
                    )?;
                    let note = if args.note.is_empty() {
                        format!("shadow candidate {}", file.display())
                    } else {
                        args.note.clone()
                    };
                    db.store_revision(
                        &NewRevision {
                            component: &component,
                            sha256: &sha256,
                            signature: signature.as_deref(),
                            note: &note,
                        },
                        unix_now(),
                    )
                    .await?
                }
            };
            let run = db.start_shadow(revision, unix_now()).await?;
            println!(
                "revision {revision} now shadows the active policy on every replica (shadow {}); \
                 `taskflow auth shadow status` shows how it compares, \
                 `taskflow auth promote` or `taskflow auth shadow stop` ends it",
                run.seq
            );
            Ok(())
        }
        (None, None) => bail!("name the candidate: a component file or a stored revision"),
    }
}

enum Target<'a> {
    File(&'a Path),
    Revision(i64),
}

/// A file that exists is a file; otherwise a number is a revision.
fn stored_or_file(candidate: &str) -> Target<'_> {
    let path = Path::new(candidate);
    match candidate.parse() {
        Ok(revision) if !path.exists() => Target::Revision(revision),
        _ => Target::File(path),
    }
}

async fn stop(db: &Database) -> anyhow::Result<()> {
    let Some((run, _)) = db.end_shadow(ShadowEnd::Stopped, unix_now()).await? else {
        bail!("no shadow is running");
    };
    println!(
        "shadow {} (revision {}) stopped; `taskflow auth shadow status` keeps its last counts",
        run.seq, run.revision
    );
    Ok(())
}

pub(super) async fn promote(db: &Database) -> anyhow::Result<()> {
    let Some((run, desired)) = db.end_shadow(ShadowEnd::Promoted, unix_now()).await? else {
        bail!("no shadow is running: start one with `taskflow auth shadow FILE|REVISION`");
    };
    let desired = desired.context("a promotion makes the revision desired")?;
    println!(
        "revision {} is now desired (promoted from shadow {}); `taskflow auth status` shows the replicas taking it over",
        desired.revision, run.seq
    );
    Ok(())
}

/// One replica's report as `shadow status` shows it.
#[derive(serde::Serialize)]
struct ReplicaView {
    replica: String,
    /// Unix seconds.
    last_seen: i64,
    stale: bool,
    #[serde(flatten)]
    report: ShadowReport,
}

async fn status(db: &Database, json: bool) -> anyhow::Result<()> {
    let shadow = db.latest_shadow().await?;
    let now = unix_now();
    let mut replicas = Vec::new();
    if let Some(run) = &shadow {
        for row in db.shadow_reports(run.seq).await? {
            let report: ShadowReport = serde_json::from_str(&row.report)
                .with_context(|| format!("replica {} wrote an unreadable report", row.replica))?;
            replicas.push(ReplicaView {
                stale: now - row.last_seen > STALE_AFTER.as_secs() as i64,
                replica: row.replica,
                last_seen: row.last_seen,
                report,
            });
        }
    }
    if json {
        let value = serde_json::json!({ "shadow": shadow, "replicas": replicas });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let Some(run) = shadow else {
        println!("no shadow was ever started");
        return Ok(());
    };
    match (&run.outcome, run.ended_at) {
        (Some(outcome), Some(ended)) => println!(
            "shadow {} (revision {}) ran from {} to {} ({outcome})",
            run.seq,
            run.revision,
            rfc3339(run.started_at),
            rfc3339(ended)
        ),
        _ => println!(
            "shadow {} (revision {}) running since {}",
            run.seq,
            run.revision,
            rfc3339(run.started_at)
        ),
    }
    let names = ShadowCounts::default()
        .named()
        .map(|(name, _)| name.to_uppercase());
    println!("REPLICA\tSTATE\tLAST SEEN\t{}", names.join("\t"));
    for view in &replicas {
        let counts = view.report.totals.named().map(|(_, n)| n.to_string());
        let state = match (&view.report.refusal, view.stale) {
            (Some(why), _) => format!("refused: {why}"),
            (None, true) => format!("{} (stale)", view.report.state),
            (None, false) => view.report.state.clone(),
        };
        println!(
            "{}\t{state}\t{}\t{}",
            view.replica,
            rfc3339(view.last_seen),
            counts.join("\t")
        );
    }
    let recent: Vec<_> = replicas
        .iter()
        .flat_map(|view| view.report.recent.iter().map(move |d| (&view.replica, d)))
        .collect();
    if !recent.is_empty() {
        println!();
        println!("RECENT DISAGREEMENTS\nREPLICA\tAT\tCALL\tMETHOD\tROUTE\tKIND\tACTIVE\tCANDIDATE");
        for (replica, d) in recent {
            println!(
                "{replica}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                rfc3339(d.at),
                d.call,
                d.method,
                d.route,
                d.kind,
                d.active,
                d.candidate
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_revisions_and_anything_else_a_file() {
        assert!(matches!(stored_or_file("7"), Target::Revision(7)));
        assert!(matches!(stored_or_file("a.wasm"), Target::File(_)));
        // `Cargo.toml` exists here; a file named as a number would too.
        assert!(matches!(stored_or_file("Cargo.toml"), Target::File(_)));
    }
}
