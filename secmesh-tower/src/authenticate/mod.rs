//! Authenticate: verify the request's token and make it the request's identity.
//!
//! Reads the `Txn-Token` header (and `Authorization: Bearer` where the layer is configured for
//! the edge), verifies it through a [`VerifiedCache`], and then, for the life of the request
//! future, sets the [`RequestContext`] (task-local) and puts the verified claims
//! (`Arc<Verified<Claims>>`) and the context into the request extensions. A missing or invalid
//! token is answered by the [`DenialResponse`] (401 with `WWW-Authenticate`, or gRPC
//! UNAUTHENTICATED) without calling the inner service; in [optional](AuthenticateLayer::optional)
//! mode a request without a token passes anonymously (an invalid token is still refused).
//! A certificate-bound token (`cnf.x5t#S256`) passes only when the connection's
//! [`PeerIdentity`] (put in the extensions by the TLS serving side) has that thumbprint.
//! Inbound headers that only secmesh may set (`x-secmesh-*`) are removed first, so the
//! service never sees a caller's forgery.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use secmesh_core::ExpiryClass;
//! use secmesh_tokens::{Algorithm, Claims, Issuer, KeySet, MintRequest, SigningKey, Verified, Verifier};
//! use secmesh_tower::authenticate::AuthenticateLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into())))).audience("orders");
//! let token = Issuer::new(key, "k1", "gw").audience("orders")
//!     .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
//!
//! let svc = ServiceBuilder::new()
//!     .layer(AuthenticateLayer::from_verifier(verifier, 10_000))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let claims = req.extensions().get::<Arc<Verified<Claims>>>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(claims.sub.clone()))
//!     }));
//!
//! let req = Request::builder().header("txn-token", &token).body(String::new())?;
//! let res = svc.clone().oneshot(req).await?;
//! assert_eq!(res.body(), "user:alice");
//!
//! let res = svc.oneshot(Request::new(String::new())).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, HeaderName};
use http::{HeaderMap, Request, Response};
use secmesh_core::claims::Claims;
use secmesh_core::{PeerIdentity, TraceParent};
use secmesh_tokens::cache::VerifiedCache;
use secmesh_tokens::{ErrorKind, TXN_TOKEN_HEADER, Verifier, VerifyError};
use tower_layer::Layer;
use tower_service::Service;

/// The authenticate layer's response future: the inner future run with the request context
/// set, or the 401.
pub type ResponseFuture<F, B> = DenyOr<TaskLocalFuture<RequestContext, F>, B>;

use tokio::task::futures::TaskLocalFuture;

use crate::context::RequestContext;
use crate::deny::{Denial, DenialResponse, ProblemJson};
use crate::future::DenyOr;

/// Request headers only secmesh may set; removed from every inbound request.
pub const INTERNAL_HEADER_PREFIX: &str = "x-secmesh-";

#[derive(Debug)]
struct Config<D> {
    cache: Arc<VerifiedCache>,
    optional: bool,
    bearer: bool,
    denial: D,
}

/// Adds token authentication to a service. Cheap to clone.
#[derive(Debug)]
#[must_use]
pub struct AuthenticateLayer<D = ProblemJson> {
    config: Arc<Config<D>>,
}

impl<D> Clone for AuthenticateLayer<D> {
    fn clone(&self) -> Self {
        AuthenticateLayer {
            config: self.config.clone(),
        }
    }
}

impl AuthenticateLayer<ProblemJson> {
    /// Authenticate with a shared verified-token cache.
    pub fn new(cache: Arc<VerifiedCache>) -> Self {
        AuthenticateLayer {
            config: Arc::new(Config {
                cache,
                optional: false,
                bearer: false,
                denial: ProblemJson,
            }),
        }
    }

    /// Authenticate with `verifier` behind a cache of `capacity` tokens.
    pub fn from_verifier(verifier: Verifier, capacity: usize) -> Self {
        Self::new(Arc::new(VerifiedCache::new(Arc::new(verifier), capacity)))
    }
}

impl<D: Clone> AuthenticateLayer<D> {
    fn map(self, f: impl FnOnce(&mut Config<D>)) -> Self {
        let mut config = Config {
            cache: self.config.cache.clone(),
            optional: self.config.optional,
            bearer: self.config.bearer,
            denial: self.config.denial.clone(),
        };
        f(&mut config);
        AuthenticateLayer {
            config: Arc::new(config),
        }
    }

    /// Let requests without a token through, anonymously (an invalid token is still refused).
    pub fn optional(self) -> Self {
        self.map(|c| c.optional = true)
    }

    /// Also accept `Authorization: Bearer` (for the edge, where external clients call).
    pub fn accept_bearer(self) -> Self {
        self.map(|c| c.bearer = true)
    }

    /// Answer denials with `denial` instead of problem+json.
    pub fn denial<D2>(self, denial: D2) -> AuthenticateLayer<D2> {
        AuthenticateLayer {
            config: Arc::new(Config {
                cache: self.config.cache.clone(),
                optional: self.config.optional,
                bearer: self.config.bearer,
                denial,
            }),
        }
    }

    /// The cache (for its hit/miss counts).
    pub fn cache(&self) -> &Arc<VerifiedCache> {
        &self.config.cache
    }
}

impl<S, D> Layer<S> for AuthenticateLayer<D> {
    type Service = Authenticate<S, D>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The authenticate service; see the [module docs](self).
#[derive(Debug)]
pub struct Authenticate<S, D = ProblemJson> {
    inner: S,
    config: Arc<Config<D>>,
}

impl<S: Clone, D> Clone for Authenticate<S, D> {
    fn clone(&self) -> Self {
        Authenticate {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

fn strip_internal_headers(headers: &mut HeaderMap) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(INTERNAL_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

/// A certificate-bound token (RFC 8705 `cnf.x5t#S256`) is only good on a mutual-TLS
/// connection whose client certificate has that thumbprint.
fn check_binding(claims: &Claims, peer: Option<&PeerIdentity>) -> Result<(), VerifyError> {
    let Some(cnf) = &claims.cnf else {
        return Ok(());
    };
    match peer {
        Some(p) if p.x5t_s256 == cnf.x5t_s256 => Ok(()),
        Some(_) => Err(VerifyError::new(
            ErrorKind::BindingMismatch,
            "the token is bound to another certificate",
        )),
        None => Err(VerifyError::new(
            ErrorKind::BindingMismatch,
            "the token is bound to a certificate and the connection has none",
        )),
    }
}

/// The presented token: `Ok(None)` when there is none, `Err` when it is ambiguous or unreadable.
fn presented_token(headers: &HeaderMap, bearer: bool) -> Result<Option<&str>, Denial> {
    let invalid = |detail: &'static str| Denial::unauthenticated(VerifyError::malformed(detail));
    let mut values = headers.get_all(TXN_TOKEN_HEADER).iter();
    if let Some(v) = values.next() {
        if values.next().is_some() {
            return Err(invalid("more than one Txn-Token header"));
        }
        return v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| invalid("the Txn-Token header is not ASCII"));
    }
    if !bearer {
        return Ok(None);
    }
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("more than one Authorization header"));
    }
    let s = v
        .to_str()
        .map_err(|_| invalid("the Authorization header is not ASCII"))?;
    match s.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token.trim())),
        _ => Ok(None),
    }
}

impl<S, D, ReqB, ResB> Service<Request<ReqB>> for Authenticate<S, D>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    D: DenialResponse<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        strip_internal_headers(req.headers_mut());
        let incoming = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<TraceParent>().ok());
        let config = &self.config;
        let deny = |req: &Request<ReqB>, denial: Denial| {
            tracing::debug!(target: "secmesh::authenticate", reason = %denial, "request refused");
            ResponseFuture::denied(config.denial.response(req.headers(), &denial))
        };
        let ctx = match presented_token(req.headers(), config.bearer) {
            Err(denial) => return deny(&req, denial),
            Ok(None) if config.optional => RequestContext::anonymous(incoming),
            Ok(None) => return deny(&req, Denial::unauthenticated_missing()),
            Ok(Some(token)) => match config.cache.verify(token) {
                Ok(cached) => RequestContext::authenticated(
                    token,
                    cached.hash(),
                    cached.verified().clone(),
                    incoming,
                ),
                Err(e) => {
                    if e.kind() != ErrorKind::Expired {
                        tracing::info!(target: "secmesh::authenticate", error = %e, "invalid token");
                    }
                    return deny(&req, Denial::unauthenticated(e));
                }
            },
        };
        if let Some(v) = ctx.verified() {
            if let Err(e) = check_binding(v.claims(), req.extensions().get::<PeerIdentity>()) {
                return deny(&req, Denial::unauthenticated(e));
            }
            req.extensions_mut().insert(v.clone());
        }
        crate::audit::note_context(&req, &ctx);
        req.extensions_mut().insert(ctx.clone());
        ResponseFuture::inner(ctx.scope(self.inner.call(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secmesh_core::{ExpiryClass, SpiffeId};
    use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    fn setup() -> (Issuer, AuthenticateLayer) {
        let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[3; 32]).unwrap();
        let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))));
        (
            Issuer::new(key, "k", "gw").audience("a"),
            AuthenticateLayer::from_verifier(verifier, 100),
        )
    }

    async fn status(layer: AuthenticateLayer, req: Request<String>) -> u16 {
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: Request<String>| async move {
                assert!(req.headers().get("x-secmesh-caller").is_none());
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            }))
            .oneshot(req)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn peer(thumb: &str) -> PeerIdentity {
        PeerIdentity {
            spiffe_id: "spiffe://mesh.test/orders".parse::<SpiffeId>().unwrap(),
            x5t_s256: thumb.into(),
        }
    }

    #[tokio::test]
    async fn certificate_bound_tokens() {
        let (issuer, layer) = setup();
        let bound = issuer
            .mint(&MintRequest::new("user:a", ExpiryClass::Fast).cnf_x5t_s256("thumb-A"))
            .unwrap();
        let req = |p: Option<PeerIdentity>| {
            let mut r = Request::builder()
                .header("txn-token", &bound)
                .body(String::new())
                .unwrap();
            if let Some(p) = p {
                r.extensions_mut().insert(p);
            }
            r
        };
        assert_eq!(status(layer.clone(), req(Some(peer("thumb-A")))).await, 200);
        assert_eq!(status(layer.clone(), req(Some(peer("thumb-B")))).await, 401);
        assert_eq!(status(layer, req(None)).await, 401);
    }

    #[tokio::test]
    async fn headers_bearer_optional_and_forgeries() {
        let (issuer, layer) = setup();
        let token = issuer
            .mint(&MintRequest::new("user:a", ExpiryClass::Fast))
            .unwrap();
        let with = |name: &str, value: &str| {
            Request::builder()
                .header(name, value)
                .header("x-secmesh-caller", "spiffe://forged")
                .body(String::new())
                .unwrap()
        };
        assert_eq!(status(layer.clone(), with("txn-token", &token)).await, 200);
        let bearer = format!("Bearer {token}");
        assert_eq!(
            status(layer.clone(), with("authorization", &bearer)).await,
            401
        );
        assert_eq!(
            status(
                layer.clone().accept_bearer(),
                with("authorization", &bearer)
            )
            .await,
            200
        );
        let two = Request::builder()
            .header("txn-token", &token)
            .header("txn-token", &token)
            .body(String::new())
            .unwrap();
        assert_eq!(status(layer.clone(), two).await, 401);
        let anonymous = Request::new(String::new());
        assert_eq!(status(layer.clone().optional(), anonymous).await, 200);
        assert_eq!(
            status(layer.optional(), with("txn-token", "garbage")).await,
            401,
            "optional still refuses an invalid token"
        );
    }
}
