//! # secmesh
//!
//! Secure the calls between services from inside them: transaction tokens that travel with
//! each request, claim-based access control, expiry classes, mutual-TLS identities, and an
//! audit log at every boundary. This is the one crate a service depends on: it re-exports the
//! others behind features, and [`prelude`] holds what a service author uses.
//!
//! ## Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `ring` | yes | the ring crypto backend |
//! | `aws-lc-rs` | | the aws-lc-rs backend instead (with `default-features = false`) |
//! | `axum` | yes | the tower layers ([`tower`]) and the axum extractors |
//! | `tonic` | | the tower layers, for tonic (no axum) |
//! | `tls` | yes | mutual TLS ([`tls`]): workloads, `TlsServer`, `TlsConnector`, the Txn-Token Service client `tower::sts_client`; and `serve` |
//! | `serve` | with `tls` | `PlainServer`: HTTP/1.1 and HTTP/2 with connection limits |
//! | `ca` | | the internal development CA, `tls::ca` |
//!
//! ## The design
//!
//! - **Parts, one way**: [`core`] (vocabulary and the policy engine; no I/O, no crypto) ←
//!   [`tokens`] (our own strict JWS parser and verifier on ring, or aws-lc-rs as a feature) and
//!   [`audit`] (events, the bounded queue, chained and signed logs) ← [`tower`] (the only part
//!   that knows tower and http: the server stack `SecureLayer` — audit, authenticate, authorize
//!   in one service with one typed outcome and one responder for HTTP and gRPC — the same parts
//!   as separate layers, propagate, request context, serving) and [`tls`] (X.509-SVIDs, rustls configurations, the internal CA behind
//!   `ca`); the `secmesh` CLI on top. Each is its own crate (`secmesh-core`, ...); a service
//!   names only this one.
//! - **The wire format** follows the OAuth Transaction Tokens draft: `typ: txntoken+jwt`, the
//!   `Txn-Token` header, `txn` (the transaction id, which is also the trace id), `scope` (grants
//!   `verb:object-pattern`), `req_wl` (the requesting workload), `act` (the actor chain), plus
//!   `cls`, the expiry class. Keys are pinned to one algorithm; `none` never; unknown `crit`
//!   refused.
//! - **Time is architecture**: a token is minted for a class — fast (180 s), medium (5400 s) or
//!   slow (86400 s) — whose bound caps its lifetime; a route declares the slowest class it
//!   accepts, and long-running work renews ([`tokens::renew`]) without widening scope.
//! - **Access control** speaks subject/verb/object: grants carried in the token, and per-service
//!   policies (TOML or JSON) from a shared store with the caller (the mTLS peer's SPIFFE ID, else
//!   the token's current actor) and the class; any matching deny wins, every decision names its
//!   rule or reason, shadow rules are evaluated beside it.
//! - **Every boundary is audited**, in and out, correlated by `txn` and span ids, in hash-chained
//!   files with signed checkpoints; the request path only hands an event to a bounded queue, and
//!   what a full queue does (block, drop and count, fail closed) is the user's choice.
//! - **Proof types**: only the verifier makes a [`tokens::Verified`]; only the authorize layer a
//!   `Permitted`. Refusals are typed errors that say why, to the logs; callers get the standard
//!   codes.
//!
//! # Example
//!
//! Mint a token at the edge, verify it in a service, and decide with a policy:
//! ```
//! use secmesh::prelude::*;
//! use secmesh::core::policy::Request;
//!
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("gw-1".into()))))
//!     .audience("mesh.test");
//! let issuer = Issuer::new(key, "gw-1", "https://gw.mesh.test").audience("mesh.test");
//! let token = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
//! let claims = verifier.verify(&token)?;
//!
//! let policy = Policy::parse(r#"
//! [[rule]]
//! id = "owners-read-own-orders"
//! effect = "allow"
//! subjects = ["user:*"]
//! verbs = ["read"]
//! objects = ["orders/{sub}/**"]
//! "#, Format::Toml)?;
//! let decision = policy.decide(&Request::new(&claims.sub, &"read".parse()?, &"orders/user:alice/7".parse()?));
//! assert!(decision.is_allowed());
//! assert_eq!(decision.rule(), Some("owners-read-own-orders"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Protecting an axum router with these and the layers is the README's first example.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod prelude;

pub use secmesh_audit as audit;
pub use secmesh_core as core;
pub use secmesh_tokens as tokens;

/// X.509-SVIDs and peer identity, workloads and their rustls configurations, reload; the
/// internal CA (`tls::ca`) with the `ca` feature. The `secmesh-tls` crate.
#[cfg(feature = "tls")]
pub use secmesh_tls as tls;
/// The server stack (`SecureLayer`) and the tower layers: authenticate, authorize, audit in/out,
/// propagate, the request context,
/// policy reload, denials for HTTP and gRPC, the axum extractors (`axum`), the servers (`axum`,
/// `tls`). The `secmesh-tower` crate.
#[cfg(feature = "tower")]
pub use secmesh_tower as tower;

/// The README's examples, compiled as doctests (they use the default features).
#[cfg(all(doctest, feature = "axum", feature = "tls"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
