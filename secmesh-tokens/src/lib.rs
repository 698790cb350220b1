//! # secmesh-tokens
//!
//! Strict JWS compact parsing, signing and verification of secmesh transaction tokens, on ring
//! (the default) or aws-lc-rs (the `aws-lc-rs` feature).
//!
//! - [`jws`]: the compact parser (three parts, strict base64url, strict JSON, size and depth
//!   limits, no `crit`/`zip`/`b64`), signing, and raw verification of any payload.
//! - [`key`]: keys pinned to one algorithm, from PKCS#8, SPKI, X.509 and JWK/JWKS; key sets by
//!   `kid`; weak keys refused.
//! - [`Issuer`] mints a token for an [`ExpiryClass`](secmesh_core::ExpiryClass); [`Verifier`]
//!   returns a [`Verified<Claims>`](Verified) proof or a [`VerifyError`] whose
//!   [`kind`](VerifyError::kind) says exactly why.
//!
//! - [`keyring`]: an issuer's rotating keys (next, current, retired) in a directory, and the
//!   JWKS it publishes; [`Issuer::from_ring`] signs with the current one.
//!
//! - [`source`]: where a [`Verifier`] finds its keys, swapped live: a fixed set, a watched
//!   file, a JWKS URL or OIDC discovery (the `remote` feature), refreshed in the background and
//!   on an unknown `kid`; [`multi`]: one verifier per issuer, chosen by `iss`.
//!
//! - [`crypto`]: the seam the other secmesh crates hash and sign through (one backend for all).
//!
//! Issuing and verifying are synchronous and fast (microseconds), so async code calls them directly; share them
//! in an `Arc`.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use secmesh_core::ExpiryClass;
//! use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let verifier = Arc::new(
//!     Verifier::new(KeySet::single(key.verifying_key(Some("gw-1".into()))))
//!         .issuer("https://gw.mesh.test")
//!         .audience("mesh.test")
//!         .max_class(ExpiryClass::Fast),
//! );
//! let issuer = Issuer::new(key, "gw-1", "https://gw.mesh.test").audience("mesh.test");
//! let token = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast).grant("read", "orders/*"))?;
//!
//! let handle = tokio::spawn({
//!     let verifier = verifier.clone();
//!     async move { verifier.verify(&token).map(|c| c.sub.clone()) }
//! });
//! assert_eq!(handle.await??, "user:alice");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod alg;
mod b64;
mod backend;
pub mod cache;
pub mod crypto;
pub mod error;
pub mod exchange;
pub mod external;
pub mod issuer;
pub mod jws;
pub mod key;
pub mod keyring;
pub mod manual;
pub mod multi;
pub mod renew;
pub mod revocation;
pub mod source;
pub mod verifier;

pub use alg::Algorithm;
pub use backend::NAME as BACKEND;
pub use error::{ErrorKind, KeyError, SignError, VerifyError};
pub use issuer::{ActiveKey, Issuer, LiveKey, MintRequest};
pub use key::{Jwk, JwkSet, KeySet, SigningKey, VerifyingKey};
pub use secmesh_core::claims::Claims;
pub use verifier::{Revocation, RevocationList, TXN_TOKEN_TYP, Verified, Verifier};

/// The HTTP header that carries a transaction token between services.
pub const TXN_TOKEN_HEADER: &str = "Txn-Token";
