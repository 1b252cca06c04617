//! Shadow evaluation on replicas sharing a SQLite file: the scenarios are
//! in `shadowing.rs`.

use crate::fleet::Fleet;
use crate::shadowing;

/// A fleet whose replicas shadow every password grant (so that grants
/// are compared too), with `extra` settings.
async fn fleet(replicas: usize, trust: bool, extra: &[(&str, &str)]) -> Fleet {
    let mut env = vec![("TASKFLOW_SHADOW_PASSWORD_SAMPLE", "1")];
    env.extend_from_slice(extra);
    Fleet::start_with_env(replicas, trust, &env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_candidate_only_agrees() {
    let fleet = fleet(1, true, &[]).await;
    shadowing::an_identical_candidate_only_agrees(&fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_delete_disagrees_exactly_on_delete_with_a_write_token() {
    let fleet = fleet(1, true, &[]).await;
    shadowing::admin_delete_disagrees_only_on_delete(&fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_candidate_never_changes_an_answer() {
    let fleet = fleet(1, true, &[]).await;
    shadowing::a_hostile_candidate_changes_no_answer(&fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_bound_holds_under_a_burst() {
    let fleet = fleet(1, true, &[("TASKFLOW_SHADOW_QUEUE", "1")]).await;
    shadowing::a_full_queue_drops_and_counts(&fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_stop_and_promote_on_two_replicas() {
    let fleet = fleet(2, true, &[]).await;
    shadowing::shadow_stop_and_promote_on_every_replica(&fleet).await;
}
