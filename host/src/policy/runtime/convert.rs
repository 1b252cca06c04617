//! Between the WIT types and the host's own, in one place.

use super::worlds::wit;
use crate::policy::{
    Denial, Grant, GrantRefusal, KeyAlgorithm, PolicyFailure, PolicySettings, Principal, SigningKey,
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
