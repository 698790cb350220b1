//! Publishing an issuer's keys: `/.well-known/jwks.json` from a
//! [`KeyRing`](secmesh_tokens::keyring::KeyRing), and the metadata document that names it.
//!
//! [`JwksLayer`] answers, for GET and HEAD:
//!
//! - `/.well-known/jwks.json`: the ring's published keys (next, current and retired, public
//!   members only), `Content-Type: application/jwk-set+json`, `Cache-Control: public,
//!   max-age=N` with N the ring's max-cache period (the period a next key is published before
//!   it signs, so a verifier that honours it never meets an unknown kid), a strong `ETag`, and
//!   `304 Not Modified` for a matching `If-None-Match`. The document is rebuilt only when the
//!   ring changes; serving it takes no lock.
//! - with an issuer (given, or recorded in the ring): the metadata document `{"issuer",
//!   "jwks_uri"}` at `/.well-known/oauth-authorization-server` (RFC 8414) and
//!   `/.well-known/openid-configuration` (OpenID Connect Discovery), and for an issuer with a
//!   path `/p` also at `/.well-known/oauth-authorization-server/p` and
//!   `/p/.well-known/openid-configuration`, where the two specifications look for it. The
//!   `issuer` is exactly the configured one: verifiers compare it byte for byte.
//!
//! Other methods on these paths get `405` with `Allow: GET, HEAD`; every other request goes to
//! the inner service. [`JwksLayer::service`] is the standalone endpoint (`404` for other
//! paths), as `secmesh keys serve` runs it. [`watch`] follows rotations made by another process
//! (`secmesh keys rotate`): it polls the ring's state file and reloads the ring when it changes.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use http::{Request, StatusCode, header};
//! use secmesh_core::SystemClock;
//! use secmesh_tokens::keyring::{KeyRing, RingConfig};
//! use secmesh_tokens::KeySet;
//! use secmesh_tower::jwks::JwksLayer;
//! use tower::ServiceExt;
//! use http_body_util::BodyExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let ring = Arc::new(KeyRing::init(dir.path(), RingConfig::default(), Arc::new(SystemClock))?);
//! let jwks = JwksLayer::new(ring).issuer("https://sts.mesh.test")?;
//!
//! let res = jwks.service().oneshot(Request::get("/.well-known/jwks.json").body(())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()[header::CACHE_CONTROL], "public, max-age=600");
//! let etag = res.headers()[header::ETAG].clone();
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(KeySet::from_jwks_json(std::str::from_utf8(&body)?)?.len(), 2);
//!
//! let again = Request::get("/.well-known/jwks.json").header(header::IF_NONE_MATCH, etag).body(())?;
//! assert_eq!(jwks.service().oneshot(again).await?.status(), StatusCode::NOT_MODIFIED);
//!
//! let meta = Request::get("/.well-known/openid-configuration").body(())?;
//! assert_eq!(jwks.service().oneshot(meta).await?.status(), StatusCode::OK);
//! # Ok(()) }
//! ```

mod body;
mod future;
mod layer;
mod service;
mod watch;

pub use body::JwksBody;
pub use future::ResponseFuture;
pub use layer::{JwksConfigError, JwksLayer};
pub use service::{Jwks, NotFound};
pub use watch::{RingReload, watch};

/// Where the key set is served.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The RFC 8414 metadata path.
pub const OAUTH_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// The OpenID Connect Discovery metadata path.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
