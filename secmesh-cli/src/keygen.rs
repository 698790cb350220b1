//! Key generation for `secmesh keygen`: what `SigningKey::generate` makes, and RSA keys on the
//! ring backend too (ring cannot make them): with the `rsa-keygen` feature they are made with
//! aws-lc-rs, here only, and loaded through secmesh-tokens like any PKCS#8 key, so no library
//! crate's backend changes.

use secmesh_tokens::alg::Family;
use secmesh_tokens::{Algorithm, KeyError, SigningKey};

/// A fresh key for `alg`.
pub(crate) fn generate(alg: Algorithm) -> Result<SigningKey, KeyError> {
    match SigningKey::generate(alg) {
        Err(KeyError::Unsupported(why)) if alg.family() == Family::Rsa => rsa(alg, why),
        other => other,
    }
}

#[cfg(feature = "rsa-keygen")]
fn rsa(alg: Algorithm, _why: String) -> Result<SigningKey, KeyError> {
    use aws_lc_rs::encoding::AsDer as _;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| KeyError::Invalid("RSA key generation failed".into()))?;
    let der = pair
        .as_der()
        .map_err(|_| KeyError::Invalid("RSA key encoding failed".into()))?;
    SigningKey::from_pkcs8_der(alg, der.as_ref())
}

#[cfg(not(feature = "rsa-keygen"))]
fn rsa(_alg: Algorithm, why: String) -> Result<SigningKey, KeyError> {
    Err(KeyError::Unsupported(why))
}
