//! The server stack: audit → authenticate → authorize in one service, one typed outcome, one
//! responder.
//!
//! [`SecureLayer::builder`] takes the verifier and the (shared, reloadable) policy, and
//! optionally an auditor, the route's slowest accepted [class](secmesh_core::ExpiryClass), the
//! verified-token cache capacity, a classifier, a [`Responder`](crate::deny::Responder) and an
//! [attribute source](crate::authorize::AttributeSource); [`build`](SecureBuilder::build)
//! checks the whole and returns a [`ConfigError`] for a configuration that cannot work. The
//! order of the pieces is fixed inside the one [`Secure`] service, so there is no `.layer()`
//! order to get wrong:
//!
//! 1. **audit**: a request the audit log cannot take is refused up front (503 / gRPC
//!    UNAVAILABLE) under a fail-closed or durable auditor;
//! 2. **authenticate**: the token (`Txn-Token`) is verified through the cache (401 /
//!    UNAUTHENTICATED);
//! 3. **authorize**: the token's class against the route's slowest class (403
//!    `class_not_allowed`), then the request's (verb, object), the token's grants and the
//!    policy (403 / PERMISSION_DENIED, 400, 405, 415);
//! 4. the inner service runs with the [`RequestContext`](crate::RequestContext) set and the
//!    [`Outcome::Permitted`](crate::Outcome) in the request extensions;
//! 5. the `in` event, built from the outcome, is recorded before the response is released.
//!
//! An authenticated request runs in a `tracing` span `secmesh.inbound` whose `trace_id`,
//! `span_id` and `parent_span_id` fields are the ids secmesh propagates in `traceparent`, with
//! the `decision`, `reason` and `rule` recorded once known (the [`PropagateLayer`] opens the
//! matching `secmesh.outbound` client span); the decisions are also counted in
//! [`metrics`](crate::metrics) (the `metrics` feature).
//!
//! [`PropagateLayer`]: crate::PropagateLayer
//!
//! Every denial is one [`DenyReason`](crate::deny::DenyReason), logged at INFO and answered by
//! the responder: problem+json for HTTP, a gRPC status for requests with
//! `content-type: application/grpc*`, so the same layer protects an axum router and a tonic
//! server. The response body is [`SecureBody`]: the inner body untouched, or the denial's.
//!
//! # Where the expiry class is checked
//! The verifier enforces the class's *lifetime bound* (a `fast` token may live 180 s at most);
//! the stack's [`max_class`](SecureBuilder::max_class) is the route's slowest accepted class
//! (a slower token gets 403 `class_not_allowed`); a rule's `max_class` is a condition of that
//! rule like any other.
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use secmesh_core::ExpiryClass;
//! use secmesh_core::policy::{Format, Policy, SharedPolicy};
//! use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//! use secmesh_tower::SecureLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = SharedPolicy::new(Policy::parse(r#"
//! [[rule]]
//! id = "owners-read-own-orders"
//! effect = "allow"
//! subjects = ["user:*"]
//! verbs = ["read"]
//! objects = ["orders/{sub}/**"]
//! "#, Format::Toml)?);
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))));
//! let issuer = Issuer::new(key, "k1", "gw").audience("orders");
//!
//! let secure = SecureLayer::builder(verifier, policy).max_class(ExpiryClass::Fast).build()?;
//! let svc = secure.layer(service_fn(|_: Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
//! }));
//!
//! let get = |token: &str, path: &str| {
//!     Request::get(path).header("txn-token", token).body(String::new()).unwrap()
//! };
//! let fast = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
//! let slow = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Slow))?;
//! assert_eq!(svc.clone().oneshot(get(&fast, "/orders/user:alice/7")).await?.status(), StatusCode::OK);
//! assert_eq!(svc.clone().oneshot(get(&fast, "/orders/user:bob/7")).await?.status(), StatusCode::FORBIDDEN);
//! assert_eq!(svc.oneshot(get(&slow, "/orders/user:alice/7")).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(()) }
//! ```

mod future;
mod layer;
mod responder;
mod service;

pub use crate::error::ConfigError;
pub use future::{NoResume, ResponseFuture, Resume, Resumed};
pub use layer::{DEFAULT_CACHE_CAPACITY, SecureBuilder, SecureLayer};
pub use responder::SecureBody;
pub use service::{Deferred, Secure};
