//! Scope strings (RFC 6749 §3.3) and the Bearer credentials (RFC 6750 §2.1).

/// Splits a space-separated scope string into its scopes.
pub fn split(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_owned).collect()
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_valid_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// The scopes of `required` that `held` lacks.
pub fn missing<'a>(required: &'a [String], held: &[String]) -> Vec<&'a str> {
    required
        .iter()
        .filter(|r| !held.contains(r))
        .map(String::as_str)
        .collect()
}

/// What an `Authorization` header holds, as far as the Bearer scheme goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No header, or one of another scheme (RFC 6750 §3.1: no error then).
    None,
    /// The Bearer scheme with nothing usable after it.
    Malformed,
    Bearer(&'a str),
}

/// Reads a Bearer token from an `Authorization` header value; the scheme
/// name is case-insensitive (RFC 7235 §2.1).
pub fn bearer(authorization: Option<&str>) -> Credentials<'_> {
    let Some(value) = authorization else {
        return Credentials::None;
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::None;
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || token.contains(char::is_whitespace) {
        Credentials::Malformed
    } else {
        Credentials::Bearer(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ignores_extra_spaces() {
        assert_eq!(split("  a  b "), vec!["a", "b"]);
        assert!(split("").is_empty());
    }

    #[test]
    fn scope_token_grammar() {
        assert!(is_valid_token("tasks:read"));
        for bad in ["", "a\"b", "a\\b", "é", "a b", "\u{7f}"] {
            assert!(!is_valid_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn missing_scopes() {
        let required = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(missing(&required, &["b".to_owned()]), vec!["a"]);
        assert!(missing(&required, &["a".into(), "b".into(), "c".into()]).is_empty());
        assert!(missing(&[], &[]).is_empty());
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(None), Credentials::None);
        assert_eq!(bearer(Some("Basic dXNlcjpwYXNz")), Credentials::None);
        assert_eq!(bearer(Some("")), Credentials::None);
        assert_eq!(bearer(Some("Bearer abc")), Credentials::Bearer("abc"));
        assert_eq!(bearer(Some("bEaReR   abc ")), Credentials::Bearer("abc"));
        assert_eq!(bearer(Some("Bearer")), Credentials::Malformed);
        assert_eq!(bearer(Some("Bearer ")), Credentials::Malformed);
        assert_eq!(bearer(Some("Bearer a b")), Credentials::Malformed);
        assert_eq!(bearer(Some("Bearerabc")), Credentials::None);
    }
}
