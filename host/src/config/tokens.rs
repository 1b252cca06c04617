//! What issued tokens say and how long they live, and how signing keys
//! change hands.

use std::time::Duration;

use clap::Args;
use std::path::PathBuf;

use super::ConfigError;
use crate::keys::{KeyTimings, key_id};
use crate::policy::{KeyAlgorithm, PolicySettings, SigningKey};
use crate::refresh::RefreshLifetime;

/// The contract's ceiling on clock skew.
const MAX_LEEWAY_SECONDS: u64 = 60;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// File holding the signing secret (at least 32 bytes). TASKFLOW_JWT_SECRET
    /// in the environment takes precedence; with neither, a secret is generated
    /// once and kept in the data directory.
    #[arg(long, env = "TASKFLOW_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// `iss` of issued tokens, required of verified ones.
    #[arg(long, env = "TASKFLOW_ISSUER", default_value = "taskflow")]
    pub issuer: String,
    /// `aud` of issued tokens, required of verified ones.
    #[arg(long, env = "TASKFLOW_AUDIENCE", default_value = "taskflow-api")]
    pub audience: String,
    /// Access-token lifetime in seconds (1 to 4294967295).
    #[arg(long, env = "TASKFLOW_TOKEN_TTL", default_value_t = 1800)]
    pub token_ttl: u64,
    /// Refresh-token lifetime in seconds, counted again from each use; 0
    /// issues no refresh tokens.
    #[arg(long, env = "TASKFLOW_REFRESH_TOKEN_TTL", default_value_t = 14 * 24 * 3600)]
    pub refresh_token_ttl: u64,
    /// Longest a login's refresh tokens keep working, in seconds from the
    /// login, however often they are used; 0: no limit.
    #[arg(long, env = "TASKFLOW_REFRESH_TOKEN_MAX_AGE", default_value_t = 90 * 24 * 3600)]
    pub refresh_token_max_age: u64,
    /// Seconds after its use during which a used refresh token presented
    /// again (a client whose answer was lost) gets a fresh pair in place of
    /// the one it got, instead of revoking its family; 0: never.
    #[arg(long, env = "TASKFLOW_REFRESH_TOKEN_REUSE_GRACE", default_value_t = 0)]
    pub refresh_token_reuse_grace: u64,
    /// Clock skew allowed on `exp`/`nbf`, in seconds (at most 60).
    #[arg(long, env = "TASKFLOW_LEEWAY", default_value_t = 30)]
    pub leeway: u64,
    /// Seconds from `keys rotate` until the new key signs (every replica
    /// must have read it by then).
    #[arg(long, env = "TASKFLOW_KEY_ACTIVATION_DELAY", default_value_t = 10)]
    pub key_activation_delay: u64,
    /// Algorithm of the keys `keys rotate` adds: HS256 (a shared secret) or
    /// EdDSA (Ed25519; public keys published at /.well-known/jwks.json).
    /// Tokens follow the signing key's algorithm.
    #[arg(
        long,
        env = "TASKFLOW_SIGNING_ALGORITHM",
        default_value = "HS256",
        value_parser = parse_key_algorithm
    )]
    pub signing_algorithm: KeyAlgorithm,
    /// How often `serve` reads the signing keys from the database, in milliseconds.
    #[arg(long, env = "TASKFLOW_KEY_REFRESH_MS", default_value_t = 2000)]
    pub key_refresh_ms: u64,
}

impl TokenArgs {
    /// Why the settings, though usable, go against a standard: RFC 8414
    /// §2 wants the issuer to be an `https` URL (the default `taskflow`
    /// stays, for the tokens issued so far).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.issuer.starts_with("https://") {
            warnings.push(format!(
                "the issuer {:?} is not an https URL; RFC 8414 §2 wants one (e.g. --issuer https://tasks.example.com), \
                 but changing it makes every token issued so far invalid",
                self.issuer
            ));
        }
        warnings
    }

    /// How long refresh tokens live; `None` when they are off.
    pub fn refresh_lifetime(&self) -> Option<RefreshLifetime> {
        (self.refresh_token_ttl > 0).then(|| RefreshLifetime {
            idle: Duration::from_secs(self.refresh_token_ttl),
            absolute: (self.refresh_token_max_age > 0)
                .then(|| Duration::from_secs(self.refresh_token_max_age)),
            reuse_grace: Duration::from_secs(self.refresh_token_reuse_grace),
        })
    }

    /// How keys change hands: activation delay, and how long a retired key
    /// verifies (the token lifetime plus the leeway).
    pub fn key_timings(&self) -> KeyTimings {
        KeyTimings {
            activation_delay: Duration::from_secs(self.key_activation_delay),
            retention: Duration::from_secs(self.token_ttl + self.leeway),
        }
    }

    /// How often the key ring is read again.
    pub fn key_refresh(&self) -> Duration {
        Duration::from_millis(self.key_refresh_ms.max(100))
    }

    /// Every token setting whose value makes no sense, by name, with why.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (name, value) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if value.trim().is_empty() {
                problems.push((name, "must not be empty".to_owned()));
            }
        }
        if !(1..=u64::from(u32::MAX)).contains(&self.token_ttl) {
            problems.push((
                "token_ttl",
                format!("must be between 1 and {} seconds", u32::MAX),
            ));
        }
        if self.leeway > MAX_LEEWAY_SECONDS {
            problems.push((
                "leeway",
                format!("must be at most {MAX_LEEWAY_SECONDS} seconds"),
            ));
        }
        problems
    }

    /// The first of [`Self::problems`], as an error naming its setting.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some((name, why)) => Err(ConfigError::Invalid(format!("`{name}` {why}"))),
            None => Ok(()),
        }
    }

    /// Token settings, validated, signing with `secret`.
    pub fn policy_settings_with(&self, secret: Vec<u8>) -> Result<PolicySettings, ConfigError> {
        self.policy_settings_with_keys(vec![SigningKey {
            kid: key_id(&secret),
            algorithm: KeyAlgorithm::Hs256,
            secret,
        }])
    }

    /// Token settings, validated, signing with the first of `keys`.
    pub fn policy_settings_with_keys(
        &self,
        keys: Vec<SigningKey>,
    ) -> Result<PolicySettings, ConfigError> {
        self.check()?;
        Ok(PolicySettings {
            signing_keys: keys,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            token_ttl: Duration::from_secs(self.token_ttl),
            leeway: Duration::from_secs(self.leeway),
        })
    }
}

pub(super) fn parse_key_algorithm(name: &str) -> Result<KeyAlgorithm, String> {
    [KeyAlgorithm::Hs256, KeyAlgorithm::EdDsa]
        .into_iter()
        .find(|a| a.jose_name().eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("`{name}` is not HS256 or EdDSA"))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use clap::Parser;

    /// The token settings as a command line of `args` gives them.
    pub fn tokens(args: &[&str]) -> TokenArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            tokens: TokenArgs,
        }
        Only::parse_from(std::iter::once("taskflow").chain(args.iter().copied())).tokens
    }

    #[test]
    fn leeway_over_a_minute_is_refused() {
        let settings = tokens(&["--leeway", "61"]);
        assert!(matches!(
            settings.policy_settings_with(vec![0; 32]),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn a_non_https_issuer_is_warned_about() {
        let mut settings = tokens(&[]);
        assert_eq!(settings.warnings().len(), 1);
        settings.issuer = "https://tasks.example.com".into();
        assert!(settings.warnings().is_empty());
    }
}
