//! The weak-key check, with a typed reason ([`WeakKey`]): RSA moduli under 2048 bits, small,
//! even or oversized public exponents, ROCA-vulnerable moduli, and HMAC secrets shorter than the
//! hash. RSA private keys are checked from their own DER before the backend sees them, so the
//! reason never has to be guessed from a backend's error text.

use std::fmt;

use super::roca;
use crate::alg::Algorithm;
use crate::error::KeyError;

/// Why a well-formed key is too weak to use ([`KeyError::Weak`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WeakKey {
    /// An RSA modulus under 2048 bits.
    RsaModulusTooSmall {
        /// Its size in bits.
        bits: usize,
    },
    /// An RSA public exponent longer than 5 bytes.
    RsaExponentTooLarge,
    /// An RSA public exponent that is even, under 3 or not under 2^33.
    RsaExponent {
        /// The exponent.
        value: u64,
    },
    /// An RSA modulus with the ROCA fingerprint (CVE-2017-15361).
    Roca,
    /// An HMAC secret shorter than the hash output (RFC 7518 §3.2).
    HmacSecretTooShort {
        /// The algorithm.
        alg: Algorithm,
        /// The secret's length in bytes.
        len: usize,
        /// The shortest length accepted.
        min: usize,
    },
}

impl fmt::Display for WeakKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeakKey::RsaModulusTooSmall { bits } => {
                write!(f, "RSA modulus of {bits} bits (at least 2048 required)")
            }
            WeakKey::RsaExponentTooLarge => f.write_str("RSA exponent too large"),
            WeakKey::RsaExponent { value } => write!(f, "RSA public exponent {value}"),
            WeakKey::Roca => f.write_str("RSA modulus has the ROCA fingerprint (CVE-2017-15361)"),
            WeakKey::HmacSecretTooShort { alg, len, min } => {
                write!(f, "{alg} secret of {len} bytes (at least {min} required)")
            }
        }
    }
}

/// Strip leading zero bytes of a big-endian unsigned integer.
pub(super) fn trim_be(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

/// Check an RSA public key: at least 2048 bits, an odd exponent of at least 3 that fits in 33
/// bits (what ring accepts), not ROCA-vulnerable. Returns the trimmed `(n, e)`.
pub(super) fn check_rsa<'a>(n: &'a [u8], e: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), KeyError> {
    let (n, e) = (trim_be(n), trim_be(e));
    // An empty (all-zero) modulus has no bits; `first` is then None.
    let bits = n
        .first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
    if bits < 2048 {
        return Err(KeyError::Weak(WeakKey::RsaModulusTooSmall { bits }));
    }
    if bits > 8192 {
        return Err(KeyError::Invalid(format!("RSA modulus of {bits} bits")));
    }
    if e.len() > 5 {
        return Err(KeyError::Weak(WeakKey::RsaExponentTooLarge));
    }
    let value = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if value < 3 || value % 2 == 0 || value >= (1 << 33) {
        return Err(KeyError::Weak(WeakKey::RsaExponent { value }));
    }
    if roca::is_vulnerable(n) {
        return Err(KeyError::Weak(WeakKey::Roca));
    }
    Ok((n, e))
}

/// Check an HMAC secret's length against the shortest accepted for `alg`.
pub(super) fn check_hmac(alg: Algorithm, len: usize, min: usize) -> Result<(), KeyError> {
    if len < min {
        return Err(KeyError::Weak(WeakKey::HmacSecretTooShort {
            alg,
            len,
            min,
        }));
    }
    Ok(())
}

/// Check the public half of an RSA private key given as PKCS#8 (`PrivateKeyInfo`) DER, before
/// the backend parses it. DER this reader does not understand is left to the backend (which
/// refuses it, or loads it and its public key is checked then).
pub(super) fn check_rsa_pkcs8(der: &[u8]) -> Result<(), KeyError> {
    match rsa_public_of_pkcs8(der) {
        Some((n, e)) => check_rsa(n, e).map(|_| ()),
        None => Ok(()),
    }
}

/// The same for a PKCS#1 `RSAPrivateKey`.
pub(super) fn check_rsa_pkcs1(der: &[u8]) -> Result<(), KeyError> {
    match rsa_public_of_pkcs1(der) {
        Some((n, e)) => check_rsa(n, e).map(|_| ()),
        None => Ok(()),
    }
}

/// A DER reader that slices only through checked APIs.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The value of the next element if its tag is `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&t, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (len, after) = rest.split_at_checked(n)?;
            rest = after;
            len.iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (value, after) = rest.split_at_checked(len)?;
        self.0 = after;
        (t == tag).then_some(value)
    }
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;

/// `RSAPrivateKey ::= SEQUENCE { version, modulus, publicExponent, ... }`.
fn rsa_public_of_pkcs1(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut body = Der(Der(der).expect(SEQUENCE)?);
    body.expect(INTEGER)?;
    let n = body.expect(INTEGER)?;
    let e = body.expect(INTEGER)?;
    Some((n, e))
}

/// `PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, privateKey OCTET STRING, ... }`.
fn rsa_public_of_pkcs8(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut body = Der(Der(der).expect(SEQUENCE)?);
    body.expect(INTEGER)?;
    body.expect(SEQUENCE)?;
    rsa_public_of_pkcs1(body.expect(OCTET_STRING)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_typed_and_read_as_before() {
        let small = [0xc5u8; 128];
        assert!(matches!(
            check_rsa(&small, &[1, 0, 1]),
            Err(KeyError::Weak(WeakKey::RsaModulusTooSmall { bits: 1024 }))
        ));
        let n = [0xc7u8; 256];
        assert!(matches!(
            check_rsa(&n, &[2]),
            Err(KeyError::Weak(WeakKey::RsaExponent { value: 2 }))
        ));
        assert_eq!(
            WeakKey::RsaModulusTooSmall { bits: 1024 }.to_string(),
            "RSA modulus of 1024 bits (at least 2048 required)"
        );
        assert!(check_rsa(&n, &[1, 0, 1]).is_ok());
    }

    #[test]
    fn an_empty_or_all_zero_modulus_is_too_small_not_a_panic() {
        // Found by the `jwk` fuzz target: `"n": ""` underflowed the bit count.
        for n in [&[][..], &[0u8][..], &[0u8; 300][..]] {
            assert!(matches!(
                check_rsa(n, &[1, 0, 1]),
                Err(KeyError::Weak(WeakKey::RsaModulusTooSmall { bits: 0 }))
            ));
        }
        assert!(matches!(
            check_rsa(&[1], &[1, 0, 1]),
            Err(KeyError::Weak(WeakKey::RsaModulusTooSmall { bits: 1 }))
        ));
    }

    #[test]
    fn the_der_reader_refuses_truncation_without_panicking() {
        for len in 0..8 {
            let der = [0x30, 0x82, 0xff, 0xff, 0x02, 0x01, 0x00, 0x02];
            assert_eq!(rsa_public_of_pkcs8(&der[..len]), None);
            assert_eq!(rsa_public_of_pkcs1(&der[..len]), None);
        }
    }
}
