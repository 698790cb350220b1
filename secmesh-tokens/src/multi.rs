//! [`MultiVerifier`]: tokens from several issuers (a gateway that accepts two IdPs), each
//! verified by its own [`Verifier`] (its own keys or key source), chosen by the token's `iss`.
//!
//! The token is parsed once: its payload is decoded to read `iss` (nothing in it is trusted
//! yet), the issuer's verifier checks the signature with its keys, then the claims as usual. An
//! `iss` that no verifier is configured for is refused with `wrong_iss` before any signature
//! work.
//!
//! # Example
//! ```
//! use secmesh_core::ExpiryClass;
//! use secmesh_tokens::multi::MultiVerifier;
//! use secmesh_tokens::{Algorithm, ErrorKind, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//!
//! let a = SigningKey::generate(Algorithm::EdDsa)?;
//! let b = SigningKey::generate(Algorithm::EdDsa)?;
//! let multi = MultiVerifier::new()
//!     .issuer("https://a.test", Verifier::new(KeySet::single(a.verifying_key(Some("a1".into())))))
//!     .issuer("https://b.test", Verifier::new(KeySet::single(b.verifying_key(Some("b1".into())))));
//! let from_b = Issuer::new(b, "b1", "https://b.test")
//!     .audience("mesh.test")
//!     .mint(&MintRequest::new("user:bob", ExpiryClass::Fast))?;
//! assert_eq!(multi.verify(&from_b)?.sub, "user:bob");
//!
//! let c = SigningKey::generate(Algorithm::EdDsa)?;
//! let from_c = Issuer::new(c, "c1", "https://c.test")
//!     .audience("mesh.test")
//!     .mint(&MintRequest::new("user:eve", ExpiryClass::Fast))?;
//! assert_eq!(multi.verify(&from_c).unwrap_err().kind(), ErrorKind::WrongIss);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use secmesh_core::claims::Claims;

use crate::error::{ErrorKind, VerifyError};
use crate::jws;
use crate::verifier::{Verified, Verifier, decode_claims};

/// One [`Verifier`] per issuer, chosen by `iss`; see the [module docs](self).
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct MultiVerifier {
    by_iss: HashMap<String, Arc<Verifier>>,
    max_size: usize,
}

impl MultiVerifier {
    /// No issuer yet; tokens up to the default size limit (8 KiB).
    pub fn new() -> MultiVerifier {
        MultiVerifier {
            by_iss: HashMap::new(),
            max_size: jws::DEFAULT_MAX_SIZE,
        }
    }

    /// Accept tokens whose `iss` is `iss`, verified by `verifier` (its expected issuer is set
    /// to `iss`).
    pub fn issuer(mut self, iss: impl Into<String>, verifier: Verifier) -> MultiVerifier {
        let iss = iss.into();
        let verifier = verifier.issuer(iss.clone());
        self.by_iss.insert(iss, Arc::new(verifier));
        self
    }

    /// The size limit on a token before it is parsed (each verifier's own limit applies too).
    pub fn max_size(mut self, bytes: usize) -> MultiVerifier {
        self.max_size = bytes;
        self
    }

    /// The verifier for `iss`.
    pub fn get(&self, iss: &str) -> Option<&Arc<Verifier>> {
        self.by_iss.get(iss)
    }

    /// Verify a token with the verifier of its `iss`, against its current keys.
    pub fn verify(&self, token: &str) -> Result<Verified<Claims>, VerifyError> {
        jws::with_scratch(|buf| {
            let (parts, claims, verifier) = self.select(token, buf)?;
            verifier.verify_parts(&parts, Some(claims))
        })
    }

    /// [`verify`](Self::verify), refreshing the issuer's key source once on an unknown `kid`
    /// (see [`Verifier::verify_async`]).
    pub async fn verify_async(&self, token: &str) -> Result<Verified<Claims>, VerifyError> {
        let (result, verifier, generation) = {
            let mut buf = Vec::new();
            let (parts, claims, verifier) = self.select(token, &mut buf)?;
            let generation = verifier.source().generation();
            (
                verifier.verify_parts(&parts, Some(claims)),
                verifier,
                generation,
            )
        };
        match result {
            Err(e) if e.kind() == ErrorKind::UnknownKid && verifier.source().refreshes() => {
                if verifier.source().refresh_unknown_kid(generation).await {
                    self.verify(token)
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    /// Parse once, decode the claims, choose the verifier by `iss`.
    fn select<'t, 'b>(
        &self,
        token: &'t str,
        buf: &'b mut Vec<u8>,
    ) -> Result<(jws::PartsRef<'t, 'b>, Claims, &Verifier), VerifyError> {
        let parts = jws::parse_into(token, self.max_size, buf)?;
        let claims = decode_claims(parts.payload)?;
        let Some(verifier) = self.by_iss.get(&claims.iss) else {
            return Err(VerifyError::new(
                ErrorKind::WrongIss,
                "no verifier for this issuer",
            ));
        };
        if token.len() > verifier.size_limit() {
            return Err(VerifyError::new(
                ErrorKind::TooLarge,
                "larger than the issuer's size limit",
            ));
        }
        Ok((parts, claims, verifier))
    }
}
