//! Bearer decisions reused for the same token and route
//! (`--decision-cache-ms`), and never past a change that could alter them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Options, TestServer, built_component, wait_for_count};

/// A cache far longer than any test: whatever ends a remembered decision
/// here is a change, never its age.
fn remembering() -> Options {
    Options {
        extra_env: vec![("TASKFLOW_DECISION_CACHE_MS".into(), "60000".into())],
        ..Options::default()
    }
}

/// How many times the chatty policy was asked for a Bearer decision.
fn decisions_made(server: &TestServer) -> usize {
    server
        .log()
        .lines()
        .filter(|line| line.contains("chatty-policy stdout: decide-access"))
        .count()
}

async fn forty_requests(cache_ms: &str) -> usize {
    let server = TestServer::start_with(Options {
        component: built_component("chatty_policy"),
        extra_env: vec![("TASKFLOW_DECISION_CACHE_MS".into(), cache_ms.into())],
        ..Options::default()
    })
    .await;
    server.add_user("alice", "tasks:read");
    let token = server.token("alice", None).await;
    for _ in 0..40 {
        let answer = server.call("GET", "/tasks", Some(&token), None).await;
        assert_eq!(answer.status(), 200);
    }
    // Each decision's line is logged while it is made, before its answer.
    decisions_made(&server)
}

/// The same token on the same route is decided by the policy once, not
/// once a request; with the cache off, every request asks the policy.
/// (Once, unless the server fell behind the change log for a moment, when
/// requests ask the policy again: hence "at most half", not "one".)
#[tokio::test]
async fn the_same_request_is_decided_once() {
    let cached = forty_requests("60000").await;
    assert!(
        (1..=20).contains(&cached),
        "{cached} decisions for 40 requests"
    );
    assert_eq!(forty_requests("0").await, 40);
}

/// Requests with a token that is in use by many clients at once (so its
/// decision is remembered) are refused from the moment its revocation is
/// answered: every request begun after the 200 of `/revoke` gets 401.
#[tokio::test]
async fn a_remembered_decision_never_outlives_a_revocation() {
    let server = Arc::new(TestServer::start_with(remembering()).await);
    server.add_user("alice", "tasks:read");
    for round in 0..3 {
        let token = server.token("alice", None).await;
        let revoked_at = Arc::new(std::sync::OnceLock::<Instant>::new());
        let answered = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (server, token, revoked_at) =
                    (Arc::clone(&server), token.clone(), Arc::clone(&revoked_at));
                let answered = Arc::clone(&answered);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    loop {
                        let started = Instant::now();
                        let status = server
                            .call("GET", "/tasks", Some(&token), None)
                            .await
                            .status()
                            .as_u16();
                        seen.push((started, status));
                        answered.fetch_add(1, Ordering::AcqRel);
                        if revoked_at
                            .get()
                            .is_some_and(|at| started > *at + Duration::from_millis(300))
                        {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        // The decision is remembered and in use by every client.
        wait_for_count(&answered, 16, "answers before the revocation").await;
        assert_eq!(server.revoke(&token).await.status(), 200);
        revoked_at.set(Instant::now()).unwrap();
        let revoked_at = *revoked_at.get().unwrap();
        let (mut before, mut after) = (0, 0);
        for client in clients {
            for (started, status) in client.await.unwrap() {
                if started > revoked_at {
                    assert_eq!(status, 401, "round {round}: accepted after its revocation");
                    after += 1;
                } else if status == 200 {
                    before += 1;
                }
            }
        }
        assert!(
            before > 8 && after > 8,
            "round {round}: {before} before, {after} after"
        );
    }
}

/// A change made by another process (here `taskflow user remove`) reaches
/// the server through the change log and ends remembered decisions too:
/// refused within the change feed's bound, not after the cache's minute.
#[tokio::test]
async fn a_change_made_elsewhere_ends_remembered_decisions() {
    let server = TestServer::start_with(remembering()).await;
    server.add_user("alice", "tasks:read");
    let token = server.token("alice", None).await;
    for _ in 0..5 {
        let answer = server.call("GET", "/tasks", Some(&token), None).await;
        assert_eq!(answer.status(), 200);
    }
    let removed = server.cli(&["user", "remove", "alice"], "");
    assert!(removed.status.success(), "{removed:?}");
    let removed_at = Instant::now();
    loop {
        let status = server
            .call("GET", "/tasks", Some(&token), None)
            .await
            .status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            removed_at.elapsed() < Duration::from_secs(5),
            "still accepted 5 s after the user was removed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
