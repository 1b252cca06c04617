//! The database stalls or goes away: requests get a prompt 503 with
//! `Retry-After`, never a hang, and service resumes without a restart.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, Executor, Row};

use crate::harness::{Options, TestServer, assert_error, fresh_postgres_database};
use crate::proxy::{self, Proxy};

/// Longest the replicas wait on the database, in these tests.
const DB_TIMEOUT_MS: u64 = 1000;

fn options(database_url: String, extra: &[(&str, &str)]) -> Options {
    let mut extra_env = vec![(
        "TASKFLOW_DATABASE_TIMEOUT_MS".to_owned(),
        DB_TIMEOUT_MS.to_string(),
    )];
    extra_env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Options {
        database_url: Some(database_url),
        extra_env,
        ..Options::default()
    }
}

// Multi-threaded: the relay's tasks must run while the harness blocks on
// the server's start and on the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_is_a_prompt_503_and_service_resumes() {
    let database = fresh_postgres_database(&crate::postgres_server());
    let relay = Proxy::start(proxy::address_of(&database)).await;
    let server =
        TestServer::start_with(options(proxy::through(&database, relay.address), &[])).await;
    server.add_user("alice", "tasks:read tasks:write");
    let token = server.token("alice", None).await;
    let created = server
        .call(
            "POST",
            "/tasks",
            Some(&token),
            Some(json!({"title": "kept"})),
        )
        .await;
    assert_eq!(created.status(), 201);

    relay.cut();
    for (method, path) in [("GET", "/tasks"), ("POST", "/tasks")] {
        let started = Instant::now();
        let body = (method == "POST").then(|| json!({"title": "lost?"}));
        let response = server.call(method, path, Some(&token), body).await;
        assert!(
            started.elapsed() < Duration::from_millis(DB_TIMEOUT_MS * 5),
            "{method} {path} waited {:?}",
            started.elapsed()
        );
        assert_eq!(response.headers()["retry-after"], "1");
        let body = assert_error(response, 503, "temporarily_unavailable", None).await;
        assert!(
            !body["error_description"]
                .as_str()
                .unwrap()
                .contains("127.0.0.1"),
            "{body}"
        );
    }
    let login = server
        .token_request(&format!(
            "grant_type=password&username=alice&password={}",
            crate::harness::urlencode(crate::harness::PASSWORD)
        ))
        .await;
    assert_error(login, 503, "temporarily_unavailable", None).await;
    // The process itself is fine and says so.
    assert_eq!(server.health().await["status"], "ok");

    relay.restore().await;
    let started = Instant::now();
    let list: Value = loop {
        let response = server.call("GET", "/tasks", Some(&token), None).await;
        if response.status() == 200 {
            break response.json().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no recovery: still {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Nothing acknowledged was lost, and nothing refused was half-written.
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["title"], "kept");
}

/// A statement stuck behind a lock is cancelled by the statement timeout.
#[tokio::test]
async fn a_stalled_statement_times_out_with_503() {
    let database = fresh_postgres_database(&crate::postgres_server());
    let server = TestServer::start_with(options(database.clone(), &[])).await;
    server.add_user("alice", "tasks:read tasks:write");
    let token = server.token("alice", None).await;

    let mut locker = sqlx::PgConnection::connect(&database).await.unwrap();
    locker.execute("BEGIN").await.unwrap();
    locker
        .execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let stalled = server
        .call("POST", "/tasks", Some(&token), Some(json!({"title": "t"})))
        .await;
    assert!(started.elapsed() < Duration::from_millis(DB_TIMEOUT_MS * 5));
    assert_error(stalled, 503, "temporarily_unavailable", None).await;
    locker.execute("ROLLBACK").await.unwrap();

    let created = server
        .call("POST", "/tasks", Some(&token), Some(json!({"title": "t"})))
        .await;
    assert_eq!(created.status(), 201);
}

/// A burst of requests queues for the pool's connections rather than
/// opening more than the configured number; the two listeners (the change
/// log, policy deployments) hold one connection each besides.
#[tokio::test]
async fn the_pool_stays_within_its_size() {
    let database = fresh_postgres_database(&crate::postgres_server());
    let server = TestServer::start_with(options(
        database.clone(),
        &[("TASKFLOW_DATABASE_MAX_CONNECTIONS", "2")],
    ))
    .await;
    server.add_user("alice", "tasks:read");
    let token = server.token("alice", None).await;
    let burst = (0..40).map(|_| server.call("GET", "/tasks", Some(&token), None));
    for response in futures_util::future::join_all(burst).await {
        assert_eq!(response.status(), 200);
    }
    let mut observer = sqlx::PgConnection::connect(&database).await.unwrap();
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE query NOT LIKE 'LISTEN%') AS pooled,
                count(*) FILTER (WHERE query LIKE 'LISTEN%') AS listening
         FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut observer)
    .await
    .unwrap();
    let (pooled, listening): (i64, i64) = (row.get("pooled"), row.get("listening"));
    assert!(
        (1..=2).contains(&pooled),
        "{pooled} connections from a pool of 2"
    );
    assert!(listening <= 2, "{listening} listener connections");
}

/// While the database is unreachable, a login is refused with 503 before
/// any password is checked: the failed-login counts are neither read as
/// zero nor bypassed, and once it is back they are as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_limits_hold_through_a_database_outage() {
    let database = fresh_postgres_database(&crate::postgres_server());
    let relay = Proxy::start(proxy::address_of(&database)).await;
    let server = TestServer::start_with(options(
        proxy::through(&database, relay.address),
        &[("TASKFLOW_LOGIN_MAX_FAILURES_PER_USER", "2")],
    ))
    .await;
    server.add_user("alice", "tasks:read");
    let wrong = "grant_type=password&username=alice&password=nope";
    for _ in 0..2 {
        assert_eq!(server.token_request(wrong).await.status(), 400);
    }
    assert_eq!(server.token_request(wrong).await.status(), 429);

    relay.cut();
    for _ in 0..3 {
        let response = server.token_request(wrong).await;
        assert_error(response, 503, "temporarily_unavailable", None).await;
    }
    relay.restore().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = server.token_request(wrong).await.status().as_u16();
        if status != 503 {
            assert_eq!(status, 429, "the count was lost in the outage");
            break;
        }
        assert!(Instant::now() < deadline, "the database never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
