//! The RFC 8725 (JWT best current practice) and OWASP list, over HTTP:
//! every forged, confused, tampered or oversized token gets a clean 401
//! `invalid_token` (or 431 when it does not fit in a request head), never a
//! 5xx, and never access.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::harness::{Policy, SECRET, TestServer, assert_error, claims, kid_of, mint, now};

const INVALID: &str = "Bearer realm=\"taskflow\", error=\"invalid_token\"";

/// A token from raw header and payload JSON, HMAC-SHA256-signed with `key`
/// (or with an empty signature).
fn raw(header: &str, payload: &str, key: Option<&[u8]>) -> String {
    let message = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let signature = key.map_or_else(String::new, |key| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(message.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    });
    format!("{message}.{signature}")
}

fn header(alg: &str, typ: &str, kid: &str, extra: &str) -> String {
    let kid = serde_json::to_string(kid).unwrap();
    format!(r#"{{"alg":"{alg}","typ":"{typ}","kid":{kid}{extra}}}"#)
}

/// `token` with the character at `index` replaced by another base64url one.
fn flip(token: &str, index: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

async fn forged_and_confused_tokens_are_refused(policy: Policy) {
    let server = TestServer::start_policy(policy).await;
    server.add_user("alice", "tasks:read tasks:write");
    let good = server.token("alice", None).await;
    let kid = kid_of(&good);
    let key = SECRET.as_bytes();
    let body = claims("alice", "tasks:read tasks:write").to_string();
    let attacker = b"attacker-chosen-key-of-32-bytes-or-more";

    // The control: built the same way, with nothing wrong, a token is accepted,
    // so each case below fails for the one thing it changes.
    let control = raw(&header("HS256", "at+jwt", &kid, ""), &body, Some(key));
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&control), None)
            .await
            .status(),
        200
    );

    let mut cases: Vec<(String, String)> = Vec::new();
    let mut case = |what: &str, token: String| cases.push((what.to_owned(), token));

    // `alg: none` in every spelling, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        case(
            &format!("alg {alg}"),
            raw(&header(alg, "at+jwt", &kid, ""), &body, None),
        );
        case(
            &format!("alg {alg}, signed"),
            raw(&header(alg, "at+jwt", &kid, ""), &body, Some(key)),
        );
    }
    // Algorithm confusion: asymmetric or other HMAC algorithms, even with our key.
    for alg in [
        "RS256", "ES256", "PS256", "EdDSA", "HS384", "HS512", "hs256", "",
    ] {
        case(
            &format!("alg {alg:?}"),
            raw(&header(alg, "at+jwt", &kid, ""), &body, Some(key)),
        );
    }
    // A key carried in the token itself is never used.
    let jwk = format!(r#","jwk":{{"kty":"oct","k":"{}"}}"#, B64.encode(attacker));
    case(
        "embedded jwk",
        raw(
            &header("HS256", "at+jwt", &kid, &jwk),
            &body,
            Some(attacker),
        ),
    );
    case(
        "jku",
        raw(
            &header(
                "HS256",
                "at+jwt",
                &kid,
                r#","jku":"http://127.0.0.1:1/jwks.json""#,
            ),
            &body,
            Some(attacker),
        ),
    );
    case(
        "x5u",
        raw(
            &header(
                "HS256",
                "at+jwt",
                &kid,
                r#","x5u":"http://127.0.0.1:1/cert.pem""#,
            ),
            &body,
            Some(attacker),
        ),
    );
    // Signatures: empty, or one bit of any part changed.
    case(
        "empty signature",
        raw(&header("HS256", "at+jwt", &kid, ""), &body, None),
    );
    let dots: Vec<usize> = good.match_indices('.').map(|(i, _)| i).collect();
    case("tampered header", flip(&good, dots[0] / 2));
    case("tampered payload", flip(&good, (dots[0] + dots[1]) / 2));
    case("tampered signature", flip(&good, dots[1] + 5));
    case("signature of another token", {
        let other = server.token("alice", Some("tasks:read")).await;
        format!("{}.{}", &good[..dots[1]], other.rsplit('.').next().unwrap())
    });
    // Hostile key ids: no lookup goes anywhere but the host's key list.
    for hostile_kid in [
        "../../../../etc/passwd",
        "/dev/zero",
        "' OR '1'='1' --",
        "k1\"; DROP TABLE users; --",
        "",
        "\u{0}",
    ] {
        case(
            &format!("kid {hostile_kid:?}"),
            raw(
                &header("HS256", "at+jwt", hostile_kid, ""),
                &body,
                Some(key),
            ),
        );
    }
    // Duplicate claims: which one a parser keeps must not matter.
    let duplicated = body.replacen(
        "\"sub\":\"alice\"",
        "\"sub\":\"mallory\",\"sub\":\"alice\"",
        1,
    );
    assert_ne!(duplicated, body);
    case(
        "duplicate sub",
        raw(&header("HS256", "at+jwt", &kid, ""), &duplicated, Some(key)),
    );
    case(
        "duplicate alg",
        raw(
            &format!(r#"{{"alg":"none","alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#),
            &body,
            Some(key),
        ),
    );
    // Other kinds of JWT: no `typ`, a generic one, an ID token's.
    for typ in ["JWT", "id_token+jwt", "JOSE", "refresh+jwt"] {
        case(
            &format!("typ {typ}"),
            raw(&header("HS256", typ, &kid, ""), &body, Some(key)),
        );
    }
    case(
        "no typ",
        raw(
            &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
            &body,
            Some(key),
        ),
    );
    // An opaque string such as a refresh token would be.
    case("opaque", "rt_3f9a0c6e2b7d4a1f8e5c0b9a7d6e4f21".to_owned());
    // Claims: missing or past `exp`, future `nbf`, wrong issuer or audience.
    let mut claim = |what: &str, change: &dyn Fn(&mut Value)| {
        let mut c = claims("alice", "tasks:read tasks:write");
        change(&mut c);
        cases.push((what.to_owned(), mint(&c, key, &kid)));
    };
    claim("no exp", &|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    claim("expired", &|c| c["exp"] = json!(now() - 3600));
    claim("exp as a string", &|c| {
        c["exp"] = json!((now() + 600).to_string())
    });
    claim("future nbf", &|c| c["nbf"] = json!(now() + 3600));
    claim("wrong iss", &|c| c["iss"] = json!("https://evil.example"));
    claim("wrong aud", &|c| c["aud"] = json!("another-api"));
    claim("aud list without ours", &|c| c["aud"] = json!(["a", "b"]));
    claim("no sub", &|c| {
        c.as_object_mut().unwrap().remove("sub");
    });
    claim("no jti", &|c| {
        c.as_object_mut().unwrap().remove("jti");
    });
    claim("a user who does not exist", &|c| {
        c["sub"] = json!("mallory")
    });
    // Big tokens: 8 KiB fits in a request head and is refused unread.
    let mut big = claims("alice", "tasks:read");
    big["padding"] = json!("x".repeat(8 * 1024));
    cases.push(("8 KiB".into(), mint(&big, key, &kid)));

    for (what, token) in &cases {
        let response = server.call("GET", "/tasks", Some(token), None).await;
        assert_eq!(response.status(), 401, "{what}: {token}");
        assert_error(response, 401, "invalid_token", Some(INVALID)).await;
    }
    // The good token still works, and nothing above hurt the server.
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&good), None)
            .await
            .status(),
        200
    );
    assert!(!server.log().contains("panicked"));

    // 1 MiB does not fit in a request head at all.
    let mut huge = claims("alice", "tasks:read");
    huge["padding"] = json!("x".repeat(1 << 20));
    let response = server
        .client
        .get(server.url("/tasks"))
        .bearer_auth(mint(&huge, key, &kid))
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(response.status(), 431),
        // The server may close before reading all of it; never a hang or a 5xx.
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&good), None)
            .await
            .status(),
        200
    );
}

crate::policy_tests!(forged_and_confused_tokens_are_refused,);
