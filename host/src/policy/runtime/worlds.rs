//! The WIT worlds the host speaks: `taskflow:auth@0.3.0`, and the older
//! 0.2 and 0.1 (0.1.1, and 0.1.0 by semver), so that policies built before
//! a host upgrade keep loading. Only this module knows the older worlds:
//! the rest of the host sees the current world's types.
//!
//! What an older world lacks, its adapter makes up:
//! - 0.2 and 0.1 grants do not say their access token's `jti` and `exp`,
//!   and those worlds have no introspection: the adapter reads both from
//!   the token the policy made (never anything it verifies: the policy's
//!   own Bearer decision on the token decides whether it is active);
//! - a 0.1 policy knows no refresh grant and no key algorithms: it is
//!   given the HS256 keys only, signs with the first of them, and the host
//!   issues no refresh tokens while it serves.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::imports::StoreState;

pub(super) mod current {
    wasmtime::component::bindgen!({
        world: "auth-policy",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
    });
}

mod v0_2 {
    wasmtime::component::bindgen!({
        world: "auth-policy",
        path: "../wit/legacy/0.2",
        imports: { default: async },
        exports: { default: async },
    });
}

mod v0_1 {
    wasmtime::component::bindgen!({
        world: "auth-policy",
        path: "../wit/legacy/0.1",
        imports: { default: async },
        exports: { default: async },
    });
}

use current::taskflow::auth::host::Host as CurrentHost;
pub(super) use current::taskflow::auth::types as wit;
use v0_1::taskflow::auth::types as v1;
use v0_2::taskflow::auth::types as v2;

/// Defines the host imports of every world the host speaks.
pub(super) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    current::AuthPolicy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_2::AuthPolicy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_1::AuthPolicy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

/// A linked component and the world it implements.
pub(super) enum PolicyPre {
    Current(current::AuthPolicyPre<StoreState>),
    V0_2(v0_2::AuthPolicyPre<StoreState>),
    V0_1(v0_1::AuthPolicyPre<StoreState>),
}

impl PolicyPre {
    /// The newest world the component implements. The error, if none, is
    /// about the current world: that is the one to build for.
    pub(super) fn new(pre: InstancePre<StoreState>) -> wasmtime::Result<Self> {
        match current::AuthPolicyPre::new(pre.clone()) {
            Ok(pre) => Ok(Self::Current(pre)),
            Err(error) => v0_2::AuthPolicyPre::new(pre.clone())
                .map(Self::V0_2)
                .or_else(|_| v0_1::AuthPolicyPre::new(pre).map(Self::V0_1))
                .map_err(|_| error),
        }
    }

    /// Whether the world has the refresh grant.
    pub(super) fn has_refresh(&self) -> bool {
        !matches!(self, Self::V0_1(_))
    }

    /// Whether the world is older than the current one.
    pub(super) fn is_legacy(&self) -> bool {
        !matches!(self, Self::Current(_))
    }

    /// The world's name, for logs.
    pub(super) fn world(&self) -> &'static str {
        match self {
            Self::Current(_) => "taskflow:auth@0.3.0",
            Self::V0_2(_) => "taskflow:auth@0.2.0",
            Self::V0_1(_) => "taskflow:auth@0.1",
        }
    }

    pub(super) async fn instantiate(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Policy> {
        Ok(match self {
            Self::Current(pre) => Policy::Current(pre.instantiate_async(store).await?),
            Self::V0_2(pre) => Policy::V0_2(pre.instantiate_async(store).await?),
            Self::V0_1(pre) => Policy::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance's exports, in the current world's types whatever its world.
pub(super) enum Policy {
    Current(current::AuthPolicy),
    V0_2(v0_2::AuthPolicy),
    V0_1(v0_1::AuthPolicy),
}

/// The same conversions for each older world, whose types are distinct
/// Rust types of the same shape.
macro_rules! from_older {
    ($module:ident, $world:ident) => {
        mod $module {
            use super::{legacy_grant, wit, $world as old};

            pub(super) fn info(info: old::PolicyInfo) -> wit::PolicyInfo {
                wit::PolicyInfo {
                    name: info.name,
                    version: info.version,
                }
            }

            pub(super) fn token_request(r: &wit::TokenRequest) -> old::TokenRequest {
                old::TokenRequest {
                    username: r.username.clone(),
                    password: r.password.clone(),
                    scopes: r.scopes.clone(),
                }
            }

            pub(super) fn access_request(r: &wit::AccessRequest) -> old::AccessRequest {
                old::AccessRequest {
                    authorization: r.authorization.clone(),
                    method: r.method.clone(),
                    route: r.route.clone(),
                    required_scopes: r.required_scopes.clone(),
                }
            }

            pub(super) fn grant_outcome(
                outcome: Result<old::TokenGrant, old::TokenError>,
            ) -> Result<wit::TokenGrant, wit::TokenError> {
                match outcome {
                    Ok(g) => legacy_grant(g.access_token, g.token_type, g.expires_in, g.scopes),
                    Err(old::TokenError::InvalidGrant) => Err(wit::TokenError::InvalidGrant),
                    Err(old::TokenError::InvalidScope(s)) => Err(wit::TokenError::InvalidScope(s)),
                    Err(old::TokenError::InvalidRequest(s)) => {
                        Err(wit::TokenError::InvalidRequest(s))
                    }
                    Err(old::TokenError::Unavailable(s)) => Err(wit::TokenError::Unavailable(s)),
                }
            }

            pub(super) fn decision(
                decision: Result<old::Principal, old::AccessDenial>,
            ) -> Result<wit::Principal, wit::AccessDenial> {
                decision
                    .map(|p| wit::Principal {
                        subject: p.subject,
                        scopes: p.scopes,
                    })
                    .map_err(|denial| match denial {
                        old::AccessDenial::NoCredentials => wit::AccessDenial::NoCredentials,
                        old::AccessDenial::InvalidToken(s) => wit::AccessDenial::InvalidToken(s),
                        old::AccessDenial::InsufficientScope(s) => {
                            wit::AccessDenial::InsufficientScope(s)
                        }
                        old::AccessDenial::Unavailable(s) => wit::AccessDenial::Unavailable(s),
                    })
            }

            pub(super) fn user(user: wit::UserRecord) -> old::UserRecord {
                old::UserRecord {
                    username: user.username,
                    password_hash: user.password_hash,
                    scopes: user.scopes,
                }
            }
        }
    };
}

from_older!(from_v2, v2);
from_older!(from_v1, v1);

impl Policy {
    pub(super) async fn info(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<wit::PolicyInfo> {
        match self {
            Self::Current(p) => p.taskflow_auth_policy().call_info(store).await,
            Self::V0_2(p) => Ok(from_v2::info(
                p.taskflow_auth_policy().call_info(store).await?,
            )),
            Self::V0_1(p) => Ok(from_v1::info(
                p.taskflow_auth_policy().call_info(store).await?,
            )),
        }
    }

    pub(super) async fn hash_password(
        &self,
        store: &mut Store<StoreState>,
        password: &str,
    ) -> wasmtime::Result<Result<String, String>> {
        match self {
            Self::Current(p) => {
                p.taskflow_auth_policy()
                    .call_hash_password(store, password)
                    .await
            }
            Self::V0_2(p) => {
                p.taskflow_auth_policy()
                    .call_hash_password(store, password)
                    .await
            }
            Self::V0_1(p) => {
                p.taskflow_auth_policy()
                    .call_hash_password(store, password)
                    .await
            }
        }
    }

    pub(super) async fn issue_token(
        &self,
        store: &mut Store<StoreState>,
        request: &wit::TokenRequest,
    ) -> wasmtime::Result<Result<wit::TokenGrant, wit::TokenError>> {
        match self {
            Self::Current(p) => {
                p.taskflow_auth_policy()
                    .call_issue_token(store, request)
                    .await
            }
            Self::V0_2(p) => {
                let request = from_v2::token_request(request);
                let outcome = p
                    .taskflow_auth_policy()
                    .call_issue_token(store, &request)
                    .await?;
                Ok(from_v2::grant_outcome(outcome))
            }
            Self::V0_1(p) => {
                let request = from_v1::token_request(request);
                let outcome = p
                    .taskflow_auth_policy()
                    .call_issue_token(store, &request)
                    .await?;
                Ok(from_v1::grant_outcome(outcome))
            }
        }
    }

    /// `None`: the component's world has no refresh grant.
    pub(super) async fn refresh_token(
        &self,
        store: &mut Store<StoreState>,
        request: &wit::RefreshRequest,
    ) -> wasmtime::Result<Option<Result<wit::TokenGrant, wit::TokenError>>> {
        match self {
            Self::Current(p) => p
                .taskflow_auth_policy()
                .call_refresh_token(store, request)
                .await
                .map(Some),
            Self::V0_2(p) => {
                let request = v0_2::taskflow::auth::types::RefreshRequest {
                    username: request.username.clone(),
                    granted_scopes: request.granted_scopes.clone(),
                    scopes: request.scopes.clone(),
                };
                let outcome = p
                    .taskflow_auth_policy()
                    .call_refresh_token(store, &request)
                    .await?;
                Ok(Some(from_v2::grant_outcome(outcome)))
            }
            Self::V0_1(_) => Ok(None),
        }
    }

    pub(super) async fn decide_access(
        &self,
        store: &mut Store<StoreState>,
        request: &wit::AccessRequest,
    ) -> wasmtime::Result<Result<wit::Principal, wit::AccessDenial>> {
        match self {
            Self::Current(p) => {
                p.taskflow_auth_policy()
                    .call_decide_access(store, request)
                    .await
            }
            Self::V0_2(p) => {
                let request = from_v2::access_request(request);
                let decision = p
                    .taskflow_auth_policy()
                    .call_decide_access(store, &request)
                    .await?;
                Ok(from_v2::decision(decision))
            }
            Self::V0_1(p) => {
                let request = from_v1::access_request(request);
                let decision = p
                    .taskflow_auth_policy()
                    .call_decide_access(store, &request)
                    .await?;
                Ok(from_v1::decision(decision))
            }
        }
    }

    /// Introspection of `token`. An older world has none: its Bearer
    /// decision on the token (any valid token, no scope required) says
    /// whether it is active, and the claims it does not answer are read
    /// from the token it accepted.
    pub(super) async fn introspect(
        &self,
        store: &mut Store<StoreState>,
        token: &str,
    ) -> wasmtime::Result<Result<Option<wit::TokenClaims>, String>> {
        if let Self::Current(p) = self {
            return p.taskflow_auth_policy().call_introspect(store, token).await;
        }
        let request = wit::AccessRequest {
            authorization: Some(format!("Bearer {token}")),
            method: "POST".into(),
            route: "/introspect".into(),
            required_scopes: Vec::new(),
        };
        Ok(match self.decide_access(store, &request).await? {
            Ok(principal) => Ok(legacy_claims(token, principal)),
            Err(wit::AccessDenial::Unavailable(reason)) => Err(reason),
            Err(_) => Ok(None),
        })
    }
}

/// The claims of an access token an older world's policy made or
/// accepted, which its world does not answer. Nothing here verifies
/// anything: the policy did.
#[derive(serde::Deserialize)]
struct LegacyClaims {
    jti: String,
    exp: u64,
    #[serde(default)]
    iat: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    iss: String,
    #[serde(default)]
    aud: String,
}

fn read_legacy_claims(token: &str) -> Option<LegacyClaims> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// An older world's grant, with the `jti` and `exp` of its token.
fn legacy_grant(
    access_token: String,
    token_type: String,
    expires_in: u32,
    scopes: Vec<String>,
) -> Result<wit::TokenGrant, wit::TokenError> {
    let claims = read_legacy_claims(&access_token).ok_or_else(|| {
        wit::TokenError::Unavailable("the policy issued a token without `jti` and `exp`".into())
    })?;
    Ok(wit::TokenGrant {
        access_token,
        token_type,
        expires_in,
        scopes,
        token_id: claims.jti,
        expires_at: claims.exp,
    })
}

/// An older world's accepted token as introspection answers it; `None` if
/// it lacks the claims an answer needs.
fn legacy_claims(token: &str, principal: wit::Principal) -> Option<wit::TokenClaims> {
    let claims = read_legacy_claims(token)?;
    Some(wit::TokenClaims {
        subject: principal.subject,
        scopes: principal.scopes,
        issuer: claims.iss,
        audience: claims.aud,
        expires_at: claims.exp,
        issued_at: claims.iat,
        not_before: claims.nbf,
        token_id: claims.jti,
    })
}

impl v2::Host for StoreState {}
impl v1::Host for StoreState {}

/// The 0.2 imports, answered by the current ones.
impl v0_2::taskflow::auth::host::Host for StoreState {
    async fn settings(&mut self) -> v2::PolicySettings {
        let settings = CurrentHost::settings(self).await;
        v2::PolicySettings {
            signing_keys: settings
                .signing_keys
                .into_iter()
                .map(|k| v2::SigningKey {
                    kid: k.kid,
                    algorithm: match k.algorithm {
                        wit::KeyAlgorithm::Hs256 => v2::KeyAlgorithm::Hs256,
                        wit::KeyAlgorithm::EdDsa => v2::KeyAlgorithm::EdDsa,
                    },
                    secret: k.secret,
                })
                .collect(),
            issuer: settings.issuer,
            audience: settings.audience,
            token_ttl_seconds: settings.token_ttl_seconds,
            leeway_seconds: settings.leeway_seconds,
        }
    }

    async fn find_user(&mut self, username: String) -> Result<Option<v2::UserRecord>, String> {
        let user = CurrentHost::find_user(self, username).await?;
        Ok(user.map(from_v2::user))
    }

    async fn is_revoked(
        &mut self,
        token_id: String,
        subject: String,
        issued_at: u64,
    ) -> Result<bool, String> {
        let status = CurrentHost::find_token_status(self, token_id, subject, issued_at).await?;
        Ok(status.revoked)
    }
}

/// The 0.1 imports, answered by the current ones.
impl v0_1::taskflow::auth::host::Host for StoreState {
    async fn settings(&mut self) -> v1::PolicySettings {
        let settings = CurrentHost::settings(self).await;
        v1::PolicySettings {
            signing_keys: settings
                .signing_keys
                .into_iter()
                .filter(|k| matches!(k.algorithm, wit::KeyAlgorithm::Hs256))
                .map(|k| v1::SigningKey {
                    kid: k.kid,
                    secret: k.secret,
                })
                .collect(),
            issuer: settings.issuer,
            audience: settings.audience,
            token_ttl_seconds: settings.token_ttl_seconds,
            leeway_seconds: settings.leeway_seconds,
        }
    }

    async fn find_user(&mut self, username: String) -> Result<Option<v1::UserRecord>, String> {
        let user = CurrentHost::find_user(self, username).await?;
        Ok(user.map(from_v1::user))
    }

    async fn is_revoked(
        &mut self,
        token_id: String,
        subject: String,
        issued_at: u64,
    ) -> Result<bool, String> {
        let status = CurrentHost::find_token_status(self, token_id, subject, issued_at).await?;
        Ok(status.revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_worlds_grant_gets_the_id_and_expiry_of_its_token() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"jti":"abc","exp":1800000000,"sub":"a"}"#);
        let grant = legacy_grant(format!("h.{payload}.s"), "bearer".into(), 60, vec![]).unwrap();
        assert_eq!(
            (grant.token_id.as_str(), grant.expires_at),
            ("abc", 1_800_000_000)
        );
        for token in [
            "h.!!.s",
            "nodots",
            &format!("h.{}.s", URL_SAFE_NO_PAD.encode(br#"{"exp":1}"#)),
        ] {
            assert!(
                matches!(
                    legacy_grant(token.to_owned(), "bearer".into(), 60, vec![]),
                    Err(wit::TokenError::Unavailable(_))
                ),
                "{token}"
            );
        }
    }
}
