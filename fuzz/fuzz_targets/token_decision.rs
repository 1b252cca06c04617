//! The Bearer decision on arbitrary `Authorization` headers: never a panic,
//! and nothing but a token signed with the key gets through.

#![no_main]

use libfuzzer_sys::fuzz_target;
use policy_kit::{
    AccessDenial, AccessRequest, KeyAlgorithm, PolicySettings, SigningKey, TokenStatus,
    UserRecord, policy,
};

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data).into_owned();
    let settings = PolicySettings {
        signing_keys: vec![
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
        ],
        issuer: "taskflow".into(),
        audience: "taskflow-api".into(),
        token_ttl_seconds: 1800,
        leeway_seconds: 30,
    };
    let request = AccessRequest {
        authorization: Some(header),
        method: "GET".into(),
        route: "/tasks".into(),
        required_scopes: vec!["tasks:read".into()],
    };
    let anyone = |_: &str, name: &str, _: u64| {
        Ok(TokenStatus {
            revoked: false,
            user: Some(UserRecord {
                username: name.to_owned(),
                password_hash: String::new(),
                scopes: vec!["tasks:read".into()],
            }),
        })
    };
    // The fuzzer can forge neither an HMAC nor an Ed25519 signature: any
    // acceptance is a bug.
    match policy::decide_access(&request, &settings, anyone, NOW) {
        Ok(principal) => panic!("accepted a token the fuzzer made: {principal:?}"),
        Err(AccessDenial::Unavailable(reason)) => panic!("settings reported unusable: {reason}"),
        Err(_) => {}
    }
});
