//! Signing-key rotation: `taskflow keys rotate|list|retire`.

use std::time::{Duration, Instant};

use crate::harness::{
    Options, Policy, SECRET, TestServer, assert_error, claims, kid_of, mint, run_cli,
};

fn rotating() -> Options {
    Options {
        extra_env: vec![
            ("TASKFLOW_KEY_ACTIVATION_DELAY".into(), "1".into()),
            ("TASKFLOW_KEY_REFRESH_MS".into(), "100".into()),
            // Retired keys verify for the token lifetime plus the leeway: 4 s.
            ("TASKFLOW_TOKEN_TTL".into(), "4".into()),
            ("TASKFLOW_LEEWAY".into(), "0".into()),
        ],
        ..Options::default()
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `keys rotate` (with `--algorithm` when given) and returns the new key's id.
fn rotate(server: &TestServer, algorithm: Option<&str>) -> String {
    let mut args = vec!["keys", "rotate"];
    if let Some(algorithm) = algorithm {
        args.extend(["--algorithm", algorithm]);
    }
    let rotated = server.cli(&args, "");
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let added = stdout(&rotated);
    let expected = format!("added {} key ", algorithm.unwrap_or("HS256"));
    added
        .strip_prefix(&expected)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("{added}"))
        .to_owned()
}

/// Waits until the server's policy signs with `kid` (the key follower
/// has read the rotation or activation).
async fn signing_with(server: &TestServer, kid: &str) {
    server
        .wait_until(&format!("{kid} signing"), |o| {
            o.signing_key_ids().first().map(String::as_str) == Some(kid)
        })
        .await;
}

/// New tokens move to the new key once it activates; tokens of the retired
/// key verify until they would have expired, then its kid is unknown.
async fn rotation_hands_signing_over_and_retires_the_old_key(policy: Policy) {
    let server = TestServer::start_with(Options {
        component: policy.component(),
        ..rotating()
    })
    .await;
    server.add_user("alice", "tasks:read");
    let before = server.token("alice", None).await;
    let old_kid = kid_of(&before);

    let listed = stdout(&server.cli(&["keys", "list"], ""));
    assert!(
        listed.contains(&format!("{old_kid}\tHS256\tsigning")),
        "{listed}"
    );

    let new_kid = rotate(&server, None);
    assert_ne!(new_kid, old_kid);

    signing_with(&server, &new_kid).await;
    assert_eq!(kid_of(&server.token("alice", None).await), new_kid);
    let after = server.token("alice", None).await;
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&after), None)
            .await
            .status(),
        200
    );
    // Retired, not removed: the old key's tokens still verify.
    let signed_by_old = mint(&claims("alice", "tasks:read"), SECRET.as_bytes(), &old_kid);
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&signed_by_old), None)
            .await
            .status(),
        200
    );
    let listed = stdout(&server.cli(&["keys", "list"], ""));
    assert!(
        listed.contains(&format!("{new_kid}\tHS256\tsigning")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("{old_kid}\tHS256\tretired")),
        "{listed}"
    );

    // Once no token it signed can be valid, the old key verifies nothing.
    server
        .wait_until("the retired key being forgotten", |o| {
            !o.signing_key_ids().contains(&old_kid)
        })
        .await;
    let body = assert_error(
        server
            .call("GET", "/tasks", Some(&signed_by_old), None)
            .await,
        401,
        "invalid_token",
        Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
    )
    .await;
    assert!(
        body["error_description"].as_str().unwrap().contains("kid"),
        "{body}"
    );
    assert!(!stdout(&server.cli(&["keys", "list"], "")).contains(&old_kid));

    // The only signing key cannot be retired; an unknown one is named.
    let refused = server.cli(&["keys", "retire", &new_kid], "");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("only key that signs"),
        "{}",
        stderr(&refused)
    );
    let unknown = server.cli(&["keys", "retire", "0000000000000000"], "");
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("0000000000000000"),
        "{}",
        stderr(&unknown)
    );
}

/// `keys retire` stops a key signing at once; the newest other key takes
/// over, even before its planned activation.
#[tokio::test]
async fn retiring_the_signing_key_hands_over_to_the_next() {
    let mut options = rotating();
    // A long activation delay: the hand-over below comes from the retirement.
    options.extra_env[0].1 = "3600".into();
    let server = TestServer::start_with(options).await;
    server.add_user("alice", "tasks:read");
    let first = server.token("alice", None).await;
    let second = rotate(&server, None);
    // Pending for an hour: the first key still signs.
    assert_eq!(kid_of(&server.token("alice", None).await), kid_of(&first));

    let retired = server.cli(&["keys", "retire", &kid_of(&first)], "");
    assert!(retired.status.success(), "{}", stderr(&retired));
    signing_with(&server, &second).await;
    assert_eq!(kid_of(&server.token("alice", None).await), second);
    // The retired key's tokens are still good.
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&first), None)
            .await
            .status(),
        200
    );
    let refused = server.cli(&["keys", "retire", &second], "");
    assert!(!refused.status.success(), "the only signer must stay");
}

/// Stored keys are sealed under the signing secret: the database alone
/// gives nothing away, and a server with another secret refuses to start
/// rather than sign with keys it cannot read.
#[tokio::test]
async fn stored_keys_are_sealed_under_the_signing_secret() {
    let server = TestServer::start_with(rotating()).await;
    assert!(server.cli(&["keys", "rotate"], "").status.success());
    let listed = stdout(&server.cli(&["keys", "list"], ""));
    // Ids and times only: no field longer than a kid or a timestamp.
    for line in listed.lines().skip(1) {
        assert!(line.split('\t').all(|field| field.len() <= 25), "{line}");
    }

    let mut other = server.options.clone();
    other.secret = Some("a-different-secret-of-at-least-32-bytes".into());
    let out = run_cli(server.data.path(), &other, &["keys", "list"], "");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot be unsealed"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(SECRET));
    let serve = run_cli(
        server.data.path(),
        &other,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-socket",
            "/nonexistent/a.sock",
        ],
        "",
    );
    assert!(!serve.status.success());
    assert!(
        stderr(&serve).contains("cannot be unsealed"),
        "{}",
        stderr(&serve)
    );
}

/// `GET /.well-known/jwks.json` as JSON, checking it may be cached.
async fn jwks(server: &TestServer) -> serde_json::Value {
    let response = server
        .call("GET", "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=60");
    response.json().await.unwrap()
}

/// `keys rotate --algorithm EdDSA`: tokens are then signed with Ed25519, its
/// public key is published at `/.well-known/jwks.json` (HS256 keys never
/// are), and another service verifies TaskFlow's tokens with that alone. An
/// HS256 token "signed" with the public key is refused.
async fn eddsa_keys_sign_and_are_published_as_a_jwks(policy: Policy) {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    let server = TestServer::start_with(Options {
        component: policy.component(),
        ..rotating()
    })
    .await;
    server.add_user("alice", "tasks:read");
    let hs256 = server.token("alice", None).await;
    assert_eq!(
        jwks(&server).await,
        serde_json::json!({"keys": []}),
        "HS256 keys are never published"
    );

    let kid = rotate(&server, Some("EdDSA"));
    assert!(
        stdout(&server.cli(&["keys", "list"], "")).contains(&format!("{kid}\tEdDSA\t")),
        "keys list names the algorithm"
    );
    signing_with(&server, &kid).await;
    let token = server.token("alice", None).await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&token), None)
            .await
            .status(),
        200
    );
    // The HS256 key's tokens still verify while it is retired.
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&hs256), None)
            .await
            .status(),
        200
    );

    // Another service: the published set and an independent JWT library.
    let published = jwks(&server).await;
    let keys = published["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{published}");
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["kid"], kid.as_str());
    assert!(keys[0].get("d").is_none() && keys[0].get("k").is_none());
    let set: JwkSet = serde_json::from_value(published.clone()).unwrap();
    let jwk = set.find(&kid).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["taskflow-api"]);
    validation.set_issuer(&["taskflow"]);
    let verified = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(verified.claims["sub"], "alice");

    // Algorithm confusion: HS256 under the EdDSA kid, keyed with the public
    // key (raw, and as published), is refused.
    let x = keys[0]["x"].as_str().unwrap();
    use base64::Engine as _;
    let raw_public = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(x)
        .unwrap();
    for secret in [raw_public.as_slice(), x.as_bytes()] {
        let forged = mint(&claims("alice", "tasks:read"), secret, &kid);
        assert_error(
            server.call("GET", "/tasks", Some(&forged), None).await,
            401,
            "invalid_token",
            Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
        )
        .await;
    }

    // A rotation back to HS256 keeps the EdDSA key published while it verifies.
    assert!(server.cli(&["keys", "rotate"], "").status.success());
    server
        .wait_until("a key other than the EdDSA one signing", |o| {
            o.signing_key_ids().first() != Some(&kid)
        })
        .await;
    assert_eq!(
        jsonwebtoken::decode_header(&server.token("alice", None).await)
            .unwrap()
            .alg,
        Algorithm::HS256
    );
    assert_eq!(jwks(&server).await["keys"][0]["kid"], kid.as_str());
}

/// `--signing-algorithm` (here from the environment) is what `keys rotate`
/// adds unless `--algorithm` says otherwise; a server whose signing key is
/// of another algorithm says how to switch.
#[tokio::test]
async fn the_signing_algorithm_setting_picks_what_rotate_adds() {
    let mut options = rotating();
    options
        .extra_env
        .push(("TASKFLOW_SIGNING_ALGORITHM".into(), "EdDSA".into()));
    let server = TestServer::start_with(options).await;
    assert!(
        server.log().contains("run `taskflow keys rotate`"),
        "{}",
        server.log()
    );
    let rotated = server.cli(&["keys", "rotate"], "");
    assert!(
        stdout(&rotated).starts_with("added EdDSA key "),
        "{}",
        stderr(&rotated)
    );
    let explicit = server.cli(&["keys", "rotate", "--algorithm", "hs256"], "");
    assert!(
        stdout(&explicit).starts_with("added HS256 key "),
        "{}",
        stderr(&explicit)
    );
    let refused = server.cli(&["keys", "rotate", "--algorithm", "RS256"], "");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not HS256 or EdDSA"),
        "{}",
        stderr(&refused)
    );
}

/// `keys retire` of a pending key retires it: it never signs, the key that
/// signs goes on signing past the planned hand-over and past every
/// retirement window (the ring is never left without a signer, where it
/// once went empty and the key follower panicked), and a later rotation
/// hands over as usual.
#[tokio::test]
async fn retiring_a_pending_key_keeps_the_signing_key() {
    let mut options = rotating();
    // Activation in 2 s; retired keys verify for 4 s.
    options.extra_env[0].1 = "2".into();
    let server = TestServer::start_with(options).await;
    server.add_user("alice", "tasks:read");
    let first = kid_of(&server.token("alice", None).await);
    let pending = rotate(&server, None);
    assert!(
        stdout(&server.cli(&["keys", "list"], "")).contains(&format!("{pending}\tHS256\tpending")),
        "the new key is pending"
    );

    let retired = server.cli(&["keys", "retire", &pending], "");
    assert!(retired.status.success(), "{}", stderr(&retired));
    let listed = stdout(&server.cli(&["keys", "list"], ""));
    assert!(
        listed.contains(&format!("{first}\tHS256\tsigning")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("{pending}\tHS256\tretired")),
        "{listed}"
    );

    // Past the planned activation (2 s) and every retirement window (4 s
    // more): every token is signed by the first key, and verifies.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let token = server.token("alice", None).await;
        assert_eq!(kid_of(&token), first, "a retired pending key signed");
        assert_eq!(
            server
                .call("GET", "/tasks", Some(&token), None)
                .await
                .status(),
            200
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        stdout(&retired).contains("will never sign"),
        "{}",
        stdout(&retired)
    );
    let listed = stdout(&server.cli(&["keys", "list"], ""));
    assert!(
        listed.contains(&format!("{first}\tHS256\tsigning")),
        "{listed}"
    );
    assert!(
        !listed.contains(&pending),
        "forgotten once its window passed: {listed}"
    );
    let refused = server.cli(&["keys", "retire", &first], "");
    assert!(
        stderr(&refused).contains("only key that signs"),
        "{}",
        stderr(&refused)
    );

    // The follower is alive: a new rotation takes over.
    let next = rotate(&server, None);
    signing_with(&server, &next).await;
    assert_eq!(kid_of(&server.token("alice", None).await), next);
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// The algorithm warning of the start is also given when, while serving,
/// a key of another algorithm than --signing-algorithm starts signing.
#[tokio::test]
async fn a_signing_key_of_another_algorithm_is_warned_of_when_it_takes_over() {
    let server = TestServer::start_with(rotating()).await;
    server.add_user("alice", "tasks:read");
    assert!(
        !server.log().contains("not --signing-algorithm"),
        "{}",
        server.log()
    );
    let kid = rotate(&server, Some("EdDSA"));
    signing_with(&server, &kid).await;
    assert_eq!(
        jsonwebtoken::decode_header(&server.token("alice", None).await)
            .unwrap()
            .alg,
        jsonwebtoken::Algorithm::EdDSA
    );
    // Logged before the follower hands the key over.
    assert!(
        server.log().contains("not --signing-algorithm"),
        "{}",
        server.log()
    );
}

crate::policy_tests!(
    rotation_hands_signing_over_and_retires_the_old_key,
    eddsa_keys_sign_and_are_published_as_a_jwks,
);
