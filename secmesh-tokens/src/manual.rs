//! # Design notes
//!
//! Why the token code looks the way it does. Nothing here is API.
//!
//! ## Our own parser
//! A JWS is small and its grammar is tiny; the danger is in what general libraries accept
//! besides it: padding, the standard base64 alphabet, non-canonical trailing bits, duplicate
//! JSON members (which member wins differs between libraries), deep nesting, header members
//! that fetch keys (`jku`, `x5u`) or change processing (`crit`, `b64`, `zip`). The parser in
//! [`crate::jws`] accepts one spelling of each token and refuses the rest before any signature
//! work. Duplicate detection happens in [`secmesh_core::json`], a single pass that borrows keys
//! without escapes, before serde decodes the typed header and claims.
//!
//! ## One algorithm per key
//! A key is pinned to an [`Algorithm`](crate::Algorithm) when it is loaded; the header's
//! `alg` only has to equal it. This rules out algorithm confusion (an RSA public key used as an
//! HMAC secret, `none`) by construction. JWKs without `alg` are pinned only where their curve
//! leaves one choice (Ed25519, P-256, P-384).
//!
//! ```
//! use secmesh_core::ExpiryClass;
//! use secmesh_tokens::{Algorithm, ErrorKind, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//!
//! // Two keys under the same kid, of different algorithms: the token's `alg` must be the one
//! // the verifying key was pinned to when it was loaded.
//! let es = SigningKey::generate(Algorithm::Es256)?;
//! let ed = SigningKey::generate(Algorithm::EdDsa)?;
//! let verifier = Verifier::new(KeySet::single(ed.verifying_key(Some("k1".into()))));
//! let token = Issuer::new(es, "k1", "gw").audience("mesh").mint(&MintRequest::new("user:a", ExpiryClass::Fast))?;
//! assert_eq!(verifier.verify(&token).unwrap_err().kind(), ErrorKind::AlgMismatch);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Refusing weak keys at load time
//! RSA moduli under 2048 bits, even or tiny exponents, moduli with the ROCA fingerprint, and
//! HMAC secrets shorter than the hash are refused when a key is loaded, so that a bad key never
//! makes it into a running key set. Keys that are simply not for signatures (`use: enc`,
//! `key_ops` without `verify`, encryption algorithms) are left out of a JWKS and reported by
//! [`KeySet::skipped`](crate::KeySet::skipped); a token naming one gets `key_not_usable`.
//!
//! ## The backend seam
//! ring and aws-lc-rs share their module layout, so the crate is written once against
//! `backend::signature` / `backend::hmac`; the only differences (RNG parameters of ECDSA
//! constructors, RSA key generation) are three functions in one private module.
//!
//! ## Proof types
//! [`Verified`](crate::Verified) has private fields and no public constructor: holding one
//! means the [`Verifier`](crate::Verifier) ran every check. The tower layers put it in the
//! request extensions; handlers take it from there.
//!
//! ## Errors that say why, to the right audience
//! [`VerifyError`](crate::VerifyError) carries a stable [`ErrorKind`](crate::ErrorKind) word
//! (for metrics, audit records and the CLI's `error: <kind>: <detail>`) and a detail that never
//! contains the token, signatures or key material. The HTTP layers send only the standard
//! error codes to callers.
