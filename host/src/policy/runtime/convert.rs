//! Between the WIT types and the host's own, in one place.

use super::worlds::wit;
use crate::policy::{
    Denial, Grant, GrantRefusal, KeyAlgorithm, PolicyFailure, PolicySettings, Principal,
    SigningKey, TokenClaims, TokenStatus,
};

/// A grant's outcome in the host's types.
pub(super) fn grant_outcome(
    outcome: Result<wit::TokenGrant, wit::TokenError>,
) -> Result<Result<Grant, GrantRefusal>, PolicyFailure> {
    match outcome {
        Ok(g) => Ok(Ok(Grant {
            access_token: g.access_token,
            expires_in: g.expires_in,
            scopes: g.scopes,
            token_id: g.token_id,
            expires_at: seconds(g.expires_at),
        })),
        Err(wit::TokenError::InvalidGrant) => Ok(Err(GrantRefusal::InvalidGrant)),
        Err(wit::TokenError::InvalidScope(s)) => Ok(Err(GrantRefusal::InvalidScope(s))),
        Err(wit::TokenError::InvalidRequest(s)) => Ok(Err(GrantRefusal::InvalidRequest(s))),
        Err(wit::TokenError::Unavailable(s)) => Err(PolicyFailure::Unavailable(s)),
    }
}

/// A Bearer decision in the host's types.
pub(super) fn access_decision(
    decision: Result<wit::Principal, wit::AccessDenial>,
) -> Result<Result<Principal, Denial>, PolicyFailure> {
    match decision {
        Ok(p) => Ok(Ok(Principal {
            subject: p.subject,
            scopes: p.scopes,
        })),
        Err(wit::AccessDenial::NoCredentials) => Ok(Err(Denial::NoCredentials)),
        Err(wit::AccessDenial::InvalidToken(reason)) => Ok(Err(Denial::InvalidToken(reason))),
        Err(wit::AccessDenial::InsufficientScope(scopes)) => {
            Ok(Err(Denial::InsufficientScope(scopes)))
        }
        Err(wit::AccessDenial::Unavailable(reason)) => Err(PolicyFailure::Unavailable(reason)),
    }
}

/// An introspection's answer in the host's types.
pub(super) fn introspection(
    answer: Result<Option<wit::TokenClaims>, String>,
) -> Result<Option<TokenClaims>, PolicyFailure> {
    let claims = answer.map_err(PolicyFailure::Unavailable)?;
    Ok(claims.map(|c| TokenClaims {
        subject: c.subject,
        scopes: c.scopes,
        issuer: c.issuer,
        audience: c.audience,
        expires_at: seconds(c.expires_at),
        issued_at: seconds(c.issued_at),
        not_before: c.not_before.map(seconds),
        token_id: c.token_id,
    }))
}

/// A token status in the form the component takes.
pub(super) fn token_status(status: TokenStatus) -> wit::TokenStatus {
    wit::TokenStatus {
        revoked: status.revoked,
        user: status.user.map(|u| wit::UserRecord {
            username: u.username,
            password_hash: u.password_hash,
            scopes: u.scopes,
        }),
    }
}

/// Unix seconds as stored (a time past `i64::MAX` is as good as never).
fn seconds(unix: u64) -> i64 {
    i64::try_from(unix).unwrap_or(i64::MAX)
}

/// The keys in the form the component takes.
pub(super) fn keys(keys: &[SigningKey]) -> Vec<wit::SigningKey> {
    keys.iter()
        .map(|k| wit::SigningKey {
            kid: k.kid.clone(),
            algorithm: match k.algorithm {
                KeyAlgorithm::Hs256 => wit::KeyAlgorithm::Hs256,
                KeyAlgorithm::EdDsa => wit::KeyAlgorithm::EdDsa,
            },
            secret: k.secret.clone(),
        })
        .collect()
}

pub(super) fn settings(settings: &PolicySettings) -> wit::PolicySettings {
    wit::PolicySettings {
        signing_keys: keys(&settings.signing_keys),
        issuer: settings.issuer.clone(),
        audience: settings.audience.clone(),
        token_ttl_seconds: u32::try_from(settings.token_ttl.as_secs()).unwrap_or(u32::MAX),
        leeway_seconds: u32::try_from(settings.leeway.as_secs()).unwrap_or(u32::MAX),
    }
}
