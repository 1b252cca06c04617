//! Refresh tokens (RFC 6749 §6): rotation, reuse detection, scope, revocation.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{Options, PASSWORD, Policy, TestServer, assert_error, urlencode};

/// Logs `user` in; the access token and the refresh token.
async fn login(server: &TestServer, user: &str, scope: Option<&str>) -> (String, String) {
    let mut form = format!(
        "grant_type=password&username={user}&password={}",
        urlencode(PASSWORD)
    );
    if let Some(scope) = scope {
        form.push_str(&format!("&scope={}", urlencode(scope)));
    }
    let response = server.token_request(&form).await;
    assert_eq!(response.status(), 200);
    tokens(response.json().await.unwrap())
}

fn tokens(body: Value) -> (String, String) {
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token in {body}"))
        .to_owned();
    (access, refresh)
}

async fn refresh(server: &TestServer, token: &str, scope: Option<&str>) -> reqwest::Response {
    let mut form = format!(
        "grant_type=refresh_token&refresh_token={}",
        urlencode(token)
    );
    if let Some(scope) = scope {
        form.push_str(&format!("&scope={}", urlencode(scope)));
    }
    server.token_request(&form).await
}

async fn me(server: &TestServer, access: &str) -> u16 {
    server
        .call("GET", "/users/me", Some(access), None)
        .await
        .status()
        .as_u16()
}

async fn a_refresh_token_gives_a_new_access_token_and_its_successor(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read tasks:write");
    let (first_access, first) = login(&server, "alice", None).await;
    assert_eq!(first.len(), 43, "256 random bits, base64url");

    let response = refresh(&server, &first, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["scope"], "tasks:read tasks:write");
    let (access, second) = tokens(body);
    assert_ne!(access, first_access);
    assert_ne!(second, first);
    assert_eq!(me(&server, &access).await, 200);
    // The successor works in turn.
    let again = refresh(&server, &second, None).await;
    assert_eq!(again.status(), 200);

    // A refresh token is no access token.
    assert_error(
        server.call("GET", "/users/me", Some(&second), None).await,
        401,
        "invalid_token",
        Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
    )
    .await;
    // Nor is an access token a refresh token, nor is anything made up.
    for bogus in [access.as_str(), "", "made-up"] {
        assert_error(
            refresh(&server, bogus, None).await,
            400,
            "invalid_grant",
            None,
        )
        .await;
    }
    assert_error(
        server.token_request("grant_type=refresh_token").await,
        400,
        "invalid_request",
        None,
    )
    .await;
}

/// A refresh token used twice was stolen or replayed: every token of its
/// family stops working, the legitimate client's successor included, and so
/// do the access tokens issued with them; other logins are untouched.
async fn reusing_a_refresh_token_revokes_its_family(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read");
    let (first_access, first) = login(&server, "alice", None).await;
    let (other_access, other_login) = login(&server, "alice", None).await;
    let (second_access, second) =
        tokens(refresh(&server, &first, None).await.json().await.unwrap());
    assert_eq!(me(&server, &second_access).await, 200);

    let replay = assert_error(
        refresh(&server, &first, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;
    // A thief learns nothing from the answer: a used token is described
    // as an unknown one is.
    let unknown = assert_error(
        refresh(&server, "no-such-refresh-token", None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;
    assert_eq!(
        replay["error_description"], unknown["error_description"],
        "{replay}"
    );
    assert_error(
        refresh(&server, &second, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;
    for access in [&first_access, &second_access] {
        let body = assert_error(
            server.call("GET", "/users/me", Some(access), None).await,
            401,
            "invalid_token",
            Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
        )
        .await;
        assert_eq!(body["error_description"], "the token was revoked");
    }
    assert_eq!(me(&server, &other_access).await, 200);
    assert_eq!(refresh(&server, &other_login, None).await.status(), 200);

    let log = server.log();
    assert!(log.contains("refresh token reused"), "{log}");
    server.add_user("prometheus", "metrics:read");
    let scrape = server.token("prometheus", None).await;
    let metrics = server
        .call("GET", "/metrics", Some(&scrape), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("taskflow_refresh_token_reuse_total 1\n"),
        "{metrics}"
    );
    for secret in [&first, &second] {
        assert!(!log.contains(secret.as_str()), "a refresh token was logged");
    }
}

/// Two uses of one token at once, as two replicas might see them: exactly
/// one gets a successor, and the family is then revoked.
#[tokio::test]
async fn concurrent_uses_of_one_token_let_one_through_at_most() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read");
    let (_, first) = login(&server, "alice", None).await;
    let (a, b) = tokio::join!(
        refresh(&server, &first, None),
        refresh(&server, &first, None)
    );
    let statuses = [a.status().as_u16(), b.status().as_u16()];
    assert!(statuses.contains(&400), "{statuses:?}");
    for response in [a, b] {
        if response.status() == 200 {
            // The winner's successor belongs to a family now revoked.
            let (_, next) = tokens(response.json().await.unwrap());
            assert_error(
                refresh(&server, &next, None).await,
                400,
                "invalid_grant",
                None,
            )
            .await;
        }
    }
}

/// §6: a refresh may narrow the scopes, never widen them past the login's,
/// and a refused refresh does not use the token up.
async fn refresh_scopes_narrow_but_never_widen(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read tasks:write");
    let (_, token) = login(&server, "alice", Some("tasks:read")).await;
    let wider = assert_error(
        refresh(&server, &token, Some("tasks:write")).await,
        400,
        "invalid_scope",
        None,
    )
    .await;
    assert!(
        wider["error_description"]
            .as_str()
            .unwrap()
            .contains("tasks:write"),
        "{wider}"
    );
    let body: Value = refresh(&server, &token, None).await.json().await.unwrap();
    assert_eq!(body["scope"], "tasks:read");
    let (access, _) = tokens(body);
    assert_eq!(
        server
            .call(
                "POST",
                "/tasks",
                Some(&access),
                Some(serde_json::json!({"title": "x"}))
            )
            .await
            .status(),
        403
    );

    // Narrowing one refresh leaves the family's grant as it was.
    let (_, full) = login(&server, "alice", None).await;
    let narrow: Value = refresh(&server, &full, Some("tasks:read"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(narrow["scope"], "tasks:read");
    let (_, after) = tokens(narrow);
    let wide: Value = refresh(&server, &after, None).await.json().await.unwrap();
    assert_eq!(wide["scope"], "tasks:read tasks:write");
}

/// `/revoke` with a refresh token, a password change and a removed user all
/// end the refresh tokens concerned.
async fn revocation_password_change_and_removal_end_refresh_tokens(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read");
    let (_, revoked) = login(&server, "alice", None).await;
    let (later_access, later) =
        tokens(refresh(&server, &revoked, None).await.json().await.unwrap());
    let response = server
        .post_form(
            "/revoke",
            &format!("token={}&token_type_hint=refresh_token", urlencode(&later)),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_error(
        refresh(&server, &later, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;
    // RFC 7009 §2.1: the access tokens of the same grant go too.
    assert_eq!(me(&server, &later_access).await, 401);
    // Revoking something that is not a token of ours is fine too (RFC 7009 §2.2).
    assert_eq!(server.revoke("no-such-refresh-token").await.status(), 200);

    let (_, before_change) = login(&server, "alice", None).await;
    let changed = server.cli(&["user", "passwd", "alice"], "a brand new passphrase\n");
    assert!(changed.status.success());
    assert_error(
        refresh(&server, &before_change, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;

    server.add_user("bob", "tasks:read");
    let (_, bobs) = login(&server, "bob", None).await;
    assert!(server.cli(&["user", "remove", "bob"], "").status.success());
    assert_error(
        refresh(&server, &bobs, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;
}

/// Only a digest of each refresh token reaches the database.
#[tokio::test]
async fn refresh_tokens_are_stored_only_as_digests() {
    // The SQLite file is in the data directory, where this test reads it.
    let server = TestServer::start_with(Options {
        database_url: None,
        ..Options::default()
    })
    .await;
    server.add_user("alice", "tasks:read");
    let (_, token) = login(&server, "alice", None).await;
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(server.data.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.to_string_lossy().contains(".db") {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    let contains = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(contains(digest.as_bytes()), "the digest is what is stored");
    assert!(!contains(token.as_bytes()), "the token itself is stored");
}

/// A login's refresh tokens end `--refresh-token-max-age` after the login,
/// however recently they were used.
#[tokio::test]
async fn a_login_ends_at_the_refresh_token_max_age() {
    let server = TestServer::start_with(Options {
        extra_env: vec![
            ("TASKFLOW_REFRESH_TOKEN_TTL".into(), "60".into()),
            ("TASKFLOW_REFRESH_TOKEN_MAX_AGE".into(), "2".into()),
        ],
        ..Options::default()
    })
    .await;
    server.add_user("alice", "tasks:read");
    let (_, first) = login(&server, "alice", None).await;
    let (_, second) = tokens(refresh(&server, &first, None).await.json().await.unwrap());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_error(
        refresh(&server, &second, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;
}

/// Refresh tokens expire `--refresh-token-ttl` after their issue, and are
/// not issued at all with 0.
async fn refresh_tokens_expire_and_can_be_turned_off(policy: Policy) {
    let server = TestServer::start_with(Options {
        extra_env: vec![("TASKFLOW_REFRESH_TOKEN_TTL".into(), "2".into())],
        ..policy.options()
    })
    .await;
    server.add_user("alice", "tasks:read");
    let (_, token) = login(&server, "alice", None).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_error(
        refresh(&server, &token, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;

    let off = TestServer::start_with(Options {
        extra_env: vec![("TASKFLOW_REFRESH_TOKEN_TTL".into(), "0".into())],
        ..policy.options()
    })
    .await;
    off.add_user("alice", "tasks:read");
    let body: Value = off
        .token_request(&format!(
            "grant_type=password&username=alice&password={}",
            urlencode(PASSWORD)
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_error(
        refresh(&off, "anything", None).await,
        400,
        "unsupported_grant_type",
        None,
    )
    .await;
}

/// A server with `--refresh-token-reuse-grace SECONDS`.
async fn with_grace(seconds: u64) -> TestServer {
    TestServer::start_with(Options {
        extra_env: vec![(
            "TASKFLOW_REFRESH_TOKEN_REUSE_GRACE".into(),
            seconds.to_string(),
        )],
        ..Options::default()
    })
    .await
}

/// Within the grace, a client whose answer was lost sends its refresh token
/// again and gets a fresh pair of the same family; the pair it lost is
/// dead (its refresh token presented later is a reuse, revoking the
/// family; its access token is revoked), and the replay is counted.
#[tokio::test]
async fn within_the_reuse_grace_a_lost_answer_is_recovered() {
    let server = with_grace(60).await;
    server.add_user("alice", "tasks:read");
    let (_, first) = login(&server, "alice", None).await;
    let (lost_access, lost) = tokens(refresh(&server, &first, None).await.json().await.unwrap());

    let replay = refresh(&server, &first, None).await;
    assert_eq!(replay.status(), 200);
    let (access, second) = tokens(replay.json().await.unwrap());
    assert_ne!(second, lost);
    assert_eq!(me(&server, &access).await, 200);
    assert_eq!(me(&server, &lost_access).await, 401);
    let (_, third) = tokens(refresh(&server, &second, None).await.json().await.unwrap());

    // The lost refresh token turning up later is someone else's copy.
    assert_error(
        refresh(&server, &lost, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;
    assert_error(
        refresh(&server, &third, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;

    server.add_user("prometheus", "metrics:read");
    let scrape = server.token("prometheus", None).await;
    let metrics = server
        .call("GET", "/metrics", Some(&scrape), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("taskflow_refresh_token_grace_replays_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("taskflow_refresh_token_reuse_total 1\n"),
        "{metrics}"
    );
}

/// Past the grace (counted from the token's use), a replay is a reuse as
/// without one: the family is revoked.
#[tokio::test]
async fn past_the_reuse_grace_a_replay_revokes_the_family() {
    let server = with_grace(1).await;
    server.add_user("alice", "tasks:read");
    let (_, first) = login(&server, "alice", None).await;
    let (access, second) = tokens(refresh(&server, &first, None).await.json().await.unwrap());
    // Waiting for the clock, not measuring anything: the grace is whole
    // seconds from the use.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let replay = assert_error(
        refresh(&server, &first, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;
    // The same words as for an unknown token: a thief learns nothing.
    assert_eq!(
        replay["error_description"],
        "the refresh token is invalid, expired or revoked"
    );
    assert_error(
        refresh(&server, &second, None).await,
        400,
        "invalid_grant",
        None,
    )
    .await;
    assert_eq!(me(&server, &access).await, 401);
}

/// An attacker holding a used token replays it many times at once within
/// the grace. Replays that follow each other each supersede the pair the
/// one before got; replays that race find the successor they read used and
/// count as reuses. Either way, every round, at most one access token of
/// the family still works and at most one refresh token is left: the
/// family never forks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replays_within_the_grace_never_fork_the_family() {
    let server = std::sync::Arc::new(with_grace(60).await);
    server.add_user("alice", "tasks:read");
    let introspector = crate::introspect::introspector(&server).await;
    for round in 0..4 {
        let (_, first) = login(&server, "alice", None).await;
        let successor = tokens(refresh(&server, &first, None).await.json().await.unwrap());
        let replays = (0..12).map(|_| {
            let (server, first) = (server.clone(), first.clone());
            tokio::spawn(async move {
                let response = refresh(&server, &first, None).await;
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                (status, body)
            })
        });
        let mut issued = vec![successor];
        for replay in replays.collect::<Vec<_>>() {
            let (status, body) = replay.await.unwrap();
            match status {
                200 => issued.push(tokens(body)),
                400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
                other => panic!("round {round}: replay answered {other}: {body}"),
            }
        }
        let mut working = 0;
        for (access, _) in &issued {
            if me(&server, access).await == 200 {
                working += 1;
            }
        }
        assert!(
            working <= 1,
            "round {round}: {working} of {} access tokens of one family work",
            issued.len()
        );
        let usable =
            crate::introspect::active_refresh_tokens(&server, &introspector, &issued).await;
        assert!(
            usable <= 1,
            "round {round}: {usable} refresh tokens of one family usable"
        );
    }
}

crate::policy_tests!(
    a_refresh_token_gives_a_new_access_token_and_its_successor,
    reusing_a_refresh_token_revokes_its_family,
    refresh_scopes_narrow_but_never_widen,
    revocation_password_change_and_removal_end_refresh_tokens,
    refresh_tokens_expire_and_can_be_turned_off,
);
