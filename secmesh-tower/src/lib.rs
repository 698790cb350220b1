//! # secmesh-tower
//!
//! The tower layers service authors wrap around their axum routers and tonic servers, and the
//! client-side layer that carries the token to the next service.
//!
//! - [`stack`]: **the server stack**, [`SecureLayer`]: audit → authenticate → authorize in one
//!   service, built and checked by one builder; start here.
//! - [`outcome`]: the request's one typed [`Outcome`] (anonymous, authenticated, permitted,
//!   denied), in the request and response extensions.
//! - [`audit`]: an `in` event for every request and an `out` event for every call, into a
//!   `secmesh_audit::Auditor`.
//! - [`authenticate`]: verify the `Txn-Token`, set the [request context](context), 401 / gRPC
//!   UNAUTHENTICATED otherwise.
//! - [`authorize`]: classify the request into (verb, object) and ask the policy engine and the
//!   token's grants; 403 / gRPC PERMISSION_DENIED otherwise.
//! - [`propagate`]: put the current token and a child `traceparent` on outgoing requests, to
//!   allowed destinations only.
//! - [`jwks`]: publish a key ring's keys at `/.well-known/jwks.json` (Cache-Control, ETag)
//!   and the issuer's metadata document.
//! - [`reload`]: watch a policy file and swap it in without a restart.
//! - [`serve`]: serving HTTP/1.1 and HTTP/2 with connection limits (caps, timeouts, HTTP/2
//!   limits) over plain TCP, for an edge behind a TLS-terminating proxy (feature `serve`, on by
//!   default).
//! - [`tls`]: mutual TLS serving (axum, tonic) and connecting, with the peer's SPIFFE identity
//!   in every request (feature `tls`, on by default).
//! - [`sts_client`]: the client of the Txn-Token Service: exchange a subject token for a
//!   txn-token over mutual TLS, bounded in time and size (feature `tls`).
//! - [`context`]: the task-local request context and [`context::spawn`].
//! - [`deny`]: the typed [`DenyReason`] and the one [`Responder`] that turns it into HTTP
//!   (problem+json) or a gRPC status, swappable.
//!
//! [`AuditLayer`], [`AuthenticateLayer`] and [`AuthorizeLayer`] are the same parts as separate
//! layers, for à-la-carte stacks (add them in that order, audit outermost).
//!
//! Every layer has the same anatomy: `XLayer` (configuration, `Clone`), `X<S>` (the service,
//! `poll_ready` passed through), a named `ResponseFuture` (pin-project, no boxing).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod audit;
pub mod authenticate;
pub mod authorize;
pub mod context;
pub mod deny;
pub mod edge;
pub mod error;
#[cfg(feature = "axum")]
pub mod extract;
#[cfg(feature = "redis")]
pub mod fleet_policy;
pub mod future;
pub mod jwks;
pub mod limit;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
pub mod outcome;
pub mod propagate;
pub mod reload;
#[cfg(feature = "redis")]
pub mod revoke;
#[cfg(feature = "serve")]
pub mod serve;
pub mod stack;
pub mod sts;
#[cfg(feature = "tls")]
pub mod sts_client;
#[cfg(feature = "tls")]
pub mod tls;

pub use audit::{AuditLayer, AuditOutLayer};
pub use authenticate::AuthenticateLayer;
pub use authorize::{AttributeSource, AuthorizeLayer, GrpcClassifier, Permitted};
pub use context::RequestContext;
pub use deny::{DenialResponse, DenyReason, ProblemJson, Responder};
pub use error::ConfigError;
pub use outcome::{Denied, Outcome};
pub use propagate::PropagateLayer;
pub use stack::SecureLayer;
