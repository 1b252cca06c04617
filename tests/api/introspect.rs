//! `POST /introspect` (RFC 7662): who may ask, and what each kind of token
//! answers.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{
    Policy, SECRET, TestServer, assert_error, claims, kid_of, mint, now, urlencode,
};

/// A token of a user that holds `tokens:introspect` (added once per server).
pub async fn introspector(server: &TestServer) -> String {
    server.add_user("resource-server", "tokens:introspect");
    server.token("resource-server", None).await
}

/// Posts `form` to `/introspect` with `bearer`.
async fn post(server: &TestServer, bearer: &str, form: String) -> reqwest::Response {
    server
        .client
        .post(server.url("/introspect"))
        .bearer_auth(bearer)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
}

/// Asks about `token` with `bearer`.
pub async fn introspect(server: &TestServer, bearer: &str, token: &str) -> reqwest::Response {
    post(server, bearer, format!("token={}", urlencode(token))).await
}

/// The answer about `token`, which must be a 200 that is not cached.
pub async fn answer(server: &TestServer, bearer: &str, token: &str) -> Value {
    let response = introspect(server, bearer, token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

/// How many of `pairs`' refresh tokens are active, asked without using any.
pub async fn active_refresh_tokens(
    server: &TestServer,
    bearer: &str,
    pairs: &[(String, String)],
) -> usize {
    let mut active = 0;
    for (_, refresh) in pairs {
        if answer(server, bearer, refresh).await["active"] == true {
            active += 1;
        }
    }
    active
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

const INACTIVE: &str = r#"{"active":false}"#;

/// Without a Bearer token 401, with one lacking `tokens:introspect` 403,
/// both before the form is read; a malformed form is `invalid_request`.
async fn introspection_needs_a_token_with_its_scope(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read");
    let alice = server.token("alice", None).await;
    assert_error(
        server
            .post_form("/introspect", &format!("token={alice}"))
            .await,
        401,
        "unauthorized",
        Some("Bearer realm=\"taskflow\""),
    )
    .await;
    assert_error(
        introspect(&server, &alice, &alice).await,
        403,
        "insufficient_scope",
        Some(
            "Bearer realm=\"taskflow\", error=\"insufficient_scope\", scope=\"tokens:introspect\"",
        ),
    )
    .await;
    assert_error(
        introspect(&server, "not.a.token", &alice).await,
        401,
        "invalid_token",
        Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
    )
    .await;
    let bearer = introspector(&server).await;
    let missing = post(&server, &bearer, "token_type_hint=access_token".into()).await;
    assert_error(missing, 400, "invalid_request", None).await;
    let json_body = server
        .client
        .post(server.url("/introspect"))
        .bearer_auth(&bearer)
        .json(&json!({"token": alice}))
        .send()
        .await
        .unwrap();
    assert_error(json_body, 400, "invalid_request", None).await;
    let repeated = post(&server, &bearer, "token=a&token=b".into()).await;
    assert_error(repeated, 400, "invalid_request", None).await;
}

/// An active access token answers its claims; its scope is what the user
/// still holds, as for a Bearer check.
async fn an_active_access_token_answers_its_claims(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read tasks:write");
    let bearer = introspector(&server).await;
    let token = server.token("alice", Some("tasks:read")).await;
    let claims = payload(&token);
    let body = answer(&server, &bearer, &token).await;
    assert_eq!(
        body,
        json!({
            "active": true, "token_type": "access_token",
            "sub": "alice", "username": "alice", "scope": "tasks:read",
            "exp": claims["exp"], "iat": claims["iat"], "nbf": claims["nbf"],
            "iss": "taskflow", "aud": "taskflow-api", "jti": claims["jti"],
        })
    );
    // The hint is only a hint.
    let hinted = post(
        &server,
        &bearer,
        format!("token={token}&token_type_hint=refresh_token"),
    )
    .await;
    assert_eq!(hinted.json::<Value>().await.unwrap()["active"], true);
    // A scope withdrawn since (by the CLI: reaching the server through the
    // change log, within its bound) is no longer reported.
    let applied = server.observer().changes_applied();
    let out = server.cli(&["user", "scopes", "alice", "tasks:write"], "");
    assert!(out.status.success());
    server
        .wait_until("the scope change applied", |o| {
            o.changes_applied() > applied
        })
        .await;
    let body = answer(&server, &bearer, &token).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["scope"], "", "{body}");
}

/// Expired, revoked, forged, garbage, of a removed user: each exactly
/// `{"active":false}`, whatever the reason.
async fn inactive_access_tokens_answer_nothing_else(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read");
    server.add_user("bob", "tasks:read");
    let bearer = introspector(&server).await;
    let kid = kid_of(&bearer);

    let mut expired = claims("alice", "tasks:read");
    expired["iat"] = json!(now() - 7200);
    expired["nbf"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let expired = mint(&expired, SECRET.as_bytes(), &kid);

    let revoked = server.token("alice", None).await;
    assert_eq!(server.revoke(&revoked).await.status(), 200);

    let forged = mint(
        &claims("alice", "tasks:read"),
        b"some-other-secret-0123456789abcdef",
        &kid,
    );
    let of_removed = server.token("bob", None).await;
    assert!(server.cli(&["user", "remove", "bob"], "").status.success());

    let valid = server.token("alice", None).await;
    let tampered = format!("{}x", &valid[..valid.len() - 1]);
    for (what, token) in [
        ("expired", expired.as_str()),
        ("revoked", &revoked),
        ("forged", &forged),
        ("tampered", &tampered),
        ("of a removed user", &of_removed),
        ("garbage with dots", "garbage.x.y"),
        ("garbage", "garbage"),
        ("empty", ""),
        ("over 4 KiB", &"a.".repeat(2100)),
    ] {
        let response = introspect(&server, &bearer, token).await;
        assert_eq!(response.status(), 200, "{what}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{what}");
        assert_eq!(response.text().await.unwrap(), INACTIVE, "{what}");
    }
    assert_eq!(answer(&server, &bearer, &valid).await["active"], true);
}

/// A refresh token is active until used: it answers its user, grant and
/// expiry, never the token; once used (spent) it is inactive, and its
/// successor active.
async fn a_refresh_token_is_active_until_spent(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read tasks:write");
    let bearer = introspector(&server).await;
    let login = format!(
        "grant_type=password&username=alice&password={}&scope=tasks:read",
        urlencode(crate::harness::PASSWORD)
    );
    let body: Value = server.token_request(&login).await.json().await.unwrap();
    let first = body["refresh_token"].as_str().unwrap().to_owned();
    let active = answer(&server, &bearer, &first).await;
    let exp = active["exp"].as_i64().unwrap();
    assert!(exp > now() as i64, "{active}");
    assert_eq!(
        active,
        json!({
            "active": true, "token_type": "refresh_token",
            "sub": "alice", "username": "alice", "scope": "tasks:read", "exp": exp,
        })
    );
    // Asking does not use it.
    let refreshed = server
        .token_request(&format!(
            "grant_type=refresh_token&refresh_token={}",
            urlencode(&first)
        ))
        .await;
    assert_eq!(refreshed.status(), 200);
    let second = refreshed.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let spent = introspect(&server, &bearer, &first).await;
    assert_eq!(spent.text().await.unwrap(), INACTIVE);
    assert_eq!(answer(&server, &bearer, &second).await["active"], true);
    // Revoked with its family: inactive.
    assert_eq!(server.revoke(&second).await.status(), 200);
    let revoked = introspect(&server, &bearer, &second).await;
    assert_eq!(revoked.text().await.unwrap(), INACTIVE);
}

crate::policy_tests!(
    introspection_needs_a_token_with_its_scope,
    an_active_access_token_answers_its_claims,
    inactive_access_tokens_answer_nothing_else,
    a_refresh_token_is_active_until_spent,
);
