//! TaskFlow's default authentication policy, as a WebAssembly component.
//!
//! The decisions themselves are `policy_kit`'s, tested natively there; this
//! crate only names the policy and exports it, forwarding each call with the
//! host's imports.

// A component only: elsewhere the crate is empty, since its exported names
// (`taskflow:auth/policy@0.3.0#...`) link only for WebAssembly.
#![cfg(target_arch = "wasm32")]

use policy_kit::{
    AccessDenial, AccessRequest, PolicyInfo, Principal, RefreshRequest, TokenClaims, TokenError,
    TokenGrant, TokenRequest, hosted,
};

struct AuthPolicy;

impl policy_kit::bindings::exports::taskflow::auth::policy::Guest for AuthPolicy {
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
        hosted::issue_token(request)
    }

    fn refresh_token(request: RefreshRequest) -> Result<TokenGrant, TokenError> {
        hosted::refresh_token(request)
    }

    fn decide_access(request: AccessRequest) -> Result<Principal, AccessDenial> {
        hosted::decide_access(request)
    }

    fn introspect(token: String) -> Result<Option<TokenClaims>, String> {
        hosted::introspect(token)
    }
}

policy_kit::bindings::export!(AuthPolicy with_types_in policy_kit::bindings);
