//! The server stack's limit stage: the policy's declared limits, counted in a [`LimitStore`].

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use secmesh_core::limit::{Rate, Verdict};
use secmesh_core::policy::{Mode, Request, SharedPolicy};
use secmesh_core::{Object, Subject, Verb};

use super::{Decide, LimitStore};
use crate::deny::{DenyReason, RateLimitInfo};

thread_local! {
    /// The key being built: one buffer per thread, so a decision allocates nothing.
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

/// What the limit stage says of one request.
pub(crate) enum Stage {
    /// No limit refused.
    Pass,
    /// Refused by a limit.
    Refused(DenyReason),
    /// Some counter lives in another process: wait for it.
    Wait(Pin<Box<dyn Future<Output = Option<DenyReason>> + Send>>),
}

/// The limit stage: which store keeps the counters.
#[derive(Clone)]
pub(crate) struct Limiter {
    pub(crate) store: Arc<dyn LimitStore>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("store", &self.store)
            .finish()
    }
}

/// A decision on its way from another process.
type RoundTrip = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// What a limit waiting on another process needs once it has answered.
struct Waiting {
    id: Box<str>,
    rate: Rate,
    mode: Mode,
}

fn refusal(id: &str, rate: Rate, v: &Verdict) -> DenyReason {
    DenyReason::RateLimited {
        retry_after: Some(Duration::from_nanos(v.retry_after_ns())),
        limit: Some(RateLimitInfo::new(
            id,
            rate.count(),
            rate.period_secs(),
            v.reset_secs(),
        )),
    }
}

fn shadow_refused(id: &str, subject: &Subject) {
    tracing::info!(
        target: "secmesh::limit",
        limit = %id, subject = %subject,
        "shadow limit would refuse"
    );
}

impl Limiter {
    /// Count `subject`'s request (verb, object, caller) against every limit of the current
    /// policy that applies; the first enforced limit that refuses decides.
    pub(crate) fn check(
        &self,
        policy: &SharedPolicy,
        subject: &Subject,
        verb: &Verb,
        object: &Object,
        caller: Option<&str>,
    ) -> Stage {
        policy.with(|p| {
            let limits = p.limits();
            if limits.is_empty() {
                return Stage::Pass;
            }
            let mut req = Request::new(subject, verb, object);
            if let Some(c) = caller {
                req = req.with_caller(c);
            }
            let mut later: Vec<(Waiting, RoundTrip)> = Vec::new();
            let refused = KEY.with(|key| {
                let mut key = key.borrow_mut();
                for limit in limits.iter().filter(|l| l.applies(&req)) {
                    limit.key(&req, &mut key);
                    match self.store.decide(limit.rate(), &key) {
                        Decide::Now(v) if v.allowed() => {}
                        Decide::Now(v) => match limit.mode() {
                            Mode::Enforce => return Some(refusal(limit.id(), limit.rate(), &v)),
                            Mode::Shadow => shadow_refused(limit.id(), subject),
                        },
                        Decide::Later(fut) => {
                            let waiting = Waiting {
                                id: limit.id().into(),
                                rate: limit.rate(),
                                mode: limit.mode(),
                            };
                            later.push((waiting, fut));
                        }
                    }
                }
                None
            });
            if let Some(reason) = refused {
                return Stage::Refused(reason);
            }
            if later.is_empty() {
                return Stage::Pass;
            }
            let subject = subject.clone();
            Stage::Wait(Box::pin(async move {
                // Every round trip at once (one wait, not one per shared limit), then the
                // verdicts in the policy's order: the first enforced refusal decides.
                let (limits, mut trips): (Vec<Waiting>, Vec<RoundTrip>) = later.into_iter().unzip();
                let mut verdicts: Vec<Option<Verdict>> = vec![None; trips.len()];
                std::future::poll_fn(|cx| {
                    let mut done = true;
                    for (trip, verdict) in trips.iter_mut().zip(verdicts.iter_mut()) {
                        if verdict.is_none() {
                            match trip.as_mut().poll(cx) {
                                Poll::Ready(v) => *verdict = Some(v),
                                Poll::Pending => done = false,
                            }
                        }
                    }
                    if done { Poll::Ready(()) } else { Poll::Pending }
                })
                .await;
                for (limit, v) in limits.iter().zip(verdicts.iter().flatten()) {
                    if !v.allowed() {
                        match limit.mode {
                            Mode::Enforce => return Some(refusal(&limit.id, limit.rate, v)),
                            Mode::Shadow => shadow_refused(&limit.id, &subject),
                        }
                    }
                }
                None
            }))
        })
    }
}
