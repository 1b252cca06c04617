//! Fleet rollout on two replicas sharing one database (a SQLite file, or
//! PostgreSQL under `just test-postgres`): the scenarios are in `fleet.rs`.

use crate::fleet::{self, Fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_and_rollback_converge_under_load() {
    let fleet = Fleet::start(2, true).await;
    fleet::deploy_and_rollback_under_load(&fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_revisions_are_refused_by_every_replica() {
    let fleet = Fleet::start(2, true).await;
    fleet::bad_revisions_are_refused_everywhere(&fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_after_a_deploy_serves_it() {
    let mut fleet = Fleet::start(1, false).await;
    fleet::a_late_replica_serves_the_desired_revision(&mut fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refusing_the_desired_revision_serves_its_file() {
    let mut fleet = Fleet::start(1, true).await;
    fleet::a_replica_falls_back_to_its_file(&mut fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_marks_a_stopped_replica_stale() {
    let mut fleet = Fleet::start(2, false).await;
    fleet::a_stopped_replica_is_shown_stale(&mut fleet).await;
}
