//! What the host reads from an access token that the policy issued or has
//! just accepted: its `jti` and `exp`, for revoking it. Nothing here
//! verifies anything; that is the policy's.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `jti` and `exp` of a JWT's payload, without verifying anything.
pub fn id_and_expiry(token: &str) -> Option<(String, i64)> {
    #[derive(serde::Deserialize)]
    struct Claims {
        jti: String,
        exp: i64,
    }
    let payload = token.split('.').nth(1)?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some((claims.jti, claims.exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"jti":"abc","exp":1800000000,"sub":"a"}"#);
        assert_eq!(
            id_and_expiry(&format!("h.{payload}.s")),
            Some(("abc".into(), 1_800_000_000))
        );
        assert_eq!(id_and_expiry("h.!!.s"), None);
        assert_eq!(id_and_expiry("nodots"), None);
        let no_jti = URL_SAFE_NO_PAD.encode(br#"{"exp":1}"#);
        assert_eq!(id_and_expiry(&format!("h.{no_jti}.s")), None);
    }
}
