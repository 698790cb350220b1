//! Public keys out of DER: SPKI (`PUBLIC KEY`), X.509 certificates and PKCS#1 `RSAPublicKey`,
//! through x509-parser, checked against the algorithm the key is pinned to.

use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::mismatch;
use super::tables::{Curve, Suite, suite};
use crate::alg::Algorithm;
use crate::error::KeyError;

/// A public key's bytes as found in DER or a JWK, before it is checked and kept.
pub(super) enum Raw {
    Ed25519(Vec<u8>),
    /// The uncompressed point.
    Ec(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

/// `(n, e)` of a DER `RSAPublicKey`, with no trailing data.
pub(super) fn rsa_public_from_pkcs1(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    match RSAPublicKey::from_der(der) {
        Ok(([], k)) => Ok((k.modulus.to_vec(), k.exponent.to_vec())),
        _ => Err(KeyError::Invalid("malformed RSAPublicKey".into())),
    }
}

pub(super) fn public_from_spki(alg: Algorithm, der: &[u8]) -> Result<Raw, KeyError> {
    match SubjectPublicKeyInfo::from_der(der) {
        Ok(([], spki)) => public_from_parsed(alg, &spki),
        _ => Err(KeyError::Invalid("malformed SubjectPublicKeyInfo".into())),
    }
}

pub(super) fn public_from_certificate(alg: Algorithm, der: &[u8]) -> Result<Raw, KeyError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => public_from_parsed(alg, cert.public_key()),
        _ => Err(KeyError::Invalid("malformed X.509 certificate".into())),
    }
}

fn public_from_parsed(alg: Algorithm, spki: &SubjectPublicKeyInfo<'_>) -> Result<Raw, KeyError> {
    let oid = &spki.algorithm.algorithm;
    let data = spki.subject_public_key.data.as_ref();
    match suite(alg)? {
        Suite::Ed25519 if *oid == OID_SIG_ED25519 => Ok(Raw::Ed25519(data.to_vec())),
        Suite::Ecdsa { curve, .. } if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY => {
            let named = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            let want = match curve {
                Curve::P256 => OID_EC_P256,
                Curve::P384 => OID_NIST_EC_P384,
            };
            if named.as_ref() != Some(&want) {
                return Err(mismatch(alg, "the key is on another curve"));
            }
            Ok(Raw::Ec(data.to_vec()))
        }
        Suite::Rsa { .. } if *oid == OID_PKCS1_RSAENCRYPTION => {
            let (n, e) = rsa_public_from_pkcs1(data)?;
            Ok(Raw::Rsa { n, e })
        }
        Suite::Hmac { .. } => Err(mismatch(alg, "a public key")),
        Suite::Ed25519 | Suite::Ecdsa { .. } | Suite::Rsa { .. } => {
            Err(mismatch(alg, format!("a public key of type {oid}")))
        }
    }
}

/// DER `RSAPublicKey` (PKCS#1) from big-endian `n` and `e` without leading zeros.
pub(super) fn rsa_public_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, n: usize) {
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
    }
    fn int(out: &mut Vec<u8>, v: &[u8]) {
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        len(out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    int(&mut body, n);
    int(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.push(0x30);
    len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}
