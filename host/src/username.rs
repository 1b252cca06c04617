//! Usernames as RFC 8265 (PRECIS) prescribes, and the least a password is.
//!
//! A name is stored, and looked up at login, in the form the
//! `UsernameCaseMapped` profile enforces: fullwidth and halfwidth letters
//! mapped to their usual width, lower case, Unicode NFC; so `Alice`,
//! `ALICE`, `ａｌｉｃｅ` and `alice` are one account. Characters the
//! profile disallows are refused outright: spaces, controls, invisible
//! characters (U+200B, U+FEFF, U+00AD, ...), bidi overrides (U+202E),
//! symbols outside ASCII, unassigned code points; and so is a name whose
//! right-to-left text breaks RFC 5893's bidi rule.
//!
//! Names stored before this rule may not be in that form. Each still
//! signs in as stored, typed exactly so, unless a canonical name it maps
//! onto exists (that account wins); `taskflow user list` marks them.

use std::borrow::Cow;

use precis_profiles::UsernameCaseMapped;
use precis_profiles::precis_core::profile::PrecisFastInvocation;
use precis_profiles::precis_core::{CodepointInfo, DerivedPropertyValue, Error};

/// The most characters a name has, once in canonical form.
pub const MAX_USERNAME_CHARS: usize = 64;
/// NIST SP 800-63B §3.1.1.2: at least 8 characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Why a name cannot be a username.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("a username must not be empty")]
    Empty,
    #[error("a username has at most {MAX_USERNAME_CHARS} characters")]
    TooLong,
    #[error(
        "a username must not contain {character} (character {position}): spaces, control, \
         invisible and bidi-control characters, and symbols outside ASCII are not allowed (RFC 8265)"
    )]
    Disallowed { character: String, position: usize },
    #[error(
        "this username mixes right-to-left and left-to-right text in a way RFC 8265 does not allow"
    )]
    Bidi,
}

/// `name` in canonical form (RFC 8265 §3.3, `UsernameCaseMapped`), or why
/// it cannot be a username.
pub fn canonical(name: &str) -> Result<String, UsernameError> {
    if name.is_empty() {
        return Err(UsernameError::Empty);
    }
    let enforced = UsernameCaseMapped::enforce(name).map_err(|e| match e {
        Error::BadCodepoint(CodepointInfo {
            cp,
            position,
            property,
        }) => {
            // Shown only if it shows as itself: never an invisible or
            // bidi-control character, which would hide in the message.
            let named = char::from_u32(cp)
                .filter(|_| property != DerivedPropertyValue::Unassigned)
                .filter(|c| c.is_alphanumeric() || c.is_ascii_graphic())
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            UsernameError::Disallowed {
                character: format!("U+{cp:04X}{named}"),
                position: position + 1,
            }
        }
        // The only other refusal of this profile once every code point is
        // allowed: the bidi rule (or nothing left, which needs `name` empty).
        _ => UsernameError::Bidi,
    })?;
    let enforced = match enforced {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => s,
    };
    if enforced.chars().count() > MAX_USERNAME_CHARS {
        return Err(UsernameError::TooLong);
    }
    Ok(enforced)
}

/// A stored name as it can be shown safely on a terminal or in a log
/// line: invisible, control and bidi characters escaped, at most
/// [`MAX_USERNAME_CHARS`] characters (then `...`).
pub fn printable(name: &str) -> String {
    let mut shown: String = name
        .chars()
        .take(MAX_USERNAME_CHARS)
        .flat_map(|c| {
            let plain = c.is_alphanumeric() || (c.is_ascii_graphic() && c != '\\');
            let escaped: Vec<char> = if plain {
                vec![c]
            } else {
                c.escape_unicode().collect()
            };
            escaped
        })
        .collect();
    if name.chars().count() > MAX_USERNAME_CHARS {
        shown.push_str("...");
    }
    shown
}

/// Refuses a password under [`MIN_PASSWORD_CHARS`] characters.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "a password has at least {MIN_PASSWORD_CHARS} characters (NIST SP 800-63B); a passphrase of a few words is best"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_the_same_are_one_name() {
        for same in [
            "alice",
            "Alice",
            "ALICE",
            "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}", // fullwidth
            "\u{ff21}lice",
        ] {
            assert_eq!(canonical(same).unwrap(), "alice", "{same:?}");
        }
        // NFC and NFD spellings of one name.
        let nfc = canonical("jos\u{e9}").unwrap();
        assert_eq!(canonical("jose\u{301}").unwrap(), nfc);
        assert_eq!(canonical("JOS\u{c9}").unwrap(), nfc);
        assert_eq!(canonical("a@b.example").unwrap(), "a@b.example");
    }

    #[test]
    fn invisible_and_bidi_characters_are_refused() {
        for (name, character) in [
            ("bob\u{200b}", "U+200B"),
            ("\u{feff}bob", "U+FEFF"),
            ("bo\u{ad}b", "U+00AD"),
            ("bob\u{202e}", "U+202E"),
            ("bob\u{2066}", "U+2066"),
            ("a b", "U+0020"),
            ("a\nb", "U+000A"),
            ("a\u{7f}", "U+007F"),
            ("\u{2603}", "U+2603"),
        ] {
            let error = canonical(name).unwrap_err();
            assert!(
                matches!(&error, UsernameError::Disallowed { character: c, .. } if c.starts_with(character)),
                "{name:?}: {error}"
            );
            assert!(!error.to_string().contains('\u{202e}'), "{error}");
        }
        assert_eq!(canonical(""), Err(UsernameError::Empty));
        assert_eq!(canonical(&"x".repeat(65)), Err(UsernameError::TooLong));
        assert!(canonical(&"x".repeat(64)).is_ok());
        // Right-to-left text is fine on its own, not mixed against the rule.
        assert!(canonical("\u{5d0}\u{5d1}").is_ok());
        assert_eq!(canonical("\u{5d0}a"), Err(UsernameError::Bidi));
    }

    #[test]
    fn printable_names_escape_what_hides() {
        assert_eq!(printable("alice"), "alice");
        assert_eq!(printable("jos\u{e9}"), "jos\u{e9}");
        assert_eq!(printable("bob\u{202e}"), "bob\\u{202e}");
        assert_eq!(printable("a b\n"), "a\\u{20}b\\u{a}");
        assert_eq!(printable(&"x".repeat(70)), format!("{}...", "x".repeat(64)));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        // Characters, not bytes.
        assert!(check_password("\u{e9}\u{e9}\u{e9}\u{e9}").is_err());
    }
}
