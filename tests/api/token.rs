//! `POST /token`: the password grant and each of its error answers.

use serde_json::Value;

use crate::harness::{Options, PASSWORD, Policy, TestServer, assert_error, urlencode};

fn grant(user: &str, password: &str) -> String {
    format!(
        "grant_type=password&username={user}&password={}",
        urlencode(password)
    )
}

/// A correct password yields a bearer token with all of the user's scopes,
/// not cacheable, with the contract's lifetime.
async fn password_grant_issues_a_bearer_token(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read tasks:write");
    let response = server.token_request(&grant("alice", PASSWORD)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1800);
    assert_eq!(body["scope"], "tasks:read tasks:write");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    let me: Value = server
        .call("GET", "/users/me", Some(token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(
        me["scopes"],
        serde_json::json!(["tasks:read", "tasks:write"])
    );
}

/// A blank `scope` counts as none sent: all of the user's scopes.
async fn blank_scope_grants_all(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read tasks:write");
    let response = server
        .token_request(&format!("{}&scope=", grant("alice", PASSWORD)))
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "tasks:read tasks:write");
}

/// A `scope` parameter grants exactly the scopes asked for.
async fn scope_parameter_narrows_the_grant(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read tasks:write");
    let response = server
        .token_request(&format!("{}&scope=tasks%3Aread", grant("alice", PASSWORD)))
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "tasks:read");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        server
            .call("GET", "/tasks", Some(token), None)
            .await
            .status(),
        200
    );
    let response = server
        .call(
            "POST",
            "/tasks",
            Some(token),
            Some(serde_json::json!({"title": "x"})),
        )
        .await;
    assert_error(
        response,
        403,
        "insufficient_scope",
        Some("Bearer realm=\"taskflow\", error=\"insufficient_scope\""),
    )
    .await;
}

/// An unknown user and a wrong password get byte-identical answers.
async fn unknown_user_and_wrong_password_are_indistinguishable(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read");
    let wrong = server
        .token_request(&grant("alice", "not the password"))
        .await;
    let unknown = server.token_request(&grant("mallory", PASSWORD)).await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(unknown.status(), 400);
    let wrong = wrong.text().await.unwrap();
    assert_eq!(wrong, unknown.text().await.unwrap());
    assert!(wrong.contains("\"invalid_grant\""), "{wrong}");
}

/// Each malformed request gets its RFC 6749 §5.2 code.
async fn each_error_code(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read");
    let ok = grant("alice", PASSWORD);
    let cases = [
        ("username=alice&password=x".to_owned(), "invalid_request"),
        (
            "grant_type=password&password=x".to_owned(),
            "invalid_request",
        ),
        (
            "grant_type=password&username=alice".to_owned(),
            "invalid_request",
        ),
        (format!("{ok}&grant_type=password"), "invalid_request"),
        (format!("{ok}&password=again"), "invalid_request"),
        (format!("{ok}&scope=a&scope=b"), "invalid_request"),
        (
            "grant_type=client_credentials&username=alice&password=x".to_owned(),
            "unsupported_grant_type",
        ),
        (format!("{ok}&scope=tasks%3Awrite"), "invalid_scope"),
        (format!("{ok}&scope=tasks%3Aread+admin"), "invalid_scope"),
    ];
    for (form, code) in cases {
        let response = server.token_request(&form).await;
        let body = assert_error(response, 400, code, None).await;
        assert!(!body.to_string().contains(PASSWORD), "{form}");
    }
    let json = server
        .client
        .post(server.url("/token"))
        .json(&serde_json::json!({"grant_type": "password", "username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_error(json, 400, "invalid_request", None).await;
}

/// Bodies over 8 KiB are refused with 413 before any password work.
#[tokio::test]
async fn oversized_token_request_is_refused() {
    let server = TestServer::start().await;
    let form = format!(
        "grant_type=password&username=alice&password={}",
        "x".repeat(9 * 1024)
    );
    let response = server.token_request(&form).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(!server.log().contains("xxxxxxxx"));
}

/// After five failures for one username, even the right password gets 429
/// with `Retry-After`; other users are unaffected.
#[tokio::test]
async fn repeated_failures_are_throttled() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read");
    server.add_user("bob", "tasks:read");
    for _ in 0..5 {
        let response = server.token_request(&grant("alice", "guess")).await;
        assert_error(response, 400, "invalid_grant", None).await;
    }
    let response = server.token_request(&grant("alice", PASSWORD)).await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_many_attempts");
    assert_eq!(
        server.token_request(&grant("bob", PASSWORD)).await.status(),
        200
    );
}

/// A successful login clears the username's count.
#[tokio::test]
async fn success_resets_the_count() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read");
    for round in 0..2 {
        for _ in 0..4 {
            assert_eq!(
                server
                    .token_request(&grant("alice", "guess"))
                    .await
                    .status(),
                400,
                "round {round}"
            );
        }
        assert_eq!(
            server
                .token_request(&grant("alice", PASSWORD))
                .await
                .status(),
            200,
            "round {round}"
        );
    }
}

/// Failures from one address across many usernames are limited too, and a
/// throttled attempt never reaches the policy (a component that would spin
/// on this username answers 429 at once, not 503 after its deadline).
#[tokio::test]
async fn per_address_limit_skips_the_password_check() {
    let server = TestServer::start_with(crate::harness::Options {
        component: crate::harness::built_component("hostile_policy"),
        extra_env: vec![("TASKFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS".into(), "3".into())],
        ..Default::default()
    })
    .await;
    for name in ["u1", "u2", "u3"] {
        assert_eq!(
            server.token_request(&grant(name, "guess")).await.status(),
            400
        );
    }
    let response = server.token_request(&grant("loop", "guess")).await;
    assert_eq!(response.status(), 429);
    assert!(!server.log().contains("deadline exceeded"));
}

/// An unknown username and a wrong password cost the server the same
/// argon2 work, so their timing does not tell which usernames exist.
/// Benchmark-style: many samples, interleaved so that load on the machine
/// falls on both alike, compared by median with a loose bound. A server
/// that skipped the hash for unknown users answers those about a hundred
/// times faster, far outside the bound.
#[tokio::test]
async fn unknown_user_and_wrong_password_take_the_same_time() {
    let server = TestServer::start_with(Options {
        extra_env: vec![
            (
                "TASKFLOW_LOGIN_MAX_FAILURES_PER_USER".into(),
                "100000".into(),
            ),
            (
                "TASKFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS".into(),
                "100000".into(),
            ),
        ],
        ..Options::default()
    })
    .await;
    server.add_user("alice", "tasks:read");
    let unknown = "grant_type=password&username=nobody-here&password=wrong-password";
    let wrong = "grant_type=password&username=alice&password=wrong-password";
    let time = |form: &'static str| {
        let server = &server;
        async move {
            let started = std::time::Instant::now();
            let response = server.token_request(form).await;
            let took = started.elapsed();
            assert_eq!(response.status(), 400);
            took
        }
    };
    // Warm up (instances, caches), then sample alternately.
    for _ in 0..3 {
        time(unknown).await;
        time(wrong).await;
    }
    let (mut unknown_times, mut wrong_times) = (Vec::new(), Vec::new());
    for i in 0..40 {
        if i % 2 == 0 {
            unknown_times.push(time(unknown).await);
            wrong_times.push(time(wrong).await);
        } else {
            wrong_times.push(time(wrong).await);
            unknown_times.push(time(unknown).await);
        }
    }
    let median = |times: &mut Vec<std::time::Duration>| {
        times.sort();
        times[times.len() / 2].as_secs_f64()
    };
    let (unknown_median, wrong_median) = (median(&mut unknown_times), median(&mut wrong_times));
    let ratio = unknown_median / wrong_median;
    assert!(
        (0.5..=2.0).contains(&ratio),
        "unknown user {unknown_median:.4} s vs wrong password {wrong_median:.4} s (ratio {ratio:.2})"
    );
}

crate::policy_tests!(
    password_grant_issues_a_bearer_token,
    blank_scope_grants_all,
    scope_parameter_narrows_the_grant,
    unknown_user_and_wrong_password_are_indistinguishable,
    each_error_code,
);
