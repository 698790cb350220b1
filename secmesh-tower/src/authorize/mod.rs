//! Authorize: decide whether the authenticated subject may do this (verb, object).
//!
//! Runs after [authenticate](crate::authenticate). It classifies the request into (verb,
//! object) with a [`Classify`] (default: method and path, or the gRPC method), takes the
//! caller (the mTLS peer's [`PeerIdentity`] from the request extensions when present, else the
//! token's current actor), the token's class and grants, and asks the policy engine. Both
//! sources must allow when both are configured: some grant of the token's `scope` must cover
//! the request (when the token has a scope), and the policy must allow it. The route's slowest
//! accepted class is part of the configuration. A denial is answered by the
//! [`DenialResponse`] (403, or gRPC PERMISSION_DENIED) and the inner service is not called;
//! an allowed request carries a [`Permitted`] proof and the policy [`Decision`] in its
//! extensions, for handlers and the audit layer.
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

pub mod classify;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use secmesh_core::claims::Claims;
use secmesh_core::policy::{Decision, Grant, SharedPolicy};
use secmesh_core::{ExpiryClass, Object, PeerIdentity, Subject, Verb};
use secmesh_tokens::Verified;
use tower_layer::Layer;
use tower_service::Service;

pub use classify::{Classify, ClassifyError, ClassifyFn, DefaultClassifier, GrpcClassifier};

use crate::deny::{Denial, DenialResponse, ProblemJson};
use crate::future::DenyOr;

/// The authorize layer's response future: the inner future, or the 403.
pub type ResponseFuture<F, B> = DenyOr<F, B>;

/// Proof that the authorizer allowed this request; only this module makes one.
#[derive(Clone, Debug)]
pub struct Permitted {
    verb: Verb,
    object: Object,
    rule: Option<String>,
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
        self.rule.as_deref()
    }
}

struct Config<C, D> {
    policy: Option<SharedPolicy>,
    classifier: C,
    max_class: Option<ExpiryClass>,
    denial: D,
}

impl<C, D> fmt::Debug for Config<C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeConfig")
            .field("policy", &self.policy.is_some())
            .field("max_class", &self.max_class)
            .finish_non_exhaustive()
    }
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
    /// token's grants.
    pub fn new(policy: SharedPolicy) -> Self {
        AuthorizeLayer {
            config: Arc::new(Config {
                policy: Some(policy),
                classifier: DefaultClassifier,
                max_class: None,
                denial: ProblemJson,
            }),
        }
    }

    /// Authorize by the token's grants alone: some grant must cover the request; a token
    /// without a scope is refused.
    pub fn grants_only() -> Self {
        AuthorizeLayer {
            config: Arc::new(Config {
                policy: None,
                classifier: DefaultClassifier,
                max_class: None,
                denial: ProblemJson,
            }),
        }
    }
}

impl<C, D> AuthorizeLayer<C, D> {
    fn rebuild<C2, D2>(
        self,
        f: impl FnOnce(Config<C, D>) -> Config<C2, D2>,
    ) -> AuthorizeLayer<C2, D2>
    where
        C: Clone,
        D: Clone,
    {
        let c = &*self.config;
        let config = Config {
            policy: c.policy.clone(),
            classifier: c.classifier.clone(),
            max_class: c.max_class,
            denial: c.denial.clone(),
        };
        AuthorizeLayer {
            config: Arc::new(f(config)),
        }
    }

    /// The slowest expiry class this route accepts (a slower token gets 403).
    pub fn max_class(self, class: ExpiryClass) -> Self
    where
        C: Clone,
        D: Clone,
    {
        self.rebuild(|mut c| {
            c.max_class = Some(class);
            c
        })
    }

    /// Classify requests with `classifier` instead of the default.
    pub fn classifier<C2: Classify>(self, classifier: C2) -> AuthorizeLayer<C2, D>
    where
        C: Clone,
        D: Clone,
    {
        self.rebuild(|c| Config {
            policy: c.policy,
            classifier,
            max_class: c.max_class,
            denial: c.denial,
        })
    }

    /// Answer denials with `denial` instead of problem+json.
    pub fn denial<D2>(self, denial: D2) -> AuthorizeLayer<C, D2>
    where
        C: Clone,
        D: Clone,
    {
        self.rebuild(|c| Config {
            policy: c.policy,
            classifier: c.classifier,
            max_class: c.max_class,
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

impl<C: Classify, D> Config<C, D> {
    /// The decision for one request: the proof and policy decision, or the denial.
    fn decide(
        &self,
        parts: &http::request::Parts,
    ) -> Result<(Permitted, Option<Decision>), Denial> {
        let Some(verified) = parts.extensions.get::<Arc<Verified<Claims>>>() else {
            return Err(Denial::unauthenticated_missing());
        };
        let claims = verified.claims();
        if let Some(max) = self.max_class
            && !claims.cls.accepted_by(max)
        {
            return Err(Denial::forbidden(
                None,
                format!("class not allowed: a {} token on a {max} route", claims.cls),
            ));
        }
        let (verb, object) = self.classifier.classify(parts).map_err(|e| e.denial())?;
        // `sub` and `scope` were parsed once, when the token was decoded.
        let subject: &Subject = &claims.sub;
        let grants: Option<&[Grant]> = claims.scope.as_ref().map(|s| s.grants());
        let Some(policy) = &self.policy else {
            crate::audit::note_decision(
                &parts.extensions,
                verb.as_str(),
                object.as_str(),
                claims.current_actor(),
                None,
            );
            let covered = claims
                .grants()
                .iter()
                .any(|g| g.covers(&verb, &object, subject));
            if !covered {
                return Err(Denial::forbidden(None, "missing grant"));
            }
            return Ok((
                Permitted {
                    verb,
                    object,
                    rule: None,
                },
                None,
            ));
        };
        let peer = parts
            .extensions
            .get::<PeerIdentity>()
            .map(|p| p.spiffe_id.to_string());
        let caller = peer.as_deref().or_else(|| claims.current_actor());
        let mut req =
            secmesh_core::policy::Request::new(subject, &verb, &object).with_class(claims.cls);
        if let Some(c) = caller {
            req = req.with_caller(c);
        }
        if let Some(g) = grants {
            req = req.with_grants(g);
        }
        let decision = policy.decide(&req);
        crate::audit::note_decision(
            &parts.extensions,
            verb.as_str(),
            object.as_str(),
            caller,
            Some(&decision),
        );
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
            return Err(Denial::forbidden(
                decision.rule().map(str::to_owned),
                decision.reason().as_str(),
            ));
        }
        let rule = decision.rule().map(str::to_owned);
        Ok((Permitted { verb, object, rule }, Some(decision)))
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
        match self.config.decide(&parts) {
            Ok((permitted, decision)) => {
                parts.extensions.insert(permitted);
                if let Some(d) = decision {
                    parts.extensions.insert(d);
                }
                DenyOr::inner(self.inner.call(Request::from_parts(parts, body)))
            }
            Err(denial) => {
                tracing::debug!(target: "secmesh::authorize", reason = %denial, "request refused");
                DenyOr::denied(self.config.denial.response(&parts.headers, &denial))
            }
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
                let p = req.extensions().get::<Permitted>().unwrap();
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
