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
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(rows.len(), migrations, "each migration applied once");
    assert!(rows.iter().all(|row| row.get::<bool, _>("success")));
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

    // A token revoked through one replica is refused by the other within
    // the propagation bound (`token_status.rs` measures it).
    let second = b.token("alice", None).await;
    assert_eq!(
        a.call("GET", "/tasks", Some(&second), None).await.status(),
        200
    );
    assert_eq!(b.revoke(&second).await.status(), 200);
    crate::token_status::wait_for_status(
        &a,
        "/tasks",
        &second,
        401,
        &[200],
        crate::token_status::BOUND,
        "revocation",
    )
    .await;
    let body = assert_error(
        a.call("GET", "/tasks", Some(&second), None).await,
        401,
        "invalid_token",
        Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
    )
    .await;
    assert_eq!(body["error_description"], "the token was revoked");
    assert_eq!(
        a.call("GET", "/tasks", Some(&token), None).await.status(),
        200
    );

    // A user removed through one replica's CLI is refused by the other
    // within the bound.
    let removed = b.cli(&["user", "remove", "alice"], "");
    assert!(removed.status.success());
    crate::token_status::wait_for_status(
        &a,
        "/tasks",
        &token,
        401,
        &[200],
        crate::token_status::BOUND,
        "removal",
    )
    .await;
    assert_error(
        a.call("GET", "/tasks", Some(&token), None).await,
        401,
        "invalid_token",
        Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
    )
    .await;
    // The CLI is a process of its own: replica b learns of the removal
    // through the change log too, within the same bound.
    crate::token_status::wait_for_status(
        &b,
        "/users/me",
        &token,
        401,
        &[200],
        crate::token_status::BOUND,
        "removal at the other replica",
    )
    .await;
}

/// The replicas share the failed-login counts: wrong passwords alternated
/// between them reach the limit in total, and both answer 429; the same for
/// the per-address limit, over many usernames.
#[tokio::test]
async fn failed_logins_are_counted_for_the_whole_deployment() {
    crate::postgres_server();
    let options = Options {
        extra_env: vec![
            ("TASKFLOW_LOGIN_MAX_FAILURES_PER_USER".into(), "3".into()),
            ("TASKFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS".into(), "8".into()),
        ],
        ..Options::default()
    };
    let a = TestServer::start_with(options.clone()).await;
    let b = TestServer::start_with(options).await;
    a.add_user("alice", "tasks:read");
    let wrong = |user: &str| format!("grant_type=password&username={user}&password=nope");
    for replica in [&a, &b, &a] {
        assert_eq!(replica.token_request(&wrong("alice")).await.status(), 400);
    }
    for replica in [&a, &b] {
        let refused = replica.token_request(&wrong("alice")).await;
        assert!(refused.headers().contains_key("retry-after"));
        assert_error(refused, 429, "too_many_attempts", None).await;
    }
    // The right password is not even checked past the limit.
    let right = format!(
        "grant_type=password&username=alice&password={}",
        crate::harness::urlencode(crate::harness::PASSWORD)
    );
    assert_eq!(b.token_request(&right).await.status(), 429);

    // Per address: five more names from this address, alternating, reach
    // its limit of eight failures in total.
    for (i, replica) in [&b, &a, &b, &a, &b].into_iter().enumerate() {
        let status = replica
            .token_request(&wrong(&format!("user{i}")))
            .await
            .status();
        assert_eq!(status, 400, "attempt {i}");
    }
    for replica in [&a, &b] {
        assert_eq!(
            replica.token_request(&wrong("someone-else")).await.status(),
            429
        );
    }
}

/// Guesses at one name sent at once to both replicas: however they
/// interleave, no more passwords are checked than the limit, every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_on_both_replicas_never_pass_the_limit() {
    crate::postgres_server();
    const LIMIT: usize = 4;
    let options = Options {
        extra_env: vec![
            (
                "TASKFLOW_LOGIN_MAX_FAILURES_PER_USER".into(),
                LIMIT.to_string(),
            ),
            (
                "TASKFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS".into(),
                "1000".into(),
            ),
        ],
        ..Options::default()
    };
    let a = std::sync::Arc::new(TestServer::start_with(options.clone()).await);
    let b = std::sync::Arc::new(TestServer::start_with(options).await);
    for round in 0..3 {
        let user = format!("victim{round}");
        a.add_user(&user, "tasks:read");
        let guesses = (0..16).map(|i| {
            let replica = if i % 2 == 0 { a.clone() } else { b.clone() };
            let form = format!("grant_type=password&username={user}&password=guess{i}");
            tokio::spawn(async move { replica.token_request(&form).await.status().as_u16() })
        });
        let mut checked = 0;
        for guess in guesses.collect::<Vec<_>>() {
            match guess.await.unwrap() {
                400 => checked += 1,
                429 | 503 => {}
                other => panic!("round {round}: a guess answered {other}"),
            }
        }
        assert!(
            checked <= LIMIT,
            "round {round}: {checked} passwords checked"
        );
        assert_eq!(
            a.token_request(&format!("grant_type=password&username={user}&password=x"))
                .await
                .status(),
            429
        );
    }
}

/// The rolling upgrade the README describes: replace the component file on
/// one replica, reload it, check it, then the next, while clients use both;
/// no request fails, and tokens from either policy are good at both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_component_upgrade_rolls_across_replicas_without_failures() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::harness::{built_component, replace_file};

    crate::postgres_server();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let files: Vec<_> = dirs.iter().map(|d| d.path().join("policy.wasm")).collect();
    let options = Options {
        extra_env: vec![("TASKFLOW_COMPONENT_WATCH_MS".into(), "0".into())],
        ..Options::default()
    };
    let mut replicas = Vec::new();
    for file in &files {
        std::fs::copy(built_component("guest_auth"), file).unwrap();
        replicas.push(Arc::new(
            TestServer::start_with(Options {
                component: file.clone(),
                ..options.clone()
            })
            .await,
        ));
    }
    replicas[0].add_user("alice", "tasks:read tasks:write");
    let token = replicas[0].token("alice", None).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for replica in &replicas {
        let (replica, token, stop) = (replica.clone(), token.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut sent, mut failures) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) && sent < 50_000 {
                sent += 1;
                let response = if sent % 10 == 0 {
                    replica
                        .call("POST", "/tasks", Some(&token), Some(json!({"title": "t"})))
                        .await
                } else {
                    replica.call("GET", "/tasks", Some(&token), None).await
                };
                if !response.status().is_success() {
                    failures.push(response.status().as_u16());
                }
            }
            (sent, failures)
        }));
    }

    let upgrade = std::fs::read(built_component("guest_admin_delete")).unwrap();
    for (i, (replica, file)) in replicas.iter().zip(&files).enumerate() {
        replace_file(file, &upgrade);
        let out = replica.cli(&["auth", "reload"], "");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            replica.health().await["auth_component"]["name"],
            "guest-admin-delete"
        );
        // Mid-rollout, tokens from the new policy are good at the old and back.
        let fresh = replica.token("alice", None).await;
        for other in &replicas {
            assert_eq!(
                other
                    .call("GET", "/users/me", Some(&fresh), None)
                    .await
                    .status(),
                200,
                "after upgrading replica {i}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let (sent, failures) = client.await.unwrap();
        assert!(sent > 10, "the client barely ran: {sent}");
        assert!(
            failures.is_empty(),
            "{} of {sent} failed: {failures:?}",
            failures.len()
        );
    }
}

/// A key rotated through one replica's CLI reaches the other through the
/// database: both sign with it once it activates, and accept each other's.
#[tokio::test]
async fn a_key_rotation_reaches_every_replica() {
    use std::time::{Duration, Instant};

    use crate::harness::kid_of;

    crate::postgres_server();
    let options = Options {
        extra_env: vec![
            ("TASKFLOW_KEY_ACTIVATION_DELAY".into(), "1".into()),
            ("TASKFLOW_KEY_REFRESH_MS".into(), "100".into()),
        ],
        ..Options::default()
    };
    let a = TestServer::start_with(options.clone()).await;
    let b = TestServer::start_with(options).await;
    a.add_user("alice", "tasks:read");
    let old = b.token("alice", None).await;

    let rotated = a.cli(&["keys", "rotate"], "");
    assert!(rotated.status.success());
    let new_kid = String::from_utf8_lossy(&rotated.stdout)
        .strip_prefix("added HS256 key ")
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    for replica in [&a, &b] {
        while kid_of(&replica.token("alice", None).await) != new_kid {
            assert!(
                Instant::now() < deadline,
                "{} never signed with the new key",
                replica.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let from_b = b.token("alice", None).await;
    assert_eq!(
        a.call("GET", "/tasks", Some(&from_b), None).await.status(),
        200
    );
    let from_a = a.token("alice", None).await;
    assert_eq!(
        b.call("GET", "/tasks", Some(&from_a), None).await.status(),
        200
    );
    // The key retired by the rotation still verifies its tokens on both.
    assert_eq!(
        a.call("GET", "/tasks", Some(&old), None).await.status(),
        200
    );
    assert_eq!(
        b.call("GET", "/tasks", Some(&old), None).await.status(),
        200
    );
}

/// Refresh tokens live in the shared database: one replica's refresh token
/// refreshes at the other, a replay at either revokes the family everywhere,
/// and of two replicas using one token at once, at most one succeeds.
#[tokio::test]
async fn refresh_tokens_are_shared_and_single_use_across_replicas() {
    let (a, b) = two_replicas().await;
    a.add_user("alice", "tasks:read");
    let login = format!(
        "grant_type=password&username=alice&password={}",
        crate::harness::urlencode(crate::harness::PASSWORD)
    );
    let refresh_form = |token: &str| {
        format!(
            "grant_type=refresh_token&refresh_token={}",
            crate::harness::urlencode(token)
        )
    };
    let refresh_token = |body: &Value| body["refresh_token"].as_str().unwrap().to_owned();

    let first: Value = a.token_request(&login).await.json().await.unwrap();
    let at_b = b.token_request(&refresh_form(&refresh_token(&first))).await;
    assert_eq!(at_b.status(), 200);
    let second: Value = at_b.json().await.unwrap();
    // The first token, replayed at replica A: the family is gone at both.
    assert_error(
        a.token_request(&refresh_form(&refresh_token(&first))).await,
        400,
        "invalid_grant",
        None,
    )
    .await;
    assert_error(
        b.token_request(&refresh_form(&refresh_token(&second)))
            .await,
        400,
        "invalid_grant",
        None,
    )
    .await;

    let fresh: Value = b.token_request(&login).await.json().await.unwrap();
    let form = refresh_form(&refresh_token(&fresh));
    let (x, y) = tokio::join!(a.token_request(&form), b.token_request(&form));
    let statuses = [x.status().as_u16(), y.status().as_u16()];
    assert!(statuses.contains(&400), "{statuses:?}");
}
