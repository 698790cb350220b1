//! The crypto seam the other secmesh crates sign and hash through, so that one feature
//! (`ring`, the default, or `aws-lc-rs`) picks the backend for tokens, audit and TLS together.
//!
//! Signing keys are [`SigningKey`](crate::SigningKey)s (the audit log's Ed25519 key is one);
//! this module adds what is not a token key: SHA-256, Ed25519 verification with a raw public
//! key, and the system random number generator. [`BACKEND`](crate::BACKEND) names the backend
//! compiled in.
//!
//! When both features are on (a workspace build that unifies them), aws-lc-rs wins, here and in
//! the rustls provider `secmesh-tls` chooses; neither feature changes what is accepted or
//! produced, only which library computes it.
//!
//! # Example
//! ```
//! use secmesh_tokens::{Algorithm, SigningKey, crypto};
//!
//! let digest = crypto::sha256(b"abc");
//! assert_eq!(digest[..4], [0xba, 0x78, 0x16, 0xbf]);
//!
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let public = key.ed25519_public_key().expect("an Ed25519 key");
//! let sig = key.sign(b"checkpoint")?;
//! assert!(crypto::verify_ed25519(public, b"checkpoint", &sig));
//! assert!(!crypto::verify_ed25519(public, b"checkpoinT", &sig));
//!
//! let mut nonce = [0u8; 16];
//! crypto::fill_random(&mut nonce)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::backend::{digest, rand, signature};
use crate::error::SignError;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether `sig` is a valid Ed25519 signature of `message` by the raw 32-byte `public` key.
pub fn verify_ed25519(public: &[u8], message: &[u8], sig: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, public)
        .verify(message, sig)
        .is_ok()
}

/// Fill `buf` from the system random number generator ([`SignError::Random`] if it fails).
pub fn fill_random(buf: &mut [u8]) -> Result<(), SignError> {
    rand::SecureRandom::fill(&rand::SystemRandom::new(), buf).map_err(|_| SignError::Random)
}
