//! Several `taskflow` replicas on one PostgreSQL database, and what they do
//! when that database stalls or goes away. Runs under `scripts/with-postgres`
//! (`just test-postgres`), which provides the server.

#[path = "../api/fleet.rs"]
mod fleet;
#[path = "../api/harness.rs"]
#[allow(dead_code)]
mod harness;
// Only the scenarios that need several replicas or PostgreSQL run here.
#[path = "../api/shadowing.rs"]
#[allow(dead_code)]
mod shadowing;

mod outage;
mod proxy;
mod rollout;
mod shadow;
mod token_status;
mod two_replicas;

/// The server `scripts/with-postgres` started.
fn postgres_server() -> String {
    harness::test_postgres()
        .expect("TASKFLOW_TEST_POSTGRES_URL is not set: run these tests with `just test-postgres`")
}
