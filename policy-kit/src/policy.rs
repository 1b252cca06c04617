//! The two decisions the host asks for: a password grant and a Bearer check.
//!
//! Both take the settings and the clock as arguments, so they hold no state
//! between calls and run the same natively (in tests) and in the component.

use crate::token::{self, AccessClaims, Expectations, KeyError, TokenRejection};
use crate::{
    AccessDenial, AccessRequest, PolicySettings, Principal, RefreshRequest, TokenClaims,
    TokenError, TokenGrant, TokenRequest, TokenStatus, UserRecord, password, scope,
};

fn expectations(settings: &PolicySettings) -> Expectations<'_> {
    Expectations {
        issuer: &settings.issuer,
        audience: &settings.audience,
        leeway_seconds: settings.leeway_seconds,
    }
}

/// RFC 6749 §4.3: checks the password and issues an access token.
///
/// The password is checked before anything that depends on the user's
/// record (scopes), and an unknown user costs the same argon2 work as a
/// wrong password, so neither answers nor timing reveal which usernames exist.
pub fn issue_token(
    request: &TokenRequest,
    settings: &PolicySettings,
    find_user: impl FnOnce(&str) -> Result<Option<UserRecord>, String>,
    now: u64,
) -> Result<TokenGrant, TokenError> {
    if request.username.is_empty() || request.password.is_empty() {
        return Err(TokenError::InvalidRequest(
            "username and password must not be empty".into(),
        ));
    }
    check_asked_scopes(request.scopes.as_deref())?;
    let signing_key = settings
        .signing_keys
        .first()
        .ok_or_else(|| TokenError::Unavailable(KeyError::NoKey.to_string()))?;

    let user = find_user(&request.username).map_err(TokenError::Unavailable)?;
    let user = match user {
        Some(user) if password::matches(&request.password, &user.password_hash) => user,
        Some(_) => return Err(TokenError::InvalidGrant),
        None => {
            password::burn_equal_time(&request.password);
            return Err(TokenError::InvalidGrant);
        }
    };

    let granted = match &request.scopes {
        None => user.scopes.clone(),
        Some(asked) => {
            if let Some(&lacking) = scope::missing(asked, &user.scopes).first() {
                return Err(TokenError::InvalidScope(format!(
                    "scope `{lacking}` is not granted to this user"
                )));
            }
            let mut granted = asked.clone();
            granted.dedup();
            granted
        }
    };

    mint(settings, signing_key, user.username, granted, now)
}

/// RFC 6749 §6: a new access token for a refresh grant whose refresh token
/// the host has already checked (it is opaque and the host's to store).
///
/// The user must still exist. The token carries the scopes asked for (all of
/// the grant's when none are), which must be among the grant's (§6: never
/// more than originally granted), less any the user no longer holds.
pub fn refresh_token(
    request: &RefreshRequest,
    settings: &PolicySettings,
    find_user: impl FnOnce(&str) -> Result<Option<UserRecord>, String>,
    now: u64,
) -> Result<TokenGrant, TokenError> {
    if request.username.is_empty() {
        return Err(TokenError::InvalidRequest(
            "the refresh grant names no user".into(),
        ));
    }
    check_asked_scopes(request.scopes.as_deref())?;
    let signing_key = settings
        .signing_keys
        .first()
        .ok_or_else(|| TokenError::Unavailable(KeyError::NoKey.to_string()))?;
    let wanted = match &request.scopes {
        None => request.granted_scopes.clone(),
        Some(asked) => {
            if let Some(&beyond) = scope::missing(asked, &request.granted_scopes).first() {
                return Err(TokenError::InvalidScope(format!(
                    "scope `{beyond}` was not granted to this refresh token"
                )));
            }
            let mut wanted = asked.clone();
            wanted.dedup();
            wanted
        }
    };
    let user = find_user(&request.username)
        .map_err(TokenError::Unavailable)?
        .ok_or(TokenError::InvalidGrant)?;
    let scopes = wanted
        .into_iter()
        .filter(|s| user.scopes.contains(s))
        .collect();
    mint(settings, signing_key, user.username, scopes, now)
}

/// Refuses an empty or malformed `scope` parameter.
fn check_asked_scopes(asked: Option<&[String]>) -> Result<(), TokenError> {
    let Some(asked) = asked else {
        return Ok(());
    };
    if asked.is_empty() {
        return Err(TokenError::InvalidScope(
            "the scope parameter is empty".into(),
        ));
    }
    if let Some(bad) = asked.iter().find(|s| !scope::is_valid_token(s)) {
        return Err(TokenError::InvalidScope(format!("malformed scope `{bad}`")));
    }
    Ok(())
}

/// Signs a new access token for `subject` with `scopes`, valid from `now`.
fn mint(
    settings: &PolicySettings,
    signing_key: &crate::SigningKey,
    subject: String,
    scopes: Vec<String>,
    now: u64,
) -> Result<TokenGrant, TokenError> {
    let token_id = token::new_token_id().map_err(|e| TokenError::Unavailable(e.to_string()))?;
    let expires_at = now + u64::from(settings.token_ttl_seconds);
    let claims = AccessClaims {
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        sub: subject,
        exp: expires_at,
        iat: now,
        nbf: Some(now),
        jti: Some(token_id.clone()),
        scope: scopes.join(" "),
    };
    let access_token =
        token::sign(&claims, signing_key).map_err(|e| TokenError::Unavailable(e.to_string()))?;
    Ok(TokenGrant {
        access_token,
        token_type: "bearer".into(),
        expires_in: settings.token_ttl_seconds,
        scopes,
        token_id,
        expires_at,
    })
}

/// RFC 6750: decides whether a request's Bearer token grants the route.
///
/// A token the host reports revoked (by its `jti`, RFC 7009) is refused.
/// The token's user is looked up on every decision, so a user removed (or
/// stripped of a scope) is refused at once, by every replica that shares
/// the user store, rather than when the token expires. The principal's
/// scopes are those the token carries and the user still holds.
pub fn decide_access(
    request: &AccessRequest,
    settings: &PolicySettings,
    token_status: impl FnOnce(&str, &str, u64) -> Result<TokenStatus, String>,
    now: u64,
) -> Result<Principal, AccessDenial> {
    let token = match scope::bearer(request.authorization.as_deref()) {
        scope::Credentials::None => return Err(AccessDenial::NoCredentials),
        scope::Credentials::Malformed => {
            return Err(AccessDenial::InvalidToken(
                TokenRejection::Malformed.to_string(),
            ));
        }
        scope::Credentials::Bearer(token) => token,
    };
    let (claims, scopes) = check_token(token, settings, token_status, now)?;
    if !scope::missing(&request.required_scopes, &scopes).is_empty() {
        return Err(AccessDenial::InsufficientScope(
            request.required_scopes.clone(),
        ));
    }
    Ok(Principal {
        subject: claims.sub,
        scopes,
    })
}

/// RFC 7662: whether `token` is an active access token, by the same checks
/// as [`decide_access`]; `Ok(None)` for any token that is not, whatever the
/// reason, and `Err` only when the policy cannot work.
pub fn introspect(
    token: &str,
    settings: &PolicySettings,
    token_status: impl FnOnce(&str, &str, u64) -> Result<TokenStatus, String>,
    now: u64,
) -> Result<Option<TokenClaims>, String> {
    match check_token(token, settings, token_status, now) {
        Ok((claims, scopes)) => Ok(Some(TokenClaims {
            token_id: claims.jti.unwrap_or_default(),
            subject: claims.sub,
            scopes,
            issuer: claims.iss,
            audience: claims.aud,
            expires_at: claims.exp,
            issued_at: claims.iat,
            not_before: claims.nbf,
        })),
        Err(AccessDenial::Unavailable(reason)) => Err(reason),
        Err(_) => Ok(None),
    }
}

/// Verifies `token` and asks the host about it: its claims and the scopes
/// of them its user still holds, or why it is refused.
fn check_token(
    token: &str,
    settings: &PolicySettings,
    token_status: impl FnOnce(&str, &str, u64) -> Result<TokenStatus, String>,
    now: u64,
) -> Result<(AccessClaims, Vec<String>), AccessDenial> {
    let claims = token::verify(token, &settings.signing_keys, &expectations(settings), now)
        .map_err(|e| AccessDenial::Unavailable(e.to_string()))?
        .map_err(|rejection| AccessDenial::InvalidToken(rejection.to_string()))?;
    // RFC 9068 requires `jti`; without one a token could not be revoked.
    let token_id = claims
        .jti
        .as_deref()
        .ok_or_else(|| AccessDenial::InvalidToken("the token has no `jti`".into()))?;
    let status =
        token_status(token_id, &claims.sub, claims.iat).map_err(AccessDenial::Unavailable)?;
    if status.revoked {
        return Err(AccessDenial::InvalidToken("the token was revoked".into()));
    }
    let user = status
        .user
        .ok_or_else(|| AccessDenial::InvalidToken("the token's user no longer exists".into()))?;
    let scopes: Vec<String> = scope::split(&claims.scope)
        .into_iter()
        .filter(|s| user.scopes.contains(s))
        .collect();
    Ok((claims, scopes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;
    use std::sync::OnceLock;

    const NOW: u64 = 1_800_000_000;

    fn settings() -> PolicySettings {
        PolicySettings {
            signing_keys: vec![SigningKey {
                kid: "k1".into(),
                algorithm: crate::KeyAlgorithm::Hs256,
                secret: vec![42; 32],
            }],
            issuer: "taskflow".into(),
            audience: "taskflow-api".into(),
            token_ttl_seconds: 1800,
            leeway_seconds: 30,
        }
    }

    fn alice() -> UserRecord {
        static HASH: OnceLock<String> = OnceLock::new();
        UserRecord {
            username: "alice".into(),
            password_hash: HASH
                .get_or_init(|| password::hash("s3cret").unwrap())
                .clone(),
            scopes: vec!["tasks:read".into(), "tasks:write".into()],
        }
    }

    fn directory(name: &str) -> Result<Option<UserRecord>, String> {
        Ok((name == "alice").then(alice))
    }

    fn request(username: &str, password: &str, scopes: Option<&[&str]>) -> TokenRequest {
        TokenRequest {
            username: username.into(),
            password: password.into(),
            scopes: scopes.map(|s| s.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn access(token: Option<&str>, required: &[&str]) -> AccessRequest {
        AccessRequest {
            authorization: token.map(|t| format!("Bearer {t}")),
            method: "GET".into(),
            route: "/tasks".into(),
            required_scopes: required.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn grant_without_scope_gives_all_of_the_users_scopes() {
        let grant = issue_token(
            &request("alice", "s3cret", None),
            &settings(),
            directory,
            NOW,
        )
        .unwrap();
        assert_eq!(grant.token_type, "bearer");
        assert_eq!(grant.expires_in, 1800);
        assert_eq!(grant.scopes, vec!["tasks:read", "tasks:write"]);
        let principal = decide_access(
            &access(Some(&grant.access_token), &["tasks:write"]),
            &settings(),
            status(directory, not_revoked),
            NOW,
        )
        .unwrap();
        assert_eq!(principal.subject, "alice");
        assert_eq!(principal.scopes, vec!["tasks:read", "tasks:write"]);
    }

    #[test]
    fn grant_narrows_to_the_asked_scopes() {
        let req = request("alice", "s3cret", Some(&["tasks:read"]));
        let grant = issue_token(&req, &settings(), directory, NOW).unwrap();
        assert_eq!(grant.scopes, vec!["tasks:read"]);
        let denied = decide_access(
            &access(Some(&grant.access_token), &["tasks:write"]),
            &settings(),
            status(directory, not_revoked),
            NOW,
        );
        assert_eq!(
            denied,
            Err(AccessDenial::InsufficientScope(vec!["tasks:write".into()]))
        );
    }

    #[test]
    fn unknown_user_and_wrong_password_look_alike() {
        let unknown = issue_token(&request("bob", "s3cret", None), &settings(), directory, NOW);
        let wrong = issue_token(&request("alice", "nope", None), &settings(), directory, NOW);
        assert_eq!(unknown, Err(TokenError::InvalidGrant));
        assert_eq!(wrong, Err(TokenError::InvalidGrant));
    }

    #[test]
    fn scope_errors_come_after_the_password_check() {
        let wrong_pw = request("alice", "nope", Some(&["admin"]));
        assert_eq!(
            issue_token(&wrong_pw, &settings(), directory, NOW),
            Err(TokenError::InvalidGrant)
        );
        let right_pw = request("alice", "s3cret", Some(&["tasks:read", "admin"]));
        assert!(matches!(
            issue_token(&right_pw, &settings(), directory, NOW),
            Err(TokenError::InvalidScope(s)) if s.contains("admin")
        ));
    }

    #[test]
    fn malformed_grant_requests() {
        let cases = [request("", "x", None), request("alice", "", None)];
        for case in cases {
            assert!(matches!(
                issue_token(&case, &settings(), directory, NOW),
                Err(TokenError::InvalidRequest(_))
            ));
        }
        for scopes in [&[][..], &["a\"b"][..]] {
            assert!(matches!(
                issue_token(
                    &request("alice", "s3cret", Some(scopes)),
                    &settings(),
                    directory,
                    NOW
                ),
                Err(TokenError::InvalidScope(_))
            ));
        }
    }

    #[test]
    fn storage_failure_is_unavailable() {
        let failing = |_: &str| Err("database is down".to_owned());
        assert_eq!(
            issue_token(&request("alice", "s3cret", None), &settings(), failing, NOW),
            Err(TokenError::Unavailable("database is down".into()))
        );
    }

    #[test]
    fn short_key_is_refused_not_used() {
        let mut weak = settings();
        weak.signing_keys[0].secret = b"short".to_vec();
        assert!(matches!(
            issue_token(&request("alice", "s3cret", None), &weak, directory, NOW),
            Err(TokenError::Unavailable(_))
        ));
        assert!(matches!(
            decide_access(
                &access(Some("a.b.c"), &[]),
                &weak,
                status(directory, not_revoked),
                NOW
            ),
            Err(AccessDenial::Unavailable(_))
        ));
    }

    #[test]
    fn access_denials() {
        assert_eq!(
            decide_access(
                &access(None, &[]),
                &settings(),
                status(directory, not_revoked),
                NOW
            ),
            Err(AccessDenial::NoCredentials)
        );
        assert!(matches!(
            decide_access(
                &access(Some("garbage"), &[]),
                &settings(),
                status(directory, not_revoked),
                NOW
            ),
            Err(AccessDenial::InvalidToken(_))
        ));
        let grant = issue_token(
            &request("alice", "s3cret", None),
            &settings(),
            directory,
            NOW,
        )
        .unwrap();
        let later = NOW + 1800 + 30;
        assert_eq!(
            decide_access(
                &access(Some(&grant.access_token), &[]),
                &settings(),
                status(directory, not_revoked),
                later
            ),
            Err(AccessDenial::InvalidToken("the token has expired".into()))
        );
    }

    fn not_revoked(_: &str, _: &str, _: u64) -> Result<bool, String> {
        Ok(false)
    }

    /// The host's `token-status` answer, from a directory and a revocation list.
    fn status(
        find_user: impl FnOnce(&str) -> Result<Option<UserRecord>, String>,
        is_revoked: impl FnOnce(&str, &str, u64) -> Result<bool, String>,
    ) -> impl FnOnce(&str, &str, u64) -> Result<TokenStatus, String> {
        move |jti, subject, issued_at| {
            Ok(TokenStatus {
                revoked: is_revoked(jti, subject, issued_at)?,
                user: find_user(subject)?,
            })
        }
    }

    #[test]
    fn introspection_answers_the_claims_of_an_active_token_only() {
        let grant = issue_token(
            &request("alice", "s3cret", Some(&["tasks:read"])),
            &settings(),
            directory,
            NOW,
        )
        .unwrap();
        let claims = introspect(
            &grant.access_token,
            &settings(),
            status(directory, not_revoked),
            NOW,
        )
        .unwrap()
        .unwrap();
        assert_eq!(claims.subject, "alice");
        assert_eq!(claims.scopes, vec!["tasks:read"]);
        assert_eq!(claims.token_id, grant.token_id);
        assert_eq!(claims.expires_at, grant.expires_at);
        assert_eq!(claims.expires_at, NOW + 1800);
        assert_eq!((claims.issued_at, claims.not_before), (NOW, Some(NOW)));
        assert_eq!(claims.issuer, "taskflow");
        assert_eq!(claims.audience, "taskflow-api");
        let token = grant.access_token.as_str();
        assert_eq!(
            introspect("garbage", &settings(), status(directory, not_revoked), NOW),
            Ok(None)
        );
        assert_eq!(
            introspect(
                token,
                &settings(),
                status(directory, |_, _, _| Ok(true)),
                NOW
            ),
            Ok(None)
        );
        assert_eq!(
            introspect(token, &settings(), status(|_| Ok(None), not_revoked), NOW),
            Ok(None)
        );
        assert_eq!(
            introspect(
                &grant.access_token,
                &settings(),
                status(directory, not_revoked),
                NOW + 1800 + 30
            ),
            Ok(None)
        );
        assert_eq!(
            introspect(token, &settings(), |_, _, _| Err("db down".into()), NOW),
            Err("db down".into())
        );
    }

    #[test]
    fn a_revoked_token_is_refused() {
        let grant = issue_token(
            &request("alice", "s3cret", None),
            &settings(),
            directory,
            NOW,
        )
        .unwrap();
        let claims = crate::token::verify(
            &grant.access_token,
            &settings().signing_keys,
            &expectations(&settings()),
            NOW,
        )
        .unwrap()
        .unwrap();
        let jti = claims.jti.unwrap();
        let asked = access(Some(&grant.access_token), &[]);
        let revoked = |id: &str, _: &str, _: u64| Ok(id == jti);
        assert_eq!(
            decide_access(&asked, &settings(), status(directory, revoked), NOW),
            Err(AccessDenial::InvalidToken("the token was revoked".into()))
        );
        assert!(matches!(
            decide_access(
                &asked,
                &settings(),
                status(directory, |_, _, _| Err("db down".into())),
                NOW
            ),
            Err(AccessDenial::Unavailable(_))
        ));
        assert!(decide_access(&asked, &settings(), status(directory, not_revoked), NOW).is_ok());
    }

    #[test]
    fn a_removed_user_or_a_withdrawn_scope_is_refused_at_once() {
        let grant = issue_token(
            &request("alice", "s3cret", None),
            &settings(),
            directory,
            NOW,
        )
        .unwrap();
        let asks = |scopes: &[&str]| access(Some(&grant.access_token), scopes);
        assert_eq!(
            decide_access(
                &asks(&[]),
                &settings(),
                status(|_| Ok(None), not_revoked),
                NOW
            ),
            Err(AccessDenial::InvalidToken(
                "the token's user no longer exists".into()
            ))
        );
        let read_only = |_: &str| {
            Ok(Some(UserRecord {
                scopes: vec!["tasks:read".into()],
                ..alice()
            }))
        };
        assert_eq!(
            decide_access(
                &asks(&["tasks:write"]),
                &settings(),
                status(read_only, not_revoked),
                NOW
            ),
            Err(AccessDenial::InsufficientScope(vec!["tasks:write".into()]))
        );
        let principal = decide_access(
            &asks(&["tasks:read"]),
            &settings(),
            status(read_only, not_revoked),
            NOW,
        )
        .unwrap();
        assert_eq!(principal.scopes, vec!["tasks:read"]);
        assert!(matches!(
            decide_access(&asks(&[]), &settings(), status(|_| Err("db down".into()), not_revoked), NOW),
            Err(AccessDenial::Unavailable(reason)) if reason == "db down"
        ));
    }

    #[test]
    fn decisions_do_not_depend_on_earlier_calls() {
        let grant = issue_token(
            &request("alice", "s3cret", None),
            &settings(),
            directory,
            NOW,
        )
        .unwrap();
        let good = access(Some(&grant.access_token), &["tasks:read"]);
        let first = decide_access(&good, &settings(), status(directory, not_revoked), NOW);
        for _ in 0..3 {
            let _ = decide_access(
                &access(Some("x.y.z"), &[]),
                &settings(),
                status(directory, not_revoked),
                NOW,
            );
            assert_eq!(
                decide_access(&good, &settings(), status(directory, not_revoked), NOW),
                first
            );
        }
    }

    fn renewal(username: &str, granted: &[&str], asked: Option<&[&str]>) -> RefreshRequest {
        RefreshRequest {
            username: username.into(),
            granted_scopes: granted.iter().map(|s| s.to_string()).collect(),
            scopes: asked.map(|s| s.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn a_refresh_grant_issues_the_granted_scopes_without_a_password() {
        let req = renewal("alice", &["tasks:read", "tasks:write"], None);
        let grant = refresh_token(&req, &settings(), directory, NOW).unwrap();
        assert_eq!(grant.scopes, vec!["tasks:read", "tasks:write"]);
        let principal = decide_access(
            &access(Some(&grant.access_token), &["tasks:write"]),
            &settings(),
            status(directory, not_revoked),
            NOW,
        )
        .unwrap();
        assert_eq!(principal.subject, "alice");
        let narrowed = renewal(
            "alice",
            &["tasks:read", "tasks:write"],
            Some(&["tasks:read"]),
        );
        let grant = refresh_token(&narrowed, &settings(), directory, NOW).unwrap();
        assert_eq!(grant.scopes, vec!["tasks:read"]);
    }

    #[test]
    fn a_refresh_grant_never_widens_and_follows_the_user() {
        // RFC 6749 §6: no scope beyond the original grant, even one the user holds.
        let wider = renewal("alice", &["tasks:read"], Some(&["tasks:write"]));
        assert!(matches!(
            refresh_token(&wider, &settings(), directory, NOW),
            Err(TokenError::InvalidScope(_))
        ));
        // A scope the user lost since is left out.
        let lost = renewal("alice", &["tasks:read", "admin"], None);
        let grant = refresh_token(&lost, &settings(), directory, NOW).unwrap();
        assert_eq!(grant.scopes, vec!["tasks:read"]);
        // A user removed since gets nothing.
        let gone = renewal("bob", &["tasks:read"], None);
        assert_eq!(
            refresh_token(&gone, &settings(), directory, NOW),
            Err(TokenError::InvalidGrant)
        );
        let anonymous = renewal("", &["tasks:read"], None);
        assert!(matches!(
            refresh_token(&anonymous, &settings(), directory, NOW),
            Err(TokenError::InvalidRequest(_))
        ));
    }
}
