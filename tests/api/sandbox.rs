//! A misbehaving component fails only the request that triggered it.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Options, PASSWORD, Policy, TestServer, built_component, urlencode};

async fn hostile_server() -> TestServer {
    hostile_server_with_deadline(300).await
}

async fn hostile_server_with_deadline(deadline_ms: u64) -> TestServer {
    let server = TestServer::start_with(Options {
        component: built_component("hostile_policy"),
        extra_env: vec![
            (
                "TASKFLOW_COMPONENT_DEADLINE_MS".into(),
                deadline_ms.to_string(),
            ),
            ("TASKFLOW_COMPONENT_MEMORY_MIB".into(), "48".into()),
        ],
        ..Options::default()
    })
    .await;
    server.add_user("alice", "tasks:read");
    server
}

/// Loops, memory bombs and panics in `/token`, in the Bearer check and in
/// introspection each get a 503 (never a hang: the client gives up after
/// 20 s), and the very next request is served normally.
#[tokio::test]
async fn each_misbehaviour_fails_only_its_request() {
    let server = hostile_server().await;
    server.add_user("resource-server", "tokens:introspect");
    let introspector = server.token("resource-server", None).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for trigger in ["loop", "bomb", "panic"] {
        let response = client
            .post(server.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=password&username={trigger}&password=x"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{trigger} in /token: {e}"));
        assert_eq!(response.status(), 503, "{trigger} in /token");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");

        let response = client
            .get(server.url("/tasks"))
            .bearer_auth(trigger)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{trigger} in the Bearer check: {e}"));
        assert_eq!(response.status(), 503, "{trigger} in the Bearer check");

        let response = client
            .post(server.url("/introspect"))
            .bearer_auth(&introspector)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={trigger}.x.y"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{trigger} in introspection: {e}"));
        assert_eq!(response.status(), 503, "{trigger} in introspection");

        let token = server.token("alice", None).await;
        assert_eq!(
            server
                .call("GET", "/tasks", Some(&token), None)
                .await
                .status(),
            200,
            "after {trigger}"
        );
    }
    let log = server.log();
    assert!(log.contains("deadline exceeded"), "{log}");
    assert!(log.contains("auth component call failed"));
}

/// While one request spins in the component, others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_request_does_not_block_others() {
    let server = std::sync::Arc::new(hostile_server_with_deadline(3000).await);
    let token = server.token("alice", None).await;
    let spinning = {
        let server = server.clone();
        tokio::spawn(async move {
            let form = "grant_type=password&username=loop&password=x";
            server.token_request(form).await.status()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..20 {
        assert_eq!(
            server
                .call("GET", "/tasks", Some(&token), None)
                .await
                .status(),
            200
        );
    }
    // The spinning request was in flight the whole time.
    assert!(!spinning.is_finished());
    assert_eq!(spinning.await.unwrap(), 503);
}

/// Several clients whose requests spin, exhaust memory or panic in the
/// Bearer check (which runs on the server's async worker threads, not the
/// blocking pool) send them back to back, while another client sends valid
/// Bearer requests: every misbehaving request gets 503 within its deadline
/// (50 ms by default for a decision, far below the password work's 3 s set
/// here), and every valid one is answered promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn misbehaving_bearer_checks_do_not_hold_up_other_requests() {
    let server = std::sync::Arc::new(hostile_server_with_deadline(3000).await);
    let token = server.token("alice", None).await;
    let prompt = Duration::from_millis(500);
    for trigger in ["loop", "bomb", "panic"] {
        let until = std::time::Instant::now() + Duration::from_millis(1500);
        let hostile: Vec<_> = (0..4)
            .map(|_| {
                let server = server.clone();
                tokio::spawn(async move {
                    let mut sent = 0;
                    while std::time::Instant::now() < until {
                        let started = std::time::Instant::now();
                        let status = server
                            .call("GET", "/tasks", Some(trigger), None)
                            .await
                            .status();
                        let took = started.elapsed();
                        assert_eq!(status, 503, "{trigger} in the Bearer check");
                        assert!(took < prompt, "{trigger} took {took:?} to fail");
                        sent += 1;
                    }
                    sent
                })
            })
            .collect();
        let mut answered = 0;
        let mut slowest = Duration::ZERO;
        while std::time::Instant::now() < until {
            let started = std::time::Instant::now();
            let status = server
                .call("GET", "/tasks", Some(&token), None)
                .await
                .status();
            assert_eq!(status, 200, "a valid request during {trigger}");
            slowest = slowest.max(started.elapsed());
            answered += 1;
        }
        for client in hostile {
            assert!(client.await.unwrap() > 0);
        }
        assert!(
            slowest < prompt,
            "a valid request took {slowest:?} while {trigger} requests ran"
        );
        // How many is the benchmark's business (docs/benchmarks.md, hostile
        // neighbours); here, that valid requests kept being answered.
        assert!(
            answered >= 5,
            "only {answered} valid answers during {trigger}"
        );
    }
}

/// A policy that writes to stdout and stderr on every call serves normally,
/// on the Bearer path (the async worker threads) and in password grants
/// (the password threads) alike, and what it writes reaches the server's
/// log, one line per line, marked with the component's name.
#[tokio::test]
async fn a_policy_that_prints_serves_and_its_output_is_logged() {
    let server = TestServer::start_with(Options {
        component: built_component("chatty_policy"),
        ..Options::default()
    })
    .await;
    server.add_user("alice", "tasks:read");
    let token = server.token("alice", None).await;
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&token), None)
            .await
            .status(),
        200
    );
    let log = server.log();
    for wrote in [
        "chatty-policy stdout: decide-access",
        "chatty-policy stderr: decide-access",
        "chatty-policy stdout: issue-token",
        "chatty-policy stderr: issue-token",
    ] {
        let line = log
            .lines()
            .find(|line| line.contains(wrote))
            .unwrap_or_else(|| panic!("{wrote:?} is not in the log:\n{log}"));
        assert!(line.contains("component=chatty-policy"), "{line}");
        assert!(line.contains("stream="), "{line}");
    }
}

/// A component failing call after call shows as degraded, and recovers.
#[tokio::test]
async fn repeated_faults_show_as_degraded() {
    let server = hostile_server().await;
    assert_eq!(server.health().await["status"], "ok");
    for _ in 0..3 {
        assert_eq!(
            server
                .call("GET", "/tasks", Some("panic"), None)
                .await
                .status(),
            503
        );
    }
    assert_eq!(server.health().await["status"], "degraded");
    let login = format!(
        "grant_type=password&username=alice&password={}",
        urlencode(PASSWORD)
    );
    assert_eq!(server.token_request(&login).await.status(), 200);
    assert_eq!(server.health().await["status"], "ok");
}

/// The first call of a loaded component runs on a cold instance, as part of
/// its start rather than of a request: it is held to the start-up check's
/// deadline, not a decision's. CPython's cold instance takes milliseconds
/// to start; with decisions given 1 ms, the Python policy still starts.
#[tokio::test]
async fn a_cold_start_is_not_held_to_a_decisions_deadline() {
    let server = TestServer::start_with(Options {
        extra_env: vec![("TASKFLOW_DECISION_DEADLINE_MS".into(), "1".into())],
        ..Policy::Python.options()
    })
    .await;
    let health = server.health().await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["auth_component"]["name"], "guest-python", "{health}");
}
