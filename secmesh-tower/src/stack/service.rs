//! [`Secure`]: the one service of the stack.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::Config;
use super::responder::{SecureBody, deny};
use crate::audit::{Answer, Pending, refuse_up_front};
use crate::authorize::{Classify, DefaultClassifier};
use crate::deny::{DenyReason, ProblemJson, Responder};
use crate::outcome::{Denied, Outcome};

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

impl<S, C, R, ReqB, ResB> Service<Request<ReqB>> for Secure<S, C, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    C: Classify,
    R: Responder,
{
    type Response = Response<SecureBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, R>;

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
        let ctx = match config.authn.authenticate(&mut req) {
            Ok(ctx) => ctx,
            Err(reason) => {
                let denied = Denied::new(reason);
                return ResponseFuture::denied(&config.responder, req.headers(), denied, audit);
            }
        };
        // 3. Authorize (the route's class first).
        let (mut parts, body) = req.into_parts();
        match config.authz.authorize(&parts, &ctx) {
            Ok(permitted) => {
                let outcome = Outcome::Permitted(ctx.clone(), permitted);
                if let Some((pending, _)) = &mut audit {
                    pending.note(&outcome);
                }
                parts.extensions.insert(outcome.clone());
                let fut = ctx.scope(self.inner.call(Request::from_parts(parts, body)));
                ResponseFuture::inner(fut, outcome, audit)
            }
            Err(denied) => {
                ResponseFuture::denied(&config.responder, &parts.headers, *denied, audit)
            }
        }
    }
}
