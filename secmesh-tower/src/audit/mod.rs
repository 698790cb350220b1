//! Audit: an event at every boundary crossing, in and out.
//!
//! [`AuditLayer`] (server side, outermost) writes an `in` event when the response completes,
//! and also when the request future is dropped before that (the client went away, or the
//! handler panicked): who (subject, caller), what (verb, object), the decision and its rule or
//! reason (a denial's full reason, which the caller never sees), status, latency, txn, trace
//! and span ids, token `jti` and SHA-256 (never the token). The event is built from the
//! request's [`Outcome`](crate::Outcome) alone, which the pieces inside put in the response
//! extensions (no slot, no lock); `verb` and `object` are in policy terms, the HTTP `method`
//! and `path` are fields of their own. An edge that exchanged the caller's token puts the new
//! [`RequestContext`](crate::RequestContext) in its response extensions: the event then
//! carries the transaction the outgoing calls continue. The [`SecureLayer`](crate::SecureLayer)
//! runs the same parts in one service.
//!
//! [`AuditOutLayer`] (client side, inside [`PropagateLayer`](crate::PropagateLayer)) writes an
//! `out` event when a call to another service completes; its span id is the one the callee
//! sees as its parent, which is how `secmesh audit trace` links the two.
//!
//! Events go to a [`secmesh_audit::Auditor`]: the request path never does I/O, and never
//! parks its thread: a full queue under [`FullPolicy::Block`](secmesh_audit::FullPolicy::Block)
//! is waited for inside the response future (the task yields, the runtime worker serves
//! others), on the server side and the client side alike.
//!
//! # Durability and a failing log
//!
//! - By default a response is released once its event is queued; a crash can lose the events
//!   of the last few milliseconds. [`AuditLayer::durable`] releases it only once its event is
//!   written and synced (group commit: one fsync serves every request answered meanwhile), so
//!   that no answered request lacks its event after a crash.
//! - Fail-closed (the auditor's [`FullPolicy::FailClosed`](secmesh_audit::FullPolicy::FailClosed)): a request that arrives while the
//!   queue is full or the sink cannot write is refused up front, before any work is done, with
//!   [`DenyReason::AuditUnavailable`](crate::deny::DenyReason::AuditUnavailable) (503, gRPC
//!   UNAVAILABLE; answered by [`BareStatus`] or the
//!   [`DenialResponse`](crate::deny::DenialResponse) given to [`AuditLayer::denial`]), and a
//!   response whose event cannot
//!   be queued becomes that refusal. It serves again by itself once the sink recovers (the
//!   auditor probes it). A durable layer under the block policy refuses the same way while
//!   the sink fails.
//! - Drop-and-count serves regardless; events that cannot be queued or written are counted
//!   ([`Auditor::dropped`](secmesh_audit::Auditor::dropped), [`Auditor::write_errors`](secmesh_audit::Auditor::write_errors)) and reported in the log.
//!
//! # Unauthenticated floods
//!
//! Refusals without an authenticated subject (401, gRPC UNAUTHENTICATED) are aggregated per
//! source, so that a flood of them cannot fill the disk one event per request. The source is
//! the mTLS peer's SPIFFE ID, else the peer's IP address (from the TLS serving side or axum's
//! `ConnectInfo`), else `unknown`. Time is cut into fixed windows (default 1 s): the first
//! refusal from a source in a window is written as a normal event, the rest are counted and
//! written as one event "N further unauthenticated refusals from SOURCE in 1s" (decision
//! `deny`, status 401) when the window ends (on the next request, by a timer thread, or when
//! the layer is dropped). At most 1,024 sources are told apart per window; refusals from
//! further sources are counted under `other`. The events are ordinary chained records: the
//! chain verifies as always. See [`AuditLayer::aggregate_unauthenticated`] and
//! [`AuditLayer::no_aggregation`]. The counts of a window still open are lost in a crash, and
//! the counted refusals' own details (path, time within the window) are not kept.
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use secmesh_audit::{Auditor, event::AuditEvent, sink::Sink};
//! use secmesh_tower::audit::AuditLayer;
//! use std::sync::{Arc, Mutex};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! /// A sink that keeps events in memory.
//! #[derive(Clone, Default)]
//! struct Memory(Arc<Mutex<Vec<AuditEvent>>>);
//! impl Sink for Memory {
//!     fn write_batch(&mut self, events: &mut [AuditEvent]) -> std::io::Result<()> {
//!         self.0.lock().unwrap().extend(events.iter().cloned());
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let memory = Memory::default();
//! let auditor = Auditor::builder(memory.clone()).spawn();
//! let svc = ServiceBuilder::new()
//!     .layer(AuditLayer::new(auditor.clone(), "orders"))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
//!     }));
//! let res = svc.oneshot(Request::get("/orders/7").body(String::new())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! auditor.shutdown();
//! let events = memory.0.lock().unwrap();
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].service, "orders");
//! assert_eq!(events[0].status, Some(200));
//! # Ok(())
//! # }
//! ```

pub(crate) mod aggregate;
mod event;
mod future;
mod layer;
mod out;

pub(crate) use event::Pending;
pub(crate) use future::Answer;
pub use future::ResponseFuture;
pub(crate) use layer::refuse_up_front;
pub use layer::{Audit, AuditLayer, BareStatus};
pub use out::{AuditOut, AuditOutFuture, AuditOutLayer};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::context::RequestContext;
    use http::{Request, Response};
    use secmesh_audit::event::{AuditEvent, Decision as AuditDecision};
    use secmesh_audit::sink::Sink;
    use secmesh_audit::{Auditor, FullPolicy};
    use std::sync::{Arc, Mutex, mpsc};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    #[derive(Clone, Default)]
    struct Memory(
        Arc<Mutex<Vec<AuditEvent>>>,
        Arc<Mutex<Option<mpsc::Receiver<()>>>>,
    );

    impl Sink for Memory {
        fn write_batch(&mut self, events: &mut [AuditEvent]) -> std::io::Result<()> {
            if let Some(rx) = self.1.lock().unwrap().as_ref() {
                let _ = rx.recv();
            }
            self.0.lock().unwrap().extend(events.iter().cloned());
            Ok(())
        }
    }

    fn events_after(auditor: Auditor, memory: &Memory) -> Vec<AuditEvent> {
        auditor.shutdown();
        memory.0.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_panicking_handler_and_a_vanished_client_are_recorded() {
        let memory = Memory::default();
        let auditor = Auditor::builder(memory.clone()).spawn();
        let panics = ServiceBuilder::new()
            .layer(AuditLayer::new(auditor.clone(), "svc"))
            .service(service_fn(|_req: Request<String>| async {
                if true {
                    panic!("handler bug");
                }
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            }));
        let joined = tokio::spawn(panics.oneshot(Request::new(String::new()))).await;
        assert!(joined.is_err(), "the panic propagates");

        let slow = ServiceBuilder::new()
            .layer(AuditLayer::new(auditor.clone(), "svc"))
            .service(service_fn(|_req: Request<String>| async {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            }));
        let call = slow.oneshot(Request::new(String::new()));
        // The client goes away: the future is dropped before it completes.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), call)
                .await
                .is_err()
        );

        let events = events_after(auditor, &memory);
        let reasons: Vec<_> = events.iter().map(|e| e.reason.clone().unwrap()).collect();
        assert_eq!(reasons, ["the handler panicked", "the client went away"]);
        assert!(events.iter().all(|e| e.decision == AuditDecision::Error));
    }

    #[tokio::test]
    async fn an_exchanged_context_is_what_the_in_event_records() {
        use secmesh_core::ExpiryClass;
        use secmesh_tokens::cache::TokenHash;
        use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};

        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))));
        let issuer = Issuer::new(key, "k", "gw").audience("mesh");
        let internal = issuer
            .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
            .unwrap();
        let verified = Arc::new(verifier.verify(&internal).unwrap());
        let (txn, jti) = (verified.claims().txn, verified.claims().jti.clone());
        let ctx =
            RequestContext::authenticated(&internal, TokenHash::of(&internal), verified, None);
        let span = ctx.span_id();

        let memory = Memory::default();
        let auditor = Auditor::builder(memory.clone()).spawn();
        let svc = ServiceBuilder::new()
            .layer(AuditLayer::new(auditor.clone(), "gateway"))
            .service(service_fn(move |_req: Request<String>| {
                // The edge exchanged the caller's token: its event carries the new transaction.
                let mut res = Response::new(String::new());
                res.extensions_mut().insert(ctx.clone());
                async { Ok::<_, std::convert::Infallible>(res) }
            }));
        svc.oneshot(Request::new(String::new())).await.unwrap();
        let events = events_after(auditor, &memory);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].txn, txn);
        assert!(txn.is_some());
        assert_eq!(events[0].jti.as_deref(), Some(jti.as_str()));
        assert_eq!(events[0].span_id, Some(span));
        assert_eq!(events[0].sub.as_deref(), Some("user:alice"));
    }

    #[tokio::test]
    async fn a_full_fail_closed_queue_refuses_the_response() {
        let memory = Memory::default();
        let (tx, rx) = mpsc::channel();
        *memory.1.lock().unwrap() = Some(rx);
        let auditor = Auditor::builder(memory.clone())
            .capacity(1)
            .batch_size(1)
            .full_policy(FullPolicy::FailClosed)
            .spawn();
        let svc = ServiceBuilder::new()
            .layer(AuditLayer::new(auditor.clone(), "svc"))
            .service(service_fn(|_req: Request<String>| async {
                Ok::<_, std::convert::Infallible>(Response::new(String::from("secret result")))
            }));
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let res = svc
                .clone()
                .oneshot(Request::new(String::new()))
                .await
                .unwrap();
            statuses.push(res.status().as_u16());
        }
        assert!(statuses.contains(&503), "{statuses:?}");
        // Hang up to open the sink for good (its writer holds the lock while it waits).
        drop(tx);
        auditor.shutdown();
    }
}
