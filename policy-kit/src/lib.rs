//! Building blocks of TaskFlow authentication policies.
//!
//! A policy is a WebAssembly component implementing the `auth-policy` world
//! of `wit/auth.wit`. This crate holds everything such a component needs
//! except the export itself, as plain Rust that `cargo test` runs natively:
//!
//! - [`bindings`]: the WIT types and host imports, generated once here; a
//!   policy exports itself with `policy_kit::bindings::export!`.
//! - [`password`]: argon2id hashing and the constant-cost check of a login.
//! - [`token`]: issuing and verifying HS256 and EdDSA access tokens (RFC 9068 profile).
//! - [`scope`]: parsing scope strings and the Bearer header.
//! - [`policy`]: the grant, refresh and access decisions, built from the three above.
//!
//! `guest-auth` is the default policy built from these; `guest-admin-delete`
//! shows how a different policy reuses them and changes one decision.

pub mod password;
pub mod policy;
pub mod scope;
pub mod token;

#[cfg(test)]
mod properties;

/// Types and imports generated from `wit/`, the single source of truth for
/// what crosses the component boundary.
pub mod bindings {
    wit_bindgen::generate!({
        world: "auth-policy",
        path: "../wit",
        pub_export_macro: true,
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::taskflow::auth::types::{
    AccessDenial, AccessRequest, KeyAlgorithm, PolicyInfo, PolicySettings, Principal,
    RefreshRequest, SigningKey, TokenClaims, TokenError, TokenGrant, TokenRequest, TokenStatus,
    UserRecord,
};

/// The default decisions with their inputs taken from the host imports: what
/// a policy's exports call for every function it does not change.
pub mod hosted {
    use crate::bindings::taskflow::auth::host;
    use crate::{
        AccessDenial, AccessRequest, Principal, RefreshRequest, TokenClaims, TokenError,
        TokenGrant, TokenRequest, password, policy, token,
    };

    pub fn hash_password(password: String) -> Result<String, String> {
        password::hash(&password).map_err(|e| e.to_string())
    }

    pub fn issue_token(request: TokenRequest) -> Result<TokenGrant, TokenError> {
        policy::issue_token(&request, &host::settings(), host::find_user, token::now())
    }

    pub fn refresh_token(request: RefreshRequest) -> Result<TokenGrant, TokenError> {
        policy::refresh_token(&request, &host::settings(), host::find_user, token::now())
    }

    pub fn decide_access(request: AccessRequest) -> Result<Principal, AccessDenial> {
        policy::decide_access(
            &request,
            &host::settings(),
            host::find_token_status,
            token::now(),
        )
    }

    pub fn introspect(token: String) -> Result<Option<TokenClaims>, String> {
        policy::introspect(
            &token,
            &host::settings(),
            host::find_token_status,
            token::now(),
        )
    }
}
