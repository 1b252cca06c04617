//! The component's exports: each forwards to [`crate::policy`] with the
//! host's imports. Compiled only for WebAssembly; there is nothing to test here
//! that the plain modules do not already cover.

use crate::{
    AccessDenial, AccessRequest, PolicyInfo, Principal, TokenError, TokenGrant, TokenRequest,
    password, policy, token,
};

/// The exported policy: forwards each call to [`policy`] with the host's imports.
struct AuthPolicy;

impl crate::bindings::exports::taskflow::auth::policy::Guest for AuthPolicy {
    fn info() -> PolicyInfo {
        policy::info()
    }

    fn hash_password(password: String) -> Result<String, String> {
        password::hash(&password).map_err(|e| e.to_string())
    }

    fn issue_token(request: TokenRequest) -> Result<TokenGrant, TokenError> {
        use crate::bindings::taskflow::auth::host;
        policy::issue_token(&request, &host::settings(), host::find_user, token::now())
    }

    fn decide_access(request: AccessRequest) -> Result<Principal, AccessDenial> {
        use crate::bindings::taskflow::auth::host;
        policy::decide_access(&request, &host::settings(), token::now())
    }
}

crate::bindings::export!(AuthPolicy with_types_in crate::bindings);
