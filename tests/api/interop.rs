//! Tokens are standard JWTs: an independent library verifies the server's,
//! and the server accepts the library's.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::harness::{SECRET, TestServer, claims, kid_of, mint};

/// A token issued by the server verifies with `jsonwebtoken` given the secret.
#[tokio::test]
async fn issued_tokens_verify_elsewhere() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read tasks:write");
    let token = server.token("alice", Some("tasks:read")).await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert!(header.kid.is_some());
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["taskflow"]);
    validation.set_audience(&["taskflow-api"]);
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    let data = jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .expect("the server's token verifies");
    let claims = data.claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "tasks:read");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        1800
    );
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let wrong = jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_secret(b"not-the-secret-not-the-secret-!!"),
        &validation,
    );
    assert!(wrong.is_err());
}

/// A token minted by `jsonwebtoken` with the right claims and key is accepted.
#[tokio::test]
async fn foreign_tokens_with_the_right_claims_are_accepted() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read");
    let kid = kid_of(&server.token("alice", None).await);
    let token = mint(&claims("alice", "tasks:read"), SECRET.as_bytes(), &kid);
    let response = server.call("GET", "/users/me", Some(&token), None).await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["scopes"], serde_json::json!(["tasks:read"]));
}
