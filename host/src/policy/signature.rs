//! Which components may serve: minisign signatures by trusted keys.
//!
//! A component comes with a detached minisign signature (`FILE.minisig`, as
//! `minisign -Sm FILE` writes it; stored with the revision on deploy). With
//! trust configured, a candidate is checked here before it is compiled, and
//! a missing, malformed, untrusted or non-matching signature refuses it.
//! There is no way to accept an unsigned component while trust is configured.

use std::path::{Path, PathBuf};

use minisign_verify::{Error as MinisignError, PublicKey, Signature};

/// Why a candidate's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature (expected a minisign signature, e.g. FILE.minisig)")]
    Missing,
    #[error("the signature is not a minisign signature: {0}")]
    Malformed(String),
    #[error("signed by a key that is not trusted (not in --component-trust)")]
    Untrusted,
    #[error("the signature does not match the component (changed after signing?)")]
    Mismatch,
}

impl SignatureError {
    /// The metric label of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Malformed(_) => "signature_malformed",
            SignatureError::Untrusted => "signature_untrusted",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// Why the trust file cannot be used; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("component trust file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("component trust file {}, line {line}: not a minisign public key", path.display())]
    BadKey { path: PathBuf, line: usize },
    #[error("component trust file {} names no public key; with trust configured every component must be signed by one of its keys", path.display())]
    Empty { path: PathBuf },
}

/// The public keys allowed to sign components.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    path: PathBuf,
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    /// Reads the trust file: minisign public keys, as `minisign.pub` files
    /// hold them (an `untrusted comment:` line, then the key), one after
    /// another, or bare keys, one per line; `#` comments and blank lines
    /// are ignored.
    pub fn read(path: &Path) -> Result<Self, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|error| TrustError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, TrustError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("untrusted comment:") {
                continue;
            }
            let key = PublicKey::from_base64(line).map_err(|_| TrustError::BadKey {
                path: path.to_owned(),
                line: index + 1,
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(TrustError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self {
            path: path.to_owned(),
            keys,
        })
    }

    /// The trust file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: an empty trust file is refused when read.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `signature` (the text of a `.minisig` file) is a valid
    /// signature of `component` by one of the trusted keys. Legacy
    /// (non-prehashed) signatures are refused, as `minisign -V` does.
    pub fn verify(&self, component: &[u8], signature: Option<&str>) -> Result<(), SignatureError> {
        let text = signature.ok_or(SignatureError::Missing)?;
        let signature =
            Signature::decode(text).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let mut outcome = SignatureError::Untrusted;
        for key in &self.keys {
            match key.verify(component, &signature, false) {
                Ok(()) => return Ok(()),
                // Another key's signature: try the next one.
                Err(MinisignError::UnexpectedKeyId) => {}
                Err(MinisignError::UnexpectedAlgorithm | MinisignError::UnsupportedAlgorithm) => {
                    outcome = SignatureError::Malformed(
                        "a legacy or unknown signature algorithm (sign with a current minisign)"
                            .into(),
                    );
                }
                Err(_) => outcome = SignatureError::Mismatch,
            }
        }
        Err(outcome)
    }
}

/// Where a component file's detached signature is: `FILE.minisig`.
pub fn signature_path(component: &Path) -> PathBuf {
    let mut name = component.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// The signature next to `component`, if there is one.
pub fn read_signature(component: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read(signature_path(component)) {
        // Not UTF-8 is kept as a signature that fails to decode.
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Signer {
        keys: minisign::KeyPair,
    }

    impl Signer {
        fn new() -> Self {
            Self {
                keys: minisign::KeyPair::generate_unencrypted_keypair().unwrap(),
            }
        }

        fn public(&self) -> String {
            self.keys.pk.to_box().unwrap().into_string()
        }

        fn sign(&self, bytes: &[u8]) -> String {
            minisign::sign(Some(&self.keys.pk), &self.keys.sk, bytes, None, None)
                .unwrap()
                .into_string()
        }
    }

    fn trust(signers: &[&Signer]) -> TrustedKeys {
        let text: String = signers.iter().map(|s| s.public()).collect();
        TrustedKeys::parse(Path::new("trust"), &text).unwrap()
    }

    #[test]
    fn a_trusted_signature_is_accepted_and_anything_else_refused() {
        let (ours, theirs, other) = (Signer::new(), Signer::new(), Signer::new());
        let trusted = trust(&[&ours, &theirs]);
        assert_eq!(trusted.len(), 2);
        let component = b"\0asm component bytes".to_vec();
        assert_eq!(
            trusted.verify(&component, Some(&ours.sign(&component))),
            Ok(())
        );
        assert_eq!(
            trusted.verify(&component, Some(&theirs.sign(&component))),
            Ok(())
        );
        assert_eq!(
            trusted.verify(&component, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            trusted.verify(&component, Some(&other.sign(&component))),
            Err(SignatureError::Untrusted)
        );
        let mut changed = component.clone();
        changed[3] ^= 1;
        assert_eq!(
            trusted.verify(&changed, Some(&ours.sign(&component))),
            Err(SignatureError::Mismatch)
        );
        for garbage in ["", "not a signature", "untrusted comment: x\n!!!\n"] {
            assert!(
                matches!(
                    trusted.verify(&component, Some(garbage)),
                    Err(SignatureError::Malformed(_))
                ),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn trust_files_take_pub_files_and_bare_keys() {
        let (a, b) = (Signer::new(), Signer::new());
        let bare = a.public().lines().nth(1).unwrap().to_owned();
        let text = format!("# release keys\n\n{bare}\n{}", b.public());
        let trusted = TrustedKeys::parse(Path::new("t"), &text).unwrap();
        assert_eq!(trusted.len(), 2);
        let bad = TrustedKeys::parse(Path::new("t"), "# c\nnot-a-key\n").unwrap_err();
        assert!(bad.to_string().contains("line 2"), "{bad}");
        let empty = TrustedKeys::parse(Path::new("t"), "# nothing\n").unwrap_err();
        assert!(matches!(empty, TrustError::Empty { .. }), "{empty}");
    }

    #[test]
    fn the_signature_sits_next_to_the_component() {
        assert_eq!(
            signature_path(Path::new("/p/policy.wasm")),
            Path::new("/p/policy.wasm.minisig")
        );
    }
}
