//! Verifying keys: a public key (or HMAC secret) that verifies signatures of exactly one
//! algorithm.

use std::fmt;

use zeroize::Zeroizing;

use super::jwk::{decode_field, ec_point, jwk_alg};
use super::spki::{self, Raw};
use super::tables::{Suite, suite};
use super::{Jwk, SigningKey, mismatch, pem, weak};
use crate::alg::Algorithm;
use crate::b64;
use crate::backend::{self, hmac, signature};
use crate::error::{ErrorKind, KeyError, VerifyError};

/// A public key as kept for verification, with the backend algorithm it verifies with.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Public {
    Ed25519(Vec<u8>),
    Ec {
        point: Vec<u8>,
        verification: &'static dyn signature::VerificationAlgorithm,
    },
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        verification: &'static signature::RsaParameters,
    },
    Hmac {
        key: hmac::Key,
        secret: Zeroizing<Vec<u8>>,
    },
}

/// A key that verifies signatures of exactly one algorithm, with an optional `kid`.
#[derive(Clone)]
pub struct VerifyingKey {
    alg: Algorithm,
    pub(super) kid: Option<String>,
    public: Public,
    prepared: backend::Prepared,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// An HMAC verification key (the shared secret), at least as long as the hash.
    pub fn from_hmac_secret(
        alg: Algorithm,
        secret: &[u8],
        kid: Option<String>,
    ) -> Result<VerifyingKey, KeyError> {
        Ok(SigningKey::from_hmac_secret(alg, secret)?.verifying_key(kid))
    }

    /// A public key from SPKI DER (`PUBLIC KEY`), pinned to `alg`.
    pub fn from_spki_der(
        alg: Algorithm,
        der: &[u8],
        kid: Option<String>,
    ) -> Result<VerifyingKey, KeyError> {
        let raw = spki::public_from_spki(alg, der)?;
        VerifyingKey::from_raw(alg, raw, kid)
    }

    /// A public key from SPKI PEM (`-----BEGIN PUBLIC KEY-----`), pinned to `alg`.
    pub fn from_spki_pem(
        alg: Algorithm,
        pem_text: &str,
        kid: Option<String>,
    ) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_spki_der(alg, &pem::expect(pem_text, "PUBLIC KEY")?, kid)
    }

    /// The subject public key of an X.509 certificate (DER), pinned to `alg`. The certificate
    /// itself is not validated here: that is the PKI's job.
    pub fn from_x509_der(
        alg: Algorithm,
        der: &[u8],
        kid: Option<String>,
    ) -> Result<VerifyingKey, KeyError> {
        let raw = spki::public_from_certificate(alg, der)?;
        VerifyingKey::from_raw(alg, raw, kid)
    }

    /// The subject public key of a PEM certificate, pinned to `alg`.
    pub fn from_x509_pem(
        alg: Algorithm,
        pem_text: &str,
        kid: Option<String>,
    ) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_x509_der(alg, &pem::expect(pem_text, "CERTIFICATE")?, kid)
    }

    /// A verification key from a JWK (public or private members; only the public part is
    /// kept for asymmetric keys). The JWK's `use`/`key_ops` are checked by
    /// [`KeySet`](super::KeySet); this refuses keys that may not verify as well.
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyingKey, KeyError> {
        if let Some(why) = jwk.verify_forbidden() {
            return Err(KeyError::Invalid(why));
        }
        let alg = jwk_alg(jwk)?;
        let kid = jwk.kid.clone();
        let raw = match suite(alg)? {
            Suite::Hmac { .. } => {
                let k = Zeroizing::new(decode_field("k", &jwk.k)?);
                return VerifyingKey::from_hmac_secret(alg, &k, kid);
            }
            Suite::Ed25519 => Raw::Ed25519(decode_field("x", &jwk.x)?),
            Suite::Ecdsa { curve, .. } => Raw::Ec(ec_point(jwk, alg, curve)?),
            Suite::Rsa { .. } => Raw::Rsa {
                n: decode_field("n", &jwk.n)?,
                e: decode_field("e", &jwk.e)?,
            },
        };
        VerifyingKey::from_raw(alg, raw, kid)
    }

    /// Check a public key of `alg` and keep it with its backend algorithm.
    fn from_raw(alg: Algorithm, raw: Raw, kid: Option<String>) -> Result<VerifyingKey, KeyError> {
        let public = match (raw, suite(alg)?) {
            (Raw::Ed25519(x), Suite::Ed25519) => {
                if x.len() != 32 {
                    return Err(mismatch(alg, format!("Ed25519 key of {} bytes", x.len())));
                }
                Public::Ed25519(x)
            }
            (Raw::Ec(point), Suite::Ecdsa { verification, .. }) => Public::Ec {
                point,
                verification,
            },
            (Raw::Rsa { n, e }, Suite::Rsa { verification, .. }) => {
                let (n, e) = weak::check_rsa(&n, &e)?;
                Public::Rsa {
                    n: n.to_vec(),
                    e: e.to_vec(),
                    verification,
                }
            }
            (Raw::Ed25519(_) | Raw::Ec(_) | Raw::Rsa { .. }, _) => {
                return Err(mismatch(alg, "a public key of another type"));
            }
        };
        Ok(VerifyingKey::assemble(alg, kid, public))
    }

    pub(super) fn assemble(alg: Algorithm, kid: Option<String>, public: Public) -> VerifyingKey {
        let prepared = match &public {
            Public::Ed25519(x) => backend::Prepared::new(&signature::ED25519, x),
            Public::Ec {
                point,
                verification,
            } => backend::Prepared::new(*verification, point),
            Public::Rsa {
                n, e, verification, ..
            } => backend::Prepared::new(*verification, &spki::rsa_public_der(n, e)),
            Public::Hmac { .. } => backend::Prepared::default(),
        };
        VerifyingKey {
            alg,
            kid,
            public,
            prepared,
        }
    }

    /// The algorithm this key is pinned to.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether this is a shared secret (HMAC) rather than a public key.
    pub fn is_symmetric(&self) -> bool {
        matches!(self.public, Public::Hmac { .. })
    }

    /// The key as a JWK with `kid`, `alg` and `use: sig`. For HMAC this contains the secret.
    pub fn to_jwk(&self) -> Jwk {
        let mut jwk = Jwk {
            kid: self.kid.clone(),
            alg: Some(self.alg.as_str().into()),
            use_: Some("sig".into()),
            ..Jwk::default()
        };
        match &self.public {
            Public::Ed25519(x) => {
                jwk.kty = Some("OKP".into());
                jwk.crv = Some("Ed25519".into());
                jwk.x = Some(b64::encode(x));
            }
            Public::Ec { point, .. } => {
                let len = (point.len().saturating_sub(1)) / 2;
                jwk.kty = Some("EC".into());
                jwk.crv = self.alg.curve().map(Into::into);
                jwk.x = point.get(1..1 + len).map(b64::encode);
                jwk.y = point.get(1 + len..).map(b64::encode);
            }
            Public::Rsa { n, e, .. } => {
                jwk.kty = Some("RSA".into());
                jwk.n = Some(b64::encode(n));
                jwk.e = Some(b64::encode(e));
            }
            Public::Hmac { secret, .. } => {
                jwk.kty = Some("oct".into());
                jwk.k = Some(b64::encode(secret));
            }
        }
        jwk
    }

    /// Verify `signature` over `message` with this key's algorithm.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        let bad = || VerifyError::new(ErrorKind::BadSignature, "the signature does not verify");
        match self.prepared.verify(message, sig) {
            Some(true) => return Ok(()),
            Some(false) => return Err(bad()),
            None => {}
        }
        match &self.public {
            Public::Ed25519(x) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, x).verify(message, sig)
            }
            Public::Ec {
                point,
                verification,
            } => signature::UnparsedPublicKey::new(*verification, point).verify(message, sig),
            Public::Rsa {
                n, e, verification, ..
            } => signature::RsaPublicKeyComponents { n, e }.verify(verification, message, sig),
            Public::Hmac { key, .. } => hmac::verify(key, message, sig),
        }
        .map_err(|_| bad())
    }
}
