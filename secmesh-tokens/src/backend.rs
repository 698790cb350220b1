//! The one seam between secmesh and its crypto library.
//!
//! ring (the default) and aws-lc-rs expose the same module shape (`signature`, `hmac`,
//! `digest`, `rand`), so the rest of the crate names `backend::signature::...` and compiles
//! against either. The few places where their signatures differ (ring's ECDSA constructors take
//! an RNG; only aws-lc-rs generates RSA keys) are the functions below.

#[cfg(feature = "aws-lc-rs")]
pub(crate) use aws_lc_rs as imp;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
pub(crate) use ring as imp;

#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
compile_error!("secmesh-tokens needs a crypto backend: enable `ring` (the default) or `aws-lc-rs`");

pub(crate) use imp::{digest, hmac, rand, signature};

use imp::error::KeyRejected;
use signature::{EcdsaKeyPair, EcdsaSigningAlgorithm};

/// The name of the backend compiled in: `"ring"` or `"aws-lc-rs"` (aws-lc-rs when both
/// features are on).
#[cfg(feature = "aws-lc-rs")]
pub const NAME: &str = "aws-lc-rs";
/// The name of the backend compiled in: `"ring"` or `"aws-lc-rs"`.
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
pub const NAME: &str = "ring";

pub(crate) fn ecdsa_from_pkcs8(
    alg: &'static EcdsaSigningAlgorithm,
    der: &[u8],
) -> Result<EcdsaKeyPair, KeyRejected> {
    #[cfg(feature = "aws-lc-rs")]
    {
        EcdsaKeyPair::from_pkcs8(alg, der)
    }
    #[cfg(not(feature = "aws-lc-rs"))]
    {
        EcdsaKeyPair::from_pkcs8(alg, der, &rand::SystemRandom::new())
    }
}

pub(crate) fn ecdsa_from_private_and_public(
    alg: &'static EcdsaSigningAlgorithm,
    private: &[u8],
    public: &[u8],
) -> Result<EcdsaKeyPair, KeyRejected> {
    #[cfg(feature = "aws-lc-rs")]
    {
        EcdsaKeyPair::from_private_key_and_public_key(alg, private, public)
    }
    #[cfg(not(feature = "aws-lc-rs"))]
    {
        EcdsaKeyPair::from_private_key_and_public_key(
            alg,
            private,
            public,
            &rand::SystemRandom::new(),
        )
    }
}

/// A new RSA key as PKCS#8 DER, where the backend can make one.
pub(crate) fn rsa_generate_pkcs8(bits: usize) -> Option<Vec<u8>> {
    #[cfg(feature = "aws-lc-rs")]
    {
        use imp::encoding::AsDer;
        let size = match bits {
            2048 => imp::rsa::KeySize::Rsa2048,
            3072 => imp::rsa::KeySize::Rsa3072,
            4096 => imp::rsa::KeySize::Rsa4096,
            _ => return None,
        };
        let kp = signature::RsaKeyPair::generate(size).ok()?;
        let der = kp.as_der().ok()?;
        Some(der.as_ref().to_vec())
    }
    #[cfg(not(feature = "aws-lc-rs"))]
    {
        let _ = bits;
        None
    }
}

/// The RSA modulus length in bytes (the signature length).
pub(crate) fn rsa_modulus_len(kp: &signature::RsaKeyPair) -> usize {
    #[cfg(feature = "aws-lc-rs")]
    {
        kp.public_modulus_len()
    }
    #[cfg(not(feature = "aws-lc-rs"))]
    {
        kp.public().modulus_len()
    }
}

/// A public key parsed once, when the backend can keep it parsed (aws-lc-rs); with ring every
/// verification parses the key bytes (ring has no parsed-key type), and this is empty.
#[derive(Clone, Default)]
pub(crate) struct Prepared {
    #[cfg(feature = "aws-lc-rs")]
    key: Option<signature::ParsedPublicKey>,
}

impl Prepared {
    /// Parse `public` for `alg` (the bytes `UnparsedPublicKey` would take).
    #[cfg_attr(not(feature = "aws-lc-rs"), allow(unused_variables))]
    pub(crate) fn new(alg: &'static dyn signature::VerificationAlgorithm, public: &[u8]) -> Self {
        Prepared {
            #[cfg(feature = "aws-lc-rs")]
            key: signature::ParsedPublicKey::new(alg, public).ok(),
        }
    }

    /// Verify with the parsed key; `None` when there is none (then the caller parses).
    #[cfg_attr(not(feature = "aws-lc-rs"), allow(unused_variables))]
    pub(crate) fn verify(&self, message: &[u8], sig: &[u8]) -> Option<bool> {
        #[cfg(feature = "aws-lc-rs")]
        {
            self.key
                .as_ref()
                .map(|k| k.verify_sig(message, sig).is_ok())
        }
        #[cfg(not(feature = "aws-lc-rs"))]
        {
            None
        }
    }
}
