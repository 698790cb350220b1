//! [`Secure`]: the one service of the stack.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{Request, Response};
use tower_service::Service;

use super::future::{ResponseFuture, Resume, Resumed};
use super::layer::Config;
use super::responder::{SecureBody, deny};
use crate::audit::{Answer, Pending, refuse_up_front};
use crate::authorize::{Classified, Classify, DefaultClassifier};
use crate::context::RequestContext;
use crate::deny::{DenyReason, ProblemJson, Responder};
use crate::limit::stage::Stage;
use crate::outcome::{Denied, Outcome};
use tracing::Instrument as _;

/// The server stack's service; see the [module docs](super).
#[derive(Debug)]
pub struct Secure<S, C = DefaultClassifier, R = ProblemJson> {
    inner: S,
    config: Arc<Config<C, R>>,
}

impl<S: Clone, C, R> Clone for Secure<S, C, R> {
    fn clone(&self) -> Self {
        Secure {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S, C, R> Secure<S, C, R> {
    pub(crate) fn new(inner: S, config: Arc<Config<C, R>>) -> Self {
        Secure { inner, config }
    }
}

/// The rest of a request whose limit is kept in another process: authorize and call the
/// inner service once the limit has answered. Only [`Secure`] makes one.
pub struct Deferred<S, ReqB, C, R> {
    inner: S,
    parts: http::request::Parts,
    body: ReqB,
    ctx: RequestContext,
    classified: Classified,
    config: Arc<Config<C, R>>,
    span: tracing::Span,
}

impl<S, ReqB, C, R> std::fmt::Debug for Deferred<S, ReqB, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("method", &self.parts.method)
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB, C, R> Resume<S::Future, ResB> for Deferred<S, ReqB, C, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    C: Classify,
    R: Responder,
{
    fn resume(self, refused: Option<crate::deny::DenyReason>) -> Resumed<S::Future, ResB> {
        let Deferred {
            mut inner,
            parts,
            body,
            ctx,
            classified,
            config,
            span,
        } = self;
        if let Some(reason) = refused {
            config.count_denied(&reason);
            record_denied(&span, &reason);
            let denied = limited(reason, ctx, classified);
            return Resumed::Denied(deny(&config.responder, &parts.headers, denied));
        }
        permit(&mut inner, parts, body, ctx, classified, &config, span)
    }
}

/// The request's span (`secmesh.inbound`): the trace and span ids secmesh propagates, so
/// that a tracing-opentelemetry pipeline can join them; the decision, reason and rule are
/// recorded once known.
fn inbound_span(service: &str, ctx: &RequestContext) -> tracing::Span {
    let span = tracing::info_span!(
        target: "secmesh::inbound",
        "secmesh.inbound",
        otel.kind = "server",
        service = service,
        trace_id = %ctx.trace_id(),
        span_id = %ctx.span_id(),
        parent_span_id = tracing::field::Empty,
        decision = tracing::field::Empty,
        reason = tracing::field::Empty,
        rule = tracing::field::Empty,
    );
    if !span.is_disabled()
        && let Some(parent) = ctx.parent_span_id()
    {
        span.record("parent_span_id", tracing::field::display(parent));
    }
    span
}

fn record_denied(span: &tracing::Span, reason: &DenyReason) {
    if !span.is_disabled() {
        span.record("decision", "deny");
        span.record("reason", reason.kind());
        if let Some(rule) = reason.rule() {
            span.record("rule", rule);
        }
    }
}

/// A refusal by a limit, with what the request was.
fn limited(reason: DenyReason, ctx: RequestContext, classified: Classified) -> Denied {
    let mut d = Denied::new(reason).with_ctx(Some(ctx));
    d.verb = Some(classified.verb);
    d.object = Some(classified.object);
    d.caller = classified.caller;
    d
}

/// Authorize and, when allowed, call the inner service in the request's context.
fn permit<S, ReqB, ResB, C, R>(
    inner: &mut S,
    mut parts: http::request::Parts,
    body: ReqB,
    ctx: RequestContext,
    classified: Classified,
    config: &Config<C, R>,
    span: tracing::Span,
) -> Resumed<S::Future, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    C: Classify,
    R: Responder,
{
    match config.authz.decide(&parts, &ctx, classified) {
        Ok(permitted) => {
            config.count_allowed(permitted.rule());
            if !span.is_disabled() {
                span.record("decision", "allow");
                if let Some(rule) = permitted.rule() {
                    span.record("rule", rule);
                }
            }
            let outcome = Outcome::Permitted(ctx.clone(), permitted);
            parts.extensions.insert(outcome.clone());
            let call = span.in_scope(|| inner.call(Request::from_parts(parts, body)));
            Resumed::Inner(ctx.scope(call).instrument(span), outcome)
        }
        Err(denied) => {
            config.count_denied(&denied.reason);
            record_denied(&span, &denied.reason);
            Resumed::Denied(deny(&config.responder, &parts.headers, *denied))
        }
    }
}

impl<S, C, R, ReqB, ResB> Service<Request<ReqB>> for Secure<S, C, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    C: Classify,
    R: Responder,
{
    type Response = Response<SecureBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, R, Deferred<S, ReqB, C, R>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let config = &*self.config;
        // 1. Audit: refuse up front what the log cannot take (and cannot record).
        let mut audit = None;
        if let Some(a) = &config.audit {
            if let Some(error) = refuse_up_front(&a.auditor, a.durability) {
                let denied = Denied::new(DenyReason::AuditUnavailable(error));
                config.count_denied(&denied.reason);
                let res = deny(&config.responder, req.headers(), denied);
                return ResponseFuture::ready(res);
            }
            let pending = Pending::arriving(&a.auditor, &a.service, a.aggregate.as_ref(), &req);
            let answer = Answer {
                durability: a.durability,
                policy: a.auditor.full_policy(),
                denial: config.responder.clone(),
                content_type: req.headers().get(CONTENT_TYPE).cloned(),
            };
            audit = Some((pending, answer));
        }
        // 2. Authenticate.
        let ctx = match config
            .authn
            .authenticate_observed(&mut req, config.verify_observer())
        {
            Ok(ctx) => ctx,
            Err(reason) => {
                config.count_denied(&reason);
                let denied = Denied::new(reason);
                return ResponseFuture::denied(&config.responder, req.headers(), denied, audit);
            }
        };
        let span = if config.observe {
            inbound_span(&config.name, &ctx)
        } else {
            tracing::Span::none()
        };
        // 3. Authorize: the route's class, the request classified.
        let (parts, body) = req.into_parts();
        let classified = match config.authz.classify(&parts, &ctx) {
            Ok(c) => c,
            Err(denied) => {
                config.count_denied(&denied.reason);
                record_denied(&span, &denied.reason);
                return ResponseFuture::denied(&config.responder, &parts.headers, *denied, audit);
            }
        };
        // 4. The declared limits (they need the subject; before the policy's work).
        if let (Some(limiter), Some(policy), Some(claims)) =
            (&config.limiter, &config.authz.policy, ctx.claims())
        {
            let stage = limiter.check(
                policy,
                &claims.sub,
                &classified.verb,
                &classified.object,
                classified.caller.as_deref(),
            );
            match stage {
                Stage::Pass => {}
                Stage::Refused(reason) => {
                    config.count_denied(&reason);
                    record_denied(&span, &reason);
                    let denied = limited(reason, ctx, classified);
                    return ResponseFuture::denied(
                        &config.responder,
                        &parts.headers,
                        denied,
                        audit,
                    );
                }
                Stage::Wait(wait) => {
                    // The inner service was made ready for this call: it goes with the rest of
                    // the request, and a clone stays for the next one.
                    let clone = self.inner.clone();
                    let inner = std::mem::replace(&mut self.inner, clone);
                    let deferred = Deferred {
                        inner,
                        parts,
                        body,
                        ctx,
                        classified,
                        config: self.config.clone(),
                        span,
                    };
                    return ResponseFuture::limiting(wait, deferred, audit);
                }
            }
        }
        // 5. Grants and policy; then the inner service.
        match permit(&mut self.inner, parts, body, ctx, classified, config, span) {
            Resumed::Inner(fut, outcome) => {
                let mut audit = audit;
                if let Some((pending, _)) = &mut audit {
                    pending.note(&outcome);
                }
                ResponseFuture::inner(fut, outcome, audit)
            }
            Resumed::Denied(response) => ResponseFuture::answered(response, audit),
        }
    }
}
