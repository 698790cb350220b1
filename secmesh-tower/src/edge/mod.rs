//! The edge: an external bearer token in, a txn-token narrowed to this request out, without a
//! signing key at the edge.
//!
//! [`EdgeLayer`] sits where requests enter the mesh (the gateway). For each request it:
//!
//! 1. removes headers only secmesh may set (`x-secmesh-*`) and refuses a `Txn-Token` sent
//!    from outside (401): inside the mesh only the Txn-Token Service's tokens count;
//! 2. reads `Authorization: Bearer` (missing: 401 `WWW-Authenticate: Bearer`) and verifies it
//!    with the identity providers' [`IdpVerifiers`] (invalid: 401 `error="invalid_token"`,
//!    RFC 6750);
//! 3. classifies the request into (verb, object) with the same [`Classify`] as every service,
//!    and asks for the scope this request needs ([`EdgeLayer::scope`]; by default the one grant
//!    `verb:object`), in the fastest class unless told otherwise;
//! 4. exchanges the external token for a txn-token through an [`Exchanger`]: the Txn-Token
//!    Service over mutual TLS (`secmesh_tower::sts::StsClient`), or an
//!    [`EmbeddedSts`] for a single-process deployment. The request context sent along
//!    (`request_context`, which the service puts into `rctx`) holds the client's address and
//!    how it authenticated. A refusal is answered through the one denial mapping
//!    ([`DenyReason::Exchange`]: 401 for `invalid_grant`, 403 otherwise; 503 when the service
//!    cannot be reached);
//! 5. verifies the issued txn-token with the mesh's keys (the edge trusts nothing it has not
//!    verified), refuses it when the service narrowed away the request's own grant (403
//!    `insufficient_scope`: such a request would only be refused deeper in the mesh), and runs
//!    the inner service inside its [`RequestContext`]: propagation sends
//!    it downstream in `Txn-Token`, and an [audit](crate::audit) layer outside records the
//!    request under the new transaction.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode, header};
//! use secmesh_core::exchange_policy::ExchangePolicy;
//! use secmesh_core::SystemClock;
//! use secmesh_tokens::external::{IdpVerifier, IdpVerifiers};
//! use secmesh_tokens::keyring::{KeyRing, RingConfig};
//! use secmesh_tokens::source::KeySource;
//! use secmesh_tokens::{Algorithm, KeySet, SigningKey, jws::sign_compact};
//! use secmesh_tower::context::RequestContext;
//! use secmesh_tower::edge::EdgeLayer;
//! use secmesh_tower::sts::Sts;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The identity provider and one of its users' tokens.
//! let idp_key = SigningKey::generate(Algorithm::EdDsa)?;
//! let idps = IdpVerifiers::new().issuer(IdpVerifier::new(
//!     Arc::new(KeySource::fixed(KeySet::single(idp_key.verifying_key(Some("i1".into()))))),
//!     "https://idp.test",
//!     "gateway",
//! ));
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! let external = sign_compact(&idp_key, Some("i1"), Some("at+jwt"), serde_json::json!({
//!     "iss": "https://idp.test", "sub": "alice", "aud": "gateway", "iat": now, "exp": now + 300,
//! }).to_string().as_bytes())?;
//!
//! // A single-process deployment: the Txn-Token Service embedded.
//! let dir = tempfile::tempdir()?;
//! let ring = Arc::new(KeyRing::init(dir.path(), RingConfig::default(), Arc::new(SystemClock))?);
//! let sts = Sts::builder(&ring, "https://sts.test", "mesh.test")
//!     .idps(idps.clone())
//!     .policy(ExchangePolicy::from_toml(r#"
//! [[exchange]]
//! id = "edge"
//! effect = "allow"
//! workloads = ["spiffe://mesh.test/gateway"]
//! subject_token_types = ["access_token"]
//! audiences = ["mesh.test"]
//! scopes = ["read:orders/{sub}/**"]
//! "#)?)
//!     .build()?;
//! let edge = EdgeLayer::new(
//!     idps,
//!     Arc::new(sts.for_workload("spiffe://mesh.test/gateway")),
//!     Arc::new(sts.verifier().clone()),
//!     "mesh.test",
//! );
//!
//! let svc = ServiceBuilder::new().layer(edge).service(service_fn(|_req: Request<String>| async {
//!     // The handler runs inside the internal token's context.
//!     let ctx = RequestContext::current().unwrap();
//!     Ok::<_, std::convert::Infallible>(Response::new(ctx.claims().unwrap().scope.as_ref().unwrap().to_string()))
//! }));
//! let req = Request::get("/orders/user:alice/42")
//!     .header(header::AUTHORIZATION, format!("Bearer {external}"))
//!     .body(String::new())?;
//! let res = svc.clone().oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.body(), "read:orders/user:alice/42");
//!
//! // Another user's order: the exchange policy does not grant it.
//! let req = Request::get("/orders/user:bob/42")
//!     .header(header::AUTHORIZATION, format!("Bearer {external}"))
//!     .body(String::new())?;
//! assert_eq!(svc.oneshot(req).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use secmesh_core::claims::{JsonMap, Scope};
use secmesh_core::exchange::{ExchangeError, SubjectToken, SubjectTokenType, TxnTokenRequest};
use secmesh_core::{ExpiryClass, Object, TraceParent, Verb};
use secmesh_tokens::cache::TokenHash;
use secmesh_tokens::external::{ExternalClaims, IdpVerifiers};
use secmesh_tokens::{TXN_TOKEN_HEADER, Verifier, VerifyError};
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticate::{bearer_token, strip_internal_headers};
use crate::authorize::{Classify, DefaultClassifier};
use crate::context::RequestContext;
use crate::deny::{DenialResponse, DenyReason, ProblemJson};
use crate::outcome::{Denied, Outcome};
use crate::sts::{ExchangeFailure, Sts};

/// Why an [`Exchanger`] did not return a token.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeFailed {
    /// The Txn-Token Service refused (RFC 6749 error).
    #[error("refused: {0}")]
    Refused(ExchangeError),
    /// The service could not be reached or did not answer as the profile says.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The future of an [`Exchanger`].
pub type ExchangeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, ExchangeFailed>> + Send + 'a>>;

/// Obtains a txn-token for a Txn-Token Request: the Txn-Token Service over mutual TLS, or one
/// embedded in this process.
pub trait Exchanger: Send + Sync + 'static {
    /// The issued txn-token, or why not.
    fn exchange(&self, request: TxnTokenRequest) -> ExchangeFuture<'_>;
}

/// A Txn-Token Service in this process, asked as the workload `requester` (the edge's own
/// SPIFFE ID): a single-process deployment's [`Exchanger`].
#[derive(Clone, Debug)]
pub struct EmbeddedSts {
    sts: Sts,
    requester: String,
}

impl Sts {
    /// This service as the [`Exchanger`] of an edge in the same process that is the workload
    /// `requester`.
    pub fn for_workload(&self, requester: impl Into<String>) -> EmbeddedSts {
        EmbeddedSts {
            sts: self.clone(),
            requester: requester.into(),
        }
    }
}

impl Exchanger for EmbeddedSts {
    fn exchange(&self, request: TxnTokenRequest) -> ExchangeFuture<'_> {
        Box::pin(async move {
            match self.sts.exchange(&self.requester, &request).await {
                Ok(issued) => Ok(issued.token),
                Err(ExchangeFailure::Refused(r)) => Err(ExchangeFailed::Refused(r.error)),
                Err(ExchangeFailure::Unavailable(why)) => Err(ExchangeFailed::Unavailable(why)),
            }
        })
    }
}

/// Renewal through the embedded service: a replacement txn-token, asked as `requester`.
impl secmesh_tokens::renew::Replace for EmbeddedSts {
    fn replace<'a>(
        &'a self,
        token: &'a str,
        scope: &'a Scope,
        class: ExpiryClass,
    ) -> secmesh_tokens::renew::ReplaceFuture<'a> {
        use secmesh_tokens::renew::RenewError;
        Box::pin(async move {
            let request = TxnTokenRequest::new(
                self.sts.trust_domain().to_owned(),
                scope.clone(),
                SubjectToken::new(token),
                SubjectTokenType::TxnToken,
            )
            .class(class);
            match self.sts.exchange(&self.requester, &request).await {
                Ok(issued) => Ok(issued.token),
                Err(ExchangeFailure::Refused(r)) => Err(RenewError::Refused(r.error.to_string())),
                Err(ExchangeFailure::Unavailable(why)) => Err(RenewError::Unavailable(why)),
            }
        })
    }
}

/// What scope the edge asks for, for a request classified as (verb, object) by the holder of
/// an external token.
pub trait ScopeFor: Send + Sync + 'static {
    /// The scope to ask for, or `None` to refuse the request (403).
    fn scope_for(&self, external: &ExternalClaims, verb: &Verb, object: &Object) -> Option<Scope>;
}

/// The default [`ScopeFor`]: exactly the request's own grant, `verb:object`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThisRequest;

impl ScopeFor for ThisRequest {
    fn scope_for(&self, _: &ExternalClaims, verb: &Verb, object: &Object) -> Option<Scope> {
        Scope::from_grants([(verb.as_str(), object.as_str())]).ok()
    }
}

impl<F> ScopeFor for F
where
    F: Fn(&ExternalClaims, &Verb, &Object) -> Option<Scope> + Send + Sync + 'static,
{
    fn scope_for(&self, external: &ExternalClaims, verb: &Verb, object: &Object) -> Option<Scope> {
        self(external, verb, object)
    }
}

struct Config<D> {
    idps: IdpVerifiers,
    exchanger: Arc<dyn Exchanger>,
    verifier: Arc<Verifier>,
    audience: String,
    classifier: Arc<dyn Classify>,
    scope: Arc<dyn ScopeFor>,
    class: Option<ExpiryClass>,
    denial: D,
}

/// The edge's exchange layer; see the [module docs](self). Cheap to clone.
#[must_use]
pub struct EdgeLayer<D = ProblemJson> {
    config: Arc<Config<D>>,
}

impl<D> Clone for EdgeLayer<D> {
    fn clone(&self) -> Self {
        EdgeLayer {
            config: self.config.clone(),
        }
    }
}

impl<D> fmt::Debug for EdgeLayer<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeLayer")
            .field("idps", &self.config.idps)
            .field("audience", &self.config.audience)
            .finish_non_exhaustive()
    }
}

impl EdgeLayer<ProblemJson> {
    /// An edge accepting the tokens of `idps`, exchanging them through `exchanger` for
    /// txn-tokens of the trust domain `audience`, which `verifier` (the mesh's keys, issuer
    /// and audience) verifies.
    pub fn new(
        idps: IdpVerifiers,
        exchanger: Arc<dyn Exchanger>,
        verifier: Arc<Verifier>,
        audience: impl Into<String>,
    ) -> Self {
        EdgeLayer {
            config: Arc::new(Config {
                idps,
                exchanger,
                verifier,
                audience: audience.into(),
                classifier: Arc::new(DefaultClassifier),
                scope: Arc::new(ThisRequest),
                class: None,
                denial: ProblemJson,
            }),
        }
    }
}

impl<D: Clone> EdgeLayer<D> {
    fn map(self, f: impl FnOnce(&mut Config<D>)) -> Self {
        let c = &self.config;
        let mut config = Config {
            idps: c.idps.clone(),
            exchanger: c.exchanger.clone(),
            verifier: c.verifier.clone(),
            audience: c.audience.clone(),
            classifier: c.classifier.clone(),
            scope: c.scope.clone(),
            class: c.class,
            denial: c.denial.clone(),
        };
        f(&mut config);
        EdgeLayer {
            config: Arc::new(config),
        }
    }

    /// Classify requests with `classifier` (the [`DefaultClassifier`] otherwise).
    pub fn classifier(self, classifier: impl Classify) -> Self {
        let classifier: Arc<dyn Classify> = Arc::new(classifier);
        self.map(|c| c.classifier = classifier)
    }

    /// Ask for the scope `scope` says (the request's own grant otherwise): e.g. the grants the
    /// services behind will need downstream for this request, and nothing else.
    pub fn scope(self, scope: impl ScopeFor) -> Self {
        let scope: Arc<dyn ScopeFor> = Arc::new(scope);
        self.map(|c| c.scope = scope)
    }

    /// Ask for tokens of `class` (the service's choice, the fastest, otherwise).
    pub fn class(self, class: ExpiryClass) -> Self {
        self.map(|c| c.class = Some(class))
    }

    /// Answer denials with `denial` instead of problem+json.
    pub fn denial<D2>(self, denial: D2) -> EdgeLayer<D2> {
        let c = &self.config;
        EdgeLayer {
            config: Arc::new(Config {
                idps: c.idps.clone(),
                exchanger: c.exchanger.clone(),
                verifier: c.verifier.clone(),
                audience: c.audience.clone(),
                classifier: c.classifier.clone(),
                scope: c.scope.clone(),
                class: c.class,
                denial,
            }),
        }
    }
}

impl<S, D> Layer<S> for EdgeLayer<D> {
    type Service = Edge<S, D>;

    fn layer(&self, inner: S) -> Edge<S, D> {
        Edge {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The edge service; see [`EdgeLayer`].
pub struct Edge<S, D = ProblemJson> {
    inner: S,
    config: Arc<Config<D>>,
}

impl<S: Clone, D> Clone for Edge<S, D> {
    fn clone(&self) -> Self {
        Edge {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, D> fmt::Debug for Edge<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edge")
            .field("inner", &self.inner)
            .field("audience", &self.config.audience)
            .finish_non_exhaustive()
    }
}

/// The edge's response future. An exchange is a round trip to the Txn-Token Service (or a
/// signature in this process); the one allocation of this boxed future does not show next to
/// it.
pub struct ResponseFuture<R, E> {
    inner: Pin<Box<dyn Future<Output = Result<R, E>> + Send>>,
}

impl<R, E> fmt::Debug for ResponseFuture<R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("edge::ResponseFuture")
    }
}

impl<R, E> Future for ResponseFuture<R, E> {
    type Output = Result<R, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, D, ReqB, ResB> Service<Request<ReqB>> for Edge<S, D>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    D: DenialResponse<ResB> + Send + Sync + 'static,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The service that was polled ready serves this request; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        let (mut parts, body) = req.into_parts();
        let checked = check(&config, &mut parts);
        let mut req = Request::from_parts(parts, body);
        let peer = peer_addr(&req);
        let incoming = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<TraceParent>().ok());
        ResponseFuture {
            inner: Box::pin(async move {
                let exchanged = match checked {
                    Ok((bearer, verb, object)) => {
                        exchange(&config, peer, incoming, bearer, &verb, &object).await
                    }
                    Err(reason) => Err(reason),
                };
                let ctx = match exchanged {
                    Ok(ctx) => ctx,
                    Err(reason) => {
                        return Ok(crate::future::deny_response(
                            &config.denial,
                            req.headers(),
                            Denied::new(reason),
                        ));
                    }
                };
                let outcome = Outcome::Authenticated(ctx.clone());
                req.extensions_mut().insert(outcome.clone());
                let mut res = ctx.clone().scope(inner.call(req)).await?;
                // For an audit layer outside: the request ran under the exchanged context.
                if res.extensions().get::<Outcome>().is_none() {
                    res.extensions_mut().insert(outcome);
                }
                if res.extensions().get::<RequestContext>().is_none() {
                    res.extensions_mut().insert(ctx);
                }
                Ok(res)
            }),
        }
    }
}

/// Steps 1-3 of the module docs (no waiting): the bearer token and the request's (verb,
/// object), or why it is refused.
fn check<D>(
    config: &Config<D>,
    parts: &mut http::request::Parts,
) -> Result<(String, Verb, Object), DenyReason> {
    strip_internal_headers(&mut parts.headers);
    if parts.headers.contains_key(TXN_TOKEN_HEADER) {
        return Err(DenyReason::Token(VerifyError::malformed(
            "a Txn-Token from outside the mesh is refused",
        )));
    }
    let bearer = bearer_token(&parts.headers)?
        .ok_or(DenyReason::MissingToken)?
        .to_owned();
    let (verb, object) = config.classifier.classify(parts).map_err(|e| e.denial())?;
    Ok((bearer, verb, object))
}

/// Steps 2-5 of the module docs: the request's new context, or why it is refused.
async fn exchange<D>(
    config: &Config<D>,
    peer: Option<String>,
    incoming: Option<TraceParent>,
    bearer: String,
    verb: &Verb,
    object: &Object,
) -> Result<RequestContext, DenyReason> {
    let external = config
        .idps
        .verify_async(&bearer)
        .await
        .map_err(DenyReason::Token)?;
    let scope = config
        .scope
        .scope_for(external.claims(), verb, object)
        .ok_or(DenyReason::Unclassified(
            crate::authorize::ClassifyError::Unclassified,
        ))?;
    let mut context = JsonMap::new();
    if let Some(addr) = peer {
        context.insert("req_ip".into(), addr.into());
    }
    context.insert("authn".into(), "bearer".into());
    if let Some(client) = &external.client_id {
        context.insert("client_id".into(), client.clone().into());
    }
    let mut request = TxnTokenRequest::new(
        config.audience.clone(),
        scope,
        SubjectToken::new(bearer),
        SubjectTokenType::AccessToken,
    )
    .request_context(context);
    if let Some(class) = config.class {
        request = request.class(class);
    }
    let token = match config.exchanger.exchange(request).await {
        Ok(t) => t,
        Err(ExchangeFailed::Refused(e)) => return Err(DenyReason::Exchange(e)),
        Err(ExchangeFailed::Unavailable(why)) => {
            tracing::error!(target: "secmesh::edge", reason = %why, "token exchange unavailable");
            return Err(DenyReason::ExchangeUnavailable);
        }
    };
    let verified = config.verifier.verify_async(&token).await.map_err(|e| {
        tracing::error!(target: "secmesh::edge", error = %e, "the issued txn-token does not verify");
        DenyReason::ExchangeUnavailable
    })?;
    // The service may narrow the scope; a token that no longer covers this request's own grant
    // is refused here rather than carried into the mesh.
    let claims = verified.claims();
    if !claims
        .grants()
        .iter()
        .any(|g| g.covers(verb, object, &claims.sub))
    {
        return Err(DenyReason::MissingGrant {
            verb: verb.clone(),
            object: object.clone(),
            rule: None,
        });
    }
    Ok(RequestContext::authenticated(
        &token,
        TokenHash::of(&token),
        Arc::new(verified),
        incoming,
    ))
}

fn peer_addr<B>(req: &Request<B>) -> Option<String> {
    #[cfg(feature = "serve")]
    if let Some(info) = req.extensions().get::<crate::serve::PeerInfo>() {
        return Some(info.remote_addr.ip().to_string());
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(addr.ip().to_string());
    }
    let _ = req;
    None
}
