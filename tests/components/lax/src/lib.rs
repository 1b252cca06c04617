//! A broken policy for the host's swap tests: it issues tokens properly but
//! accepts any Bearer token at all. The host's self-check must refuse it
//! before it ever serves a request.

// A component only: elsewhere the crate is empty, since its exported names
// (`taskflow:auth/policy@0.3.0#...`) link only for WebAssembly.
#![cfg(target_arch = "wasm32")]

use policy_kit::{
    AccessDenial, AccessRequest, PolicyInfo, Principal, RefreshRequest, TokenClaims, TokenError,
    TokenGrant, TokenRequest, hosted, scope,
};

struct LaxPolicy;

impl policy_kit::bindings::exports::taskflow::auth::policy::Guest for LaxPolicy {
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
        match scope::bearer(request.authorization.as_deref()) {
            scope::Credentials::Bearer(_) => Ok(Principal {
                subject: "anyone".into(),
                scopes: request.required_scopes,
            }),
            _ => Err(AccessDenial::NoCredentials),
        }
    }

    fn introspect(token: String) -> Result<Option<TokenClaims>, String> {
        Ok(Some(TokenClaims {
            subject: "anyone".into(),
            scopes: Vec::new(),
            issuer: String::new(),
            audience: String::new(),
            expires_at: u64::MAX,
            issued_at: 0,
            not_before: None,
            token_id: token,
        }))
    }
}

policy_kit::bindings::export!(LaxPolicy with_types_in policy_kit::bindings);
