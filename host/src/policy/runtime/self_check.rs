//! The start-up check a component passes before it may serve.

use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::budget::CallKind;
use super::imports::HostEnv;
use super::worlds::wit;
use super::{PolicyRuntime, describe_fault};
use crate::policy::{Directory, DirectoryFuture, Lookup, PolicySettings, TokenStatus, UserRecord};

/// The scope the self-check's probe user holds; no real route uses it.
const SELF_CHECK_SCOPE: &str = "taskflow:self-check";

impl PolicyRuntime {
    /// Proves the policy does its job before it may serve: a probe user it
    /// has never seen gets a token, the token is accepted, and a tampered
    /// copy, a missing header and a wrong password are refused; a refresh
    /// grant gives the probe an accepted token and an unknown user nothing;
    /// introspection answers the token active, with its id, and the
    /// tampered copy inactive.
    /// The probe exists only in a throwaway instance's imports, never in the
    /// directory that real requests reach.
    ///
    /// Every probe call is held to password work's deadline and normal
    /// cost, as the probe's instance is: the check runs once per candidate,
    /// off any request's path, on a cold instance and often on a cold
    /// machine (a first start), where an interpreter's first decision
    /// (CPython's) can outlast a request's 50 ms; it proves what the policy
    /// decides, not how fast.
    pub(super) async fn self_check(&self) -> Result<(), String> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| e.to_string())?;
        let password = hex::encode(random);
        let username = format!("self-check-{}", &password[..8]);
        let hash = self
            .hash_password(password.clone())
            .await
            .map_err(|e| format!("hash-password: {e}"))?;
        let probe_env = Arc::new(HostEnv {
            settings: ArcSwap::from_pointee(wit::PolicySettings::clone(&self.env.settings.load())),
            users: Arc::new(ProbeDirectory(UserRecord {
                username: username.clone(),
                password_hash: hash,
                scopes: vec![SELF_CHECK_SCOPE.to_owned()],
            })),
            output: self.env.output.clone(),
            hash_slots: Arc::clone(&self.env.hash_slots),
            ed25519_keys: Arc::clone(&self.env.ed25519_keys),
        });
        let mut probe = self
            .instantiate(probe_env, CallKind::Password)
            .await
            .map_err(|e| format!("instantiate: {e}"))?;

        let mut issue = async |password: &str| {
            let request = wit::TokenRequest {
                username: username.clone(),
                password: password.to_owned(),
                scopes: None,
            };
            self.begin(&mut probe, CallKind::Password);
            probe
                .policy
                .issue_token(&mut probe.store, &request)
                .await
                .map_err(|e| describe_fault(e).to_string())
        };
        let (token, token_id) = match issue(&password).await? {
            Ok(grant) => (grant.access_token, grant.token_id),
            Err(e) => {
                return Err(format!(
                    "the probe user's grant was refused: {}",
                    token_error(&e)
                ));
            }
        };
        if !matches!(issue("wrong").await?, Err(wit::TokenError::InvalidGrant)) {
            return Err("a wrong password was not refused with invalid-grant".into());
        }

        let mut refresh = async |username: &str| {
            let request = wit::RefreshRequest {
                username: username.to_owned(),
                granted_scopes: vec![SELF_CHECK_SCOPE.to_owned()],
                scopes: None,
            };
            self.begin(&mut probe, CallKind::Password);
            probe
                .policy
                .refresh_token(&mut probe.store, &request)
                .await
                .map_err(|e| describe_fault(e).to_string())
        };
        // A 0.1 policy has no refresh grant to check.
        let refreshed = match refresh(&username).await? {
            None => None,
            Some(Ok(grant)) => Some(grant.access_token),
            Some(Err(e)) => {
                return Err(format!(
                    "the probe user's refresh was refused: {}",
                    token_error(&e)
                ));
            }
        };
        if refreshed.is_some()
            && !matches!(
                refresh("self-check-nobody").await?,
                Some(Err(wit::TokenError::InvalidGrant))
            )
        {
            return Err("a refresh for an unknown user was not refused with invalid-grant".into());
        }

        let mut decide = async |authorization: Option<String>| {
            let request = wit::AccessRequest {
                authorization,
                method: "GET".into(),
                route: "/users/me".into(),
                required_scopes: vec![SELF_CHECK_SCOPE.to_owned()],
            };
            self.begin(&mut probe, CallKind::Password);
            probe
                .policy
                .decide_access(&mut probe.store, &request)
                .await
                .map_err(|e| describe_fault(e).to_string())
        };
        match decide(Some(format!("Bearer {token}"))).await? {
            Ok(principal) if principal.subject == username => {}
            other => {
                return Err(format!(
                    "the probe's own token was not accepted: {}",
                    decision(&other, &username)
                ));
            }
        }
        if !matches!(
            decide(Some(format!("Bearer {}", tamper(&token)))).await?,
            Err(wit::AccessDenial::InvalidToken(_))
        ) {
            return Err("a tampered token was not refused as invalid".into());
        }
        if !matches!(decide(None).await?, Err(wit::AccessDenial::NoCredentials)) {
            return Err("a request without credentials was not refused".into());
        }

        if let Some(refreshed) = refreshed {
            match decide(Some(format!("Bearer {refreshed}"))).await? {
                Ok(principal) if principal.subject == username => {}
                other => {
                    return Err(format!(
                        "the probe's refreshed token was not accepted: {}",
                        decision(&other, &username)
                    ));
                }
            }
        }

        let mut introspect = async |token: String| {
            self.begin(&mut probe, CallKind::Password);
            probe
                .policy
                .introspect(&mut probe.store, &token)
                .await
                .map_err(|e| describe_fault(e).to_string())
        };
        match introspect(token.clone()).await? {
            Ok(Some(claims)) if claims.subject == username && claims.token_id == token_id => {}
            other => {
                let answer = match other {
                    Ok(Some(claims)) => format!(
                        "it answered it active for {:?} with another token id",
                        claims.subject
                    ),
                    Ok(None) => "it answered it inactive".to_owned(),
                    Err(e) => format!("it failed: {e}"),
                };
                return Err(format!(
                    "introspection did not answer the probe's own token as active: {answer}"
                ));
            }
        }
        if !matches!(introspect(tamper(&token)).await?, Ok(None)) {
            return Err("introspection did not answer a tampered token as inactive".into());
        }
        Ok(())
    }

    /// Names this component with these settings. A self-check that passed
    /// once is not repeated for the same key (a restart with a warm cache
    /// then skips three argon2 runs); any change of component, key ids,
    /// issuer, audience or lifetimes checks again.
    pub(super) fn check_key(&self, settings: &PolicySettings) -> String {
        let mut digest = Sha256::new();
        digest.update(self.info.sha256.as_bytes());
        for key in &settings.signing_keys {
            digest.update(b"\0kid\0");
            digest.update(key.kid.as_bytes());
            digest.update(key.algorithm.jose_name().as_bytes());
        }
        for part in [&settings.issuer, &settings.audience] {
            digest.update(b"\0");
            digest.update(part.as_bytes());
        }
        digest.update(settings.token_ttl.as_secs().to_le_bytes());
        digest.update(settings.leeway.as_secs().to_le_bytes());
        hex::encode(digest.finalize())
    }
}

/// The only user the self-check's throwaway instance can find.
struct ProbeDirectory(UserRecord);

impl Directory for ProbeDirectory {
    fn find_user<'a>(
        &'a self,
        username: &'a str,
        _: Lookup,
    ) -> DirectoryFuture<'a, Option<UserRecord>> {
        let found = (username == self.0.username).then(|| self.0.clone());
        Box::pin(async move { Ok(found) })
    }

    fn token_status<'a>(
        &'a self,
        _: &'a str,
        subject: &'a str,
        _: u64,
    ) -> DirectoryFuture<'a, TokenStatus> {
        let user = (subject == self.0.username).then(|| self.0.clone());
        Box::pin(async move {
            Ok(TokenStatus {
                revoked: false,
                user,
            })
        })
    }
}

/// `token` with one character of its signature changed.
fn tamper(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last = if *last == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A grant's refusal in words, for an operator.
fn token_error(error: &wit::TokenError) -> String {
    match error {
        wit::TokenError::InvalidGrant => "invalid-grant (wrong password or unknown user)".into(),
        wit::TokenError::InvalidScope(scope) => format!("invalid-scope ({scope})"),
        wit::TokenError::InvalidRequest(why) => format!("invalid-request ({why})"),
        wit::TokenError::Unavailable(why) => format!("unavailable ({why})"),
    }
}

/// A Bearer decision on the probe's token in words: what it was instead of
/// allowed for `expected`.
fn decision(outcome: &Result<wit::Principal, wit::AccessDenial>, expected: &str) -> String {
    match outcome {
        Ok(principal) => format!(
            "it was allowed for {:?}, not {expected:?}",
            principal.subject
        ),
        Err(wit::AccessDenial::NoCredentials) => "it was refused as no credentials".into(),
        Err(wit::AccessDenial::InvalidToken(why)) => format!("it was refused as invalid ({why})"),
        Err(wit::AccessDenial::InsufficientScope(scopes)) => {
            format!("it was refused for want of the scopes {}", scopes.join(" "))
        }
        Err(wit::AccessDenial::Unavailable(why)) => format!("the policy was unavailable ({why})"),
    }
}
