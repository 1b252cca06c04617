//! Policy components rolled out through the database: stored revisions,
//! the desired one (the newest deployment), and each replica's heartbeat.

use super::{Backend, Database, StorageError};

/// The PostgreSQL channel a new desired revision is announced on.
pub const POLICY_CHANNEL: &str = "taskflow_policy";

/// A stored revision, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RevisionSummary {
    pub revision: i64,
    pub sha256: String,
    pub signed: bool,
    pub size: i64,
    /// Unix seconds.
    pub created_at: i64,
    pub note: String,
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    revision: i64,
    sha256: String,
    /// 0 or 1: booleans do not travel alike from both backends.
    signed: i64,
    size: i64,
    created_at: i64,
    note: String,
}

/// A stored revision, as a replica loads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredRevision {
    pub revision: i64,
    pub component: Vec<u8>,
    pub signature: Option<String>,
}

/// The newest deployment: which revision is desired, since which change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Desired {
    /// Grows with every deploy and rollback; replicas act on a new one.
    pub seq: i64,
    pub revision: i64,
    /// Unix seconds.
    pub deployed_at: i64,
}

/// One replica's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ReplicaState {
    pub replica: String,
    /// `None`: a component file that is no revision serves.
    pub active_revision: Option<i64>,
    pub active_sha256: String,
    /// RFC 3339.
    pub active_since: String,
    pub last_refusal_revision: Option<i64>,
    pub last_refusal_reason: Option<String>,
    pub last_refusal: Option<String>,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds.
    pub last_seen: i64,
}

/// Why a deployment was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployAction {
    /// The first replica's component file, on an empty database.
    Initial,
    Deploy,
    Rollback,
    /// The shadowed candidate made desired (`taskflow auth promote`).
    Promote,
}

impl DeployAction {
    fn name(self) -> &'static str {
        match self {
            DeployAction::Initial => "initial",
            DeployAction::Deploy => "deploy",
            DeployAction::Rollback => "rollback",
            DeployAction::Promote => "promote",
        }
    }
}

/// A component to store as a new revision.
pub struct NewRevision<'a> {
    pub component: &'a [u8],
    pub sha256: &'a str,
    pub signature: Option<&'a str>,
    pub note: &'a str,
}

impl Database {
    /// Stores `new` as a revision and makes it desired, at once. With
    /// `only_if_none`, nothing is stored when a revision is desired already
    /// (replicas starting together on an empty database store one).
    /// Returns the desired deployment afterwards.
    pub async fn deploy_revision(
        &self,
        new: &NewRevision<'_>,
        action: DeployAction,
        now: i64,
    ) -> Result<Desired, StorageError> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Deployments then commit in `seq` order, and two first starts
            // do not both store their file.
            sqlx::query("LOCK TABLE policy_deployments IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        if action == DeployAction::Initial
            && let Some(desired) = desired_in(&mut tx).await?
        {
            tx.commit().await?;
            return Ok(desired);
        }
        let revision = insert_revision(&mut tx, new, now).await?;
        let desired = self
            .insert_deployment(&mut tx, revision, action, now)
            .await?;
        tx.commit().await?;
        Ok(desired)
    }

    /// Stores `new` as a revision without making it desired (a shadow's
    /// candidate); returns its number.
    pub async fn store_revision(
        &self,
        new: &NewRevision<'_>,
        now: i64,
    ) -> Result<i64, StorageError> {
        let mut tx = self.begin_write().await?;
        let revision = insert_revision(&mut tx, new, now).await?;
        tx.commit().await?;
        Ok(revision)
    }

    /// Makes the stored `revision` desired again; `None` if there is no such revision.
    pub async fn redeploy(&self, revision: i64, now: i64) -> Result<Option<Desired>, StorageError> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE policy_deployments IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        let exists: Option<(i64,)> =
            sqlx::query_as("SELECT revision FROM policy_revisions WHERE revision = $1")
                .bind(revision)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let desired = self
            .insert_deployment(&mut tx, revision, DeployAction::Rollback, now)
            .await?;
        tx.commit().await?;
        Ok(Some(desired))
    }

    pub(super) async fn insert_deployment(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        revision: i64,
        action: DeployAction,
        now: i64,
    ) -> Result<Desired, StorageError> {
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO policy_deployments (revision, action, deployed_at)
             VALUES ($1, $2, $3) RETURNING seq",
        )
        .bind(revision)
        .bind(action.name())
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        self.announce_policy_change(tx).await?;
        Ok(Desired {
            seq,
            revision,
            deployed_at: now,
        })
    }

    /// Wakes every replica on PostgreSQL (at commit) to look at the
    /// desired revision and the shadow; SQLite replicas poll.
    pub(super) async fn announce_policy_change(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), StorageError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(POLICY_CHANNEL)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The desired revision, if any was ever deployed.
    pub async fn desired_revision(&self) -> Result<Option<Desired>, StorageError> {
        let mut connection = self.pool.acquire().await?;
        desired_in(&mut connection).await
    }

    /// The revision desired before the current one became desired (and
    /// other than it): what `auth rollback` goes back to.
    pub async fn previous_revision(&self) -> Result<Option<i64>, StorageError> {
        let Some(current) = self.desired_revision().await? else {
            return Ok(None);
        };
        let previous: Option<(i64,)> = sqlx::query_as(
            "SELECT revision FROM policy_deployments
             WHERE seq < $1 AND revision <> $2 ORDER BY seq DESC LIMIT 1",
        )
        .bind(current.seq)
        .bind(current.revision)
        .fetch_optional(&self.pool)
        .await?;
        Ok(previous.map(|(revision,)| revision))
    }

    /// One stored revision with its bytes.
    pub async fn revision(&self, revision: i64) -> Result<Option<StoredRevision>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT revision, component, signature FROM policy_revisions WHERE revision = $1",
        )
        .bind(revision)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every stored revision, newest first.
    pub async fn revisions(&self) -> Result<Vec<RevisionSummary>, StorageError> {
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT revision, sha256,
                    CASE WHEN signature IS NULL THEN 0 ELSE 1 END AS signed,
                    CAST(LENGTH(component) AS BIGINT) AS size, created_at, note
             FROM policy_revisions ORDER BY revision DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| RevisionSummary {
                revision: row.revision,
                sha256: row.sha256,
                signed: row.signed != 0,
                size: row.size,
                created_at: row.created_at,
                note: row.note,
            })
            .collect())
    }

    /// Records what a replica runs (insert or update).
    pub async fn record_replica(&self, state: &ReplicaState) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO policy_replicas (replica, active_revision, active_sha256, active_since,
                 last_refusal_revision, last_refusal_reason, last_refusal, started_at, last_seen)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (replica) DO UPDATE SET
                 active_revision = excluded.active_revision,
                 active_sha256 = excluded.active_sha256,
                 active_since = excluded.active_since,
                 last_refusal_revision = excluded.last_refusal_revision,
                 last_refusal_reason = excluded.last_refusal_reason,
                 last_refusal = excluded.last_refusal,
                 started_at = excluded.started_at,
                 last_seen = excluded.last_seen",
        )
        .bind(&state.replica)
        .bind(state.active_revision)
        .bind(&state.active_sha256)
        .bind(&state.active_since)
        .bind(state.last_refusal_revision)
        .bind(&state.last_refusal_reason)
        .bind(&state.last_refusal)
        .bind(state.started_at)
        .bind(state.last_seen)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every replica that reported, by id.
    pub async fn replicas(&self) -> Result<Vec<ReplicaState>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT replica, active_revision, active_sha256, active_since, last_refusal_revision,
                    last_refusal_reason, last_refusal, started_at, last_seen
             FROM policy_replicas ORDER BY replica",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets replicas not seen since `before`.
    pub async fn prune_replicas(&self, before: i64) -> Result<u64, StorageError> {
        let result = sqlx::query("DELETE FROM policy_replicas WHERE last_seen < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}

async fn insert_revision(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    new: &NewRevision<'_>,
    now: i64,
) -> Result<i64, StorageError> {
    let (revision,): (i64,) = sqlx::query_as(
        "INSERT INTO policy_revisions (component, sha256, signature, created_at, note)
         VALUES ($1, $2, $3, $4, $5) RETURNING revision",
    )
    .bind(new.component.to_vec())
    .bind(new.sha256)
    .bind(new.signature)
    .bind(now)
    .bind(new.note)
    .fetch_one(&mut **tx)
    .await?;
    Ok(revision)
}

async fn desired_in(connection: &mut sqlx::AnyConnection) -> Result<Option<Desired>, StorageError> {
    Ok(sqlx::query_as(
        "SELECT seq, revision, deployed_at FROM policy_deployments ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(connection)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_database;

    fn new(component: &[u8]) -> NewRevision<'_> {
        NewRevision {
            component,
            sha256: "sha",
            signature: None,
            note: "n",
        }
    }

    #[tokio::test]
    async fn deploys_rollbacks_and_the_first_start() {
        let (db, _dir) = test_database().await;
        assert_eq!(db.desired_revision().await.unwrap(), None);
        let first = db
            .deploy_revision(&new(b"one"), DeployAction::Initial, 10)
            .await
            .unwrap();
        assert_eq!(first.revision, 1);
        // A second first start adopts what is there.
        let again = db
            .deploy_revision(&new(b"other"), DeployAction::Initial, 11)
            .await
            .unwrap();
        assert_eq!(again, first);
        let second = db
            .deploy_revision(&new(b"two"), DeployAction::Deploy, 12)
            .await
            .unwrap();
        assert_eq!(second.revision, 2);
        assert!(second.seq > first.seq);
        assert_eq!(db.previous_revision().await.unwrap(), Some(1));
        let back = db.redeploy(1, 13).await.unwrap().unwrap();
        assert_eq!(db.desired_revision().await.unwrap(), Some(back));
        assert_eq!(db.previous_revision().await.unwrap(), Some(2));
        assert_eq!(db.redeploy(9, 14).await.unwrap(), None);
        let stored = db.revision(2).await.unwrap().unwrap();
        assert_eq!(stored.component, b"two");
        let listed = db.revisions().await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|r| (r.revision, r.size))
                .collect::<Vec<_>>(),
            vec![(2, 3), (1, 3)]
        );
    }

    #[tokio::test]
    async fn heartbeats_update_one_row_per_replica() {
        let (db, _dir) = test_database().await;
        let mut state = ReplicaState {
            replica: "a:1".into(),
            active_revision: Some(1),
            active_sha256: "s".into(),
            active_since: "t".into(),
            last_refusal_revision: None,
            last_refusal_reason: None,
            last_refusal: None,
            started_at: 1,
            last_seen: 5,
        };
        db.record_replica(&state).await.unwrap();
        state.last_seen = 6;
        state.last_refusal_reason = Some("signature_untrusted".into());
        db.record_replica(&state).await.unwrap();
        assert_eq!(db.replicas().await.unwrap(), vec![state.clone()]);
        assert_eq!(db.prune_replicas(7).await.unwrap(), 1);
        assert!(db.replicas().await.unwrap().is_empty());
    }
}
