//! Authenticate: verify the request's token and make it the request's identity.
//!
//! Reads the `Txn-Token` header (and `Authorization: Bearer` where the layer is configured for
//! the edge), verifies it through a [`VerifiedCache`], and then, for the life of the request
//! future, sets the [`RequestContext`] (task-local) and puts the request's
//! [`Outcome`] (authenticated, with the context and its verified claims) into the request
//! extensions. A missing or invalid token is answered by the [`DenialResponse`] (401 with `WWW-Authenticate`, or gRPC
//! UNAUTHENTICATED) without calling the inner service; in [optional](AuthenticateLayer::optional)
//! mode a request without a token passes anonymously (an invalid token is still refused).
//! A certificate-bound token (`cnf.x5t#S256`) passes only when the connection's
//! [`PeerIdentity`] (put in the extensions by the TLS serving side) has that thumbprint, or
//! the peer is a workload this service trusts to forward bound tokens (see below).
//!
//! # Certificate binding and propagation
//! A bound token proves possession at the **first hop**: the holder's certificate is the
//! client certificate of the connection that presents it. When that service calls the next
//! one, the connection carries the first service's certificate, not the holder's. So each
//! service names the workloads it accepts bound tokens **from** as forwarders
//! ([`AuthenticateLayer::bound_token_forwarders`]): a bound token passes when the peer is the
//! holder, or when the peer is an mTLS-authenticated forwarder; never without an mTLS peer,
//! and never from any other workload. A stolen bound token is thus useless outside the
//! holder's connection, except to a workload the service already trusts to call it.
//!
//! # The edge
//! [`accept_bearer`](AuthenticateLayer::accept_bearer) makes the layer an edge: it reads
//! external tokens from `Authorization: Bearer` and **never** a `Txn-Token` from outside; a
//! request that carries one is refused (401) by default, or has it removed
//! ([`OutsideTxnToken::Strip`]).
//! Inbound headers that only secmesh may set (`x-secmesh-*`) are removed first, so the
//! service never sees a caller's forgery.
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use secmesh_core::ExpiryClass;
//! use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//! use secmesh_tower::{Outcome, authenticate::AuthenticateLayer};
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
//!         let outcome = req.extensions().get::<Outcome>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(outcome.claims().unwrap().sub.to_string()))
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
use secmesh_core::{PeerIdentity, SpiffeId, TraceParent};
use secmesh_tokens::cache::VerifiedCache;
use secmesh_tokens::{ErrorKind, TXN_TOKEN_HEADER, Verifier, VerifyError};
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RequestContext;
use crate::deny::{DenialResponse, DenyReason, ProblemJson};
use crate::future::DenyOr;
use crate::outcome::{Denied, Outcome};

/// The authenticate layer's response future: the inner future run with the request context
/// set, or the 401.
pub type ResponseFuture<F, B> = DenyOr<TaskLocalFuture<RequestContext, F>, B>;

/// Request headers only secmesh may set; removed from every inbound request.
pub const INTERNAL_HEADER_PREFIX: &str = "x-secmesh-";

/// What an edge ([`accept_bearer`](AuthenticateLayer::accept_bearer)) does with a `Txn-Token`
/// header sent from outside the mesh. It is never read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutsideTxnToken {
    /// Refuse the request (401).
    #[default]
    Refuse,
    /// Remove the header and authenticate by `Authorization` alone.
    Strip,
}

#[derive(Debug, Clone)]
struct Options {
    optional: bool,
    bearer: bool,
    outside_txn_token: OutsideTxnToken,
    forwarders: Arc<[SpiffeId]>,
}

/// The authentication step, shared by [`AuthenticateLayer`] and the
/// [`SecureLayer`](crate::SecureLayer).
#[derive(Debug, Clone)]
pub(crate) struct Authn {
    pub(crate) cache: Arc<VerifiedCache>,
    options: Options,
}

impl Authn {
    pub(crate) fn new(cache: Arc<VerifiedCache>) -> Authn {
        Authn {
            cache,
            options: Options {
                optional: false,
                bearer: false,
                outside_txn_token: OutsideTxnToken::Refuse,
                forwarders: Arc::new([]),
            },
        }
    }

    /// Remove forged internal headers, read and verify the token, check its certificate
    /// binding: the request's context (anonymous in optional mode without a token), or why not.
    pub(crate) fn authenticate<B>(
        &self,
        req: &mut Request<B>,
    ) -> Result<RequestContext, DenyReason> {
        self.authenticate_observed(req, None::<fn(std::time::Duration, bool)>)
    }

    /// [`authenticate`](Self::authenticate), handing `on_verify` (when there is one) the
    /// verifier's time and answer when the token was not in the cache.
    pub(crate) fn authenticate_observed<B>(
        &self,
        req: &mut Request<B>,
        on_verify: Option<impl FnOnce(std::time::Duration, bool)>,
    ) -> Result<RequestContext, DenyReason> {
        strip_internal_headers(req.headers_mut());
        let incoming = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<TraceParent>().ok());
        let options = &self.options;
        if options.bearer && req.headers().contains_key(TXN_TOKEN_HEADER) {
            match options.outside_txn_token {
                OutsideTxnToken::Strip => {
                    req.headers_mut().remove(TXN_TOKEN_HEADER);
                }
                _ => {
                    return Err(DenyReason::Token(VerifyError::malformed(
                        "a Txn-Token from outside the mesh is refused",
                    )));
                }
            }
        }
        let ctx = match presented_token(req.headers(), options.bearer)? {
            None if options.optional => return Ok(RequestContext::anonymous(incoming)),
            None => return Err(DenyReason::MissingToken),
            Some(token) => {
                let cached = self
                    .cache
                    .verify_observed(token, on_verify)
                    .map_err(DenyReason::Token)?;
                RequestContext::authenticated(
                    token,
                    cached.hash(),
                    cached.verified().clone(),
                    incoming,
                )
            }
        };
        if let Some(v) = ctx.verified() {
            let peer = req.extensions().get::<PeerIdentity>();
            check_binding(v.claims(), peer, &options.forwarders).map_err(DenyReason::Token)?;
        }
        Ok(ctx)
    }
}

#[derive(Debug)]
struct Config<D> {
    authn: Authn,
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
                authn: Authn::new(cache),
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
            authn: self.config.authn.clone(),
            denial: self.config.denial.clone(),
        };
        f(&mut config);
        AuthenticateLayer {
            config: Arc::new(config),
        }
    }

    /// Let requests without a token through, anonymously (an invalid token is still refused).
    pub fn optional(self) -> Self {
        self.map(|c| c.authn.options.optional = true)
    }

    /// Make this layer an edge: authenticate external clients by `Authorization: Bearer`.
    /// A `Txn-Token` header from outside is never read: it is refused (401), or removed with
    /// [`outside_txn_token`](Self::outside_txn_token).
    pub fn accept_bearer(self) -> Self {
        self.map(|c| c.authn.options.bearer = true)
    }

    /// What the edge does with a `Txn-Token` sent from outside (default: refuse).
    pub fn outside_txn_token(self, action: OutsideTxnToken) -> Self {
        self.map(|c| c.authn.options.outside_txn_token = action)
    }

    /// The workloads trusted to forward certificate-bound tokens to this service: a bound
    /// token passes when the mTLS peer is its holder or one of these (see the
    /// [module docs](self#certificate-binding-and-propagation)).
    pub fn bound_token_forwarders(self, forwarders: impl IntoIterator<Item = SpiffeId>) -> Self {
        let list: Arc<[SpiffeId]> = forwarders.into_iter().collect();
        self.map(|c| c.authn.options.forwarders = list)
    }

    /// Answer denials with `denial` instead of problem+json.
    pub fn denial<D2>(self, denial: D2) -> AuthenticateLayer<D2> {
        AuthenticateLayer {
            config: Arc::new(Config {
                authn: self.config.authn.clone(),
                denial,
            }),
        }
    }

    /// The cache (for its hit/miss counts).
    pub fn cache(&self) -> &Arc<VerifiedCache> {
        &self.config.authn.cache
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

pub(crate) fn strip_internal_headers(headers: &mut HeaderMap) {
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
fn check_binding(
    claims: &Claims,
    peer: Option<&PeerIdentity>,
    forwarders: &[SpiffeId],
) -> Result<(), VerifyError> {
    let Some(cnf) = &claims.cnf else {
        return Ok(());
    };
    match peer {
        Some(p) if p.x5t_s256 == cnf.x5t_s256 => Ok(()),
        Some(p) if forwarders.contains(&p.spiffe_id) => Ok(()),
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
fn presented_token(headers: &HeaderMap, bearer: bool) -> Result<Option<&str>, DenyReason> {
    let invalid = |detail: &'static str| DenyReason::Token(VerifyError::malformed(detail));
    if bearer {
        // The edge: `Txn-Token` was refused or removed before this point.
        return bearer_token(headers);
    }
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
    Ok(None)
}

/// The token of the single `Authorization: Bearer` header, if any.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, DenyReason> {
    let invalid = |detail: &'static str| DenyReason::Token(VerifyError::malformed(detail));
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
        match self.config.authn.authenticate(&mut req) {
            Ok(ctx) => {
                let outcome = if ctx.verified().is_some() {
                    Outcome::Authenticated(ctx.clone())
                } else {
                    Outcome::Anonymous(ctx.clone())
                };
                req.extensions_mut().insert(outcome.clone());
                // The outcome also rides back on the response, for an audit layer outside.
                DenyOr::tagged(ctx.scope(self.inner.call(req)), outcome)
            }
            Err(reason) => {
                let denied = Denied::new(reason);
                DenyOr::denied(crate::future::deny_response(
                    &self.config.denial,
                    req.headers(),
                    denied,
                ))
            }
        }
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
        assert_eq!(status(layer.clone(), req(None)).await, 401);
        // The second hop: the peer is the first service, trusted to forward bound tokens.
        let orders: SpiffeId = "spiffe://mesh.test/orders".parse().unwrap();
        let other: SpiffeId = "spiffe://mesh.test/other".parse().unwrap();
        let forwarding = layer.clone().bound_token_forwarders([orders]);
        assert_eq!(
            status(forwarding.clone(), req(Some(peer("thumb-B")))).await,
            200
        );
        assert_eq!(
            status(forwarding, req(None)).await,
            401,
            "never without mTLS"
        );
        let elsewhere = layer.bound_token_forwarders([other]);
        assert_eq!(status(elsewhere, req(Some(peer("thumb-B")))).await, 401);
    }

    #[tokio::test]
    async fn the_edge_never_reads_a_txn_token_from_outside() {
        let (issuer, layer) = setup();
        let alice = issuer
            .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
            .unwrap();
        let admin = issuer
            .mint(&MintRequest::new("user:admin", ExpiryClass::Fast))
            .unwrap();
        let edge = layer.accept_bearer();
        let both = || {
            Request::builder()
                .header("txn-token", &admin)
                .header("authorization", format!("Bearer {alice}"))
                .body(String::new())
                .unwrap()
        };
        let only_txn = Request::builder()
            .header("Txn-Token", &admin)
            .body(String::new())
            .unwrap();
        assert_eq!(status(edge.clone(), both()).await, 401);
        assert_eq!(status(edge.clone(), only_txn).await, 401);
        let strip = edge.outside_txn_token(OutsideTxnToken::Strip);
        let res = ServiceBuilder::new()
            .layer(strip)
            .service(service_fn(|req: Request<String>| async move {
                assert!(req.headers().get("txn-token").is_none());
                let outcome = req.extensions().get::<Outcome>();
                let sub = outcome.and_then(Outcome::claims).unwrap().sub.to_string();
                Ok::<_, std::convert::Infallible>(Response::new(sub))
            }))
            .oneshot(both())
            .await
            .unwrap();
        assert_eq!(res.body(), "user:alice");
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
