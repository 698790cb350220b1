//! Authorize: decide whether the authenticated subject may do this (verb, object).
//!
//! Runs after [authenticate](crate::authenticate). It classifies the request into (verb,
//! object) with a [`Classify`] (default: method and path, or the gRPC method), takes the
//! caller (the mTLS peer's [`PeerIdentity`] from the request extensions when present, else the
//! token's current actor), the token's class and grants, and asks the policy engine. Both
//! sources must allow when both are configured: some grant of the token's `scope` must cover
//! the request (when the token has a scope), and the policy must allow it. The route's slowest
//! accepted class is part of the configuration (403 `class_not_allowed`). Subject attributes
//! for rules with `attributes` conditions come from the token's `tctx` claim, or from an
//! [`AttributeSource`] (see [`attributes`]). A denial is answered by the [`DenialResponse`]
//! (403, or gRPC PERMISSION_DENIED) with a typed [`DenyReason`] and the inner service is not
//! called; an allowed request carries the [`Outcome::Permitted`] (the [`Permitted`] proof and
//! the policy [`Decision`]) in its extensions, for handlers and the audit layer.
//!
//! # Example
//! ```
//! use http::{Method, Request, Response, StatusCode};
//! use secmesh_core::policy::{Format, Policy, SharedPolicy};
//! use secmesh_core::ExpiryClass;
//! use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
//! use secmesh_tower::{AuthenticateLayer, AuthorizeLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::parse(r#"
//! [[rule]]
//! id = "owners-read-own-orders"
//! effect = "allow"
//! subjects = ["user:*"]
//! verbs = ["read"]
//! objects = ["orders/{sub}/**"]
//! "#, Format::Toml)?;
//!
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))));
//! let issuer = Issuer::new(key, "k1", "gw").audience("orders");
//! let svc = ServiceBuilder::new()
//!     .layer(AuthenticateLayer::from_verifier(verifier, 1000))
//!     .layer(AuthorizeLayer::new(SharedPolicy::new(policy)).max_class(ExpiryClass::Fast))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
//!     }));
//!
//! let token = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
//! let get = |path: &str| Request::get(path).header("txn-token", &token).body(String::new()).unwrap();
//! assert_eq!(svc.clone().oneshot(get("/orders/user:alice/7")).await?.status(), StatusCode::OK);
//! assert_eq!(svc.clone().oneshot(get("/orders/user:bob/7")).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(())
//! # }
//! ```

pub mod attributes;
pub mod classify;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use secmesh_core::policy::{Decision, Grant, Reason, SharedPolicy};
use secmesh_core::{ExpiryClass, Object, PeerIdentity, Subject, Verb};
use tower_layer::Layer;
use tower_service::Service;

pub use attributes::{AttributeSource, Attributes, TctxAttributes};
pub use classify::{Classify, ClassifyError, ClassifyFn, DefaultClassifier, GrpcClassifier};

use crate::context::RequestContext;
use crate::deny::{DenialResponse, DenyReason, ProblemJson};
use crate::error::ConfigError;
use crate::future::DenyOr;
use crate::outcome::{Denied, Outcome};
use attributes::Source;

/// The authorize layer's response future: the inner future, or the 403.
pub type ResponseFuture<F, B> = DenyOr<F, B>;

/// A request classified for the policy: what the limits and the decision are about.
#[derive(Clone, Debug)]
pub(crate) struct Classified {
    pub(crate) verb: Verb,
    pub(crate) object: Object,
    pub(crate) caller: Option<String>,
}

/// Proof that the authorizer allowed this request; only this crate makes one.
#[derive(Clone, Debug)]
pub struct Permitted {
    verb: Verb,
    object: Object,
    caller: Option<String>,
    decision: Option<Decision>,
}

impl Permitted {
    /// The verb the request was classified as.
    pub fn verb(&self) -> &Verb {
        &self.verb
    }

    /// The object the request was classified as.
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// The allow rule, when a policy decided.
    pub fn rule(&self) -> Option<&str> {
        self.decision.as_ref().and_then(Decision::rule)
    }

    /// The calling workload the decision was made for (mTLS peer, else the token's current
    /// actor), when known.
    pub fn caller(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    /// The policy decision (rule, reason, shadow outcome), when a policy decided.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }
}

/// The route's slowest accepted class: the one place it is checked (403 `class_not_allowed`).
pub(crate) fn check_class(cls: ExpiryClass, max: Option<ExpiryClass>) -> Result<(), DenyReason> {
    match max {
        Some(max) if !cls.accepted_by(max) => Err(DenyReason::ClassNotAllowed { class: cls, max }),
        _ => Ok(()),
    }
}

/// The authorization step, shared by [`AuthorizeLayer`] and the
/// [`SecureLayer`](crate::SecureLayer).
pub(crate) struct Authz<C> {
    pub(crate) policy: Option<SharedPolicy>,
    pub(crate) classifier: C,
    pub(crate) max_class: Option<ExpiryClass>,
    pub(crate) attributes: Option<Source>,
}

impl<C: Clone> Clone for Authz<C> {
    fn clone(&self) -> Self {
        Authz {
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
            max_class: self.max_class,
            attributes: self.attributes.clone(),
        }
    }
}

impl<C> fmt::Debug for Authz<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("policy", &self.policy.is_some())
            .field("max_class", &self.max_class)
            .field("attributes", &self.attributes.is_some())
            .finish_non_exhaustive()
    }
}

impl<C> Authz<C> {
    pub(crate) fn new(policy: Option<SharedPolicy>, classifier: C) -> Self {
        Authz {
            policy,
            classifier,
            max_class: None,
            attributes: Some(Source(Arc::new(TctxAttributes))),
        }
    }

    pub(crate) fn with_classifier<C2>(self, classifier: C2) -> Authz<C2> {
        Authz {
            policy: self.policy,
            classifier,
            max_class: self.max_class,
            attributes: self.attributes,
        }
    }

    /// Refuse a policy with attribute conditions when there is no attribute source.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.attributes.is_some() {
            return Ok(());
        }
        let Some(policy) = &self.policy else {
            return Ok(());
        };
        match policy.current().first_attribute_rule() {
            Some(rule) => Err(ConfigError::AttributesWithoutSource {
                rule: rule.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

impl<C: Classify> Authz<C> {
    /// The decision for one request with this context: the proof, or the refusal.
    pub(crate) fn authorize(
        &self,
        parts: &Parts,
        ctx: &RequestContext,
    ) -> Result<Permitted, Box<Denied>> {
        let classified = self.classify(parts, ctx)?;
        self.decide(parts, ctx, classified)
    }

    /// The first part of [`authorize`](Self::authorize): a token, its class accepted, the
    /// request classified, the caller known.
    pub(crate) fn classify(
        &self,
        parts: &Parts,
        ctx: &RequestContext,
    ) -> Result<Classified, Box<Denied>> {
        let deny = |reason: DenyReason| Box::new(Denied::new(reason).with_ctx(Some(ctx.clone())));
        let Some(claims) = ctx.claims() else {
            return Err(deny(DenyReason::MissingToken));
        };
        check_class(claims.cls, self.max_class).map_err(deny)?;
        let (verb, object) = self
            .classifier
            .classify(parts)
            .map_err(|e| deny(DenyReason::Unclassified(e)))?;
        let peer = parts
            .extensions
            .get::<PeerIdentity>()
            .map(|p| p.spiffe_id.to_string());
        let caller = peer.or_else(|| claims.current_actor().map(str::to_owned));
        Ok(Classified {
            verb,
            object,
            caller,
        })
    }

    /// The second part of [`authorize`](Self::authorize): grants and policy.
    pub(crate) fn decide(
        &self,
        parts: &Parts,
        ctx: &RequestContext,
        classified: Classified,
    ) -> Result<Permitted, Box<Denied>> {
        let deny = |reason: DenyReason| Box::new(Denied::new(reason).with_ctx(Some(ctx.clone())));
        let Some(claims) = ctx.claims() else {
            return Err(deny(DenyReason::MissingToken));
        };
        let Classified {
            verb,
            object,
            caller,
        } = classified;
        let refuse = |reason: DenyReason, verb: &Verb, object: &Object, caller: &Option<String>| {
            let mut d = deny(reason);
            d.verb = Some(verb.clone());
            d.object = Some(object.clone());
            d.caller = caller.clone();
            d
        };
        // `sub` and `scope` were parsed once, when the token was decoded.
        let subject: &Subject = &claims.sub;
        let grants: Option<&[Grant]> = claims.scope.as_ref().map(|s| s.grants());
        let Some(shared) = &self.policy else {
            let covered = claims
                .grants()
                .iter()
                .any(|g| g.covers(&verb, &object, subject));
            if !covered {
                let reason = DenyReason::MissingGrant {
                    verb: verb.clone(),
                    object: object.clone(),
                    rule: None,
                };
                return Err(refuse(reason, &verb, &object, &caller));
            }
            return Ok(Permitted {
                verb,
                object,
                caller,
                decision: None,
            });
        };
        let mut attrs = Attributes::default();
        let decision = {
            let mut req =
                secmesh_core::policy::Request::new(subject, &verb, &object).with_class(claims.cls);
            if let Some(c) = &caller {
                req = req.with_caller(c);
            }
            if let Some(g) = grants {
                req = req.with_grants(g);
            }
            match &self.attributes {
                Some(source) => {
                    source.0.attributes(claims, parts, &mut attrs);
                    let pairs: Vec<(&str, &str)> = attrs.iter().collect();
                    shared.decide(&req.with_attributes(&pairs))
                }
                None => {
                    let policy = shared.current();
                    if let Some(rule) = policy.first_attribute_rule().map(str::to_owned) {
                        tracing::error!(
                            target: "secmesh::authorize",
                            rule = %rule,
                            "the policy has attribute conditions and this service has no attribute source: refusing"
                        );
                        let reason = DenyReason::PolicyNeedsAttributes { rule };
                        return Err(refuse(reason, &verb, &object, &caller));
                    }
                    policy.decide(&req)
                }
            }
        };
        if let Some(shadow) = decision.shadow()
            && shadow.effect() != decision.effect()
        {
            tracing::info!(
                target: "secmesh::authorize",
                verb = %verb, object = %object, subject = %subject,
                enforced = ?decision.effect(), shadow = ?shadow.effect(),
                shadow_rule = shadow.rule().unwrap_or("-"),
                "shadow rules disagree"
            );
        }
        if !decision.is_allowed() {
            let reason = match decision.reason() {
                // The allow rule that matched but whose grant the token lacks: the audit event
                // and the log name it.
                Reason::MissingGrant => DenyReason::MissingGrant {
                    verb: verb.clone(),
                    object: object.clone(),
                    rule: decision.matched_rule().map(|r| r.as_str().to_owned()),
                },
                reason => DenyReason::Policy {
                    rule: decision.rule().map(str::to_owned),
                    reason,
                },
            };
            let mut d = refuse(reason, &verb, &object, &caller);
            d.shadow = decision.shadow().cloned();
            return Err(d);
        }
        Ok(Permitted {
            verb,
            object,
            caller,
            decision: Some(decision),
        })
    }
}

#[derive(Debug)]
struct Config<C, D> {
    authz: Authz<C>,
    denial: D,
}

/// Adds authorization to a service. Cheap to clone.
#[derive(Debug)]
#[must_use]
pub struct AuthorizeLayer<C = DefaultClassifier, D = ProblemJson> {
    config: Arc<Config<C, D>>,
}

impl<C, D> Clone for AuthorizeLayer<C, D> {
    fn clone(&self) -> Self {
        AuthorizeLayer {
            config: self.config.clone(),
        }
    }
}

impl AuthorizeLayer {
    /// Authorize with a policy (shared, so that reloads reach every service clone) and the
    /// token's grants. Subject attributes come from the token's `tctx` claim (see
    /// [`attributes`]).
    pub fn new(policy: SharedPolicy) -> Self {
        AuthorizeLayer {
            config: Arc::new(Config {
                authz: Authz::new(Some(policy), DefaultClassifier),
                denial: ProblemJson,
            }),
        }
    }

    /// Authorize by the token's grants alone: some grant must cover the request; a token
    /// without a scope is refused.
    pub fn grants_only() -> Self {
        AuthorizeLayer {
            config: Arc::new(Config {
                authz: Authz::new(None, DefaultClassifier),
                denial: ProblemJson,
            }),
        }
    }
}

impl<C: Clone, D: Clone> AuthorizeLayer<C, D> {
    fn rebuild<C2, D2>(
        self,
        f: impl FnOnce(Config<C, D>) -> Config<C2, D2>,
    ) -> AuthorizeLayer<C2, D2> {
        let c = &*self.config;
        let config = Config {
            authz: c.authz.clone(),
            denial: c.denial.clone(),
        };
        AuthorizeLayer {
            config: Arc::new(f(config)),
        }
    }

    /// The slowest expiry class this route accepts (a slower token gets 403
    /// `class_not_allowed`).
    pub fn max_class(self, class: ExpiryClass) -> Self {
        self.rebuild(|mut c| {
            c.authz.max_class = Some(class);
            c
        })
    }

    /// Take subject attributes from `source` instead of the token's `tctx` claim.
    pub fn attributes(self, source: impl AttributeSource) -> Self {
        let source = Source(Arc::new(source));
        self.rebuild(|mut c| {
            c.authz.attributes = Some(source);
            c
        })
    }

    /// No attribute source: a policy with attribute conditions is refused (by
    /// [`check`](Self::check), and at request time with
    /// [`DenyReason::PolicyNeedsAttributes`]).
    pub fn no_attributes(self) -> Self {
        self.rebuild(|mut c| {
            c.authz.attributes = None;
            c
        })
    }

    /// Check the configuration: a policy with attribute conditions needs an attribute source.
    pub fn check(self) -> Result<Self, ConfigError> {
        self.config.authz.validate()?;
        Ok(self)
    }

    /// Classify requests with `classifier` instead of the default.
    pub fn classifier<C2: Classify>(self, classifier: C2) -> AuthorizeLayer<C2, D> {
        self.rebuild(|c| Config {
            authz: c.authz.with_classifier(classifier),
            denial: c.denial,
        })
    }

    /// Answer denials with `denial` instead of problem+json.
    pub fn denial<D2>(self, denial: D2) -> AuthorizeLayer<C, D2> {
        self.rebuild(|c| Config {
            authz: c.authz,
            denial,
        })
    }
}

impl<S, C, D> Layer<S> for AuthorizeLayer<C, D> {
    type Service = Authorize<S, C, D>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The authorize service; see the [module docs](self).
#[derive(Debug)]
pub struct Authorize<S, C = DefaultClassifier, D = ProblemJson> {
    inner: S,
    config: Arc<Config<C, D>>,
}

impl<S: Clone, C, D> Clone for Authorize<S, C, D> {
    fn clone(&self) -> Self {
        Authorize {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S, C, D, ReqB, ResB> Service<Request<ReqB>> for Authorize<S, C, D>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    C: Classify,
    D: DenialResponse<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let ctx = match parts.extensions.get::<Outcome>() {
            Some(Outcome::Authenticated(ctx) | Outcome::Permitted(ctx, _)) => Ok(ctx.clone()),
            _ => Err(Box::new(Denied::new(DenyReason::MissingToken))),
        };
        match ctx.and_then(|ctx| Ok((self.config.authz.authorize(&parts, &ctx)?, ctx))) {
            Ok((permitted, ctx)) => {
                let outcome = Outcome::Permitted(ctx, permitted);
                parts.extensions.insert(outcome.clone());
                DenyOr::tagged(self.inner.call(Request::from_parts(parts, body)), outcome)
            }
            Err(denied) => DenyOr::denied(crate::future::deny_response(
                &self.config.denial,
                &parts.headers,
                *denied,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secmesh_core::policy::{Format, Policy};
    use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use crate::AuthenticateLayer;

    const POLICY: &str = r#"
[[rule]]
id = "deny-admin"
effect = "deny"
subjects = ["*"]
verbs = ["*"]
objects = ["admin/**"]

[[rule]]
id = "gateway-reads-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/**", "admin/**"]
callers = ["spiffe://mesh.test/gateway"]
"#;

    async fn status(layer: AuthorizeLayer, req: MintRequest, method: &str, path: &str) -> u16 {
        let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[9; 32]).unwrap();
        let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))));
        let token = Issuer::new(key, "k", "gw")
            .audience("a")
            .mint(&req)
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(AuthenticateLayer::from_verifier(verifier, 10))
            .layer(layer)
            .service(service_fn(|req: Request<String>| async move {
                let p = req
                    .extensions()
                    .get::<Outcome>()
                    .unwrap()
                    .permitted()
                    .unwrap();
                Ok::<_, std::convert::Infallible>(Response::new(p.object().to_string()))
            }));
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("txn-token", token)
            .body(String::new())
            .unwrap();
        svc.oneshot(req).await.unwrap().status().as_u16()
    }

    fn policy() -> AuthorizeLayer {
        AuthorizeLayer::new(SharedPolicy::new(
            Policy::parse(POLICY, Format::Toml).unwrap(),
        ))
    }

    fn alice() -> MintRequest {
        MintRequest::new("user:alice", ExpiryClass::Fast).actor("spiffe://mesh.test/gateway")
    }

    #[tokio::test]
    async fn policy_caller_and_deny_override() {
        assert_eq!(status(policy(), alice(), "GET", "/orders/1").await, 200);
        assert_eq!(status(policy(), alice(), "DELETE", "/orders/1").await, 403);
        assert_eq!(status(policy(), alice(), "GET", "/admin/x").await, 403);
        let no_actor = MintRequest::new("user:alice", ExpiryClass::Fast);
        assert_eq!(status(policy(), no_actor, "GET", "/orders/1").await, 403);
        assert_eq!(status(policy(), alice(), "OPTIONS", "/orders/1").await, 200);
        assert_eq!(status(policy(), alice(), "TRACE", "/orders/1").await, 405);
        assert_eq!(
            status(policy(), alice(), "GET", "/orders/%2e%2e/admin/x").await,
            400
        );
        assert_eq!(
            status(policy(), alice(), "GET", "/orders/a%2F..%2F..%2Fadmin").await,
            400
        );
    }

    #[tokio::test]
    async fn grants_must_also_cover() {
        let narrow = alice().grant("read", "orders/2");
        assert_eq!(
            status(policy(), narrow.clone(), "GET", "/orders/1").await,
            403
        );
        assert_eq!(status(policy(), narrow, "GET", "/orders/2").await, 200);
        let g = AuthorizeLayer::grants_only();
        assert_eq!(status(g.clone(), alice(), "GET", "/x").await, 403);
        let r = alice().grant("*", "x/**");
        assert_eq!(status(g, r, "DELETE", "/x/y/z").await, 200);
    }

    #[tokio::test]
    async fn route_class() {
        let medium =
            MintRequest::new("user:alice", ExpiryClass::Medium).actor("spiffe://mesh.test/gateway");
        let fast_route = policy().max_class(ExpiryClass::Fast);
        assert_eq!(
            status(fast_route.clone(), medium, "GET", "/orders/1").await,
            403
        );
        assert_eq!(status(fast_route, alice(), "GET", "/orders/1").await, 200);
    }

    #[tokio::test]
    async fn without_authentication_it_is_401() {
        let svc = ServiceBuilder::new().layer(policy()).service(service_fn(
            |_req: Request<String>| async {
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            },
        ));
        let res = svc.oneshot(Request::new(String::new())).await.unwrap();
        assert_eq!(res.status(), 401);
    }
}
