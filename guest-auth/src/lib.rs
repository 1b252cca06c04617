//! TaskFlow's default authentication policy, built as a WebAssembly component.
//!
//! The host calls the four functions of the `policy` interface in
//! `wit/auth.wit`; this crate answers them. The layout:
//!
//! - [`password`]: argon2id hashing and the constant-cost check of a login.
//! - [`token`]: issuing and verifying HS256 access tokens (RFC 9068 profile).
//! - [`scope`]: parsing scope strings and the Bearer header.
//! - [`policy`]: the grant and access decisions, built from the three above.
//!
//! Everything but the last few lines of this file is plain Rust that
//! `cargo test -p guest-auth` runs natively; the WIT glue only forwards.

pub mod password;
pub mod policy;
pub mod scope;
pub mod token;

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
    AccessDenial, AccessRequest, PolicyInfo, PolicySettings, Principal, SigningKey, TokenError,
    TokenGrant, TokenRequest, UserRecord,
};

#[cfg(target_arch = "wasm32")]
mod component;
