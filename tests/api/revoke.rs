//! `POST /revoke` (RFC 7009) for access tokens.

use serde_json::Value;

use crate::harness::{Policy, SECRET, TestServer, assert_error, claims, mint};

/// A revoked token is refused by every check from then on; the user's
/// other tokens are not affected.
async fn a_revoked_token_is_refused_from_then_on(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read");
    let revoked = server.token("alice", None).await;
    let other = server.token("alice", None).await;
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&revoked), None)
            .await
            .status(),
        200
    );

    let answer = server
        .post_form(
            "/revoke",
            &format!("token={revoked}&token_type_hint=access_token"),
        )
        .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let body: Value = assert_error(
        server.call("GET", "/tasks", Some(&revoked), None).await,
        401,
        "invalid_token",
        Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
    )
    .await;
    assert_eq!(body["error_description"], "the token was revoked");
    assert_eq!(
        server
            .call("GET", "/users/me", Some(&revoked), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&other), None)
            .await
            .status(),
        200
    );

    // Revoking again, and after a restart, changes nothing: it is stored.
    assert_eq!(
        server
            .post_form("/revoke", &format!("token={revoked}"))
            .await
            .status(),
        200
    );
    let server = server.restart().await;
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&revoked), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&other), None)
            .await
            .status(),
        200
    );
}

/// RFC 7009 §2.2: a token that is not valid gets the same 200, and nothing
/// about the request's shape is guessed.
async fn unusable_tokens_and_bad_requests(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read");
    let mut expired = claims("alice", "tasks:read");
    expired["exp"] = serde_json::json!(crate::harness::now() - 3600);
    let expired = mint(
        &expired,
        SECRET.as_bytes(),
        &crate::harness::kid_of(&server.token("alice", None).await),
    );
    for token in ["garbage", "a.b.c", expired.as_str(), ""] {
        let answer = server.revoke(token).await;
        assert_eq!(answer.status(), 200, "{token}");
    }
    assert_error(
        server
            .post_form("/revoke", "token_type_hint=access_token")
            .await,
        400,
        "invalid_request",
        None,
    )
    .await;
    assert_error(
        server.post_form("/revoke", "token=a&token=b").await,
        400,
        "invalid_request",
        None,
    )
    .await;
    let json = server
        .client
        .post(server.url("/revoke"))
        .json(&serde_json::json!({"token": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(json, 400, "invalid_request", None).await;
    let huge = format!("token={}", "a".repeat(9 * 1024));
    assert_eq!(server.post_form("/revoke", &huge).await.status(), 413);
}

/// `taskflow user passwd` revokes every token the user had; the new
/// password works, the old one does not.
async fn a_password_change_revokes_earlier_tokens(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read");
    server.add_user("bob", "tasks:read");
    let earlier = server.token("alice", None).await;
    let bobs = server.token("bob", None).await;

    let changed = server.cli(&["user", "passwd", "alice"], "a brand new passphrase\n");
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let body = assert_error(
        server.call("GET", "/tasks", Some(&earlier), None).await,
        401,
        "invalid_token",
        Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
    )
    .await;
    assert_eq!(body["error_description"], "the token was revoked");
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&bobs), None)
            .await
            .status(),
        200
    );

    let old = server
        .token_request(&format!(
            "grant_type=password&username=alice&password={}",
            crate::harness::urlencode(crate::harness::PASSWORD)
        ))
        .await;
    assert_error(old, 400, "invalid_grant", None).await;
    let fresh: Value = server
        .token_request("grant_type=password&username=alice&password=a+brand+new+passphrase")
        .await
        .json()
        .await
        .unwrap();
    let fresh = fresh["access_token"].as_str().unwrap();
    assert_eq!(
        server
            .call("GET", "/tasks", Some(fresh), None)
            .await
            .status(),
        200
    );

    let unknown = server.cli(&["user", "passwd", "nobody"], "whatever\n");
    assert!(!unknown.status.success());
}

/// How long a change made by another process (the CLI here) may take to
/// reach a running server's in-memory token status: it reads the change log
/// every 20 ms on SQLite; PostgreSQL wakes it by NOTIFY (and it reads the
/// log every 100 ms besides). The bound asserted leaves room for a loaded
/// test machine.
pub const PROPAGATION_BOUND: std::time::Duration = std::time::Duration::from_millis(1000);

/// Polls `GET path` with `token` until it answers `status`, for at most
/// [`PROPAGATION_BOUND`]; returns how long that took.
pub async fn refused_within_bound(
    server: &TestServer,
    token: &str,
    what: &str,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let status = server
            .call("GET", "/users/me", Some(token), None)
            .await
            .status();
        if status == 401 || status == 403 {
            return started.elapsed();
        }
        assert_eq!(status, 200, "{what}: neither accepted nor refused");
        assert!(
            started.elapsed() < PROPAGATION_BOUND,
            "{what}: still accepted after {PROPAGATION_BOUND:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Bearer checks answer from memory, yet a revocation through this server
/// is refused at once, and a removal, a password change and a scope change
/// made by the CLI (another process, as another replica would be) are
/// refused within the stated bound, with no per-request query.
#[tokio::test]
async fn changes_made_elsewhere_are_refused_within_the_bound() {
    let server = TestServer::start().await;
    for user in ["alice", "bob", "carol", "dave"] {
        server.add_user(user, "tasks:read");
    }
    let mut tokens = std::collections::HashMap::new();
    for user in ["alice", "bob", "carol", "dave"] {
        let token = server.token(user, None).await;
        // Each user is looked up once, and remembered from then on.
        assert_eq!(
            server
                .call("GET", "/tasks", Some(&token), None)
                .await
                .status(),
            200
        );
        tokens.insert(user, token);
    }

    assert_eq!(server.revoke(&tokens["alice"]).await.status(), 200);
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&tokens["alice"]), None)
            .await
            .status(),
        401,
        "a revocation through this server applies before its answer"
    );

    assert!(server.cli(&["user", "remove", "bob"], "").status.success());
    refused_within_bound(&server, &tokens["bob"], "removal by the CLI").await;

    assert!(
        server
            .cli(&["user", "passwd", "carol"], "a new long passphrase\n")
            .status
            .success()
    );
    refused_within_bound(&server, &tokens["carol"], "password change by the CLI").await;

    assert!(
        server
            .cli(&["user", "scopes", "dave", ""], "")
            .status
            .success()
    );
    let started = std::time::Instant::now();
    loop {
        let status = server
            .call("GET", "/tasks", Some(&tokens["dave"]), None)
            .await
            .status();
        if status == 403 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < PROPAGATION_BOUND,
            "a withdrawn scope still works after {PROPAGATION_BOUND:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

crate::policy_tests!(
    a_revoked_token_is_refused_from_then_on,
    unusable_tokens_and_bad_requests,
    a_password_change_revokes_earlier_tokens,
);
