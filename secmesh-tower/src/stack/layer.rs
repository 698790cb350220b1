//! [`SecureLayer`] and its builder.

use std::sync::Arc;
use std::time::Duration;

use secmesh_audit::{Auditor, Durability};
use secmesh_core::ExpiryClass;
use secmesh_core::policy::SharedPolicy;
use secmesh_tokens::Verifier;
use secmesh_tokens::cache::VerifiedCache;
use tower_layer::Layer;

use super::service::Secure;
use crate::audit::aggregate::Aggregator;
use crate::authenticate::Authn;
use crate::authorize::attributes::Source;
use crate::authorize::{AttributeSource, Authz, Classify, DefaultClassifier};
use crate::deny::{ProblemJson, Responder};
use crate::error::ConfigError;
use crate::limit::stage::Limiter;
use crate::limit::{LimitStore, LocalLimiter};

/// The verified-token cache capacity when none is given: 10,000 tokens.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// The audit part of the stack.
#[derive(Clone, Debug)]
pub(crate) struct AuditPart {
    pub(crate) auditor: Auditor,
    pub(crate) service: Arc<str>,
    pub(crate) durability: Durability,
    pub(crate) aggregate: Option<Arc<Aggregator>>,
}

/// The whole configuration, shared by every clone of the service.
#[derive(Debug)]
pub(crate) struct Config<C, R> {
    pub(crate) audit: Option<AuditPart>,
    pub(crate) authn: Authn,
    pub(crate) authz: Authz<C>,
    pub(crate) limiter: Option<Limiter>,
    pub(crate) responder: R,
    /// The service's name in spans and metrics.
    pub(crate) name: Arc<str>,
    /// Whether decisions are counted and requests run in spans.
    pub(crate) observe: bool,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Decisions,
}

impl<C, R> Config<C, R> {
    /// Count an allowed request (the metrics feature).
    #[inline]
    pub(crate) fn count_allowed(&self, rule: Option<&str>) {
        #[cfg(feature = "metrics")]
        if self.observe {
            self.metrics.allowed(rule);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = rule;
    }

    /// What records a token verification's latency (a cache miss): the metrics feature, on
    /// an observed stack; otherwise nothing, and the cache reads no clock.
    #[inline]
    pub(crate) fn verify_observer(&self) -> Option<impl FnOnce(std::time::Duration, bool) + '_> {
        #[cfg(feature = "metrics")]
        {
            self.observe
                .then_some(move |took, ok| self.metrics.verified(took, ok))
        }
        #[cfg(not(feature = "metrics"))]
        {
            None::<fn(std::time::Duration, bool)>
        }
    }

    /// Count a refusal made in the stack (the metrics feature).
    #[inline]
    pub(crate) fn count_denied(&self, reason: &crate::deny::DenyReason) {
        #[cfg(feature = "metrics")]
        if self.observe {
            self.metrics.denied(reason);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = reason;
    }
}

/// The server stack as one layer; see the [module docs](super). Cheap to clone.
#[derive(Debug)]
#[must_use]
pub struct SecureLayer<C = DefaultClassifier, R = ProblemJson> {
    config: Arc<Config<C, R>>,
}

impl<C, R> Clone for SecureLayer<C, R> {
    fn clone(&self) -> Self {
        SecureLayer {
            config: self.config.clone(),
        }
    }
}

impl SecureLayer {
    /// Start a stack that verifies tokens with `verifier` and authorizes with `policy` (shared,
    /// so that reloads reach every clone) and the tokens' grants.
    pub fn builder(verifier: Verifier, policy: SharedPolicy) -> SecureBuilder {
        SecureBuilder {
            verifier: Arc::new(verifier),
            policy,
            audit: None,
            durable: false,
            max_class: None,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            classifier: DefaultClassifier,
            responder: ProblemJson,
            attributes: Some(Source(Arc::new(crate::authorize::TctxAttributes))),
            limits: None,
            name: None,
            observe: true,
        }
    }
}

impl<C, R> SecureLayer<C, R> {
    /// The verified-token cache (for its hit/miss counts).
    pub fn cache(&self) -> &Arc<VerifiedCache> {
        &self.config.authn.cache
    }
}

impl<S, C, R> Layer<S> for SecureLayer<C, R> {
    type Service = Secure<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Secure::new(inner, self.config.clone())
    }
}

/// Builds a [`SecureLayer`]; see [`SecureLayer::builder`]. Methods consume `self`.
#[must_use]
pub struct SecureBuilder<C = DefaultClassifier, R = ProblemJson> {
    verifier: Arc<Verifier>,
    policy: SharedPolicy,
    audit: Option<(Auditor, String)>,
    durable: bool,
    max_class: Option<ExpiryClass>,
    cache_capacity: usize,
    classifier: C,
    responder: R,
    attributes: Option<Source>,
    limits: Option<Arc<dyn LimitStore>>,
    name: Option<String>,
    observe: bool,
}

impl<C, R> std::fmt::Debug for SecureBuilder<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureBuilder")
            .field("audit", &self.audit.as_ref().map(|(_, s)| s))
            .field("durable", &self.durable)
            .field("max_class", &self.max_class)
            .field("cache_capacity", &self.cache_capacity)
            .field("attributes", &self.attributes.is_some())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<C, R> SecureBuilder<C, R> {
    /// Write an `in` event for every request of `service` into `auditor` (refusals without a
    /// token aggregated per source and second, as [`AuditLayer`](crate::AuditLayer) does).
    pub fn audit(mut self, auditor: Auditor, service: impl Into<String>) -> Self {
        self.audit = Some((auditor, service.into()));
        self
    }

    /// Release each response only once its event is written and synced (see
    /// [`AuditLayer::durable`](crate::AuditLayer::durable)).
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// The slowest expiry class this route accepts: a slower token is refused with 403
    /// `class_not_allowed` (default: every class).
    pub fn max_class(mut self, class: ExpiryClass) -> Self {
        self.max_class = Some(class);
        self
    }

    /// How many verified tokens the cache keeps (default [`DEFAULT_CACHE_CAPACITY`]).
    pub fn cache_capacity(mut self, tokens: usize) -> Self {
        self.cache_capacity = tokens;
        self
    }

    /// Take subject attributes from `source` instead of the token's `tctx` claim.
    pub fn attributes(mut self, source: impl AttributeSource) -> Self {
        self.attributes = Some(Source(Arc::new(source)));
        self
    }

    /// No attribute source: [`build`](Self::build) refuses a policy with attribute conditions.
    pub fn no_attributes(mut self) -> Self {
        self.attributes = None;
        self
    }

    /// The service's name in spans and metrics (default: the audit log's service name, else `secmesh`).
    pub fn name(mut self, service: impl Into<String>) -> Self {
        self.name = Some(service.into());
        self
    }

    /// Count decisions ([`metrics`](crate::metrics)) and run requests in `secmesh.inbound`
    /// spans (default: on); off for routes nobody should watch, or to measure what it costs.
    pub fn observe(mut self, on: bool) -> Self {
        self.observe = on;
        self
    }

    /// Keep the counters of the policy's declared limits (`[[limit]]`, see
    /// [`secmesh_core::policy::limits`]) in `store`, e.g. a
    /// `RedisLimiter` shared by the fleet (the `redis` feature). Default: a [`LocalLimiter`] in
    /// this process.
    pub fn limit_store(mut self, store: impl LimitStore) -> Self {
        self.limits = Some(Arc::new(store));
        self
    }

    /// Classify requests with `classifier` (e.g.
    /// [`GrpcClassifier`](crate::authorize::GrpcClassifier) for a tonic server).
    pub fn classifier<C2: Classify>(self, classifier: C2) -> SecureBuilder<C2, R> {
        SecureBuilder {
            verifier: self.verifier,
            policy: self.policy,
            audit: self.audit,
            durable: self.durable,
            max_class: self.max_class,
            cache_capacity: self.cache_capacity,
            classifier,
            responder: self.responder,
            attributes: self.attributes,
            limits: self.limits,
            name: self.name,
            observe: self.observe,
        }
    }

    /// Answer denials with `responder` instead of [`ProblemJson`].
    pub fn responder<R2: Responder>(self, responder: R2) -> SecureBuilder<C, R2> {
        SecureBuilder {
            verifier: self.verifier,
            policy: self.policy,
            audit: self.audit,
            durable: self.durable,
            max_class: self.max_class,
            cache_capacity: self.cache_capacity,
            classifier: self.classifier,
            responder,
            attributes: self.attributes,
            limits: self.limits,
            name: self.name,
            observe: self.observe,
        }
    }

    /// Check the configuration and build the layer.
    pub fn build(self) -> Result<SecureLayer<C, R>, ConfigError> {
        if self.cache_capacity == 0 {
            return Err(ConfigError::ZeroCacheCapacity);
        }
        let name: Arc<str> = self
            .name
            .as_deref()
            .or(self.audit.as_ref().map(|(_, s)| s.as_str()))
            .unwrap_or("secmesh")
            .into();
        #[cfg(feature = "metrics")]
        let metrics = crate::metrics::Decisions::new(name.clone());
        let audit = match self.audit {
            Some((_, name)) if name.is_empty() => return Err(ConfigError::EmptyServiceName),
            Some((auditor, name)) => {
                let service: Arc<str> = name.into();
                Some(AuditPart {
                    aggregate: Some(Aggregator::new(
                        auditor.clone(),
                        service.clone(),
                        Duration::from_secs(1),
                        1024,
                    )),
                    auditor,
                    service,
                    durability: if self.durable {
                        Durability::Durable
                    } else {
                        Durability::Queued
                    },
                })
            }
            None => None,
        };
        let mut authz = Authz::new(Some(self.policy), self.classifier);
        authz.max_class = self.max_class;
        authz.attributes = self.attributes;
        authz.validate()?;
        let authn = Authn::new(Arc::new(VerifiedCache::new(
            self.verifier,
            self.cache_capacity,
        )));
        Ok(SecureLayer {
            config: Arc::new(Config {
                audit,
                authn,
                authz,
                limiter: Some(Limiter {
                    store: self
                        .limits
                        .unwrap_or_else(|| Arc::new(LocalLimiter::for_limits())),
                }),
                responder: self.responder,
                name,
                observe: self.observe,
                #[cfg(feature = "metrics")]
                metrics,
            }),
        })
    }
}
