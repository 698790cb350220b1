//! Keys: signing keys, verifying keys pinned to one algorithm, and key sets chosen by `kid`.
//!
//! Every key is pinned to exactly one [`Algorithm`] when it is loaded; a token whose header
//! names another algorithm is refused before any signature math (RFC 8725 §3.1). Keys load from
//! PKCS#8 (PEM or DER, v1 and v2), SPKI PEM public keys, X.509 certificates, and JWK / JWKS;
//! weak keys (RSA under 2048 bits, small or even exponents, ROCA-vulnerable moduli, HMAC
//! secrets shorter than the hash) are refused at load time. `Debug` never prints key material.
//!
//! # Example
//! ```
//! use secmesh_tokens::{Algorithm, KeySet, SigningKey};
//!
//! let signing = SigningKey::generate(Algorithm::EdDsa)?;
//! let jwks = KeySet::single(signing.verifying_key(Some("k1".into())));
//! let json = jwks.to_jwks().to_json();
//! assert!(json.contains(r#""kid":"k1""#) && json.contains(r#""alg":"EdDSA""#));
//! let loaded = KeySet::from_json(&json)?;
//! assert_eq!(loaded.kids().collect::<Vec<_>>(), [Some("k1")]);
//! # Ok::<(), secmesh_tokens::KeyError>(())
//! ```

mod jwk;
mod roca;
mod spki;

use std::fmt;

use zeroize::Zeroizing;

pub use jwk::{Jwk, JwkSet};

use crate::alg::{Algorithm, Family};
use crate::b64;
use crate::backend::{self, hmac, rand, signature};
use crate::error::{ErrorKind, KeyError, SignError, VerifyError};
use signature::KeyPair as _;

fn hmac_alg(alg: Algorithm) -> hmac::Algorithm {
    match alg {
        Algorithm::Hs384 => hmac::HMAC_SHA384,
        Algorithm::Hs512 => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    }
}

fn ecdsa_signing(alg: Algorithm) -> &'static signature::EcdsaSigningAlgorithm {
    match alg {
        Algorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        _ => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    }
}

fn rsa_padding(alg: Algorithm) -> &'static dyn signature::RsaEncoding {
    match alg {
        Algorithm::Rs384 => &signature::RSA_PKCS1_SHA384,
        Algorithm::Rs512 => &signature::RSA_PKCS1_SHA512,
        Algorithm::Ps256 => &signature::RSA_PSS_SHA256,
        Algorithm::Ps384 => &signature::RSA_PSS_SHA384,
        Algorithm::Ps512 => &signature::RSA_PSS_SHA512,
        _ => &signature::RSA_PKCS1_SHA256,
    }
}

fn verification_alg(alg: Algorithm) -> &'static signature::RsaParameters {
    match alg {
        Algorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => &signature::RSA_PKCS1_2048_8192_SHA256,
    }
}

fn ec_verification(alg: Algorithm) -> &'static dyn signature::VerificationAlgorithm {
    match alg {
        Algorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
        _ => &signature::ECDSA_P256_SHA256_FIXED,
    }
}

fn unsupported(alg: Algorithm) -> KeyError {
    KeyError::Unsupported(format!(
        "{alg} is not supported (ring has no P-521; secmesh offers the same algorithms on both backends)"
    ))
}

fn mismatch(alg: Algorithm, detail: impl Into<String>) -> KeyError {
    KeyError::AlgMismatch {
        alg,
        detail: detail.into(),
    }
}

/// Strip leading zero bytes of a big-endian unsigned integer.
fn trim_be(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

/// Check an RSA public key: at least 2048 bits, an odd exponent of at least 3 that fits in 33
/// bits (what ring accepts), not ROCA-vulnerable. Returns the trimmed `(n, e)`.
fn check_rsa<'a>(n: &'a [u8], e: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), KeyError> {
    let (n, e) = (trim_be(n), trim_be(e));
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    if bits < 2048 {
        return Err(KeyError::Weak(format!(
            "RSA modulus of {bits} bits (at least 2048 required)"
        )));
    }
    if bits > 8192 {
        return Err(KeyError::Invalid(format!("RSA modulus of {bits} bits")));
    }
    if e.len() > 5 {
        return Err(KeyError::Weak("RSA exponent too large".into()));
    }
    let ev = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if ev < 3 || ev % 2 == 0 || ev >= (1 << 33) {
        return Err(KeyError::Weak(format!("RSA public exponent {ev}")));
    }
    if roca::is_vulnerable(n) {
        return Err(KeyError::Weak(
            "RSA modulus has the ROCA fingerprint (CVE-2017-15361)".into(),
        ));
    }
    Ok((n, e))
}

fn decode_field(jwk: &Jwk, name: &str, v: &Option<String>) -> Result<Vec<u8>, KeyError> {
    let _ = jwk;
    let s = v
        .as_deref()
        .ok_or_else(|| KeyError::Jwk(format!("missing member `{name}`")))?;
    b64::decode(s.as_bytes())
        .map_err(|_| KeyError::Jwk(format!("`{name}` is not base64url without padding")))
}

/// The algorithm a JWK is pinned to: its `alg`, or the only one its curve allows.
fn jwk_alg(jwk: &Jwk) -> Result<Algorithm, KeyError> {
    let kty = jwk.kty.as_deref().unwrap_or("");
    if let Some(name) = &jwk.alg {
        let alg: Algorithm = name
            .parse()
            .map_err(|_| KeyError::Unsupported(format!("algorithm {name:?}")))?;
        let family_ok = matches!(
            (alg.family(), kty),
            (Family::Ed25519, "OKP")
                | (Family::Ecdsa, "EC")
                | (Family::Rsa, "RSA")
                | (Family::Hmac, "oct")
        );
        if !family_ok {
            return Err(mismatch(alg, format!("key type {kty:?}")));
        }
        if let (Some(want), Some(crv)) = (alg.curve(), jwk.crv.as_deref())
            && want != crv
        {
            return Err(mismatch(alg, format!("curve {crv:?}")));
        }
        return Ok(alg);
    }
    match (kty, jwk.crv.as_deref()) {
        ("OKP", Some("Ed25519")) => Ok(Algorithm::EdDsa),
        ("EC", Some("P-256")) => Ok(Algorithm::Es256),
        ("EC", Some("P-384")) => Ok(Algorithm::Es384),
        ("EC", Some("P-521")) => Ok(Algorithm::Es512),
        _ => Err(KeyError::Jwk(format!(
            "a {kty:?} key needs `alg` to pin it to one algorithm"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Signing keys

// Keys are built once and live long; the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Signer {
    Ed25519(signature::Ed25519KeyPair),
    Ecdsa(signature::EcdsaKeyPair),
    Rsa(signature::RsaKeyPair),
    Hmac {
        key: hmac::Key,
        secret: Zeroizing<Vec<u8>>,
    },
}

/// A private key (or HMAC secret) pinned to one algorithm.
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

impl SigningKey {
    /// A fresh random key for `alg`. RSA keys need the `aws-lc-rs` backend (ring cannot make
    /// them); HMAC secrets are as long as the hash.
    pub fn generate(alg: Algorithm) -> Result<SigningKey, KeyError> {
        let rng = rand::SystemRandom::new();
        let rng_err = |_| KeyError::Invalid("the random number generator failed".into());
        match alg.family() {
            _ if !alg.is_supported() => Err(unsupported(alg)),
            Family::Ed25519 => {
                let doc = signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(rng_err)?;
                SigningKey::from_pkcs8_der(alg, doc.as_ref())
            }
            Family::Ecdsa => {
                let doc = signature::EcdsaKeyPair::generate_pkcs8(ecdsa_signing(alg), &rng)
                    .map_err(rng_err)?;
                SigningKey::from_pkcs8_der(alg, doc.as_ref())
            }
            Family::Rsa => {
                let der = backend::rsa_generate_pkcs8(2048).ok_or_else(|| {
                    KeyError::Unsupported(format!(
                        "RSA key generation needs the aws-lc-rs backend (this build uses {}); \
                         make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`",
                        backend::NAME
                    ))
                })?;
                SigningKey::from_pkcs8_der(alg, &der)
            }
            Family::Hmac => {
                let mut secret = Zeroizing::new(vec![0u8; alg.min_secret_len()]);
                rand::SecureRandom::fill(&rng, &mut secret).map_err(rng_err)?;
                SigningKey::from_hmac_secret(alg, &secret)
            }
        }
    }

    /// An HMAC key; the secret must be at least as long as the hash output.
    pub fn from_hmac_secret(alg: Algorithm, secret: &[u8]) -> Result<SigningKey, KeyError> {
        if alg.family() != Family::Hmac {
            return Err(mismatch(alg, "an HMAC secret"));
        }
        if secret.len() < alg.min_secret_len() {
            return Err(KeyError::Weak(format!(
                "{alg} secret of {} bytes (at least {} required)",
                secret.len(),
                alg.min_secret_len()
            )));
        }
        Ok(SigningKey {
            alg,
            signer: Signer::Hmac {
                key: hmac::Key::new(hmac_alg(alg), secret),
                secret: Zeroizing::new(secret.to_vec()),
            },
            pkcs8: None,
        })
    }

    /// A private key from PKCS#8 DER (v1 or v2).
    pub fn from_pkcs8_der(alg: Algorithm, der: &[u8]) -> Result<SigningKey, KeyError> {
        let refused = |e: backend::imp::error::KeyRejected| {
            let why = e.to_string();
            if why.contains("TooSmall") {
                KeyError::Weak(format!("the key is too small for {alg} ({why})"))
            } else {
                mismatch(alg, format!("the PKCS#8 key was refused ({why})"))
            }
        };
        let signer = match alg.family() {
            _ if !alg.is_supported() => return Err(unsupported(alg)),
            Family::Ed25519 => Signer::Ed25519(
                signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(refused)?,
            ),
            Family::Ecdsa => {
                Signer::Ecdsa(backend::ecdsa_from_pkcs8(ecdsa_signing(alg), der).map_err(refused)?)
            }
            Family::Rsa => {
                let kp = signature::RsaKeyPair::from_pkcs8(der).map_err(refused)?;
                let (n, e) = spki::rsa_public_from_pkcs1(kp.public_key().as_ref())?;
                check_rsa(&n, &e)?;
                Signer::Rsa(kp)
            }
            Family::Hmac => return Err(mismatch(alg, "a PKCS#8 private key")),
        };
        Ok(SigningKey {
            alg,
            signer,
            pkcs8: Some(Zeroizing::new(der.to_vec())),
        })
    }

    /// A private key from PEM: `PRIVATE KEY` (PKCS#8) or, for RSA, `RSA PRIVATE KEY` (PKCS#1).
    pub fn from_pkcs8_pem(alg: Algorithm, pem_text: &str) -> Result<SigningKey, KeyError> {
        let block = pem::parse(pem_text).map_err(|e| KeyError::Pem(e.to_string()))?;
        match block.tag() {
            "PRIVATE KEY" => SigningKey::from_pkcs8_der(alg, block.contents()),
            "RSA PRIVATE KEY" if alg.family() == Family::Rsa => {
                let kp = signature::RsaKeyPair::from_der(block.contents())
                    .map_err(|e| KeyError::Invalid(format!("RSA private key refused ({e})")))?;
                let (n, e) = spki::rsa_public_from_pkcs1(kp.public_key().as_ref())?;
                check_rsa(&n, &e)?;
                Ok(SigningKey {
                    alg,
                    signer: Signer::Rsa(kp),
                    pkcs8: None,
                })
            }
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::Pem(
                "encrypted private keys are not supported; decrypt it first".into(),
            )),
            other => Err(KeyError::Pem(format!(
                "expected a PRIVATE KEY block, found {other:?}"
            ))),
        }
    }

    /// A private key from a JWK: `oct` (HS*), `OKP` Ed25519 (`d`, `x`) or `EC` (`d`, `x`, `y`).
    /// RSA private keys load from PKCS#8 instead.
    pub fn from_jwk(jwk: &Jwk) -> Result<SigningKey, KeyError> {
        let alg = jwk_alg(jwk)?;
        if !alg.is_supported() {
            return Err(unsupported(alg));
        }
        let refused = |e: backend::imp::error::KeyRejected| {
            KeyError::Invalid(format!("the JWK private key was refused ({e})"))
        };
        match alg.family() {
            Family::Hmac => {
                let k = Zeroizing::new(decode_field(jwk, "k", &jwk.k)?);
                SigningKey::from_hmac_secret(alg, &k)
            }
            Family::Ed25519 => {
                let d = Zeroizing::new(decode_field(jwk, "d", &jwk.d)?);
                let x = decode_field(jwk, "x", &jwk.x)?;
                let kp =
                    signature::Ed25519KeyPair::from_seed_and_public_key(&d, &x).map_err(refused)?;
                Ok(SigningKey {
                    alg,
                    signer: Signer::Ed25519(kp),
                    pkcs8: None,
                })
            }
            Family::Ecdsa => {
                let d = Zeroizing::new(decode_field(jwk, "d", &jwk.d)?);
                let point = ec_point(jwk, alg)?;
                let kp = backend::ecdsa_from_private_and_public(ecdsa_signing(alg), &d, &point)
                    .map_err(refused)?;
                Ok(SigningKey {
                    alg,
                    signer: Signer::Ecdsa(kp),
                    pkcs8: None,
                })
            }
            Family::Rsa => Err(KeyError::Unsupported(
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
        let der = self.pkcs8.as_ref()?;
        Some(Zeroizing::new(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            der.as_slice(),
        ))))
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
            _ => None,
        }
    }

    /// The key that verifies this key's signatures (for HMAC, the same secret).
    pub fn verifying_key(&self, kid: Option<String>) -> VerifyingKey {
        let public = match &self.signer {
            Signer::Ed25519(kp) => Public::Ed25519(kp.public_key().as_ref().to_vec()),
            Signer::Ecdsa(kp) => Public::Ec(kp.public_key().as_ref().to_vec()),
            Signer::Rsa(kp) => {
                // The backend's own encoding of its own key; checked when the key was loaded.
                // DER integers carry a leading zero when the top bit is set: trim it.
                let (n, e) =
                    spki::rsa_public_from_pkcs1(kp.public_key().as_ref()).unwrap_or_default();
                Public::Rsa {
                    n: trim_be(&n).to_vec(),
                    e: trim_be(&e).to_vec(),
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
            Signer::Ed25519(kp) => Ok(kp.sign(message).as_ref().to_vec()),
            Signer::Ecdsa(kp) => kp
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Crypto),
            Signer::Rsa(kp) => {
                let mut sig = vec![0u8; backend::rsa_modulus_len(kp)];
                kp.sign(rsa_padding(self.alg), &rng, message, &mut sig)
                    .map_err(|_| SignError::Crypto)?;
                Ok(sig)
            }
            Signer::Hmac { key, .. } => Ok(hmac::sign(key, message).as_ref().to_vec()),
        }
    }
}

fn ec_point(jwk: &Jwk, alg: Algorithm) -> Result<Vec<u8>, KeyError> {
    let len = if alg == Algorithm::Es384 { 48 } else { 32 };
    let x = decode_field(jwk, "x", &jwk.x)?;
    let y = decode_field(jwk, "y", &jwk.y)?;
    if x.len() != len || y.len() != len {
        return Err(mismatch(
            alg,
            format!(
                "coordinates of {}/{} bytes, expected {len}",
                x.len(),
                y.len()
            ),
        ));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

// ---------------------------------------------------------------------------------------------
// Verifying keys

#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Public {
    Ed25519(Vec<u8>),
    Ec(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
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
    kid: Option<String>,
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
        let public = spki::public_from_spki(alg, der)?;
        VerifyingKey::from_public(alg, public, kid)
    }

    /// A public key from SPKI PEM (`-----BEGIN PUBLIC KEY-----`), pinned to `alg`.
    pub fn from_spki_pem(
        alg: Algorithm,
        pem_text: &str,
        kid: Option<String>,
    ) -> Result<VerifyingKey, KeyError> {
        let block = pem::parse(pem_text).map_err(|e| KeyError::Pem(e.to_string()))?;
        if block.tag() != "PUBLIC KEY" {
            return Err(KeyError::Pem(format!(
                "expected a PUBLIC KEY block, found {:?}",
                block.tag()
            )));
        }
        VerifyingKey::from_spki_der(alg, block.contents(), kid)
    }

    /// The subject public key of an X.509 certificate (DER), pinned to `alg`. The certificate
    /// itself is not validated here: that is the PKI's job.
    pub fn from_x509_der(
        alg: Algorithm,
        der: &[u8],
        kid: Option<String>,
    ) -> Result<VerifyingKey, KeyError> {
        let public = spki::public_from_certificate(alg, der)?;
        VerifyingKey::from_public(alg, public, kid)
    }

    /// The subject public key of a PEM certificate, pinned to `alg`.
    pub fn from_x509_pem(
        alg: Algorithm,
        pem_text: &str,
        kid: Option<String>,
    ) -> Result<VerifyingKey, KeyError> {
        let block = pem::parse(pem_text).map_err(|e| KeyError::Pem(e.to_string()))?;
        if block.tag() != "CERTIFICATE" {
            return Err(KeyError::Pem(format!(
                "expected a CERTIFICATE block, found {:?}",
                block.tag()
            )));
        }
        VerifyingKey::from_x509_der(alg, block.contents(), kid)
    }

    /// A verification key from a JWK (public or private members; only the public part is
    /// kept for asymmetric keys). The JWK's `use`/`key_ops` are checked by [`KeySet`]; this
    /// refuses keys that may not verify as well.
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyingKey, KeyError> {
        if let Some(why) = jwk.verify_forbidden() {
            return Err(KeyError::Invalid(why));
        }
        let alg = jwk_alg(jwk)?;
        if !alg.is_supported() {
            return Err(unsupported(alg));
        }
        let kid = jwk.kid.clone();
        match alg.family() {
            Family::Hmac => {
                let k = Zeroizing::new(decode_field(jwk, "k", &jwk.k)?);
                VerifyingKey::from_hmac_secret(alg, &k, kid)
            }
            Family::Ed25519 => {
                let x = decode_field(jwk, "x", &jwk.x)?;
                VerifyingKey::from_public(alg, Public::Ed25519(x), kid)
            }
            Family::Ecdsa => VerifyingKey::from_public(alg, Public::Ec(ec_point(jwk, alg)?), kid),
            Family::Rsa => {
                let n = decode_field(jwk, "n", &jwk.n)?;
                let e = decode_field(jwk, "e", &jwk.e)?;
                VerifyingKey::from_public(alg, Public::Rsa { n, e }, kid)
            }
        }
    }

    fn from_public(
        alg: Algorithm,
        public: Public,
        kid: Option<String>,
    ) -> Result<VerifyingKey, KeyError> {
        let public = match public {
            Public::Ed25519(x) if x.len() != 32 => {
                return Err(mismatch(alg, format!("Ed25519 key of {} bytes", x.len())));
            }
            Public::Rsa { n, e } => {
                let (n, e) = check_rsa(&n, &e)?;
                Public::Rsa {
                    n: n.to_vec(),
                    e: e.to_vec(),
                }
            }
            other => other,
        };
        Ok(VerifyingKey::assemble(alg, kid, public))
    }

    fn assemble(alg: Algorithm, kid: Option<String>, public: Public) -> VerifyingKey {
        let prepared = match &public {
            Public::Ed25519(x) => backend::Prepared::new(&signature::ED25519, x),
            Public::Ec(point) => backend::Prepared::new(ec_verification(alg), point),
            Public::Rsa { n, e } => {
                backend::Prepared::new(verification_alg(alg), &spki::rsa_public_der(n, e))
            }
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
            Public::Ec(point) => {
                let len = (point.len().saturating_sub(1)) / 2;
                jwk.kty = Some("EC".into());
                jwk.crv = self.alg.curve().map(Into::into);
                jwk.x = point.get(1..1 + len).map(b64::encode);
                jwk.y = point.get(1 + len..).map(b64::encode);
            }
            Public::Rsa { n, e } => {
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
        let bad = |_| VerifyError::new(ErrorKind::BadSignature, "the signature does not verify");
        match self.prepared.verify(message, sig) {
            Some(true) => return Ok(()),
            Some(false) => {
                return Err(VerifyError::new(
                    ErrorKind::BadSignature,
                    "the signature does not verify",
                ));
            }
            None => {}
        }
        match &self.public {
            Public::Ed25519(x) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, x).verify(message, sig)
            }
            Public::Ec(point) => {
                signature::UnparsedPublicKey::new(ec_verification(self.alg), point)
                    .verify(message, sig)
            }
            Public::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }.verify(
                verification_alg(self.alg),
                message,
                sig,
            ),
            Public::Hmac { key, .. } => hmac::verify(key, message, sig),
        }
        .map_err(bad)
    }
}

// ---------------------------------------------------------------------------------------------
// Key sets

/// A key left out of a [`KeySet`] because it may not verify signatures here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Its `kid`, if it had one.
    pub kid: Option<String>,
    /// Whether it was left out because its algorithm is unsupported (else: not for signing).
    pub unsupported: bool,
    /// Why, in words.
    pub reason: String,
}

/// The most keys (usable and skipped together) one [`KeySet`] or JWKS may hold. A real set
/// holds a handful (the current key and the ones rotating in and out); a larger one is refused
/// with [`KeyError::TooManyKeys`] before any key is parsed.
pub const MAX_KEYS: usize = 1000;

/// Where a `kid` of a [`KeySet`] is.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Key(usize),
    Skipped(usize),
}

/// Verification keys chosen by `kid`: no duplicate kids, not mixing symmetric and asymmetric
/// keys, and (when there are several) every key named; at most [`MAX_KEYS`]. Loading is linear
/// in the number of keys and choosing a key by `kid` is one hash lookup.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    skipped: Vec<Skipped>,
    by_kid: std::collections::HashMap<String, Slot>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// A set of one key.
    pub fn single(key: VerifyingKey) -> KeySet {
        let mut set = KeySet::new();
        if let Some(kid) = &key.kid {
            set.by_kid.insert(kid.clone(), Slot::Key(0));
        }
        set.keys.push(key);
        set
    }

    fn check_room(&self) -> Result<(), KeyError> {
        if self.keys.len() + self.skipped.len() >= MAX_KEYS {
            return Err(KeyError::TooManyKeys { max: MAX_KEYS });
        }
        Ok(())
    }

    fn check_new_kid(&self, kid: Option<&String>) -> Result<(), KeyError> {
        match kid {
            Some(kid) if self.by_kid.contains_key(kid) => Err(KeyError::DuplicateKid(kid.clone())),
            _ => Ok(()),
        }
    }

    /// Add a key, refusing a duplicate `kid`, a symmetric key beside asymmetric ones (or the
    /// reverse), an unnamed key beside others, and a key past [`MAX_KEYS`].
    pub fn insert(&mut self, key: VerifyingKey) -> Result<(), KeyError> {
        if let Some(first) = self.keys.first() {
            if first.is_symmetric() != key.is_symmetric() {
                return Err(KeyError::MixedSet("symmetric and asymmetric keys"));
            }
            // An unnamed key is only ever alone, so the first key tells.
            if key.kid.is_none() || first.kid.is_none() {
                return Err(KeyError::MissingKid);
            }
        }
        self.check_new_kid(key.kid.as_ref())?;
        self.check_room()?;
        if let Some(kid) = &key.kid {
            self.by_kid.insert(kid.clone(), Slot::Key(self.keys.len()));
        }
        self.keys.push(key);
        Ok(())
    }

    fn skip(&mut self, skipped: Skipped) -> Result<(), KeyError> {
        self.check_new_kid(skipped.kid.as_ref())?;
        self.check_room()?;
        if let Some(kid) = &skipped.kid {
            self.by_kid
                .insert(kid.clone(), Slot::Skipped(self.skipped.len()));
        }
        self.skipped.push(skipped);
        Ok(())
    }

    /// Load a JWK Set. Keys that may not verify (`use: enc`, `key_ops` without `verify`, an
    /// encryption or unsupported algorithm) are left out and listed in [`skipped`](Self::skipped);
    /// anything else wrong with any key (weak, malformed, duplicate kid, mixed set) refuses the
    /// whole set.
    pub fn from_jwk_set(set: &JwkSet) -> Result<KeySet, KeyError> {
        let asym: Vec<&Jwk> = set
            .keys
            .iter()
            .filter(|k| k.kty.as_deref() != Some("oct"))
            .collect();
        if asym.iter().any(|k| k.d.is_some()) && asym.iter().any(|k| k.d.is_none()) {
            return Err(KeyError::MixedSet("public and private keys"));
        }
        if set.keys.len() > MAX_KEYS {
            return Err(KeyError::TooManyKeys { max: MAX_KEYS });
        }
        if set.keys.is_empty() {
            return Err(KeyError::EmptySet);
        }
        let mut out = KeySet::new();
        for jwk in &set.keys {
            match VerifyingKey::from_jwk(jwk) {
                Ok(key) => out.insert(key)?,
                Err(e) => {
                    let skip = match &e {
                        KeyError::Invalid(_) if jwk.verify_forbidden().is_some() => Some(false),
                        KeyError::Unsupported(_) => Some(true),
                        _ => None,
                    };
                    let Some(unsupported) = skip else {
                        return Err(e);
                    };
                    out.skip(Skipped {
                        kid: jwk.kid.clone(),
                        unsupported,
                        reason: e.to_string(),
                    })?;
                }
            }
        }
        let kinds: Vec<bool> = set
            .keys
            .iter()
            .map(|k| k.kty.as_deref() == Some("oct"))
            .collect();
        if kinds.iter().any(|&s| s) && kinds.iter().any(|&s| !s) {
            return Err(KeyError::MixedSet("symmetric and asymmetric keys"));
        }
        Ok(out)
    }

    /// Load a JWKS from JSON.
    pub fn from_jwks_json(json: &str) -> Result<KeySet, KeyError> {
        KeySet::from_jwk_set(&JwkSet::from_json(json)?)
    }

    /// Load a JWKS (`{"keys": [...]}`) or a single JWK from JSON.
    pub fn from_json(json: &str) -> Result<KeySet, KeyError> {
        let set = JwkSet::from_json(json);
        match set {
            Ok(set) => KeySet::from_jwk_set(&set),
            Err(e @ KeyError::TooManyKeys { .. }) => Err(e),
            Err(_) => {
                let jwk = Jwk::from_json(json)?;
                KeySet::from_jwk_set(&JwkSet { keys: vec![jwk] })
            }
        }
    }

    /// The set as a JWKS (HMAC keys included with their secrets).
    pub fn to_jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(VerifyingKey::to_jwk).collect(),
        }
    }

    /// The kids of the usable keys.
    pub fn kids(&self) -> impl Iterator<Item = Option<&str>> {
        self.keys.iter().map(VerifyingKey::kid)
    }

    /// The keys left out when the set was loaded.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// How many usable keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token's `kid`: the key with that kid; with no kid, the only key of a set
    /// of one.
    pub fn get(&self, kid: Option<&str>) -> Result<&VerifyingKey, VerifyError> {
        let skipped = match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(Slot::Key(i)) => {
                    if let Some(k) = self.keys.get(*i) {
                        return Ok(k);
                    }
                    None
                }
                Some(Slot::Skipped(i)) => self.skipped.get(*i),
                None => None,
            },
            None if self.keys.len() == 1 && self.skipped.is_empty() => {
                if let Some(k) = self.keys.first() {
                    return Ok(k);
                }
                None
            }
            None => self
                .skipped
                .iter()
                .find(|s| s.kid.is_none() || self.keys.is_empty()),
        };
        Err(match (skipped, kid) {
            (Some(s), _) if s.unsupported => {
                VerifyError::new(ErrorKind::Unsupported, s.reason.clone())
            }
            (Some(s), _) => VerifyError::new(ErrorKind::KeyNotUsable, s.reason.clone()),
            (None, Some(_)) => VerifyError::new(ErrorKind::UnknownKid, "no key has this kid"),
            (None, None) => VerifyError::new(
                ErrorKind::UnknownKid,
                "the token has no kid and the key set has more than one key",
            ),
        })
    }
}
