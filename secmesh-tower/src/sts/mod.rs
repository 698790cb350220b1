//! The Txn-Token Service: the one holder of the mesh signing key, turning a workload's
//! Txn-Token Request (draft-ietf-oauth-transaction-tokens, the RFC 8693 token-exchange
//! profile) into a short txn-token narrowed to the request.
//!
//! [`Sts`] is the service itself, usable from any async code ([`Sts::exchange`]; the edge of a
//! single-process deployment embeds it); [`TxnTokenService`] is its HTTP endpoint as a tower
//! service, to mount in an axum router or serve with [`TlsServer`](crate::tls::TlsServer)
//! (`secmesh sts serve` does), next to the [JWKS](crate::jwks) of the same key ring.
//! `secmesh_tower::sts_client::StsClient` (the `tls` feature; also re-exported here) is the
//! calling side over mutual TLS: pooled connections, bounded answers, timeouts, nothing
//! cached; it is an [`Exchanger`](crate::edge::Exchanger) for the edge and a
//! [`Replace`](secmesh_tokens::renew::Replace) for renewal.
//!
//! An exchange, step by step:
//!
//! 1. The requesting workload is the mTLS peer: its SPIFFE ID ([`PeerIdentity`](secmesh_core::PeerIdentity) in the
//!    request's extensions) becomes `req_wl`. No client certificate: `invalid_client` (401).
//! 2. The body is read strictly ([`TxnTokenRequest::from_form`]): `POST`,
//!    `application/x-www-form-urlencoded`, at most [`MAX_REQUEST`] bytes, read within
//!    [`StsBuilder::body_timeout`]; anything else is `invalid_request` and nothing else.
//! 3. The `audience` must be the trust domain this service issues for (`invalid_target`).
//! 4. The subject token, by its type:
//!    - `access_token`, `id_token`, `jwt`: an external token, verified by the
//!      [`IdpVerifiers`] of the trusted issuers (their live key sources); the mesh subject is
//!      the issuer's subject prefix followed by the token's `sub` (`user:` + `alice`), and a
//!      `sub` with pattern syntax (`*`, `/`, `{`, `}`), space or control characters is refused;
//!      the txn-token never outlives the external token;
//!    - `txn_token`: a txn-token of this service to replace, verified with this service's own
//!      keys; [`replacement`] keeps `txn`, `sub` and `aud`, only narrows the scope, never
//!      makes the class slower, and records the requesters in `rctx.req_wl_chain`;
//!    - `self_signed`, `unsigned_json`: a workload starting a transaction of its own: the
//!      subject is the requesting workload's SPIFFE ID (a `sub` in the token must say the
//!      same). The mutual TLS handshake authenticates it, not the token.
//!
//!    A token that does not verify is `invalid_grant`; its details go to the audit log, never
//!    to the client.
//! 5. The [exchange policy](secmesh_core::exchange_policy) decides (deny wins): whether this
//!    workload may present this kind of token for this subject and audience (and, for an
//!    external token, with the IdP scope words its rules require), the granted scope
//!    (the request's scope narrowed to what the policy allows this workload: the granted scope
//!    is within both) and the class (the one asked for, `txn_class`, or the fastest; never
//!    slower than the policy allows). The response names the scope when it was narrowed.
//! 6. The token is signed with the ring's current key, `request_context` goes into `rctx` (it
//!    may not set `req_wl_chain`, which only the service writes) and `request_details` into
//!    `tctx` (a token that would exceed the verifiers' size limit is refused:
//!    `invalid_request`), and an audit event records the exchange (granted or
//!    refused, the reason and rule, the requesting workload, the subject, the SHA-256 of the
//!    subject token, the issued `jti`, `txn` and class; never a token). An exchange whose
//!    audit event cannot be queued is not answered with a token (503).
//!
//! Error responses are RFC 6749 section 5.2 JSON with fixed descriptions; every response
//! carries `Cache-Control: no-store`.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use http::{Request, StatusCode, header};
//! use http_body_util::BodyExt;
//! use secmesh_core::exchange::{SubjectToken, SubjectTokenType, TxnTokenRequest, TxnTokenResponse};
//! use secmesh_core::exchange_policy::ExchangePolicy;
//! use secmesh_core::claims::Scope;
//! use secmesh_core::{PeerIdentity, SystemClock};
//! use secmesh_tokens::keyring::{KeyRing, RingConfig};
//! use secmesh_tower::sts::{Sts, TxnTokenService};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let ring = Arc::new(KeyRing::init(dir.path(), RingConfig::default(), Arc::new(SystemClock))?);
//! let policy = ExchangePolicy::from_toml(r#"
//! [[exchange]]
//! id = "batch-starts-its-own"
//! effect = "allow"
//! workloads = ["spiffe://mesh.test/batch"]
//! subject_token_types = ["unsigned_json"]
//! audiences = ["mesh.test"]
//! scopes = ["create:orders/batch/**"]
//! max_class = "slow"
//! "#)?;
//! let sts = Sts::builder(&ring, "https://sts.mesh.test", "mesh.test").policy(policy).build()?;
//!
//! let ask = TxnTokenRequest::new(
//!     "mesh.test",
//!     Scope::new("create:orders/batch/7")?,
//!     SubjectToken::new("{}"),
//!     SubjectTokenType::UnsignedJson,
//! );
//! let mut req = Request::post("/token")
//!     .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
//!     .body(ask.to_form())?;
//! // What the TLS server puts into every request of a mutually authenticated connection.
//! req.extensions_mut().insert(PeerIdentity {
//!     spiffe_id: "spiffe://mesh.test/batch".parse()?,
//!     x5t_s256: String::new(),
//! });
//! let res = TxnTokenService::<String>::new(sts.clone()).oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
//! let body = res.into_body().collect().await?.to_bytes();
//! let issued = TxnTokenResponse::from_json(&body)?;
//! let claims = sts.verifier().verify(issued.access_token())?;
//! assert_eq!(claims.sub.as_str(), "spiffe://mesh.test/batch");
//! assert_eq!(claims.req_wl.as_deref(), Some("spiffe://mesh.test/batch"));
//! # Ok(()) }
//! ```

mod service;
mod watch;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secmesh_audit::event::{AuditEvent, Decision, Direction};
use secmesh_audit::{Auditor, Durability};
use secmesh_core::claims::{JsonMap, Scope};
use secmesh_core::exchange::{
    ErrorCode, ExchangeError, MAX_REQUEST, SubjectTokenType, TxnTokenRequest, TxnTokenResponse,
};
use secmesh_core::exchange_policy::{
    ExchangeAsk, ExchangePolicy, SharedExchangePolicy, literal_subject,
};
use secmesh_core::{Clock, ExpiryClass, Subject};
use secmesh_tokens::cache::TokenHash;
use secmesh_tokens::exchange::{REQ_WL_CHAIN, replacement};
use secmesh_tokens::external::IdpVerifiers;
use secmesh_tokens::keyring::KeyRing;
use secmesh_tokens::source::KeySource;
use secmesh_tokens::{ErrorKind, Issuer, MintRequest, Verifier};

#[cfg(feature = "tls")]
pub use crate::sts_client::{StsClient, StsClientError};
pub use service::{ResponseFuture, TxnTokenService};
pub use watch::{PolicyFileError, PolicyFileWatch};

/// Why a [`Sts`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StsError {
    /// No exchange policy was given.
    #[error("no exchange policy: every request would be refused")]
    NoPolicy,
    /// A subject prefix is not usable.
    #[error("subject prefix {0:?} for an issuer: it must end in ':' and contain no space")]
    Prefix(String),
}

/// A refused exchange: the RFC 6749 error the client gets, and the detail the audit log gets.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The error answered (fixed description).
    pub error: ExchangeError,
    /// A stable word for the audit log's `reason_kind` (`invalid_grant`, `no_rule`, ...).
    pub kind: &'static str,
    /// The detail, for the audit log only (never a token).
    pub detail: String,
    /// The exchange-policy rule that decided, if one did.
    pub rule: Option<String>,
}

impl Refusal {
    fn new(code: ErrorCode, description: &'static str, kind: &'static str) -> Refusal {
        Refusal {
            error: ExchangeError::new(code, description),
            kind,
            detail: description.to_owned(),
            rule: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Refusal {
        self.detail = detail.into();
        self
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.error, self.detail)
    }
}

/// Why an exchange was not answered with a token.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeFailure {
    /// Refused: an RFC 6749 error.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The token could not be signed (the key ring), or its audit event not queued: the
    /// service is unavailable, not the request wrong.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A token issued by [`Sts::exchange`].
#[derive(Clone)]
#[non_exhaustive]
pub struct Issued {
    /// The txn-token.
    pub token: String,
    /// Its claims.
    pub claims: secmesh_core::claims::Claims,
    /// The scope granted, when it differs from the scope asked for.
    pub narrowed: Option<Scope>,
    /// The rule of the exchange policy that allowed it.
    pub rule: Option<String>,
}

impl Issued {
    /// The response body of the token endpoint.
    pub fn response(&self) -> TxnTokenResponse {
        Issued::answer(self.token.clone(), &self.claims, self.narrowed.clone())
    }

    /// The response body of the token endpoint, taking the token (not copied).
    pub fn into_response(self) -> TxnTokenResponse {
        Issued::answer(self.token, &self.claims, self.narrowed)
    }

    fn answer(
        token: String,
        claims: &secmesh_core::claims::Claims,
        narrowed: Option<Scope>,
    ) -> TxnTokenResponse {
        let r = TxnTokenResponse::new(token).expires_in(claims.exp.saturating_sub(claims.iat));
        match narrowed {
            Some(s) => r.scope(s),
            None => r,
        }
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("token", &format_args!("{} bytes", self.token.len()))
            .field("sub", &self.claims.sub)
            .field("txn", &self.claims.txn)
            .field("cls", &self.claims.cls)
            .field("narrowed", &self.narrowed)
            .field("rule", &self.rule)
            .finish()
    }
}

/// Builds a [`Sts`].
#[must_use]
pub struct StsBuilder {
    issuer: Issuer,
    source: Arc<KeySource>,
    trust_domain: String,
    policy: Option<SharedExchangePolicy>,
    idps: IdpVerifiers,
    prefixes: Vec<(String, String)>,
    auditor: Option<Auditor>,
    service: String,
    body_timeout: Duration,
    ring_source: Option<Arc<KeyRing>>,
}

impl StsBuilder {
    /// The exchange policy (required).
    pub fn policy(self, policy: ExchangePolicy) -> Self {
        self.shared_policy(SharedExchangePolicy::new(policy))
    }

    /// The exchange policy, shared with whatever reloads it (a file watch, `SIGHUP`).
    pub fn shared_policy(mut self, policy: SharedExchangePolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The identity providers whose tokens are accepted as subject tokens.
    pub fn idps(mut self, idps: IdpVerifiers) -> Self {
        self.idps = idps;
        self
    }

    /// The mesh subject of an external token of `issuer` is `prefix` followed by its `sub`
    /// (`user:` when not set). The prefix ends in `:` so that no IdP subject can pass for a
    /// workload or service subject of another kind.
    pub fn subject_prefix(mut self, issuer: impl Into<String>, prefix: impl Into<String>) -> Self {
        self.prefixes.push((issuer.into(), prefix.into()));
        self
    }

    /// Record every exchange with `auditor`, as service `service` (`sts` by default).
    pub fn auditor(mut self, auditor: Auditor, service: impl Into<String>) -> Self {
        self.auditor = Some(auditor);
        self.service = service.into();
        self
    }

    /// How long the body of a request may take to arrive (10 s by default).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The service.
    pub fn build(self) -> Result<Sts, StsError> {
        let policy = self.policy.ok_or(StsError::NoPolicy)?;
        for (_, p) in &self.prefixes {
            if !p.ends_with(':') || p.contains(' ') || p.len() > 64 {
                return Err(StsError::Prefix(p.clone()));
            }
        }
        let verifier = Verifier::with_source(self.source.clone())
            .issuer(self.issuer.iss().to_owned())
            .audience(self.trust_domain.clone());
        Ok(Sts(Arc::new(Inner {
            issuer: self.issuer,
            source: self.source,
            ring: self.ring_source,
            verifier,
            trust_domain: self.trust_domain,
            policy,
            idps: self.idps,
            prefixes: self.prefixes,
            auditor: self.auditor,
            service: self.service,
            body_timeout: self.body_timeout,
            own_etag: Mutex::new(String::new()),
        })))
    }
}

/// The Txn-Token Service; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct Sts(Arc<Inner>);

struct Inner {
    issuer: Issuer,
    source: Arc<KeySource>,
    ring: Option<Arc<KeyRing>>,
    verifier: Verifier,
    trust_domain: String,
    policy: SharedExchangePolicy,
    idps: IdpVerifiers,
    prefixes: Vec<(String, String)>,
    auditor: Option<Auditor>,
    service: String,
    body_timeout: Duration,
    own_etag: Mutex<String>,
}

impl fmt::Debug for Sts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sts")
            .field("iss", &self.0.issuer.iss())
            .field("trust_domain", &self.0.trust_domain)
            .field("idps", &self.0.idps)
            .finish_non_exhaustive()
    }
}

/// The mesh subject of an external token's `sub` when no prefix is configured.
pub const DEFAULT_SUBJECT_PREFIX: &str = "user:";

impl Sts {
    /// A service signing with `ring`'s current key (rotations take effect at once) as issuer
    /// `iss`, for the trust domain `trust_domain` (the `audience` of requests and tokens).
    pub fn builder(
        ring: &Arc<KeyRing>,
        iss: impl Into<String>,
        trust_domain: impl Into<String>,
    ) -> StsBuilder {
        let trust_domain = trust_domain.into();
        let issuer = Issuer::from_ring(ring, iss).audience(trust_domain.clone());
        StsBuilder {
            issuer,
            source: Arc::new(KeySource::fixed(secmesh_tokens::KeySet::default())),
            trust_domain,
            policy: None,
            idps: IdpVerifiers::new(),
            prefixes: Vec::new(),
            auditor: None,
            service: "sts".to_owned(),
            body_timeout: Duration::from_secs(10),
            ring_source: Some(ring.clone()),
        }
    }

    /// A service signing with `issuer` (its audience must be the trust domain), replacing
    /// txn-tokens that verify with `keys` (the issuer's published keys).
    pub fn with_issuer(
        issuer: Issuer,
        keys: Arc<KeySource>,
        trust_domain: impl Into<String>,
    ) -> StsBuilder {
        let trust_domain = trust_domain.into();
        StsBuilder {
            issuer: issuer.audience(trust_domain.clone()),
            source: keys,
            trust_domain,
            policy: None,
            idps: IdpVerifiers::new(),
            prefixes: Vec::new(),
            auditor: None,
            service: "sts".to_owned(),
            body_timeout: Duration::from_secs(10),
            ring_source: None,
        }
    }

    /// A verifier of the tokens this service issues (its own keys, issuer and trust domain).
    pub fn verifier(&self) -> &Verifier {
        self.refresh_own_keys();
        &self.0.verifier
    }

    /// The exchange policy in force (reload it through this handle).
    pub fn policy(&self) -> &SharedExchangePolicy {
        &self.0.policy
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.0.trust_domain
    }

    /// The issuer (`iss`).
    pub fn iss(&self) -> &str {
        self.0.issuer.iss()
    }

    pub(crate) fn body_timeout(&self) -> Duration {
        self.0.body_timeout
    }

    /// Keep the own-token verifier's keys the ring's published set (a rotation publishes the
    /// next key before it signs).
    fn refresh_own_keys(&self) {
        let Some(ring) = &self.0.ring else { return };
        let publication = ring.publication();
        let mut seen = match self.0.own_etag.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *seen != publication.etag
            && let Ok(keys) = secmesh_tokens::KeySet::from_jwks_json(&publication.jwks)
        {
            self.0.source.replace(keys);
            seen.clone_from(&publication.etag);
        }
    }

    /// Answer the Txn-Token Request of `requester` (the SPIFFE ID the mutual TLS handshake
    /// authenticated); see the [module docs](self). Records the audit event when an auditor
    /// is configured.
    pub async fn exchange(
        &self,
        requester: &str,
        request: &TxnTokenRequest,
    ) -> Result<Issued, ExchangeFailure> {
        let started = Instant::now();
        let outcome = self.decide(requester, request).await;
        self.audit(requester, request, &outcome, started).await?;
        match outcome {
            Ok(Ok(issued)) => Ok(issued),
            Ok(Err(unavailable)) => Err(ExchangeFailure::Unavailable(unavailable)),
            Err(refusal) => Err(ExchangeFailure::Refused(refusal)),
        }
    }

    /// The decision and, when granted, the signed token (or why signing failed).
    async fn decide(
        &self,
        requester: &str,
        request: &TxnTokenRequest,
    ) -> Result<Result<Issued, String>, Refusal> {
        if request.audience != self.0.trust_domain {
            return Err(Refusal::new(
                ErrorCode::InvalidTarget,
                "not a trust domain this service issues for",
                "invalid_target",
            ));
        }
        let token = request.subject_token.expose();
        let mint: MintRequest;
        let subject: String;
        let issuer: Option<String>;
        let mut original_class = None;
        // An external token's expiry: the txn-token never outlives it.
        let mut subject_exp: Option<u64> = None;
        // An external token's own scope words (what it allows, for the policy's
        // `subject_scopes`).
        let mut subject_scopes: Vec<String> = Vec::new();
        match &request.subject_token_type {
            SubjectTokenType::AccessToken | SubjectTokenType::IdToken | SubjectTokenType::Jwt => {
                let verified = self.0.idps.verify_async(token).await.map_err(|e| {
                    Refusal::new(
                        ErrorCode::InvalidGrant,
                        "the subject token is invalid, expired or not for this service",
                        subject_kind(e.kind()),
                    )
                    .detail(e.to_string())
                })?;
                let prefix = self
                    .0
                    .prefixes
                    .iter()
                    .find(|(iss, _)| *iss == verified.iss)
                    .map_or(DEFAULT_SUBJECT_PREFIX, |(_, p)| p.as_str());
                subject = format!("{prefix}{}", verified.sub);
                // An IdP's subject becomes a mesh subject only when it reads as nothing but
                // itself: no pattern syntax (`*`, `/`, `{`, `}`), no space or control.
                let literal = literal_subject(&verified.sub).is_some()
                    && !verified.sub.chars().any(char::is_control);
                if !literal || Subject::new(subject.clone()).is_err() {
                    return Err(Refusal::new(
                        ErrorCode::InvalidGrant,
                        "the subject token's subject is not usable in this mesh",
                        "invalid_subject",
                    ));
                }
                issuer = Some(verified.iss.clone());
                mint = MintRequest::new(subject.clone(), ExpiryClass::Fast);
                subject_exp = Some(verified.exp);
                subject_scopes.clone_from(&verified.scopes);
            }
            SubjectTokenType::TxnToken => {
                self.refresh_own_keys();
                let verified = self.0.verifier.verify_async(token).await.map_err(|e| {
                    Refusal::new(
                        ErrorCode::InvalidGrant,
                        "the subject token is invalid, expired or not for this service",
                        subject_kind(e.kind()),
                    )
                    .detail(e.to_string())
                })?;
                original_class = Some(verified.cls);
                subject = verified.sub.as_str().to_owned();
                // An internal token: rules that name IdP issuers do not apply to it.
                issuer = None;
                let asked = request.class.unwrap_or(verified.cls);
                mint = replacement(&verified, request, requester, asked).map_err(|e| Refusal {
                    kind: replacement_kind(e.code()),
                    detail: e.description().to_owned(),
                    error: e,
                    rule: None,
                })?;
            }
            SubjectTokenType::SelfSigned | SubjectTokenType::UnsignedJson => {
                let claimed = self_asserted_sub(&request.subject_token_type, token)?;
                if claimed.as_deref().is_some_and(|s| s != requester) {
                    return Err(Refusal::new(
                        ErrorCode::InvalidGrant,
                        "a self-asserted subject token names another workload",
                        "subject_not_requester",
                    ));
                }
                subject = requester.to_owned();
                issuer = None;
                mint = MintRequest::new(subject.clone(), ExpiryClass::Fast);
            }
            _ => {
                return Err(Refusal::new(
                    ErrorCode::InvalidRequest,
                    "unsupported subject_token_type",
                    "unsupported_token_type",
                ));
            }
        }

        let asked_class = request.class.or(original_class);
        let mut ask = ExchangeAsk::new(
            requester,
            &request.subject_token_type,
            &subject,
            &request.audience,
            &request.scope,
        );
        if let Some(iss) = issuer.as_deref() {
            ask = ask.with_issuer(iss);
        }
        ask = ask.with_subject_scopes(&subject_scopes);
        if let Some(class) = asked_class {
            ask = ask.with_class(class);
        }
        let decision = self.0.policy.decide(&ask);
        let rule = decision.rule().map(str::to_owned);
        if let Some(error) = decision.error() {
            return Err(Refusal {
                kind: decision.reason().code(),
                detail: decision.to_string(),
                error,
                rule,
            });
        }
        let (Some(granted), Some(class)) = (decision.granted(), decision.class()) else {
            return Err(Refusal::new(
                ErrorCode::UnauthorizedClient,
                "the exchange policy does not allow this request",
                "no_rule",
            ));
        };
        if original_class.is_some_and(|o| class > o) {
            return Err(Refusal::new(
                ErrorCode::InvalidScope,
                "a replacement's class is never slower than the original's",
                "class_not_allowed",
            ));
        }
        let mut mint = mint.scope(granted.clone()).class(class);
        if let Some(exp) = subject_exp {
            let now = secmesh_core::SystemClock.now_unix();
            let bound = self.0.issuer.class_bounds().bound(class);
            mint = mint.lifetime(exp.saturating_sub(now).clamp(1, bound));
        }
        if original_class.is_none() {
            mint = mint.req_wl(requester);
            if let Some(ctx) = &request.request_context {
                // The chain of requesters is the service's to assert, never the request's.
                if ctx.contains_key(REQ_WL_CHAIN) {
                    return Err(Refusal::new(
                        ErrorCode::InvalidRequest,
                        "request_context may not set req_wl_chain",
                        "invalid_request_context",
                    ));
                }
                mint = mint.rctx(ctx.clone());
            }
            if let Some(details) = &request.request_details {
                mint = mint.tctx(details.clone());
            }
        }
        let narrowed = (granted.as_str() != request.scope.as_str()).then(|| granted.clone());
        let signed = self
            .0
            .issuer
            .claims_for(&mint)
            .and_then(|claims| Ok((self.0.issuer.sign_claims(&claims)?, claims)));
        let (token, claims) = match signed {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("signing failed: {e}"))),
        };
        // A token the mesh's verifiers would refuse for its size is not issued.
        if token.len() > secmesh_tokens::jws::DEFAULT_MAX_SIZE {
            return Err(Refusal::new(
                ErrorCode::InvalidRequest,
                "request_context and request_details do not fit in a token",
                "token_too_large",
            ));
        }
        Ok(Ok(Issued {
            token,
            claims,
            narrowed,
            rule,
        }))
    }

    async fn audit(
        &self,
        requester: &str,
        request: &TxnTokenRequest,
        outcome: &Result<Result<Issued, String>, Refusal>,
        started: Instant,
    ) -> Result<(), ExchangeFailure> {
        let Some(auditor) = &self.0.auditor else {
            return Ok(());
        };
        let mut ev = AuditEvent::now(self.0.service.clone(), Direction::In);
        ev.caller = Some(requester.to_owned());
        ev.verb = Some("exchange".to_owned());
        ev.object = Some(format!(
            "{}/{}",
            request.audience,
            type_word(&request.subject_token_type)
        ));
        ev.token_sha256 = Some(TokenHash::of(request.subject_token.expose()).to_string());
        ev.latency_us = Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        match outcome {
            Ok(Ok(issued)) => {
                ev.decision = Decision::Allow;
                ev.status = Some(200);
                ev.sub = Some(issued.claims.sub.as_str().to_owned());
                ev.txn = issued.claims.txn;
                ev.jti = Some(issued.claims.jti.clone());
                ev.cls = Some(issued.claims.cls);
                ev.rule = issued.rule.clone();
                ev.reason = Some(match &issued.narrowed {
                    Some(s) => format!("issued, scope narrowed to {}", s.as_str()),
                    None => "issued".to_owned(),
                });
            }
            Ok(Err(why)) => {
                ev.decision = Decision::Error;
                ev.status = Some(503);
                ev.reason = Some(why.clone());
            }
            Err(refusal) => {
                ev.decision = Decision::Deny;
                ev.status = Some(refusal.error.status());
                ev.reason_kind = Some(refusal.kind.to_owned());
                ev.reason = Some(refusal.detail.clone());
                ev.rule = refusal.rule.clone();
            }
        }
        let granted = matches!(outcome, Ok(Ok(_)));
        match auditor.submit(ev, Durability::Queued).await {
            Ok(()) => Ok(()),
            // No token leaves without its audit event.
            Err(e) if granted => Err(ExchangeFailure::Unavailable(format!("audit: {e}"))),
            Err(_) => Ok(()),
        }
    }
}

/// The subject of a self-asserted token, if it names one.
fn self_asserted_sub(kind: &SubjectTokenType, token: &str) -> Result<Option<String>, Refusal> {
    let bad = || {
        Refusal::new(
            ErrorCode::InvalidGrant,
            "the self-asserted subject token is malformed",
            "invalid_subject_token",
        )
    };
    let payload: Vec<u8> = match kind {
        SubjectTokenType::UnsignedJson => token.as_bytes().to_vec(),
        _ => {
            secmesh_tokens::jws::decode_unverified(token)
                .map_err(|_| bad())?
                .payload
        }
    };
    if payload.len() > MAX_REQUEST {
        return Err(bad());
    }
    secmesh_core::json::check_object(&payload, secmesh_core::json::DEFAULT_MAX_DEPTH)
        .map_err(|_| bad())?;
    let map: JsonMap = serde_json::from_slice(&payload).map_err(|_| bad())?;
    match map.get("sub") {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad()),
    }
}

fn subject_kind(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Expired => "subject_token_expired",
        ErrorKind::WrongIss => "subject_token_unknown_issuer",
        ErrorKind::WrongAud => "subject_token_wrong_audience",
        ErrorKind::KeysUnavailable => "keys_unavailable",
        ErrorKind::Revoked => "subject_token_revoked",
        _ => "invalid_subject_token",
    }
}

fn replacement_kind(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidScope => "replacement_wider",
        ErrorCode::InvalidTarget => "invalid_target",
        _ => "invalid_replacement",
    }
}

/// The short name of a subject token type, for the audit log's object.
fn type_word(t: &SubjectTokenType) -> &str {
    match t {
        SubjectTokenType::AccessToken => "access_token",
        SubjectTokenType::IdToken => "id_token",
        SubjectTokenType::Jwt => "jwt",
        SubjectTokenType::TxnToken => "txn_token",
        SubjectTokenType::SelfSigned => "self_signed",
        SubjectTokenType::UnsignedJson => "unsigned_json",
        _ => "other",
    }
}
