//! OpenTelemetry export with secmesh's ids (the `otel` feature).
//!
//! secmesh propagates its own W3C trace context: the `secmesh.inbound` span of a service
//! carries the trace id, the span id of the hop and the caller's span id as propagated
//! (fields `trace_id`, `span_id`, `parent_span_id`), and each `secmesh.outbound` span the id
//! the callee sees as its parent. A `tracing-opentelemetry` pipeline gives every span ids of
//! its own, so without help each service would export a trace of its own.
//! [`SecmeshIds`] is a span processor, put in front of the exporting one, that joins them: a
//! secmesh span is exported under the ids secmesh propagated, and every other span of the
//! same request (the handler's, the client's) under secmesh's trace id, with a parent
//! pointing at the secmesh span it ran in. One request through three services is then one
//! trace in the collector, each hop the child of its caller's outbound span.
//!
//! Put the [`SecureLayer`](crate::SecureLayer) outermost (its span is the request's root in
//! the service): a span that ends after the service's last secmesh span of a request (an
//! outer span) keeps the ids its pipeline gave it. The processor holds one entry per open
//! secmesh span and per open request, at most [`SecmeshIds::MAX_OPEN`] of each (beyond, spans
//! are exported as they are and a warning is logged once). It reads each span's name and
//! attributes when the span starts (the SDK hands them out as a copy), a small cost beside what
//! the `tracing` bridge spends per span.
//!
//! # Example
//! ```
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
//! use secmesh_tower::otel::SecmeshIds;
//!
//! let exporter = InMemorySpanExporter::default(); // an OTLP exporter in a service
//! let provider = SdkTracerProvider::builder()
//!     .with_span_processor(SecmeshIds::new(SimpleSpanProcessor::new(exporter.clone())))
//!     .build();
//! // tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("orders")))
//! # drop(provider);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, TraceId};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

/// The ids secmesh gave one of its spans.
#[derive(Clone, Copy, Debug)]
struct Ids {
    trace: TraceId,
    span: SpanId,
    /// For `secmesh.inbound`: the caller's span as propagated (none at the root).
    parent: Option<SpanId>,
    inbound: bool,
}

#[derive(Default)]
struct Maps {
    /// The pipeline's span id of an open secmesh span -> secmesh's ids.
    spans: HashMap<SpanId, Ids>,
    /// The pipeline's trace id of a request -> secmesh's trace id, and how many secmesh
    /// spans of it are open.
    traces: HashMap<TraceId, (TraceId, usize)>,
}

/// A [`SpanProcessor`] that exports secmesh's spans (and the spans inside them) under the
/// ids secmesh propagates; see the [module docs](self).
pub struct SecmeshIds<P> {
    inner: P,
    maps: Mutex<Maps>,
    full: AtomicBool,
}

impl<P> fmt::Debug for SecmeshIds<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecmeshIds").finish_non_exhaustive()
    }
}

impl<P: SpanProcessor> SecmeshIds<P> {
    /// The most open secmesh spans (and open requests) the processor follows.
    pub const MAX_OPEN: usize = 100_000;

    /// Rewrite ids, then hand each ended span to `inner` (the batch or simple processor of
    /// the exporter).
    pub fn new(inner: P) -> Self {
        SecmeshIds {
            inner,
            maps: Mutex::new(Maps::default()),
            full: AtomicBool::new(false),
        }
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// secmesh's ids from a span's name and attributes, when it is one of secmesh's spans.
fn secmesh_ids(name: &str, attributes: &[opentelemetry::KeyValue]) -> Option<Ids> {
    let inbound = match name {
        "secmesh.inbound" => true,
        "secmesh.outbound" => false,
        _ => return None,
    };
    let attr = |key: &str| {
        attributes.iter().find_map(|kv| match &kv.value {
            Value::String(s) if kv.key.as_str() == key => Some(s.as_str().to_owned()),
            _ => None,
        })
    };
    let trace = TraceId::from_hex(&attr("trace_id")?).ok()?;
    let span = SpanId::from_hex(&attr("span_id")?).ok()?;
    let parent = if inbound {
        attr("parent_span_id").and_then(|p| SpanId::from_hex(&p).ok())
    } else {
        None
    };
    (trace != TraceId::INVALID && span != SpanId::INVALID).then_some(Ids {
        trace,
        span,
        parent,
        inbound,
    })
}

impl<P: SpanProcessor> SpanProcessor for SecmeshIds<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(data) = span.exported_data()
            && let Some(ids) = secmesh_ids(&data.name, &data.attributes)
        {
            let own = data.span_context;
            let mut maps = self.maps();
            let traces_full =
                !maps.traces.contains_key(&own.trace_id()) && maps.traces.len() >= Self::MAX_OPEN;
            if maps.spans.len() >= Self::MAX_OPEN || traces_full {
                if !self.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "secmesh::otel",
                        "too many open secmesh spans: further spans keep the pipeline's ids"
                    );
                }
            } else {
                maps.spans.insert(own.span_id(), ids);
                maps.traces
                    .entry(own.trace_id())
                    .or_insert((ids.trace, 0))
                    .1 += 1;
            }
        }
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        let own = span.span_context.clone();
        {
            let mut maps = self.maps();
            let this = maps.spans.remove(&own.span_id());
            let trace = maps.traces.get(&own.trace_id()).map(|t| t.0);
            if this.is_some()
                && let Some(t) = maps.traces.get_mut(&own.trace_id())
            {
                t.1 -= 1;
                if t.1 == 0 {
                    maps.traces.remove(&own.trace_id());
                }
            }
            let span_id = this.map_or(own.span_id(), |ids| ids.span);
            match this {
                // A service's entry: its parent is the caller's span, as propagated.
                Some(ids) if ids.inbound => {
                    span.parent_span_id = ids.parent.unwrap_or(SpanId::INVALID);
                    span.parent_span_is_remote = ids.parent.is_some();
                }
                _ => {
                    if let Some(parent) = maps.spans.get(&span.parent_span_id) {
                        span.parent_span_id = parent.span;
                    }
                }
            }
            let trace_id = this.map(|ids| ids.trace).or(trace);
            if let Some(trace_id) = trace_id {
                span.span_context = SpanContext::new(
                    trace_id,
                    span_id,
                    own.trace_flags(),
                    false,
                    own.trace_state().clone(),
                );
            }
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
