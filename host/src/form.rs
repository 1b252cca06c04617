//! The `application/x-www-form-urlencoded` bodies of `/token` and
//! `/revoke`. Plain functions with no tie to the rest of the host, so the
//! fuzz target (`fuzz/`) builds them alone.

use std::collections::HashMap;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("parameter `{0}` is repeated")]
    Repeated(String),
}

/// Parses the form, keeping the `known` parameters: RFC 6749 §3.2 forbids
/// sending one twice, and §3.1 says to ignore unrecognized ones.
pub fn parse(body: &[u8], known: &[&str]) -> Result<HashMap<String, String>, FormError> {
    let mut params = HashMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        if !known.contains(&name.as_ref()) {
            continue;
        }
        if params
            .insert(name.to_string(), value.into_owned())
            .is_some()
        {
            return Err(FormError::Repeated(name.into_owned()));
        }
    }
    Ok(params)
}

/// The scopes a `scope` parameter asks for. A blank one counts as none
/// sent, as some clients (Swagger UI among them) send one when no scope was
/// picked.
pub fn scopes(parameter: Option<String>) -> Option<Vec<String>> {
    parameter
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_known_parameters_are_refused_unknown_ignored() {
        assert!(parse(b"a=1&b=2", &["a", "b"]).is_ok());
        assert_eq!(parse(b"a=1&x=2&x=3", &["a"]).unwrap().len(), 1);
        assert_eq!(
            parse(b"a=1&a=2", &["a"]),
            Err(FormError::Repeated("a".into()))
        );
    }

    #[test]
    fn values_are_decoded() {
        let params = parse(b"password=p%26ss+word&scope=a%20b", &["password", "scope"]).unwrap();
        assert_eq!(params["password"], "p&ss word");
        assert_eq!(params["scope"], "a b");
    }

    #[test]
    fn blank_scope_is_none_asked() {
        assert_eq!(scopes(None), None);
        assert_eq!(scopes(Some("  ".into())), None);
        assert_eq!(
            scopes(Some(" a  b ".into())),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
    }
}
