//! Password hashing with argon2id, in PHC string form.
//!
//! In a component the host computes it, through the `primitives` import:
//! the same parameters and PHC strings, natively, several times faster than
//! argon2 compiled to WebAssembly (docs/benchmarks.md). Natively (this
//! crate's tests, the fuzz targets) the `argon2` crate does.

#[cfg(not(target_arch = "wasm32"))]
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// Checked in place of a real hash when the user does not exist, so that an
/// unknown user costs the same argon2 work as a wrong password (no user
/// enumeration by timing). Its parameters must equal [`Argon2::default`]'s;
/// a unit test holds them together. No password matches it.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dGFza2Zsb3ctZHVtbXk$c2lRYWl6SFlvTW9PTGJmTTV4MmZuSXZ0V0ZBd2R3aEU";

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password must not be empty")]
    Empty,
    #[error("password hashing failed: {0}")]
    Argon2(String),
}

/// Hashes `password` with argon2id, default parameters and a random salt.
pub fn hash(password: &str) -> Result<String, HashError> {
    if password.is_empty() {
        return Err(HashError::Empty);
    }
    argon2id_hash(password)
}

/// Whether `password` matches `stored` (a PHC string). A stored hash that
/// does not parse never matches.
pub fn matches(password: &str, stored: &str) -> bool {
    argon2id_verify(password, stored)
}

#[cfg(target_arch = "wasm32")]
fn argon2id_hash(password: &str) -> Result<String, HashError> {
    crate::bindings::taskflow::auth::primitives::argon2id_hash(password).map_err(HashError::Argon2)
}

#[cfg(target_arch = "wasm32")]
fn argon2id_verify(password: &str, stored: &str) -> bool {
    crate::bindings::taskflow::auth::primitives::argon2id_verify(password, stored)
}

#[cfg(not(target_arch = "wasm32"))]
fn argon2id_hash(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

#[cfg(not(target_arch = "wasm32"))]
fn argon2id_verify(password: &str, stored: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), stored)
        .is_ok()
}

/// Spends the same work as [`matches`] on a real hash, then fails.
pub fn burn_equal_time(password: &str) -> bool {
    let _ = matches(password, DUMMY_HASH);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_match() {
        let hash = hash("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(matches("correct horse", &hash));
        assert!(!matches("correct hors", &hash));
    }

    #[test]
    fn each_hash_has_its_own_salt() {
        assert_ne!(hash("same").unwrap(), hash("same").unwrap());
    }

    #[test]
    fn empty_password_is_refused() {
        assert!(matches!(hash(""), Err(HashError::Empty)));
    }

    #[test]
    fn garbage_hash_never_matches() {
        assert!(!matches("x", "not a phc string"));
        assert!(!matches("", ""));
    }

    #[test]
    fn dummy_hash_costs_what_a_real_one_does() {
        let real = hash("anything").unwrap();
        let params = |phc: &str| phc.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(params(DUMMY_HASH), params(&real));
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!burn_equal_time("anything"));
    }
}
