//! The signing secret: read from the environment or a file of its own
//! only, so it never shows in a process list, `--help` or a config file;
//! with neither, generated once into the data directory.

use std::path::{Path, PathBuf};

use super::ConfigError;
use super::tokens::TokenArgs;
use crate::files;
use crate::policy::PolicySettings;

/// The variable that may hold the signing secret itself.
const SECRET_VARIABLE: &str = "TASKFLOW_JWT_SECRET";
/// Name of the generated signing secret inside the data directory.
const SECRET_FILE: &str = "jwt-secret";
/// HS256 keys shorter than the hash output are refused (RFC 7518 §3.2).
pub(super) const MIN_SECRET_BYTES: usize = 32;

/// Where the signing secret is read from (never what it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `TASKFLOW_JWT_SECRET`.
    Environment,
    /// The file named by `--jwt-secret-file`.
    File(PathBuf),
    /// Generated once into the data directory (this file).
    Generated(PathBuf),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Environment => write!(f, "the {SECRET_VARIABLE} variable"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Generated(path) => write!(f, "generated file {}", path.display()),
        }
    }
}

impl TokenArgs {
    /// Where the signing secret comes from.
    pub fn secret_source(&self, data_dir: &Path) -> SecretSource {
        if std::env::var_os(SECRET_VARIABLE).is_some() {
            SecretSource::Environment
        } else if let Some(path) = &self.jwt_secret_file {
            SecretSource::File(path.clone())
        } else {
            SecretSource::Generated(data_dir.join(SECRET_FILE))
        }
    }

    /// The signing secret, without generating one: `Ok(None)` when it would be.
    pub fn existing_signing_secret(&self, data_dir: &Path) -> Result<Option<Vec<u8>>, ConfigError> {
        match self.secret_source(data_dir) {
            SecretSource::Generated(path) if !path.exists() => Ok(None),
            _ => self.master_secret(data_dir).map(Some),
        }
    }

    /// The signing secret where it exists already; an error saying where it
    /// is expected otherwise. Commands other than `serve` never create one:
    /// a mistyped `--data-dir` must not leave a secret of its own behind.
    pub fn required_master_secret(&self, data_dir: &Path) -> Result<Vec<u8>, ConfigError> {
        match self.secret_source(data_dir) {
            SecretSource::Generated(path) if !path.exists() => {
                Err(ConfigError::NoSecret(path.display().to_string()))
            }
            _ => self.master_secret(data_dir),
        }
    }

    /// Token settings and the signing key, validated.
    pub fn policy_settings(&self, data_dir: &Path) -> Result<PolicySettings, ConfigError> {
        self.check()?;
        self.policy_settings_with(self.master_secret(data_dir)?)
    }

    /// The signing secret (generated on first use if none is configured):
    /// the only key until `keys rotate`, then what unseals the stored keys.
    pub fn master_secret(&self, data_dir: &Path) -> Result<Vec<u8>, ConfigError> {
        let path = match self.secret_source(data_dir) {
            SecretSource::Environment => {
                let secret = std::env::var_os(SECRET_VARIABLE)
                    .unwrap_or_default()
                    .into_encoded_bytes();
                return check_length(secret, SECRET_VARIABLE);
            }
            SecretSource::File(path) => return read_secret_file(&path),
            SecretSource::Generated(path) => path,
        };
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh)
            .map_err(|e| ConfigError::Invalid(format!("no randomness for a secret: {e}")))?;
        let created =
            files::create_private(&path, hex::encode(fresh).as_bytes()).map_err(|error| {
                ConfigError::SecretFile {
                    path: path.clone(),
                    error,
                }
            })?;
        if created {
            tracing::info!(file = %path.display(), "generated a new signing secret");
        }
        read_secret_file(&path)
    }
}

/// A random secret standing in for one still to be generated, where a
/// component only has to show it can sign and verify (checks that must
/// write nothing).
pub fn stand_in_secret() -> Result<Vec<u8>, ConfigError> {
    let mut stand_in = vec![0u8; MIN_SECRET_BYTES];
    getrandom::fill(&mut stand_in)
        .map_err(|e| ConfigError::Invalid(format!("no randomness for a secret: {e}")))?;
    Ok(stand_in)
}

fn check_length(secret: Vec<u8>, source_name: &str) -> Result<Vec<u8>, ConfigError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::ShortSecret {
            source_name: source_name.to_owned(),
            len: secret.len(),
        });
    }
    Ok(secret)
}

/// Reads a secret file; one trailing line break is not part of the secret.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let error = |error| ConfigError::SecretFile {
        path: path.to_owned(),
        error,
    };
    let mut secret = std::fs::read(path).map_err(error)?;
    if files::readable_by_others(path).map_err(error)? {
        tracing::warn!(file = %path.display(), "signing secret file is readable by other users; chmod 600 it");
    }
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    check_length(secret, &format!("file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::super::tokens::tests::tokens;
    use super::*;

    #[test]
    fn generated_secret_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let settings = tokens(&[]);
        let first = settings.master_secret(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(settings.master_secret(dir.path()).unwrap(), first);
        assert!(!files::readable_by_others(&dir.path().join(SECRET_FILE)).unwrap());
    }

    #[test]
    fn short_secret_file_is_refused_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "tooshort\n").unwrap();
        let mut settings = tokens(&[]);
        settings.jwt_secret_file = Some(file);
        let message = read_secret_file(settings.jwt_secret_file.as_ref().unwrap())
            .unwrap_err()
            .to_string();
        assert!(message.contains("8 bytes"), "{message}");
        assert!(!message.contains("tooshort"));
    }
}
