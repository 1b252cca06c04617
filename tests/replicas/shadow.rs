//! Shadow evaluation on two replicas on PostgreSQL, woken by `NOTIFY`: the
//! scenarios are those of `tests/api/shadowing.rs`.

use crate::fleet::Fleet;
use crate::shadowing;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_stop_and_promote_on_both_replicas() {
    crate::postgres_server();
    let fleet = Fleet::start(2, true).await;
    shadowing::shadow_stop_and_promote_on_every_replica(&fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_delete_disagrees_on_delete_on_both_replicas() {
    crate::postgres_server();
    let fleet = Fleet::start(1, true).await;
    shadowing::admin_delete_disagrees_only_on_delete(&fleet).await;
}
