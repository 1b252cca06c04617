//! The WIT worlds the host speaks: `taskflow:auth@0.2.0`, and 0.1 (0.1.1,
//! and 0.1.0 by semver), so that policies built before 0.2 keep loading
//! after a host upgrade. Only this module knows 0.1: the rest of the host
//! sees the current world's types.
//!
//! A 0.1 policy knows no refresh grant and no key algorithms: it is given
//! the HS256 keys only, signs with the first of them, and the host issues no
//! refresh tokens while it serves.

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

mod v0_1 {
    wasmtime::component::bindgen!({
        world: "auth-policy",
        path: "../wit/legacy/0.1",
        imports: { default: async },
        exports: { default: async },
    });
}

pub(super) use current::taskflow::auth::types as wit;
use v0_1::taskflow::auth::types as old;

/// Defines the host imports of every world the host speaks.
pub(super) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    current::AuthPolicy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_1::AuthPolicy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

/// A linked component and the world it implements.
pub(super) enum PolicyPre {
    Current(current::AuthPolicyPre<StoreState>),
    V0_1(v0_1::AuthPolicyPre<StoreState>),
}

impl PolicyPre {
    /// The newest world the component implements. The error, if none, is
    /// about the current world: that is the one to build for.
    pub(super) fn new(pre: InstancePre<StoreState>) -> wasmtime::Result<Self> {
        match current::AuthPolicyPre::new(pre.clone()) {
            Ok(pre) => Ok(Self::Current(pre)),
            Err(error) => v0_1::AuthPolicyPre::new(pre)
                .map(Self::V0_1)
                .map_err(|_| error),
        }
    }

    /// Whether the world has the refresh grant.
    pub(super) fn has_refresh(&self) -> bool {
        matches!(self, Self::Current(_))
    }

    /// The world's name, for logs.
    pub(super) fn world(&self) -> &'static str {
        match self {
            Self::Current(_) => "taskflow:auth@0.2.0",
            Self::V0_1(_) => "taskflow:auth@0.1",
        }
    }

    pub(super) async fn instantiate(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Policy> {
        Ok(match self {
            Self::Current(pre) => Policy::Current(pre.instantiate_async(store).await?),
            Self::V0_1(pre) => Policy::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance's exports, in the current world's types whatever its world.
pub(super) enum Policy {
    Current(current::AuthPolicy),
    V0_1(v0_1::AuthPolicy),
}

impl Policy {
    pub(super) async fn info(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<wit::PolicyInfo> {
        match self {
            Self::Current(p) => p.taskflow_auth_policy().call_info(store).await,
            Self::V0_1(p) => {
                let info = p.taskflow_auth_policy().call_info(store).await?;
                Ok(wit::PolicyInfo {
                    name: info.name,
                    version: info.version,
                })
            }
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
            Self::V0_1(p) => {
                let request = old::TokenRequest {
                    username: request.username.clone(),
                    password: request.password.clone(),
                    scopes: request.scopes.clone(),
                };
                let outcome = p
                    .taskflow_auth_policy()
                    .call_issue_token(store, &request)
                    .await?;
                Ok(outcome.map(grant).map_err(grant_error))
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
            Self::V0_1(p) => {
                let request = old::AccessRequest {
                    authorization: request.authorization.clone(),
                    method: request.method.clone(),
                    route: request.route.clone(),
                    required_scopes: request.required_scopes.clone(),
                };
                let decision = p
                    .taskflow_auth_policy()
                    .call_decide_access(store, &request)
                    .await?;
                Ok(decision
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
                    }))
            }
        }
    }
}

fn grant(g: old::TokenGrant) -> wit::TokenGrant {
    wit::TokenGrant {
        access_token: g.access_token,
        token_type: g.token_type,
        expires_in: g.expires_in,
        scopes: g.scopes,
    }
}

fn grant_error(e: old::TokenError) -> wit::TokenError {
    match e {
        old::TokenError::InvalidGrant => wit::TokenError::InvalidGrant,
        old::TokenError::InvalidScope(s) => wit::TokenError::InvalidScope(s),
        old::TokenError::InvalidRequest(s) => wit::TokenError::InvalidRequest(s),
        old::TokenError::Unavailable(s) => wit::TokenError::Unavailable(s),
    }
}

impl old::Host for StoreState {}

/// The 0.1 imports, answered by the current ones.
impl v0_1::taskflow::auth::host::Host for StoreState {
    async fn settings(&mut self) -> old::PolicySettings {
        let settings = current::taskflow::auth::host::Host::settings(self).await;
        old::PolicySettings {
            signing_keys: settings
                .signing_keys
                .into_iter()
                .filter(|k| matches!(k.algorithm, wit::KeyAlgorithm::Hs256))
                .map(|k| old::SigningKey {
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

    async fn find_user(&mut self, username: String) -> Result<Option<old::UserRecord>, String> {
        let user = current::taskflow::auth::host::Host::find_user(self, username).await?;
        Ok(user.map(|u| old::UserRecord {
            username: u.username,
            password_hash: u.password_hash,
            scopes: u.scopes,
        }))
    }

    async fn is_revoked(
        &mut self,
        token_id: String,
        subject: String,
        issued_at: u64,
    ) -> Result<bool, String> {
        current::taskflow::auth::host::Host::is_revoked(self, token_id, subject, issued_at).await
    }
}
