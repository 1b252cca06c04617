//! A policy for the host's sandbox tests. It behaves like `guest-auth` (built from `policy-kit`),
//! except that a request names a misbehaviour and gets it:
//!
//! - the username (in `/token`) or the Bearer token (elsewhere) `loop`
//!   spins forever, `bomb` allocates without bound, `panic` panics.

// A component only: elsewhere the crate is empty, since its exported names
// (`taskflow:auth/policy@0.3.0#...`) link only for WebAssembly.
#![cfg(target_arch = "wasm32")]

use policy_kit::{
    AccessDenial, AccessRequest, PolicyInfo, Principal, RefreshRequest, TokenClaims, TokenError,
    TokenGrant, TokenRequest, hosted, scope,
};

fn misbehave(trigger: &str) {
    match trigger {
        "loop" => loop {
            std::hint::spin_loop();
        },
        "bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("hostile policy panicked on purpose"),
        _ => {}
    }
}

struct HostilePolicy;

impl policy_kit::bindings::exports::taskflow::auth::policy::Guest for HostilePolicy {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn hash_password(password: String) -> Result<String, String> {
        hosted::hash_password(password)
    }

    fn issue_token(request: TokenRequest) -> Result<TokenGrant, TokenError> {
        misbehave(&request.username);
        hosted::issue_token(request)
    }

    fn refresh_token(request: RefreshRequest) -> Result<TokenGrant, TokenError> {
        misbehave(&request.username);
        hosted::refresh_token(request)
    }

    fn decide_access(request: AccessRequest) -> Result<Principal, AccessDenial> {
        if let scope::Credentials::Bearer(token) = scope::bearer(request.authorization.as_deref()) {
            misbehave(token);
        }
        hosted::decide_access(request)
    }

    fn introspect(token: String) -> Result<Option<TokenClaims>, String> {
        // `loop.x.y`: the host asks the policy only about tokens with dots.
        misbehave(token.split('.').next().unwrap_or_default());
        hosted::introspect(token)
    }
}

policy_kit::bindings::export!(HostilePolicy with_types_in policy_kit::bindings);
