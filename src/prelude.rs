//! What a service author needs, in one `use`: `use secmesh::prelude::*;`.
//!
//! Tokens (mint and verify), the policy, the audit log, and, with the matching features, the
//! tower layers, the axum extractors, the servers and mutual TLS. The rest stays one path away,
//! under [`crate::core`], [`crate::tokens`], [`crate::audit`], `crate::tower` and `crate::tls`.
//!
//! The axum extractor [`Claims`] (the verified claims of the request) and the other extractors
//! are here with the `axum` feature; the claims type itself is `secmesh::core::Claims`.
//!
//! # Example
//! ```
//! use secmesh::prelude::*;
//!
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("gw-1".into()))))
//!     .issuer("https://gw.mesh.test")
//!     .audience("mesh.test");
//! let issuer = Issuer::new(key, "gw-1", "https://gw.mesh.test").audience("mesh.test");
//! let token = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
//! assert_eq!(verifier.verify(&token)?.cls, ExpiryClass::Fast);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use secmesh_audit::chain::AuditKey;
pub use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, TracingSink};
pub use secmesh_audit::{Auditor, FullPolicy};
pub use secmesh_core::policy::{Format, Policy, SharedPolicy};
pub use secmesh_core::{ExpiryClass, PeerIdentity, SpiffeId, TxnId};
pub use secmesh_tokens::{
    Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verified, Verifier, VerifyError,
};

#[cfg(feature = "tower")]
pub use secmesh_tower::authorize::GrpcClassifier;
#[cfg(feature = "tower")]
pub use secmesh_tower::deny::GrpcStatus;
#[cfg(feature = "tower")]
pub use secmesh_tower::reload::PolicyWatcher;
#[cfg(feature = "tower")]
pub use secmesh_tower::{
    AuditLayer, AuditOutLayer, AuthenticateLayer, AuthorizeLayer, PropagateLayer, RequestContext,
};

#[cfg(feature = "axum")]
pub use secmesh_tower::extract::{Claims, Decision, Peer, Subject};
#[cfg(feature = "serve")]
pub use secmesh_tower::serve::{PlainServer, ServerLimits};

#[cfg(feature = "tls")]
pub use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Workload};
#[cfg(feature = "tls")]
pub use secmesh_tower::tls::{TlsConnector, TlsServer};

#[cfg(feature = "ca")]
pub use secmesh_tls::ca::Ca;
