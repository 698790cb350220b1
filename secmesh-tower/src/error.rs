//! Configuration errors: a stack or layer that cannot work is refused when it is built.
//!
//! # Example
//! ```
//! use secmesh_core::policy::SharedPolicy;
//! use secmesh_tokens::{Algorithm, KeySet, SigningKey, Verifier};
//! use secmesh_tower::{ConfigError, SecureLayer};
//!
//! let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))));
//! let err = SecureLayer::builder(verifier, SharedPolicy::default())
//!     .cache_capacity(0)
//!     .build()
//!     .unwrap_err();
//! assert!(matches!(err, ConfigError::ZeroCacheCapacity));
//! ```

/// Why a secmesh configuration cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The verified-token cache needs room for at least one token.
    #[error("the token cache capacity must be at least 1")]
    ZeroCacheCapacity,
    /// The policy has a rule with attribute conditions and the service has no attribute
    /// source: the rule could never match.
    #[error("rule {rule} has attribute conditions and no attribute source is configured")]
    AttributesWithoutSource {
        /// The first such rule.
        rule: String,
    },
    /// The audit layer's service name is empty.
    #[error("the audited service needs a name")]
    EmptyServiceName,
}
