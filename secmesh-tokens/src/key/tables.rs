//! The algorithm table: what each [`Algorithm`] needs of the crypto backend, in one exhaustive
//! `match` (no fallback arm), so a new algorithm does not compile until it is given its row.

use crate::alg::Algorithm;
use crate::backend::{hmac, signature};
use crate::error::KeyError;

/// An ECDSA curve secmesh signs and verifies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Curve {
    P256,
    P384,
}

impl Curve {
    /// The length of one coordinate (and of the private scalar), in bytes.
    pub(super) const fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

/// The backend's pieces for one algorithm.
#[derive(Clone, Copy)]
pub(super) enum Suite {
    Ed25519,
    Ecdsa {
        curve: Curve,
        signing: &'static signature::EcdsaSigningAlgorithm,
        verification: &'static dyn signature::VerificationAlgorithm,
    },
    Rsa {
        padding: &'static dyn signature::RsaEncoding,
        verification: &'static signature::RsaParameters,
    },
    Hmac {
        alg: hmac::Algorithm,
        /// The shortest secret accepted: the hash output (RFC 7518 §3.2).
        min_secret_len: usize,
    },
}

/// The row of `alg`, or [`KeyError::Unsupported`] for an algorithm known by name only.
pub(super) fn suite(alg: Algorithm) -> Result<Suite, KeyError> {
    use signature as s;
    let rsa = |padding: &'static dyn s::RsaEncoding, verification| Suite::Rsa {
        padding,
        verification,
    };
    Ok(match alg {
        Algorithm::EdDsa => Suite::Ed25519,
        Algorithm::Es256 => Suite::Ecdsa {
            curve: Curve::P256,
            signing: &s::ECDSA_P256_SHA256_FIXED_SIGNING,
            verification: &s::ECDSA_P256_SHA256_FIXED,
        },
        Algorithm::Es384 => Suite::Ecdsa {
            curve: Curve::P384,
            signing: &s::ECDSA_P384_SHA384_FIXED_SIGNING,
            verification: &s::ECDSA_P384_SHA384_FIXED,
        },
        Algorithm::Es512 => return Err(super::unsupported(alg)),
        Algorithm::Rs256 => rsa(&s::RSA_PKCS1_SHA256, &s::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::Rs384 => rsa(&s::RSA_PKCS1_SHA384, &s::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::Rs512 => rsa(&s::RSA_PKCS1_SHA512, &s::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::Ps256 => rsa(&s::RSA_PSS_SHA256, &s::RSA_PSS_2048_8192_SHA256),
        Algorithm::Ps384 => rsa(&s::RSA_PSS_SHA384, &s::RSA_PSS_2048_8192_SHA384),
        Algorithm::Ps512 => rsa(&s::RSA_PSS_SHA512, &s::RSA_PSS_2048_8192_SHA512),
        Algorithm::Hs256 => Suite::Hmac {
            alg: hmac::HMAC_SHA256,
            min_secret_len: 32,
        },
        Algorithm::Hs384 => Suite::Hmac {
            alg: hmac::HMAC_SHA384,
            min_secret_len: 48,
        },
        Algorithm::Hs512 => Suite::Hmac {
            alg: hmac::HMAC_SHA512,
            min_secret_len: 64,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Family;

    #[test]
    fn every_supported_algorithm_has_a_row_of_its_family() {
        for alg in Algorithm::ALL {
            match suite(alg) {
                Ok(Suite::Ed25519) => assert_eq!(alg.family(), Family::Ed25519),
                Ok(Suite::Ecdsa { curve, .. }) => {
                    assert_eq!(alg.family(), Family::Ecdsa);
                    assert_eq!(
                        alg.curve(),
                        Some(if curve == Curve::P256 {
                            "P-256"
                        } else {
                            "P-384"
                        })
                    );
                }
                Ok(Suite::Rsa { .. }) => assert_eq!(alg.family(), Family::Rsa),
                Ok(Suite::Hmac { min_secret_len, .. }) => {
                    assert_eq!(alg.family(), Family::Hmac);
                    assert_eq!(min_secret_len, alg.min_secret_len());
                }
                Err(KeyError::Unsupported(_)) => assert!(!alg.is_supported(), "{alg}"),
                Err(e) => panic!("{alg}: {e}"),
            }
        }
    }
}
