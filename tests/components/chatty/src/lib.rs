//! A policy for the host's output tests. It behaves like `guest-auth` (built
//! from `policy-kit`), and writes a line to stdout and one to stderr on
//! every call, as a policy with debugging output left in would.

// A component only: elsewhere the crate is empty, since its exported names
// (`taskflow:auth/policy@0.3.0#...`) link only for WebAssembly.
#![cfg(target_arch = "wasm32")]

use policy_kit::{
    AccessDenial, AccessRequest, PolicyInfo, Principal, RefreshRequest, TokenClaims, TokenError,
    TokenGrant, TokenRequest, hosted,
};

fn chatter(call: &str) {
    println!("chatty-policy stdout: {call}");
    eprintln!("chatty-policy stderr: {call}");
}

struct ChattyPolicy;

impl policy_kit::bindings::exports::taskflow::auth::policy::Guest for ChattyPolicy {
    fn info() -> PolicyInfo {
        chatter("info");
        PolicyInfo {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn hash_password(password: String) -> Result<String, String> {
        chatter("hash-password");
        hosted::hash_password(password)
    }

    fn issue_token(request: TokenRequest) -> Result<TokenGrant, TokenError> {
        chatter("issue-token");
        hosted::issue_token(request)
    }

    fn refresh_token(request: RefreshRequest) -> Result<TokenGrant, TokenError> {
        chatter("refresh-token");
        hosted::refresh_token(request)
    }

    fn decide_access(request: AccessRequest) -> Result<Principal, AccessDenial> {
        chatter("decide-access");
        hosted::decide_access(request)
    }

    fn introspect(token: String) -> Result<Option<TokenClaims>, String> {
        chatter("introspect");
        hosted::introspect(token)
    }
}

policy_kit::bindings::export!(ChattyPolicy with_types_in policy_kit::bindings);
