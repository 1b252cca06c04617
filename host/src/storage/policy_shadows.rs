//! Candidate policies shadowing the active one (`taskflow auth shadow`):
//! which stored revision shadows, since when, how it ended, and each
//! replica's comparison report. Changes are announced on the same channel
//! as deployments, so replicas follow both with one listener.

use super::{Backend, Database, DeployAction, Desired, StorageError};

/// One shadow, running or ended.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ShadowRun {
    /// Grows with every shadow started; replicas act on a new one.
    pub seq: i64,
    pub revision: i64,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds; `None` while it runs.
    pub ended_at: Option<i64>,
    /// `stopped`, `promoted` or `replaced`; `None` while it runs.
    pub outcome: Option<String>,
}

/// One replica's report on the shadow it runs or ran last.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ShadowReplicaRow {
    pub replica: String,
    pub shadow_seq: i64,
    /// JSON, as the replica wrote it (see `policy::ShadowReport`).
    pub report: String,
    /// Unix seconds.
    pub last_seen: i64,
}

/// How a shadow ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowEnd {
    Stopped,
    /// Its revision became desired.
    Promoted,
}

impl Database {
    /// Makes the stored `revision` the shadow of every replica, ending the
    /// one running, if any. Returns the new shadow.
    pub async fn start_shadow(&self, revision: i64, now: i64) -> Result<ShadowRun, StorageError> {
        let mut tx = self.begin_write().await?;
        self.lock_shadows(&mut tx).await?;
        end_running(&mut tx, "replaced", now).await?;
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO policy_shadows (revision, started_at) VALUES ($1, $2) RETURNING seq",
        )
        .bind(revision)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        self.announce_policy_change(&mut tx).await?;
        tx.commit().await?;
        Ok(ShadowRun {
            seq,
            revision,
            started_at: now,
            ended_at: None,
            outcome: None,
        })
    }

    /// Ends the running shadow; with [`ShadowEnd::Promoted`], its revision
    /// becomes desired in the same transaction. `None`: no shadow runs.
    pub async fn end_shadow(
        &self,
        end: ShadowEnd,
        now: i64,
    ) -> Result<Option<(ShadowRun, Option<Desired>)>, StorageError> {
        let mut tx = self.begin_write().await?;
        self.lock_shadows(&mut tx).await?;
        let Some(mut run) = running_in(&mut tx).await? else {
            return Ok(None);
        };
        let outcome = match end {
            ShadowEnd::Stopped => "stopped",
            ShadowEnd::Promoted => "promoted",
        };
        end_running(&mut tx, outcome, now).await?;
        let desired = match end {
            ShadowEnd::Stopped => {
                self.announce_policy_change(&mut tx).await?;
                None
            }
            ShadowEnd::Promoted => {
                if self.backend == Backend::Postgres {
                    // As `deploy_revision`: deployments commit in `seq` order.
                    sqlx::query("LOCK TABLE policy_deployments IN EXCLUSIVE MODE")
                        .execute(&mut *tx)
                        .await?;
                }
                // Announces both changes.
                Some(
                    self.insert_deployment(&mut tx, run.revision, DeployAction::Promote, now)
                        .await?,
                )
            }
        };
        tx.commit().await?;
        run.ended_at = Some(now);
        run.outcome = Some(outcome.to_owned());
        Ok(Some((run, desired)))
    }

    /// The running shadow, if any.
    pub async fn running_shadow(&self) -> Result<Option<ShadowRun>, StorageError> {
        let mut connection = self.pool.acquire().await?;
        running_in(&mut connection).await
    }

    /// The newest shadow, running or ended.
    pub async fn latest_shadow(&self) -> Result<Option<ShadowRun>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT seq, revision, started_at, ended_at, outcome
             FROM policy_shadows ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records a replica's report (insert or update).
    pub async fn record_shadow_report(&self, row: &ShadowReplicaRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO policy_shadow_replicas (replica, shadow_seq, report, last_seen)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (replica) DO UPDATE SET
                 shadow_seq = excluded.shadow_seq,
                 report = excluded.report,
                 last_seen = excluded.last_seen",
        )
        .bind(&row.replica)
        .bind(row.shadow_seq)
        .bind(&row.report)
        .bind(row.last_seen)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The reports of every replica on shadow `seq`, by replica.
    pub async fn shadow_reports(&self, seq: i64) -> Result<Vec<ShadowReplicaRow>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT replica, shadow_seq, report, last_seen FROM policy_shadow_replicas
             WHERE shadow_seq = $1 ORDER BY replica",
        )
        .bind(seq)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Shadow changes then commit in `seq` order, one at a time.
    async fn lock_shadows(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), StorageError> {
        if self.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE policy_shadows IN EXCLUSIVE MODE")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

async fn running_in(
    connection: &mut sqlx::AnyConnection,
) -> Result<Option<ShadowRun>, StorageError> {
    Ok(sqlx::query_as(
        "SELECT seq, revision, started_at, ended_at, outcome FROM policy_shadows
         WHERE ended_at IS NULL ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(connection)
    .await?)
}

async fn end_running(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    outcome: &str,
    now: i64,
) -> Result<(), StorageError> {
    sqlx::query("UPDATE policy_shadows SET ended_at = $1, outcome = $2 WHERE ended_at IS NULL")
        .bind(now)
        .bind(outcome)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{NewRevision, test_database};

    #[tokio::test]
    async fn shadows_start_replace_stop_and_promote() {
        let (db, _dir) = test_database().await;
        let new = |component: &'static [u8]| NewRevision {
            component,
            sha256: "sha",
            signature: None,
            note: "",
        };
        db.deploy_revision(&new(b"one"), DeployAction::Initial, 1)
            .await
            .unwrap();
        let two = db.store_revision(&new(b"two"), 2).await.unwrap();
        // Stored, not desired.
        assert_eq!(db.desired_revision().await.unwrap().unwrap().revision, 1);
        assert_eq!(db.running_shadow().await.unwrap(), None);
        assert_eq!(
            db.end_shadow(ShadowEnd::Stopped, 3).await.unwrap(),
            None,
            "nothing to stop"
        );

        let first = db.start_shadow(two, 4).await.unwrap();
        assert_eq!(db.running_shadow().await.unwrap(), Some(first.clone()));
        let second = db.start_shadow(two, 5).await.unwrap();
        assert!(second.seq > first.seq);
        assert_eq!(db.running_shadow().await.unwrap(), Some(second.clone()));

        let (stopped, desired) = db.end_shadow(ShadowEnd::Stopped, 6).await.unwrap().unwrap();
        assert_eq!(stopped.outcome.as_deref(), Some("stopped"));
        assert_eq!(desired, None);
        assert_eq!(db.running_shadow().await.unwrap(), None);
        assert_eq!(db.latest_shadow().await.unwrap(), Some(stopped));

        db.start_shadow(two, 7).await.unwrap();
        let (promoted, desired) = db
            .end_shadow(ShadowEnd::Promoted, 8)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(promoted.outcome.as_deref(), Some("promoted"));
        assert_eq!(desired.unwrap().revision, two);
        assert_eq!(db.desired_revision().await.unwrap().unwrap().revision, two);
        assert_eq!(db.running_shadow().await.unwrap(), None);
    }

    #[tokio::test]
    async fn one_report_per_replica_for_its_latest_shadow() {
        let (db, _dir) = test_database().await;
        let mut row = ShadowReplicaRow {
            replica: "a:1".into(),
            shadow_seq: 1,
            report: "{}".into(),
            last_seen: 1,
        };
        db.record_shadow_report(&row).await.unwrap();
        row.shadow_seq = 2;
        row.report = "{\"x\":1}".into();
        db.record_shadow_report(&row).await.unwrap();
        assert!(db.shadow_reports(1).await.unwrap().is_empty());
        assert_eq!(db.shadow_reports(2).await.unwrap(), vec![row]);
    }
}
