//! The crypto provider `jsonwebtoken` signs and verifies with: HS256 by
//! `token::hs256` and EdDSA (Ed25519) by `token::ed25519`, and no other
//! algorithm. `jsonwebtoken` is built with neither of its own backends
//! (`rust_crypto`, `aws_lc_rs`), so this is the only signing code it can
//! reach, and no RSA or ECDSA code is linked into a component.

use std::sync::OnceLock;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{ED25519_SEED_BYTES, MIN_KEY_BYTES, ed25519, hs256};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: no_rsa,
        rsa_pub_components_from_public_key: no_rsa,
        ec_pub_components_from_private_key: no_ec,
        ed_pub_components_from_private_key: ed_public_key,
        compute_digest,
    },
};

/// Installs the provider on first use, and says whether `jsonwebtoken`
/// uses it.
///
/// `jsonwebtoken` keeps its provider in a static, and every component
/// instance has statics of its own: hence installing lazily, on the way to
/// every encode and decode, rather than once at start-up. In a native
/// process, other code may have installed another provider first: then
/// nothing is signed or verified ([`super::KeyError::Provider`]) rather
/// than done by code other than this.
pub(super) fn installed() -> bool {
    static OURS: OnceLock<bool> = OnceLock::new();
    *OURS.get_or_init(|| {
        // An error means a provider is installed already: which one is
        // checked next.
        let _ = PROVIDER.install_default();
        CryptoProvider::try_get_default().is_some_and(|p| std::ptr::eq(p, &PROVIDER))
    })
}

/// RFC 8410 §7: an Ed25519 private key in PKCS#8 (v1, no public key) is
/// this fixed prefix and the 32-byte seed. `EncodingKey::from_ed_der`
/// documents PKCS#8 DER as its input; with a single possible shape, a
/// comparison takes the place of a DER parser.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The PKCS#8 DER of the Ed25519 key with `seed`, for `EncodingKey::from_ed_der`.
pub(super) fn ed25519_pkcs8(seed: &[u8; ED25519_SEED_BYTES]) -> Zeroizing<Vec<u8>> {
    let mut der = Zeroizing::new(Vec::with_capacity(ED25519_PKCS8_PREFIX.len() + seed.len()));
    der.extend_from_slice(&ED25519_PKCS8_PREFIX);
    der.extend_from_slice(seed);
    der
}

fn ed25519_seed(der: &[u8]) -> Result<&[u8; ED25519_SEED_BYTES]> {
    der.strip_prefix(ED25519_PKCS8_PREFIX.as_slice())
        .and_then(|seed| seed.try_into().ok())
        .ok_or_else(|| ErrorKind::InvalidEddsaKey.into())
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.family(), key.as_bytes())?)),
        Algorithm::EdDSA => {
            if key.family() != AlgorithmFamily::Ed {
                return Err(ErrorKind::InvalidKeyFormat.into());
            }
            let seed = ed25519_seed(key.as_bytes())?;
            Ok(Box::new(Ed25519Signer(Zeroizing::new(*seed))))
        }
        _ => Err(ErrorKind::UnsupportedAlgorithm.into()),
    }
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.family(), key.try_get_as_bytes()?)?)),
        Algorithm::EdDSA => {
            if key.family() != AlgorithmFamily::Ed {
                return Err(ErrorKind::InvalidKeyFormat.into());
            }
            // As `jsonwebtoken` holds Ed25519 public keys (`from_ed_components`,
            // `from_ed_der`): the 32 bytes of RFC 8032 §5.1.2, nothing around them.
            let public: &[u8; 32] = key
                .try_get_as_bytes()?
                .try_into()
                .map_err(|_| ErrorKind::InvalidEddsaKey)?;
            Ok(Box::new(Ed25519Verifier(*public)))
        }
        _ => Err(ErrorKind::UnsupportedAlgorithm.into()),
    }
}

/// HMAC-SHA256 under one key, for signing and verifying alike.
struct Hs256(Zeroizing<Vec<u8>>);

impl Hs256 {
    fn new(family: AlgorithmFamily, secret: &[u8]) -> Result<Self> {
        // RFC 7518 §3.2: a key shorter than the hash output is refused here
        // too, not only by the settings check before.
        if family != AlgorithmFamily::Hmac || secret.len() < MIN_KEY_BYTES {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        Ok(Self(Zeroizing::new(secret.to_vec())))
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        hs256::tag(&self.0, message).ok_or_else(signature::Error::new)
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), signature::Error> {
        // Constant-time comparison.
        if hs256::verify(&self.0, message, signature) {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

/// Ed25519 under one private key: its seed.
struct Ed25519Signer(Zeroizing<[u8; ED25519_SEED_BYTES]>);

impl Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        ed25519::sign(&self.0, message).ok_or_else(signature::Error::new)
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// Ed25519 under one public key.
struct Ed25519Verifier(ed25519::PublicKey);

impl Verifier<Vec<u8>> for Ed25519Verifier {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), signature::Error> {
        // Strict: no malleable signatures, no small-order keys.
        if ed25519::verify(&self.0, message, signature) {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for Ed25519Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

// The key utilities serve `jsonwebtoken`'s JWK code: the Ed25519 public key
// of a private one, and SHA-256 thumbprints. The others are refused with an
// error, where `KeyUtils::new_unimplemented` would panic.

fn no_rsa(_: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

fn no_ec(_: &[u8], _: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

fn ed_public_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => {
            let public =
                ed25519::public_key(ed25519_seed(der)?).ok_or(ErrorKind::InvalidEddsaKey)?;
            Ok(public.to_vec())
        }
        _ => Err(ErrorKind::UnsupportedAlgorithm.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    match hash {
        ThumbprintHash::SHA256 => Ok(Sha256::digest(data).to_vec()),
        _ => Err(ErrorKind::UnsupportedAlgorithm.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_provider_is_ours() {
        assert!(installed());
        assert!(CryptoProvider::try_get_default().is_some_and(|p| std::ptr::eq(p, &PROVIDER)));
    }

    #[test]
    fn other_algorithms_are_refused() {
        assert!(installed());
        let secret = EncodingKey::from_secret(&[7; 32]).unwrap();
        let public = DecodingKey::from_secret(&[7; 32]).unwrap();
        for algorithm in [
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
        ] {
            assert!(signer(&algorithm, &secret).is_err(), "{algorithm:?}");
            assert!(verifier(&algorithm, &public).is_err(), "{algorithm:?}");
        }
    }

    #[test]
    fn keys_of_another_family_or_too_short_are_refused() {
        let hmac = EncodingKey::from_secret(&[7; 32]).unwrap();
        assert!(signer(&Algorithm::EdDSA, &hmac).is_err());
        let ed = EncodingKey::from_ed_der(&ed25519_pkcs8(&[3; 32]));
        assert!(signer(&Algorithm::HS256, &ed).is_err());
        assert!(signer(&Algorithm::EdDSA, &ed).is_ok());
        let short = DecodingKey::from_secret(&[7; MIN_KEY_BYTES - 1]).unwrap();
        assert!(verifier(&Algorithm::HS256, &short).is_err());
        let not_pkcs8 = EncodingKey::from_ed_der(&[3; 32]);
        assert!(signer(&Algorithm::EdDSA, &not_pkcs8).is_err());
    }

    #[test]
    fn the_pkcs8_form_is_rfc_8410s() {
        // RFC 8410 §10.3's example private key, and §10.1's public key: the
        // same key pair.
        let der = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20, 0xd4, 0xee, 0x72, 0xdb, 0xf9, 0x13, 0x58, 0x4a, 0xd5, 0xb6, 0xd8, 0xf1,
            0xf7, 0x69, 0xf8, 0xad, 0x3a, 0xfe, 0x7c, 0x28, 0xcb, 0xf1, 0xd4, 0xfb, 0xe0, 0x97,
            0xa8, 0x8f, 0x44, 0x75, 0x58, 0x42,
        ];
        let public = [
            0x19, 0xbf, 0x44, 0x09, 0x69, 0x84, 0xcd, 0xfe, 0x85, 0x41, 0xba, 0xc1, 0x67, 0xdc,
            0x3b, 0x96, 0xc8, 0x50, 0x86, 0xaa, 0x30, 0xb6, 0xb6, 0xcb, 0x0c, 0x5c, 0x38, 0xad,
            0x70, 0x31, 0x66, 0xe1,
        ];
        let seed: [u8; 32] = der[16..].try_into().unwrap();
        assert_eq!(ed25519_pkcs8(&seed).as_slice(), der.as_slice());
        assert_eq!(
            ed_public_key(&der, &EllipticCurve::Ed25519).unwrap(),
            public
        );
        assert_eq!(ed25519_seed(&der).unwrap(), &seed);
        assert!(ed25519_seed(&der[..47]).is_err());
    }
}
