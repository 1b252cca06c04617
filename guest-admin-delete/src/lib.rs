//! A second TaskFlow policy, to show a platform team swapping policies: the
//! same tokens and passwords as `guest-auth`, but deleting anything also
//! requires the `tasks:admin` scope, and tokens live at most 15 minutes.
//!
//! It reuses `policy-kit`'s plain modules and WIT bindings and changes only
//! the decisions, which is how most custom policies will start.

use policy_kit::AccessRequest;

/// The scope every `DELETE` needs on top of the route's own.
pub const ADMIN_SCOPE: &str = "tasks:admin";
/// The longest token lifetime this policy issues, whatever the host says.
pub const MAX_TTL_SECONDS: u32 = 15 * 60;

/// Adds [`ADMIN_SCOPE`] to what a `DELETE` requires.
pub fn required_scopes(request: &AccessRequest) -> Vec<String> {
    let mut required = request.required_scopes.clone();
    if request.method.eq_ignore_ascii_case("DELETE") && !required.iter().any(|s| s == ADMIN_SCOPE) {
        required.push(ADMIN_SCOPE.to_owned());
    }
    required
}

/// The export; built only for WebAssembly, where its names link.
#[cfg(target_arch = "wasm32")]
mod component {
    use super::{MAX_TTL_SECONDS, required_scopes};
    use policy_kit::bindings::taskflow::auth::host;
    use policy_kit::{
        AccessDenial, AccessRequest, PolicyInfo, Principal, RefreshRequest, TokenClaims,
        TokenError, TokenGrant, TokenRequest, hosted, policy, token,
    };

    struct AdminDeletePolicy;

    impl policy_kit::bindings::exports::taskflow::auth::policy::Guest for AdminDeletePolicy {
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
            let mut settings = host::settings();
            settings.token_ttl_seconds = settings.token_ttl_seconds.min(MAX_TTL_SECONDS);
            policy::issue_token(&request, &settings, host::find_user, token::now())
        }

        fn refresh_token(request: RefreshRequest) -> Result<TokenGrant, TokenError> {
            let mut settings = host::settings();
            settings.token_ttl_seconds = settings.token_ttl_seconds.min(MAX_TTL_SECONDS);
            policy::refresh_token(&request, &settings, host::find_user, token::now())
        }

        fn decide_access(request: AccessRequest) -> Result<Principal, AccessDenial> {
            let request = AccessRequest {
                required_scopes: required_scopes(&request),
                ..request
            };
            hosted::decide_access(request)
        }

        fn introspect(token: String) -> Result<Option<TokenClaims>, String> {
            hosted::introspect(token)
        }
    }

    policy_kit::bindings::export!(AdminDeletePolicy with_types_in policy_kit::bindings);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, required: &[&str]) -> AccessRequest {
        AccessRequest {
            authorization: None,
            method: method.into(),
            route: "/tasks/{id}".into(),
            required_scopes: required.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn delete_needs_admin() {
        assert_eq!(
            required_scopes(&request("DELETE", &["tasks:write"])),
            vec!["tasks:write", ADMIN_SCOPE]
        );
        assert_eq!(
            required_scopes(&request("delete", &[ADMIN_SCOPE])),
            vec![ADMIN_SCOPE]
        );
        assert_eq!(
            required_scopes(&request("PATCH", &["tasks:write"])),
            vec!["tasks:write"]
        );
    }
}
