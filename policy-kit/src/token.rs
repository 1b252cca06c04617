//! Access tokens in the JWT profile of RFC 9068, signed with HS256 or EdDSA
//! (Ed25519) and verified as RFC 8725 asks: the algorithm pinned to the key
//! the `kid` names, `typ` checked, every time claim checked, required claims
//! present.
//!
//! `jsonwebtoken` encodes tokens, reads their header and claims, and checks
//! signatures, with the crypto provider in `token/provider.rs`. What it
//! leaves to its caller is here: the size cap, `typ`, `crit`, the key a
//! `kid` names and that key's algorithm, the required claims, and the time
//! claims, checked against the `now` given (`jsonwebtoken` reads the clock
//! itself) with the leeway capped.

mod ed25519;
mod hs256;
mod provider;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::{KeyAlgorithm, SigningKey};

/// RFC 9068 §2.1: the `typ` of a JWT access token.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
pub const MIN_KEY_BYTES: usize = 32;
/// RFC 8032 §5.1.5: an Ed25519 private key is a 32-byte seed.
pub const ED25519_SEED_BYTES: usize = 32;
/// The largest clock skew the policy accepts, whatever the settings say.
pub const MAX_LEEWAY_SECONDS: u32 = 60;
/// Longest token looked at. Ours are under 1 KiB; anything far longer is
/// refused before it is decoded, so a huge token costs no parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;

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
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
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
    #[error("Ed25519 key `{kid}` is not a {ED25519_SEED_BYTES}-byte seed")]
    BadSeed { kid: String },
    #[error("token signing failed")]
    Signing,
    #[error("the JWT library is set up with a crypto provider other than the policy's")]
    Provider,
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
    let kid = || key.kid.clone();
    match key.algorithm {
        KeyAlgorithm::Hs256 if key.secret.len() < MIN_KEY_BYTES => {
            Err(KeyError::TooShort { kid: kid() })
        }
        KeyAlgorithm::EdDsa if key.secret.len() != ED25519_SEED_BYTES => {
            Err(KeyError::BadSeed { kid: kid() })
        }
        _ => Ok(key),
    }
}

/// The JOSE `alg` of tokens signed with a key of `algorithm`.
pub fn jose_name(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::Hs256 => "HS256",
        KeyAlgorithm::EdDsa => "EdDSA",
    }
}

fn jose_algorithm(algorithm: KeyAlgorithm) -> Algorithm {
    match algorithm {
        KeyAlgorithm::Hs256 => Algorithm::HS256,
        KeyAlgorithm::EdDsa => Algorithm::EdDSA,
    }
}

fn ed25519_seed(key: &SigningKey) -> Option<&[u8; ED25519_SEED_BYTES]> {
    key.secret.as_slice().try_into().ok()
}

/// The public key of an Ed25519 signing key.
fn ed25519_public(key: &SigningKey) -> Option<ed25519::PublicKey> {
    ed25519_seed(key).and_then(ed25519::public_key)
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Signs `claims` with `key` (the current key: the first of the settings).
pub fn sign(claims: &AccessClaims, key: &SigningKey) -> Result<String, KeyError> {
    let key = usable(key)?;
    if !provider::installed() {
        return Err(KeyError::Provider);
    }
    let encoding_key = match key.algorithm {
        KeyAlgorithm::Hs256 => {
            EncodingKey::from_secret(&key.secret).map_err(|_| KeyError::Signing)?
        }
        KeyAlgorithm::EdDsa => {
            let seed = ed25519_seed(key).ok_or(KeyError::Signing)?;
            EncodingKey::from_ed_der(&provider::ed25519_pkcs8(seed))
        }
    };
    let mut header = Header::new(jose_algorithm(key.algorithm));
    header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &encoding_key).map_err(|_| KeyError::Signing)
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
    if !provider::installed() {
        return Err(KeyError::Provider);
    }
    Ok(verify_with(token, keys, expect, now))
}

fn verify_with(
    token: &str,
    keys: &[SigningKey],
    expect: &Expectations<'_>,
    now: u64,
) -> Result<AccessClaims, TokenRejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenRejection::TooLong);
    }
    // Header fields other than those below (`jwk`, `jku`, `x5u`, ...) are
    // ignored: keys come only from the host's settings.
    let header = jsonwebtoken::decode_header(token).map_err(|_| unreadable_header(token))?;
    // RFC 8725 §3.1: only the algorithms of our keys; every other algorithm
    // is refused before any key is touched. Below, the algorithm must also
    // be the named key's own.
    if !matches!(header.alg, Algorithm::HS256 | Algorithm::EdDSA) {
        return Err(TokenRejection::Algorithm);
    }
    // RFC 8725 §3.11 / RFC 9068 §4: explicit typing keeps other JWTs out.
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(TokenRejection::WrongType);
    }
    // RFC 7515 §4.1.11: unknown critical extensions must be refused, and
    // this service understands none.
    if header.crit.is_some() {
        return Err(TokenRejection::CriticalHeader);
    }
    let kid = header.kid.as_deref().ok_or(TokenRejection::MissingKeyId)?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or(TokenRejection::UnknownKey)?;
    // An HS256 token naming an Ed25519 key (whose public half is published)
    // must not be checked as an HMAC under that key, nor the other way round.
    if header.alg != jose_algorithm(key.algorithm) {
        return Err(TokenRejection::Algorithm);
    }

    // The header is read once, above, and the rest in the steps of
    // `jsonwebtoken::decode` without it: `decode` would read the header a
    // second time (decisions 19% slower, docs/benchmarks.md) and check the
    // time claims against its own clock. The signature is checked with the
    // named key's algorithm, and the claims are read only once it holds.
    let decoding_key = decoding_key(key).ok_or(TokenRejection::BadSignature)?;
    let (signed, signature) = token.rsplit_once('.').ok_or(TokenRejection::Malformed)?;
    match jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &decoding_key, header.alg) {
        Ok(true) => {}
        Ok(false) => return Err(TokenRejection::BadSignature),
        Err(e) if matches!(e.kind(), ErrorKind::Base64(_)) => {
            return Err(TokenRejection::Malformed);
        }
        Err(_) => return Err(TokenRejection::BadSignature),
    }
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<ReceivedClaims>(token)
        .map_err(|_| TokenRejection::Malformed)?;
    check_claims(claims, expect, now)
}

/// The public half of `key` for verifying: for HS256 the secret itself.
fn decoding_key(key: &SigningKey) -> Option<DecodingKey> {
    match key.algorithm {
        KeyAlgorithm::Hs256 => DecodingKey::from_secret(&key.secret).ok(),
        // `jsonwebtoken` holds an Ed25519 public key as its 32 bytes.
        KeyAlgorithm::EdDsa => Some(DecodingKey::from_ed_der(&ed25519_public(key)?)),
    }
}

/// Why a header `jsonwebtoken` could not read is refused.
///
/// It reads `alg` into its enumeration of algorithms, so a name not in it
/// (`none` in any spelling, RFC 8725 §2.1) fails as unreadable JSON would.
/// Such a token is refused for its algorithm, as RFC 8725 §3.1 has it.
fn unreadable_header(token: &str) -> TokenRejection {
    #[derive(Deserialize)]
    struct Named {
        alg: String,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return TokenRejection::Malformed;
    };
    let named = B64
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice::<Named>(&json).ok());
    match named {
        Some(named) if named.alg.parse::<Algorithm>().is_err() => TokenRejection::Algorithm,
        _ => TokenRejection::Malformed,
    }
}

/// Claims as received: the required ones optional here, so that a missing
/// one is named rather than reported as malformed. A duplicated key is an
/// error of the JSON parser, so `{"sub":"a","sub":"b"}` never verifies.
#[derive(Deserialize)]
struct ReceivedClaims {
    iss: Option<String>,
    aud: Option<String>,
    sub: Option<String>,
    exp: Option<u64>,
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    scope: String,
}

fn check_claims(
    claims: ReceivedClaims,
    expect: &Expectations<'_>,
    now: u64,
) -> Result<AccessClaims, TokenRejection> {
    let missing = |name: &str| TokenRejection::MissingClaim(name.to_owned());
    let exp = claims.exp.ok_or_else(|| missing("exp"))?;
    let iat = claims.iat.ok_or_else(|| missing("iat"))?;
    let iss = claims.iss.ok_or_else(|| missing("iss"))?;
    let aud = claims.aud.ok_or_else(|| missing("aud"))?;
    let sub = claims
        .sub
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("sub"))?;
    let leeway = u64::from(expect.leeway_seconds.min(MAX_LEEWAY_SECONDS));
    if now >= exp.saturating_add(leeway) {
        return Err(TokenRejection::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(leeway))
    {
        return Err(TokenRejection::NotYetValid);
    }
    if iss != expect.issuer {
        return Err(TokenRejection::WrongIssuer);
    }
    if aud != expect.audience {
        return Err(TokenRejection::WrongAudience);
    }
    Ok(AccessClaims {
        iss,
        aud,
        sub,
        exp,
        iat,
        nbf: claims.nbf,
        jti: claims.jti,
        scope: claims.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key(kid: &str, byte: u8) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            algorithm: KeyAlgorithm::Hs256,
            secret: vec![byte; 32],
        }
    }

    fn ed_key(kid: &str, byte: u8) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            algorithm: KeyAlgorithm::EdDsa,
            secret: vec![byte; 32],
        }
    }

    /// The public half of an Ed25519 key, as a JWK's `x` holds it.
    fn public_x(key: &SigningKey) -> String {
        B64.encode(ed25519_public(key).unwrap())
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
        let header = jsonwebtoken_rust_crypto::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.alg, jsonwebtoken_rust_crypto::Algorithm::HS256);
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
            algorithm: KeyAlgorithm::Hs256,
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
    fn interoperates_with_jsonwebtoken() {
        use jsonwebtoken_rust_crypto::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
        let ours = sign(&claims(), &key("k1", 7)).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.set_audience(&["taskflow-api"]);
        let theirs_read = jsonwebtoken_rust_crypto::decode::<AccessClaims>(
            &ours,
            &DecodingKey::from_secret(&[7; 32]),
            &validation,
        )
        .unwrap();
        assert_eq!(theirs_read.claims, claims());

        let header = Header {
            typ: Some("at+jwt".into()),
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        };
        let theirs = jsonwebtoken_rust_crypto::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        assert_eq!(check(&theirs), Ok(claims()));
    }

    #[test]
    fn ed25519_tokens_verify_and_say_eddsa() {
        let token = sign(&claims(), &ed_key("e1", 3)).unwrap();
        let header = jsonwebtoken_rust_crypto::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken_rust_crypto::Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some("e1"));
        let keys = [key("k1", 7), ed_key("e1", 3)];
        assert_eq!(verify(&token, &keys, &expect(), NOW).unwrap(), Ok(claims()));
        // Another Ed25519 key under the same kid does not verify it.
        assert_eq!(
            verify(&token, &[ed_key("e1", 4)], &expect(), NOW).unwrap(),
            Err(TokenRejection::BadSignature)
        );
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(verify(&tampered, &keys, &expect(), NOW).unwrap().is_err());
        }
    }

    #[test]
    fn a_token_must_use_its_keys_algorithm() {
        let ed = ed_key("e1", 3);
        // HS256 keyed with the published Ed25519 public key: the classic
        // confusion attack. The kid names an Ed25519 key, so it is refused
        // before any HMAC is computed.
        let public = ed25519_public(&ed).unwrap();
        let forged = raw_token(
            r#"{"alg":"HS256","typ":"at+jwt","kid":"e1"}"#,
            &payload(),
            Some(&public),
        );
        let keys = [key("k1", 7), ed.clone()];
        assert_eq!(
            verify(&forged, &keys, &expect(), NOW).unwrap(),
            Err(TokenRejection::Algorithm)
        );
        // And an EdDSA header on an HS256 key's kid.
        let mut relabelled = sign(&claims(), &ed).unwrap();
        let header = B64.encode(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}"#);
        let rest = relabelled.split_off(relabelled.find('.').unwrap());
        assert_eq!(
            verify(&format!("{header}{rest}"), &keys, &expect(), NOW).unwrap(),
            Err(TokenRejection::Algorithm)
        );
    }

    #[test]
    fn ed25519_seeds_must_be_32_bytes() {
        let mut bad = ed_key("e1", 3);
        bad.secret.push(0);
        assert!(matches!(
            sign(&claims(), &bad),
            Err(KeyError::BadSeed { .. })
        ));
        bad.secret.truncate(31);
        assert!(matches!(
            sign(&claims(), &bad),
            Err(KeyError::BadSeed { .. })
        ));
    }

    #[test]
    fn ed25519_interoperates_with_jsonwebtoken() {
        use jsonwebtoken_rust_crypto::{Algorithm, DecodingKey, Validation};
        let key = ed_key("e1", 3);
        let ours = sign(&claims(), &key).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.set_audience(&["taskflow-api"]);
        let public = DecodingKey::from_ed_components(&public_x(&key)).unwrap();
        let read =
            jsonwebtoken_rust_crypto::decode::<AccessClaims>(&ours, &public, &validation).unwrap();
        assert_eq!(read.claims, claims());
    }

    #[test]
    fn duplicate_claims_are_refused() {
        let payload = payload().replacen(
            "\"sub\":\"alice\"",
            "\"sub\":\"alice\",\"sub\":\"admin\"",
            1,
        );
        let token = raw_token(
            r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
            &payload,
            Some(&[7; 32]),
        );
        assert_eq!(check(&token), Err(TokenRejection::Malformed));
    }

    #[test]
    fn header_keys_are_never_taken_from_the_token() {
        for extra in [
            r#""jwk":{"kty":"oct","k":"AAAA"}"#,
            r#""jku":"http://attacker/jwks""#,
            r#""x5u":"http://attacker/x5""#,
        ] {
            let header = format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"k1",{extra}}}"#);
            let forged = raw_token(&header, &payload(), Some(&[0; 32]));
            assert_eq!(check(&forged), Err(TokenRejection::BadSignature), "{extra}");
            let genuine = raw_token(&header, &payload(), Some(&[7; 32]));
            assert!(check(&genuine).is_ok(), "{extra}");
        }
    }

    #[test]
    fn token_ids_are_random() {
        let a = new_token_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_token_id().unwrap());
    }
}
