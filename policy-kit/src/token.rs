//! HS256 access tokens in the JWT profile of RFC 9068, verified as RFC 8725
//! asks: algorithm pinned, `typ` checked, key chosen by `kid`, every time
//! claim checked, required claims present.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::SigningKey;

/// RFC 9068 §2.1: the `typ` of a JWT access token.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
pub const MIN_KEY_BYTES: usize = 32;
/// The largest clock skew the policy accepts, whatever the settings say.
pub const MAX_LEEWAY_SECONDS: u32 = 60;

/// The claims TaskFlow writes into every access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    /// Optional when verifying: tokens minted elsewhere may omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Space-separated scopes (RFC 8693 §4.2).
    #[serde(default)]
    pub scope: String,
}

/// What a token must match to be accepted.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway_seconds: u32,
}

/// Why a token was refused. The text is safe to show a client: it never
/// contains key material or the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token's typ must be at+jwt")]
    WrongType,
    #[error("the token has a critical header extension this service does not support")]
    CriticalHeader,
    #[error("the token names no signing key (kid)")]
    MissingKeyId,
    #[error("the token's signing key (kid) is unknown")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(String),
}

/// Why a token could not be issued or checked at all: the settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no signing key is configured")]
    NoKey,
    #[error("signing key `{kid}` is shorter than {MIN_KEY_BYTES} bytes")]
    TooShort { kid: String },
    #[error("token signing failed")]
    Signing,
}

/// Seconds since the Unix epoch, from the WASI wall clock inside a component.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh, unguessable token identifier: 128 random bits in hex.
pub fn new_token_id() -> Result<String, KeyError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| KeyError::Signing)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn usable(key: &SigningKey) -> Result<&SigningKey, KeyError> {
    if key.secret.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort {
            kid: key.kid.clone(),
        });
    }
    Ok(key)
}

/// Signs `claims` with `key` (the current key: the first of the settings).
pub fn sign(claims: &AccessClaims, key: &SigningKey) -> Result<String, KeyError> {
    let key = usable(key)?;
    let header = Header {
        typ: Some(ACCESS_TOKEN_TYPE.to_owned()),
        kid: Some(key.kid.clone()),
        ..Header::new(Algorithm::HS256)
    };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&key.secret))
        .map_err(|_| KeyError::Signing)
}

/// Verifies `token` against `keys` and `expect` at time `now`.
///
/// The outer `Result` fails only when the settings are unusable; the inner
/// one says whether this token is acceptable.
pub fn verify(
    token: &str,
    keys: &[SigningKey],
    expect: &Expectations<'_>,
    now: u64,
) -> Result<Result<AccessClaims, TokenRejection>, KeyError> {
    if keys.is_empty() {
        return Err(KeyError::NoKey);
    }
    for key in keys {
        usable(key)?;
    }
    let header = match jsonwebtoken::decode_header(token) {
        Ok(header) => header,
        // `alg: none` (in any spelling) fails to parse as a header at all:
        // name it for what it is rather than "malformed".
        Err(_) if names_other_algorithm(token) => return Ok(Err(TokenRejection::Algorithm)),
        Err(_) => return Ok(Err(TokenRejection::Malformed)),
    };
    // RFC 8725 §3.1: the algorithm is pinned, whatever the header claims.
    if header.alg != Algorithm::HS256 {
        return Ok(Err(TokenRejection::Algorithm));
    }
    // RFC 8725 §3.11 / RFC 9068 §4: explicit typing keeps other JWTs out.
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Ok(Err(TokenRejection::WrongType));
    }
    // RFC 7515 §4.1.11: unknown critical extensions must be refused.
    if header.crit.is_some() {
        return Ok(Err(TokenRejection::CriticalHeader));
    }
    let Some(kid) = header.kid.as_deref() else {
        return Ok(Err(TokenRejection::MissingKeyId));
    };
    let Some(key) = keys.iter().find(|k| k.kid == kid) else {
        return Ok(Err(TokenRejection::UnknownKey));
    };

    let mut validation = Validation::new(Algorithm::HS256);
    // Time claims are checked below against `now`, so tests and the
    // component agree on one clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = match jsonwebtoken::decode::<serde_json::Value>(
        token,
        &DecodingKey::from_secret(&key.secret),
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(e) => {
            return Ok(Err(match e.kind() {
                ErrorKind::InvalidSignature => TokenRejection::BadSignature,
                ErrorKind::InvalidAlgorithm => TokenRejection::Algorithm,
                _ => TokenRejection::Malformed,
            }));
        }
    };
    Ok(check_claims(claims, expect, now))
}

/// Whether the token's header is JSON naming an `alg` other than HS256.
fn names_other_algorithm(token: &str) -> bool {
    use base64::Engine;
    let Some((header, _)) = token.split_once('.') else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|header| {
            header
                .get("alg")
                .and_then(|a| a.as_str())
                .map(|a| a != "HS256")
        })
        .unwrap_or(false)
}

fn check_claims(
    claims: serde_json::Value,
    expect: &Expectations<'_>,
    now: u64,
) -> Result<AccessClaims, TokenRejection> {
    let object = claims.as_object().ok_or(TokenRejection::Malformed)?;
    for required in ["exp", "iat", "iss", "aud", "sub"] {
        if !object.contains_key(required) {
            return Err(TokenRejection::MissingClaim(required.to_owned()));
        }
    }
    let claims: AccessClaims =
        serde_json::from_value(claims).map_err(|_| TokenRejection::Malformed)?;
    let leeway = u64::from(expect.leeway_seconds.min(MAX_LEEWAY_SECONDS));
    if now >= claims.exp.saturating_add(leeway) {
        return Err(TokenRejection::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(leeway))
    {
        return Err(TokenRejection::NotYetValid);
    }
    if claims.iss != expect.issuer {
        return Err(TokenRejection::WrongIssuer);
    }
    if claims.aud != expect.audience {
        return Err(TokenRejection::WrongAudience);
    }
    if claims.sub.is_empty() {
        return Err(TokenRejection::MissingClaim("sub".to_owned()));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key(kid: &str, byte: u8) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            secret: vec![byte; 32],
        }
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            issuer: "taskflow",
            audience: "taskflow-api",
            leeway_seconds: 30,
        }
    }

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "taskflow".into(),
            aud: "taskflow-api".into(),
            sub: "alice".into(),
            exp: NOW + 600,
            iat: NOW,
            nbf: Some(NOW),
            jti: Some("id".into()),
            scope: "tasks:read".into(),
        }
    }

    fn check(token: &str) -> Result<AccessClaims, TokenRejection> {
        verify(token, &[key("k1", 7)], &expect(), NOW).unwrap()
    }

    /// Encodes a token from raw JSON parts, signed (or not) with `secret`.
    fn raw_token(header: &str, payload: &str, secret: Option<&[u8]>) -> String {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let message = format!("{}.{}", b64.encode(header), b64.encode(payload));
        let signature = match secret {
            Some(secret) => {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
                mac.update(message.as_bytes());
                b64.encode(mac.finalize().into_bytes())
            }
            None => String::new(),
        };
        format!("{message}.{signature}")
    }

    fn payload() -> String {
        serde_json::to_string(&claims()).unwrap()
    }

    #[test]
    fn signed_token_verifies() {
        let token = sign(&claims(), &key("k1", 7)).unwrap();
        assert_eq!(check(&token), Ok(claims()));
    }

    #[test]
    fn header_carries_type_and_key_id() {
        let token = sign(&claims(), &key("k1", 7)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.alg, Algorithm::HS256);
    }

    #[test]
    fn retired_key_still_verifies_by_kid() {
        let token = sign(&claims(), &key("old", 9)).unwrap();
        let keys = [key("new", 7), key("old", 9)];
        assert!(verify(&token, &keys, &expect(), NOW).unwrap().is_ok());
    }

    #[test]
    fn wrong_key_and_unknown_kid_are_refused() {
        let other_secret = sign(&claims(), &key("k1", 8)).unwrap();
        assert_eq!(check(&other_secret), Err(TokenRejection::BadSignature));
        let other_kid = sign(&claims(), &key("k2", 7)).unwrap();
        assert_eq!(check(&other_kid), Err(TokenRejection::UnknownKey));
    }

    #[test]
    fn alg_none_in_any_spelling_is_refused() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"k1"}}"#);
            let token = raw_token(&header, &payload(), None);
            assert_eq!(check(&token), Err(TokenRejection::Algorithm), "{alg}");
        }
    }

    #[test]
    fn algorithm_switching_is_refused() {
        for alg in ["HS384", "HS512", "RS256", "ES256", "EdDSA"] {
            let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"k1"}}"#);
            let token = raw_token(&header, &payload(), Some(&[7; 32]));
            assert_eq!(check(&token), Err(TokenRejection::Algorithm), "{alg}");
        }
    }

    #[test]
    fn type_must_be_access_token() {
        for typ in [Some("JWT"), Some("id_token+jwt"), None] {
            let header = match typ {
                Some(t) => format!(r#"{{"alg":"HS256","typ":"{t}","kid":"k1"}}"#),
                None => r#"{"alg":"HS256","kid":"k1"}"#.to_owned(),
            };
            let token = raw_token(&header, &payload(), Some(&[7; 32]));
            assert_eq!(check(&token), Err(TokenRejection::WrongType), "{typ:?}");
        }
        let media_type = r#"{"alg":"HS256","typ":"application/at+jwt","kid":"k1"}"#;
        assert!(check(&raw_token(media_type, &payload(), Some(&[7; 32]))).is_ok());
    }

    #[test]
    fn missing_kid_and_crit_are_refused() {
        let no_kid = raw_token(
            r#"{"alg":"HS256","typ":"at+jwt"}"#,
            &payload(),
            Some(&[7; 32]),
        );
        assert_eq!(check(&no_kid), Err(TokenRejection::MissingKeyId));
        let crit = raw_token(
            r#"{"alg":"HS256","typ":"at+jwt","kid":"k1","crit":["exp"]}"#,
            &payload(),
            Some(&[7; 32]),
        );
        assert_eq!(check(&crit), Err(TokenRejection::CriticalHeader));
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let token = sign(&claims(), &key("k1", 7)).unwrap();
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered == token {
                continue;
            }
            assert!(
                check(&tampered).is_err(),
                "byte {i} changed and still accepted"
            );
        }
    }

    #[test]
    fn empty_signature_and_garbage_are_malformed_or_bad() {
        let token = sign(&claims(), &key("k1", 7)).unwrap();
        let unsigned = format!("{}.", token.rsplit_once('.').unwrap().0);
        assert!(check(&unsigned).is_err());
        for garbage in ["", ".", "..", "a.b.c", "not a token", "a.b", "é.é.é"] {
            assert!(check(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn time_claims_respect_leeway() {
        let mut c = claims();
        c.exp = NOW - 29;
        assert!(check(&sign(&c, &key("k1", 7)).unwrap()).is_ok());
        c.exp = NOW - 30;
        assert_eq!(
            check(&sign(&c, &key("k1", 7)).unwrap()),
            Err(TokenRejection::Expired)
        );
        let mut c = claims();
        c.nbf = Some(NOW + 31);
        assert_eq!(
            check(&sign(&c, &key("k1", 7)).unwrap()),
            Err(TokenRejection::NotYetValid)
        );
        c.nbf = Some(NOW + 30);
        assert!(check(&sign(&c, &key("k1", 7)).unwrap()).is_ok());
    }

    #[test]
    fn leeway_is_capped() {
        let mut c = claims();
        c.exp = NOW - 61;
        let token = sign(&c, &key("k1", 7)).unwrap();
        let lax = Expectations {
            leeway_seconds: 3600,
            ..expect()
        };
        assert_eq!(
            verify(&token, &[key("k1", 7)], &lax, NOW).unwrap(),
            Err(TokenRejection::Expired)
        );
    }

    #[test]
    fn issuer_and_audience_must_match() {
        let mut c = claims();
        c.iss = "someone-else".into();
        assert_eq!(
            check(&sign(&c, &key("k1", 7)).unwrap()),
            Err(TokenRejection::WrongIssuer)
        );
        let mut c = claims();
        c.aud = "other-api".into();
        assert_eq!(
            check(&sign(&c, &key("k1", 7)).unwrap()),
            Err(TokenRejection::WrongAudience)
        );
    }

    #[test]
    fn required_claims_must_be_present() {
        for missing in ["exp", "iat", "iss", "aud", "sub"] {
            let mut value = serde_json::to_value(claims()).unwrap();
            value.as_object_mut().unwrap().remove(missing);
            let token = raw_token(
                r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
                &value.to_string(),
                Some(&[7; 32]),
            );
            assert_eq!(
                check(&token),
                Err(TokenRejection::MissingClaim(missing.into())),
                "{missing}"
            );
        }
    }

    #[test]
    fn short_or_missing_keys_are_a_settings_error() {
        let short = SigningKey {
            kid: "k1".into(),
            secret: vec![1; 31],
        };
        assert!(matches!(
            sign(&claims(), &short),
            Err(KeyError::TooShort { .. })
        ));
        let token = sign(&claims(), &key("k1", 7)).unwrap();
        assert!(matches!(
            verify(&token, &[short], &expect(), NOW),
            Err(KeyError::TooShort { .. })
        ));
        assert_eq!(verify(&token, &[], &expect(), NOW), Err(KeyError::NoKey));
    }

    #[test]
    fn token_ids_are_random() {
        let a = new_token_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_token_id().unwrap());
    }
}
