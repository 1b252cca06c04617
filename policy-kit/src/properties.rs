//! Property tests of the token verifier and the Bearer decision: no input
//! makes them panic, and no change to a signed token's bytes gets through.

use proptest::prelude::*;

use crate::token::{self, AccessClaims, Expectations};
use crate::{
    AccessDenial, AccessRequest, KeyAlgorithm, PolicySettings, SigningKey, TokenStatus, UserRecord,
    policy,
};

const NOW: u64 = 1_800_000_000;

/// An HS256 key and an Ed25519 key: the verifier holds both.
fn keys() -> [SigningKey; 2] {
    [
        SigningKey {
            kid: "k1".into(),
            algorithm: KeyAlgorithm::Hs256,
            secret: vec![7; 32],
        },
        SigningKey {
            kid: "e1".into(),
            algorithm: KeyAlgorithm::EdDsa,
            secret: vec![9; 32],
        },
    ]
}

fn expect() -> Expectations<'static> {
    Expectations {
        issuer: "taskflow",
        audience: "taskflow-api",
        leeway_seconds: 30,
    }
}

fn settings() -> PolicySettings {
    PolicySettings {
        signing_keys: keys().to_vec(),
        issuer: "taskflow".into(),
        audience: "taskflow-api".into(),
        token_ttl_seconds: 1800,
        leeway_seconds: 30,
    }
}

/// A token for `sub`, signed with the Ed25519 key if `ed25519`, else HS256.
fn signed(sub: &str, scope: &str, ed25519: bool) -> String {
    let claims = AccessClaims {
        iss: "taskflow".into(),
        aud: "taskflow-api".into(),
        sub: sub.into(),
        exp: NOW + 600,
        iat: NOW,
        nbf: Some(NOW),
        jti: Some("j1".into()),
        scope: scope.into(),
    };
    token::sign(&claims, &keys()[usize::from(ed25519)]).unwrap()
}

/// Text shaped like a JWT: three base64url-ish segments, sometimes more or fewer.
fn jwt_like() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9_=+/-]{0,60}", 0..5).prop_map(|parts| parts.join("."))
}

/// Base64url of arbitrary JSON-ish bytes, so the parser sees real JSON shapes.
fn encoded_json() -> impl Strategy<Value = String> {
    use base64::Engine;
    let json = prop_oneof![
        "\\{(\"[a-z]{1,4}\":(\"[a-zA-Z0-9 ]{0,8}\"|[0-9]{1,12}|null|true|\\[\\]),?){0,6}\\}",
        any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    json.prop_map(|j| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(j))
}

/// Every token unrevoked, every subject a user with both task scopes.
fn anyone(_: &str, name: &str, _: u64) -> Result<TokenStatus, String> {
    Ok(TokenStatus {
        revoked: false,
        user: Some(UserRecord {
            username: name.to_owned(),
            password_hash: String::new(),
            scopes: vec!["tasks:read".into(), "tasks:write".into()],
        }),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_verifier_never_panics(token in any::<String>()) {
        let _ = token::verify(&token, &keys(), &expect(), NOW);
    }

    #[test]
    fn the_verifier_never_panics_on_jwt_shapes(
        token in jwt_like(),
        header in encoded_json(),
        payload in encoded_json(),
        signature in "[A-Za-z0-9_-]{0,50}",
    ) {
        let _ = token::verify(&token, &keys(), &expect(), NOW);
        let assembled = format!("{header}.{payload}.{signature}");
        prop_assert!(token::verify(&assembled, &keys(), &expect(), NOW).unwrap().is_err());
    }

    #[test]
    fn the_decision_never_panics(header in any::<Option<String>>(), scopes in prop::collection::vec("[a-z:]{0,12}", 0..3)) {
        let request = AccessRequest {
            authorization: header,
            method: "GET".into(),
            route: "/tasks".into(),
            required_scopes: scopes,
        };
        let _ = policy::decide_access(&request, &settings(), anyone, NOW);
    }

    /// Replacing, inserting or deleting any byte of a signed token, or any
    /// several of them, leaves a token that is refused. (Spaces before it
    /// and white space after it in the header are not part of the token:
    /// RFC 6750 §2.1 allows `1*SP` after the scheme; see
    /// `the_same_token_with_padding_in_the_header_is_accepted`.)
    #[test]
    fn any_change_to_a_signed_token_is_refused(
        sub in "[a-z]{1,12}",
        ed25519 in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..4),
    ) {
        let original = signed(&sub, "tasks:read", ed25519);
        let mut bytes = original.clone().into_bytes();
        for (at, kind, byte) in edits {
            match kind {
                0 if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                1 => {
                    let i = at.index(bytes.len() + 1);
                    bytes.insert(i, byte);
                }
                _ if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes.remove(i);
                }
                _ => {}
            }
        }
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        prop_assume!(changed != original);
        prop_assert!(token::verify(&changed, &keys(), &expect(), NOW).unwrap().is_err(), "{changed}");
        prop_assume!(changed.trim_start_matches(' ').trim_end() != original);
        let request = AccessRequest {
            authorization: Some(format!("Bearer {changed}")),
            method: "GET".into(),
            route: "/tasks".into(),
            required_scopes: vec![],
        };
        prop_assert!(matches!(
            policy::decide_access(&request, &settings(), anyone, NOW),
            Err(AccessDenial::InvalidToken(_) | AccessDenial::NoCredentials)
        ));
    }
}

#[test]
fn the_same_token_with_padding_in_the_header_is_accepted() {
    let token = signed("a", "tasks:read", false);
    // The token itself, padded, is not a token.
    let padded = format!(" {token}");
    assert!(
        token::verify(&padded, &keys(), &expect(), NOW)
            .unwrap()
            .is_err()
    );
    for header in [
        format!("Bearer  {token}"),
        format!("bearer {token} "),
        format!("Bearer {token}\t"),
    ] {
        let request = AccessRequest {
            authorization: Some(header.clone()),
            method: "GET".into(),
            route: "/tasks".into(),
            required_scopes: vec![],
        };
        assert!(
            policy::decide_access(&request, &settings(), anyone, NOW).is_ok(),
            "{header:?}"
        );
    }
}

#[test]
fn the_unchanged_token_is_accepted() {
    for ed25519 in [false, true] {
        let token = signed("alice", "tasks:read", ed25519);
        assert!(
            token::verify(&token, &keys(), &expect(), NOW)
                .unwrap()
                .is_ok()
        );
    }
}
