//! Keys: signing keys, verifying keys pinned to one algorithm, and key sets chosen by `kid`.
//!
//! Every key is pinned to exactly one [`Algorithm`] when it is loaded; a token whose header
//! names another algorithm is refused before any signature math (RFC 8725 §3.1). Keys load from
//! PKCS#8 (PEM or DER, v1 and v2), SPKI PEM public keys, X.509 certificates, and JWK / JWKS;
//! weak keys (RSA under 2048 bits, small or even exponents, ROCA-vulnerable moduli, HMAC
//! secrets shorter than the hash) are refused at load time with a typed [`WeakKey`] reason.
//! `Debug` never prints key material.
//!
//! The module's files: `signing` ([`SigningKey`]), `verifying` ([`VerifyingKey`]), `set`
//! ([`KeySet`]), `jwk` (the JWK wire shape), `pem` and `spki` (the encodings), `weak` (the
//! weak-key check), `tables` (what each algorithm needs of the backend, one exhaustive table).
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
mod pem;
mod roca;
mod set;
mod signing;
mod spki;
mod tables;
mod verifying;
mod weak;

pub use jwk::{Jwk, JwkSet};
pub use set::{KeySet, MAX_KEYS, Skipped};
pub use signing::SigningKey;
pub use verifying::VerifyingKey;
pub use weak::WeakKey;

use crate::alg::Algorithm;
use crate::error::KeyError;

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
