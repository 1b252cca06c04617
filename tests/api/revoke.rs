//! `POST /revoke` (RFC 7009) for access tokens.

use serde_json::Value;

use crate::harness::{SECRET, TestServer, assert_error, claims, mint};

/// A revoked token is refused by every check from then on; the user's
/// other tokens are not affected.
#[tokio::test]
async fn a_revoked_token_is_refused_from_then_on() {
    let server = TestServer::start().await;
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
#[tokio::test]
async fn unusable_tokens_and_bad_requests() {
    let server = TestServer::start().await;
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
#[tokio::test]
async fn a_password_change_revokes_earlier_tokens() {
    let server = TestServer::start().await;
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
    // Tokens issued in the second of the change count as earlier: wait it out.
    std::thread::sleep(std::time::Duration::from_millis(1100));
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

/// With `--token-status-cache-ms`, a Bearer check may reuse a token's
/// lookup for that long: a revocation through this server still applies at
/// once, while a removal made by another process (the CLI here; another
/// replica alike) applies only once the remembered lookup expires.
#[tokio::test]
async fn the_token_status_cache_trades_immediacy_for_speed() {
    let server = TestServer::start_with(crate::harness::Options {
        extra_env: vec![("TASKFLOW_TOKEN_STATUS_CACHE_MS".into(), "3000".into())],
        ..Default::default()
    })
    .await;
    server.add_user("alice", "tasks:read");
    server.add_user("bob", "tasks:read");
    let alices = server.token("alice", None).await;
    let bobs = server.token("bob", None).await;
    for token in [&alices, &bobs] {
        assert_eq!(
            server
                .call("GET", "/tasks", Some(token), None)
                .await
                .status(),
            200
        );
    }

    assert_eq!(server.revoke(&alices).await.status(), 200);
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&alices), None)
            .await
            .status(),
        401
    );

    assert!(server.cli(&["user", "remove", "bob"], "").status.success());
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&bobs), None)
            .await
            .status(),
        200,
        "the remembered lookup is still fresh"
    );
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&bobs), None)
            .await
            .status(),
        401
    );
}
