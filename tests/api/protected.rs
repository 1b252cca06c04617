//! The Bearer check on every protected route (RFC 6750 §3.1).

use serde_json::{Value, json};

use crate::harness::{Policy, SECRET, TestServer, assert_error, claims, kid_of, mint, now};

const NO_CREDENTIALS: &str = "Bearer realm=\"taskflow\"";
const INVALID_TOKEN: &str =
    "Bearer realm=\"taskflow\", error=\"invalid_token\", error_description=\"";

/// Every protected route with the scope it needs (`None`: any valid token).
const ROUTES: [(&str, &str, Option<&str>); 6] = [
    ("GET", "/users/me", None),
    ("GET", "/tasks", Some("tasks:read")),
    ("POST", "/tasks", Some("tasks:write")),
    ("GET", "/tasks/1", Some("tasks:read")),
    ("PATCH", "/tasks/1", Some("tasks:write")),
    ("DELETE", "/tasks/1", Some("tasks:write")),
];

fn body_for(method: &str) -> Option<Value> {
    matches!(method, "POST" | "PATCH").then(|| json!({"title": "t"}))
}

/// Without credentials, or with another scheme, every route answers 401
/// with a bare challenge and `error: unauthorized`.
async fn no_credentials_on_every_route(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    for (method, path, _) in ROUTES {
        let response = server.call(method, path, None, body_for(method)).await;
        let body = assert_error(response, 401, "unauthorized", Some(NO_CREDENTIALS)).await;
        assert_eq!(body["error"], "unauthorized", "{method} {path}");
        let basic = server
            .client
            .request(method.parse().unwrap(), server.url(path))
            .header("authorization", "Basic YWxpY2U6cGFzcw==")
            .send()
            .await
            .unwrap();
        assert_eq!(basic.headers()["www-authenticate"], NO_CREDENTIALS);
        assert_eq!(basic.status(), 401);
    }
}

/// Bad tokens of every kind get 401 `invalid_token` on every route.
async fn bad_tokens_on_every_route(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read tasks:write");
    let kid = kid_of(&server.token("alice", None).await);
    let all = "tasks:read tasks:write";
    let mut expired = claims("alice", all);
    expired["exp"] = json!(now() - 120);
    expired["iat"] = json!(now() - 720);
    let mut wrong_aud = claims("alice", all);
    wrong_aud["aud"] = json!("another-api");
    let mut wrong_iss = claims("alice", all);
    wrong_iss["iss"] = json!("someone-else");
    let mut no_exp = claims("alice", all);
    no_exp.as_object_mut().unwrap().remove("exp");
    let alg_none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#)),
            b64.encode(claims("alice", all).to_string())
        )
    };
    let bad_tokens = [
        ("garbage", "not-a-jwt".to_owned()),
        ("expired", mint(&expired, SECRET.as_bytes(), &kid)),
        (
            "wrong key",
            mint(
                &claims("alice", all),
                b"another-secret-of-at-least-32-bytes!!",
                &kid,
            ),
        ),
        (
            "unknown kid",
            mint(&claims("alice", all), SECRET.as_bytes(), "no-such-key"),
        ),
        ("alg none", alg_none),
        ("wrong aud", mint(&wrong_aud, SECRET.as_bytes(), &kid)),
        ("wrong iss", mint(&wrong_iss, SECRET.as_bytes(), &kid)),
        ("no exp", mint(&no_exp, SECRET.as_bytes(), &kid)),
    ];
    for (method, path, _) in ROUTES {
        for (what, token) in &bad_tokens {
            let response = server
                .call(method, path, Some(token), body_for(method))
                .await;
            let status = response.status();
            assert_eq!(status, 401, "{what} on {method} {path}");
            assert_error(response, 401, "invalid_token", Some(INVALID_TOKEN)).await;
        }
    }
}

/// A valid token without the route's scope gets 403 naming the scope.
async fn insufficient_scope_on_every_scoped_route(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("nobody", "");
    let token = server.token("nobody", None).await;
    for (method, path, scope) in ROUTES {
        let response = server
            .call(method, path, Some(&token), body_for(method))
            .await;
        match scope {
            None => assert_eq!(response.status(), 200, "{method} {path}"),
            Some(scope) => {
                let challenge = format!(
                    "Bearer realm=\"taskflow\", error=\"insufficient_scope\", scope=\"{scope}\""
                );
                assert_eq!(response.headers()["www-authenticate"], challenge.as_str());
                assert_error(response, 403, "insufficient_scope", Some(&challenge)).await;
            }
        }
    }
}

/// The scheme name is case-insensitive.
async fn bearer_scheme_is_case_insensitive(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read");
    let token = server.token("alice", None).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = server
            .client
            .get(server.url("/tasks"))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
}

/// Authentication comes before the body: a bad body without a token is a 401.
async fn authentication_precedes_the_body(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    let not_json = server
        .client
        .post(server.url("/tasks"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 401);
    server.add_user("reader", "tasks:read");
    let reader = server.token("reader", None).await;
    let forbidden = server
        .client
        .post(server.url("/tasks"))
        .bearer_auth(&reader)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
}

crate::policy_tests!(
    no_credentials_on_every_route,
    bad_tokens_on_every_route,
    insufficient_scope_on_every_scoped_route,
    bearer_scheme_is_case_insensitive,
    authentication_precedes_the_body,
);
