//! Two replicas (two processes on two loopback ports) on one database,
//! sharing the signing secret through the environment.

use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::harness::{Options, TestServer, assert_error};

async fn two_replicas() -> (TestServer, TestServer) {
    crate::postgres_server();
    let options = Options::default();
    let (a, b) = tokio::join!(
        TestServer::start_with(options.clone()),
        TestServer::start_with(options),
    );
    assert_ne!(a.base, b.base);
    (a, b)
}

/// Started together on an empty database, both replicas come up and the
/// schema is migrated exactly once.
#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let (a, b) = two_replicas().await;
    assert_eq!(a.health().await["status"], "ok");
    assert_eq!(b.health().await["status"], "ok");
    let url = a.options.database_url.clone().unwrap();
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one migration, applied once");
    assert!(rows[0].get::<bool, _>("success"));
}

#[tokio::test]
async fn replicas_share_tokens_tasks_and_users() {
    let (a, b) = two_replicas().await;
    a.add_user("alice", "tasks:read tasks:write");

    // A token from one replica is good at the other.
    let token = a.token("alice", None).await;
    let me: Value = b
        .call("GET", "/users/me", Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "alice");

    // A task made through one is seen, and changed, through the other.
    let created: Value = a
        .call(
            "POST",
            "/tasks",
            Some(&token),
            Some(json!({"title": "ship it"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/tasks/{}", created["id"]);
    let seen: Value = b
        .call("GET", &path, Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen, created);
    let patched = b
        .call(
            "PATCH",
            &path,
            Some(&token),
            Some(json!({"status": "done"})),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let after: Value = a
        .call("GET", &path, Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["status"], "done");

    // A user removed through one replica's CLI is refused by the other at once.
    let removed = b.cli(&["user", "remove", "alice"], "");
    assert!(removed.status.success());
    assert_error(
        a.call("GET", "/tasks", Some(&token), None).await,
        401,
        "invalid_token",
        Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
    )
    .await;
    assert_eq!(
        b.call("GET", "/users/me", Some(&token), None)
            .await
            .status(),
        401
    );
}

/// Each replica counts failed logins on its own: documented, and shown here
/// so the documentation stays true.
#[tokio::test]
async fn brute_force_counters_are_per_replica() {
    crate::postgres_server();
    let options = Options {
        extra_env: vec![("TASKFLOW_LOGIN_MAX_FAILURES_PER_USER".into(), "2".into())],
        ..Options::default()
    };
    let a = TestServer::start_with(options.clone()).await;
    let b = TestServer::start_with(options).await;
    a.add_user("alice", "tasks:read");
    let wrong = "grant_type=password&username=alice&password=nope";
    for _ in 0..2 {
        assert_eq!(a.token_request(wrong).await.status(), 400);
    }
    assert_eq!(a.token_request(wrong).await.status(), 429);
    assert_eq!(b.token_request(wrong).await.status(), 400);
}
