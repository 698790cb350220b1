//! Signing keys: a private key (or HMAC secret) pinned to one algorithm.

use std::fmt;

use zeroize::Zeroizing;

use super::jwk::{decode_field, ec_point, jwk_alg};
use super::tables::{Suite, suite};
use super::verifying::Public;
use super::{Jwk, VerifyingKey, mismatch, pem, spki, weak};
use crate::alg::Algorithm;
use crate::b64;
use crate::backend::{self, hmac, rand, signature};
use crate::error::{KeyError, SignError};
use signature::KeyPair as _;

// Keys are built once and live long; the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Signer {
    Ed25519(signature::Ed25519KeyPair),
    Ecdsa {
        pair: signature::EcdsaKeyPair,
        verification: &'static dyn signature::VerificationAlgorithm,
    },
    Rsa {
        pair: signature::RsaKeyPair,
        padding: &'static dyn signature::RsaEncoding,
        verification: &'static signature::RsaParameters,
    },
    Hmac {
        key: hmac::Key,
        secret: Zeroizing<Vec<u8>>,
    },
}

/// A private key (or HMAC secret) pinned to one algorithm.
///
/// The bytes this crate holds (the PKCS#8 document, the HMAC secret) are wiped when the key is
/// dropped; the backend's own key objects are freed by the backend (aws-lc-rs wipes them, ring
/// does not offer it).
pub struct SigningKey {
    alg: Algorithm,
    signer: Signer,
    pkcs8: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn rsa_signer(
    pair: signature::RsaKeyPair,
    padding: &'static dyn signature::RsaEncoding,
    verification: &'static signature::RsaParameters,
) -> Result<Signer, KeyError> {
    let (n, e) = spki::rsa_public_from_pkcs1(pair.public_key().as_ref())?;
    weak::check_rsa(&n, &e)?;
    Ok(Signer::Rsa {
        pair,
        padding,
        verification,
    })
}

impl SigningKey {
    /// A fresh random key for `alg`. RSA keys need the `aws-lc-rs` backend (ring cannot make
    /// them); HMAC secrets are as long as the hash.
    pub fn generate(alg: Algorithm) -> Result<SigningKey, KeyError> {
        let rng = rand::SystemRandom::new();
        let rng_err = |_| KeyError::Invalid("the random number generator failed".into());
        match suite(alg)? {
            Suite::Ed25519 => {
                let doc = signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(rng_err)?;
                SigningKey::from_pkcs8_der(alg, doc.as_ref())
            }
            Suite::Ecdsa { signing, .. } => {
                let doc =
                    signature::EcdsaKeyPair::generate_pkcs8(signing, &rng).map_err(rng_err)?;
                SigningKey::from_pkcs8_der(alg, doc.as_ref())
            }
            Suite::Rsa { .. } => {
                let der = backend::rsa_generate_pkcs8(2048).ok_or_else(|| {
                    KeyError::Unsupported(format!(
                        "RSA key generation needs the aws-lc-rs backend (this build uses {}); \
                         make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`",
                        backend::NAME
                    ))
                })?;
                SigningKey::from_pkcs8_der(alg, &der)
            }
            Suite::Hmac { min_secret_len, .. } => {
                let mut secret = Zeroizing::new(vec![0u8; min_secret_len]);
                rand::SecureRandom::fill(&rng, &mut secret).map_err(rng_err)?;
                SigningKey::from_hmac_secret(alg, &secret)
            }
        }
    }

    /// An HMAC key; the secret must be at least as long as the hash output.
    pub fn from_hmac_secret(alg: Algorithm, secret: &[u8]) -> Result<SigningKey, KeyError> {
        let Suite::Hmac {
            alg: hmac_alg,
            min_secret_len,
        } = suite(alg)?
        else {
            return Err(mismatch(alg, "an HMAC secret"));
        };
        weak::check_hmac(alg, secret.len(), min_secret_len)?;
        Ok(SigningKey {
            alg,
            signer: Signer::Hmac {
                key: hmac::Key::new(hmac_alg, secret),
                secret: Zeroizing::new(secret.to_vec()),
            },
            pkcs8: None,
        })
    }

    /// A private key from PKCS#8 DER (v1 or v2).
    pub fn from_pkcs8_der(alg: Algorithm, der: &[u8]) -> Result<SigningKey, KeyError> {
        let refused = |e: backend::imp::error::KeyRejected| {
            mismatch(alg, format!("the PKCS#8 key was refused ({e})"))
        };
        let signer = match suite(alg)? {
            Suite::Ed25519 => Signer::Ed25519(
                signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(refused)?,
            ),
            Suite::Ecdsa {
                signing,
                verification,
                ..
            } => Signer::Ecdsa {
                pair: backend::ecdsa_from_pkcs8(signing, der).map_err(refused)?,
                verification,
            },
            Suite::Rsa {
                padding,
                verification,
            } => {
                // The weak-key reason comes from the key itself, before the backend refuses
                // a small key with an error of its own.
                weak::check_rsa_pkcs8(der)?;
                let pair = signature::RsaKeyPair::from_pkcs8(der).map_err(refused)?;
                rsa_signer(pair, padding, verification)?
            }
            Suite::Hmac { .. } => return Err(mismatch(alg, "a PKCS#8 private key")),
        };
        Ok(SigningKey {
            alg,
            signer,
            pkcs8: Some(Zeroizing::new(der.to_vec())),
        })
    }

    /// A private key from PEM: `PRIVATE KEY` (PKCS#8) or, for RSA, `RSA PRIVATE KEY` (PKCS#1).
    pub fn from_pkcs8_pem(alg: Algorithm, pem_text: &str) -> Result<SigningKey, KeyError> {
        let block = pem::parse(pem_text)?;
        let tag = block.tag().to_owned();
        let der = Zeroizing::new(block.into_contents());
        match (tag.as_str(), suite(alg)?) {
            ("PRIVATE KEY", _) => SigningKey::from_pkcs8_der(alg, &der),
            (
                "RSA PRIVATE KEY",
                Suite::Rsa {
                    padding,
                    verification,
                },
            ) => {
                weak::check_rsa_pkcs1(&der)?;
                let pair = signature::RsaKeyPair::from_der(&der)
                    .map_err(|e| KeyError::Invalid(format!("RSA private key refused ({e})")))?;
                Ok(SigningKey {
                    alg,
                    signer: rsa_signer(pair, padding, verification)?,
                    pkcs8: None,
                })
            }
            ("ENCRYPTED PRIVATE KEY", _) => Err(KeyError::Pem(
                "encrypted private keys are not supported; decrypt it first".into(),
            )),
            (other, _) => Err(KeyError::Pem(format!(
                "expected a PRIVATE KEY block, found {other:?}"
            ))),
        }
    }

    /// A private key from a JWK: `oct` (HS*), `OKP` Ed25519 (`d`, `x`) or `EC` (`d`, `x`, `y`).
    /// RSA private keys load from PKCS#8 instead.
    pub fn from_jwk(jwk: &Jwk) -> Result<SigningKey, KeyError> {
        let alg = jwk_alg(jwk)?;
        let refused = |e: backend::imp::error::KeyRejected| {
            KeyError::Invalid(format!("the JWK private key was refused ({e})"))
        };
        match suite(alg)? {
            Suite::Hmac { .. } => {
                let k = Zeroizing::new(decode_field("k", &jwk.k)?);
                SigningKey::from_hmac_secret(alg, &k)
            }
            Suite::Ed25519 => {
                let d = Zeroizing::new(decode_field("d", &jwk.d)?);
                let x = decode_field("x", &jwk.x)?;
                let pair =
                    signature::Ed25519KeyPair::from_seed_and_public_key(&d, &x).map_err(refused)?;
                Ok(SigningKey {
                    alg,
                    signer: Signer::Ed25519(pair),
                    pkcs8: None,
                })
            }
            Suite::Ecdsa {
                curve,
                signing,
                verification,
            } => {
                let d = Zeroizing::new(decode_field("d", &jwk.d)?);
                let point = ec_point(jwk, alg, curve)?;
                let pair =
                    backend::ecdsa_from_private_and_public(signing, &d, &point).map_err(refused)?;
                Ok(SigningKey {
                    alg,
                    signer: Signer::Ecdsa { pair, verification },
                    pkcs8: None,
                })
            }
            Suite::Rsa { .. } => Err(KeyError::Unsupported(
                "RSA private keys as JWK; load them from PKCS#8 PEM".into(),
            )),
        }
    }

    /// The algorithm this key is pinned to.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The private key as PKCS#8 PEM, when it was loaded or generated as PKCS#8 (not HMAC).
    pub fn to_pkcs8_pem(&self) -> Option<Zeroizing<String>> {
        self.pkcs8.as_ref().map(|der| pem::private_key(der))
    }

    /// For an HMAC key, the secret as a private `oct` JWK (the only private JWK exported).
    pub fn to_hmac_jwk(&self, kid: Option<String>) -> Option<Jwk> {
        match &self.signer {
            Signer::Hmac { secret, .. } => Some(Jwk {
                kty: Some("oct".into()),
                kid,
                alg: Some(self.alg.as_str().into()),
                use_: Some("sig".into()),
                k: Some(b64::encode(secret)),
                ..Jwk::default()
            }),
            Signer::Ed25519(_) | Signer::Ecdsa { .. } | Signer::Rsa { .. } => None,
        }
    }

    /// The key that verifies this key's signatures (for HMAC, the same secret).
    pub fn verifying_key(&self, kid: Option<String>) -> VerifyingKey {
        let public = match &self.signer {
            Signer::Ed25519(pair) => Public::Ed25519(pair.public_key().as_ref().to_vec()),
            Signer::Ecdsa { pair, verification } => Public::Ec {
                point: pair.public_key().as_ref().to_vec(),
                verification: *verification,
            },
            Signer::Rsa {
                pair, verification, ..
            } => {
                // The backend's own encoding of its own key; checked when the key was loaded.
                // DER integers carry a leading zero when the top bit is set: trim it.
                let (n, e) =
                    spki::rsa_public_from_pkcs1(pair.public_key().as_ref()).unwrap_or_default();
                Public::Rsa {
                    n: weak::trim_be(&n).to_vec(),
                    e: weak::trim_be(&e).to_vec(),
                    verification,
                }
            }
            Signer::Hmac { key, secret } => Public::Hmac {
                key: key.clone(),
                secret: secret.clone(),
            },
        };
        VerifyingKey::assemble(self.alg, kid, public)
    }

    /// Sign `message` (the JWS signing input).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = rand::SystemRandom::new();
        match &self.signer {
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Signer::Ecdsa { pair, .. } => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Crypto),
            Signer::Rsa { pair, padding, .. } => {
                let mut sig = vec![0u8; backend::rsa_modulus_len(pair)];
                pair.sign(*padding, &rng, message, &mut sig)
                    .map_err(|_| SignError::Crypto)?;
                Ok(sig)
            }
            Signer::Hmac { key, .. } => Ok(hmac::sign(key, message).as_ref().to_vec()),
        }
    }

    /// For an Ed25519 key, the raw 32-byte public key (what audit checkpoints name).
    pub fn ed25519_public_key(&self) -> Option<&[u8]> {
        match &self.signer {
            Signer::Ed25519(pair) => Some(pair.public_key().as_ref()),
            Signer::Ecdsa { .. } | Signer::Rsa { .. } | Signer::Hmac { .. } => None,
        }
    }
}
