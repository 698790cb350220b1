//! The request context: the verified token, transaction id and trace ids of the request being
//! served, available to any async code running for it without passing it by hand.
//!
//! The authenticate layer sets it (a tokio task-local) for the life of the request future.
//! [`RequestContext::current`] reads it; [`spawn`] (or [`RequestContext::scope`]) carries it
//! into spawned tasks; the propagate layer reads it to put the token on outgoing calls.
//!
//! # Example
//! ```
//! use secmesh_tower::context::{self, RequestContext};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let ctx = RequestContext::anonymous(None);
//! let txn_seen_in_task = ctx
//!     .clone()
//!     .scope(async {
//!         // Deep inside the handler, in a spawned task:
//!         context::spawn(async { RequestContext::current().map(|c| c.span_id()) })
//!             .await
//!             .unwrap()
//!     })
//!     .await;
//! assert_eq!(txn_seen_in_task, Some(ctx.span_id()));
//! assert!(RequestContext::current().is_none());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use secmesh_core::claims::Claims;
use secmesh_core::{SpanId, TraceId, TraceParent, TxnId};
use secmesh_tokens::Verified;
use secmesh_tokens::cache::TokenHash;
use tokio::task::JoinHandle;
use tokio::task::futures::TaskLocalFuture;

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// What secmesh knows about the request being served. Cheap to clone.
#[derive(Clone)]
pub struct RequestContext {
    inner: Arc<Inner>,
}

struct Inner {
    token: Option<Box<str>>,
    token_hash: Option<TokenHash>,
    verified: Option<Arc<Verified<Claims>>>,
    trace_id: TraceId,
    parent: Option<SpanId>,
    span_id: SpanId,
    sampled: bool,
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token itself.
        f.debug_struct("RequestContext")
            .field("sub", &self.claims().map(|c| c.sub.as_str()))
            .field("txn", &self.txn())
            .field("trace_id", &self.inner.trace_id)
            .field("span_id", &self.inner.span_id)
            .field("token_sha256", &self.inner.token_hash)
            .finish()
    }
}

/// A random non-zero 64-bit value from the standard library's per-process random hasher keys
/// and a counter (trace ids need to be unique, not secret).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish().max(1)
}

pub(crate) fn new_span_id() -> SpanId {
    // Non-zero by construction.
    SpanId::from_bytes(random_u64().to_be_bytes()).unwrap_or_else(|_| new_span_id())
}

fn new_trace_id() -> TraceId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&random_u64().to_be_bytes());
    b[8..].copy_from_slice(&random_u64().to_be_bytes());
    TraceId::from_bytes(b).unwrap_or_else(|_| new_trace_id())
}

impl RequestContext {
    /// The context of an authenticated request. The trace continues `incoming` when given
    /// (a new span under it), else starts at the token's `txn` (trace id = txn), else anew.
    pub fn authenticated(
        token: &str,
        token_hash: TokenHash,
        verified: Arc<Verified<Claims>>,
        incoming: Option<TraceParent>,
    ) -> RequestContext {
        let trace_id = incoming
            .map(|t| t.trace_id())
            .or_else(|| verified.claims().txn.map(TraceId::from))
            .unwrap_or_else(new_trace_id);
        RequestContext {
            inner: Arc::new(Inner {
                token: Some(token.into()),
                token_hash: Some(token_hash),
                verified: Some(verified),
                trace_id,
                parent: incoming.map(|t| t.parent_id()),
                span_id: new_span_id(),
                sampled: incoming.is_none_or(|t| t.sampled()),
            }),
        }
    }

    /// The context of a request without a token (optional authentication).
    pub fn anonymous(incoming: Option<TraceParent>) -> RequestContext {
        RequestContext {
            inner: Arc::new(Inner {
                token: None,
                token_hash: None,
                verified: None,
                trace_id: incoming.map_or_else(new_trace_id, |t| t.trace_id()),
                parent: incoming.map(|t| t.parent_id()),
                span_id: new_span_id(),
                sampled: incoming.is_none_or(|t| t.sampled()),
            }),
        }
    }

    /// The context of the request this task is serving, if any.
    pub fn current() -> Option<RequestContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Run `fut` with this context as the current one.
    pub fn scope<F: Future>(self, fut: F) -> TaskLocalFuture<RequestContext, F> {
        CURRENT.scope(self, fut)
    }

    /// The verified claims, when the request carried a valid token.
    pub fn claims(&self) -> Option<&Claims> {
        self.inner.verified.as_deref().map(Verified::claims)
    }

    /// The verification proof.
    pub fn verified(&self) -> Option<&Arc<Verified<Claims>>> {
        self.inner.verified.as_ref()
    }

    /// The token as received, for forwarding to the next service. Never log it.
    pub fn token(&self) -> Option<&str> {
        self.inner.token.as_deref()
    }

    /// The SHA-256 of the token (for audit records).
    pub fn token_hash(&self) -> Option<TokenHash> {
        self.inner.token_hash
    }

    /// The transaction id (`txn`).
    pub fn txn(&self) -> Option<TxnId> {
        self.claims().and_then(|c| c.txn)
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.inner.trace_id
    }

    /// This service's span for the request.
    pub fn span_id(&self) -> SpanId {
        self.inner.span_id
    }

    /// The caller's span, when a `traceparent` came in.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.inner.parent
    }

    /// A `traceparent` for an outgoing call: this trace, a new span under this service's span.
    pub fn child_traceparent(&self) -> (TraceParent, SpanId) {
        let span = new_span_id();
        let flags = if self.inner.sampled {
            TraceParent::SAMPLED
        } else {
            0
        };
        (TraceParent::new(self.inner.trace_id, span, flags), span)
    }
}

/// `tokio::spawn` that carries the current request context (if any) into the new task.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match RequestContext::current() {
        Some(ctx) => tokio::spawn(ctx.scope(fut)),
        None => tokio::spawn(fut),
    }
}
