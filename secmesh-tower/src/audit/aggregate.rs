//! Repeated unauthenticated refusals from one source, aggregated into counted events.
//!
//! Time is cut into fixed windows (default 1 s). In each window the first refusal from a
//! source is written as a normal event; the others from that source are only counted, and
//! when the window ends one event "N further unauthenticated refusals from SOURCE in WINDOW"
//! is written for them (decision `deny`, status 401). At most `max_sources` sources are told
//! apart per window (default 1,024); refusals from further sources are aggregated under the
//! source `other`. A window's counts are written by the next request after it ends, by a
//! timer thread (started with the first counted refusal), or when the layer is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use secmesh_audit::event::{AuditEvent, Decision, Direction};
use secmesh_audit::{Auditor, CloseHook, Durability};

/// The source refusals are aggregated under once `max_sources` are told apart.
pub(crate) const OTHER: &str = "other";

/// Aggregates one audit layer's unauthenticated refusals.
pub(crate) struct Aggregator {
    auditor: Auditor,
    service: Arc<str>,
    window: Duration,
    max_sources: usize,
    epoch: Instant,
    state: Mutex<State>,
    timer_started: AtomicBool,
    timer: OnceLock<Thread>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("window", &self.window)
            .field("max_sources", &self.max_sources)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// The current window's number since `epoch`.
    window: u64,
    /// Sources seen in this window, and their refusals after the first.
    sources: HashMap<String, u64>,
}

impl Aggregator {
    pub(crate) fn new(
        auditor: Auditor,
        service: Arc<str>,
        window: Duration,
        max_sources: usize,
    ) -> Arc<Aggregator> {
        let agg = Arc::new(Aggregator {
            auditor,
            service,
            window: window.max(Duration::from_millis(1)),
            max_sources: max_sources.max(1),
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
            timer_started: AtomicBool::new(false),
            timer: OnceLock::new(),
        });
        // Shutting the auditor down while this layer lives writes the open window's counts
        // first: closing never loses them.
        let hook: Weak<dyn CloseHook> = Arc::downgrade(&agg) as Weak<dyn CloseHook>;
        agg.auditor.before_close(hook);
        agg
    }

    fn index(&self, now: Instant) -> u64 {
        let n = now.saturating_duration_since(self.epoch).as_nanos() / self.window.as_nanos();
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// A refusal from `source`: whether to write its event (the first from the source in
    /// this window), else it is counted.
    pub(crate) fn admit(self: &Arc<Self>, source: String) -> bool {
        let now = self.index(Instant::now());
        let (admitted, ended) = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let ended = roll(&mut st, now);
            let key = if st.sources.contains_key(&source) || st.sources.len() < self.max_sources {
                source
            } else {
                OTHER.to_owned()
            };
            let admitted = match st.sources.get_mut(&key) {
                Some(n) => {
                    *n += 1;
                    false
                }
                None => {
                    st.sources.insert(key, 0);
                    true
                }
            };
            (admitted, ended)
        };
        self.write(ended);
        if !admitted {
            self.start_timer();
        }
        admitted
    }

    /// Write the counts of the windows that have ended by now.
    fn flush_ended(&self) {
        let now = self.index(Instant::now());
        let ended = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            roll(&mut st, now)
        };
        self.write(ended);
    }

    fn write(&self, ended: Vec<(String, u64)>) {
        for (source, n) in ended {
            let mut ev = AuditEvent::now(&*self.service, Direction::In);
            ev.decision = Decision::Deny;
            ev.status = Some(401);
            ev.reason = Some(format!(
                "{n} further unauthenticated refusals from {source} in {:?}",
                self.window
            ));
            if source.parse::<IpAddr>().is_ok() {
                ev.peer = Some(source);
            } else if source != OTHER && source != super::event::UNKNOWN {
                ev.caller = Some(source);
            }
            self.auditor.submit(ev, Durability::Queued).detach();
        }
    }

    /// The time until the current window ends.
    fn until_window_end(&self) -> Duration {
        let w = self.window.as_nanos();
        let into = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos()
            % w;
        Duration::from_nanos(u64::try_from(w - into).unwrap_or(u64::MAX))
    }

    /// Start the thread that writes a window's counts when it ends, even if no request comes.
    fn start_timer(self: &Arc<Self>) {
        if self.timer_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Aggregator> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("secmesh-audit-aggregate".into())
            .spawn(move || {
                loop {
                    let Some(agg) = weak.upgrade() else { break };
                    let sleep = agg.until_window_end() + Duration::from_millis(1);
                    drop(agg);
                    std::thread::park_timeout(sleep);
                    let Some(agg) = weak.upgrade() else { break };
                    agg.flush_ended();
                }
            });
        match spawned {
            Ok(h) => {
                let _ = self.timer.set(h.thread().clone());
            }
            Err(e) => {
                // The counts are still written by the next request or when the layer drops.
                tracing::warn!(target: "secmesh::audit", error = %e, "no aggregation timer");
            }
        }
    }
}

/// Move to window `now`: the sources of an ended window with refusals counted, to write.
fn roll(st: &mut State, now: u64) -> Vec<(String, u64)> {
    if st.window == now {
        return Vec::new();
    }
    st.window = now;
    st.sources.drain().filter(|(_, n)| *n > 0).collect()
}

impl CloseHook for Aggregator {
    fn before_close(&self) {
        self.flush_all();
    }
}

impl Aggregator {
    /// Write every count held, whether its window has ended or not.
    fn flush_all(&self) {
        let ended = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = st.window;
            let ended = roll(&mut st, u64::MAX);
            // Later refusals in the same window are counted afresh (nothing is counted twice).
            st.window = now;
            ended
        };
        self.write(ended);
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        self.flush_all();
        if let Some(t) = self.timer.get() {
            t.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::SocketAddr;
    use std::path::Path;

    use http::{Request, Response, StatusCode};
    use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
    use secmesh_audit::verify::{read_events, verify_files};
    use secmesh_tokens::{Algorithm, KeySet, SigningKey, Verifier};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::AuthenticateLayer;
    use crate::audit::AuditLayer;

    /// How a refused request names its source.
    #[derive(Clone, Copy)]
    enum From {
        Ip,
        Workload,
        Nothing,
    }

    fn request(from: From, n: u32) -> Request<String> {
        let mut req = Request::get(format!("/orders/{n}"))
            .body(String::new())
            .unwrap();
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n);
        match from {
            From::Ip => {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(SocketAddr::from((ip, 40_000))));
            }
            From::Workload => {
                let id = format!("spiffe://mesh.test/ns/a/sa/w{n}");
                req.extensions_mut().insert(secmesh_core::PeerIdentity {
                    spiffe_id: id.parse().unwrap(),
                    x5t_s256: String::new(),
                });
            }
            From::Nothing => {}
        }
        req
    }

    /// `total` unauthenticated requests from `sources` distinct sources (round robin) through
    /// an audit + authenticate stack writing to a real log; returns the events.
    async fn flood(
        dir: &Path,
        layer: impl FnOnce(AuditLayer) -> AuditLayer,
        from: From,
        sources: u32,
        total: u32,
    ) -> Vec<AuditEvent> {
        let path = dir.join("svc.jsonl");
        let sink = JsonLinesSink::open(&path, JsonLinesConfig::default()).unwrap();
        let auditor = Auditor::builder(sink).spawn();
        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))));
        let svc = ServiceBuilder::new()
            .layer(layer(AuditLayer::new(auditor.clone(), "svc")))
            .layer(AuthenticateLayer::from_verifier(verifier, 16))
            .service(service_fn(|_req: Request<String>| async {
                Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
            }));
        for i in 0..total {
            let res = svc
                .clone()
                .oneshot(request(from, i % sources))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        drop(svc);
        auditor.shutdown();
        let report = verify_files(&[&path], None).unwrap();
        let (events, bad) = read_events(&[&path]).unwrap();
        assert_eq!(bad, 0);
        assert_eq!(report.events, events.len() as u64, "the chain verifies");
        events
    }

    /// The refusals the events stand for: 1 for a normal one, N for an aggregate.
    fn refusals(events: &[AuditEvent]) -> u64 {
        events
            .iter()
            .map(|e| {
                assert_eq!(e.status, Some(401));
                match e.reason.as_deref().unwrap().split_once(" further ") {
                    Some((n, _)) => n.parse::<u64>().unwrap(),
                    None => 1,
                }
            })
            .sum()
    }

    #[tokio::test]
    async fn a_flood_from_one_source_becomes_a_few_counted_events() {
        for from in [From::Ip, From::Workload, From::Nothing] {
            let dir = tempfile::tempdir().unwrap();
            let start = Instant::now();
            let events = flood(dir.path(), |l| l, from, 1, 1000).await;
            let windows = start.elapsed().as_secs() + 2;
            assert_eq!(refusals(&events), 1000);
            // At most a normal event and an aggregate per window.
            assert!(
                events.len() as u64 <= 2 * windows,
                "{} events in {windows} windows",
                events.len()
            );
            let agg = events
                .iter()
                .find(|e| e.reason.as_deref().unwrap().contains("further"));
            let agg = agg.unwrap();
            match from {
                From::Ip => assert_eq!(agg.peer.as_deref(), Some("10.0.0.0")),
                From::Workload => {
                    assert_eq!(agg.caller.as_deref(), Some("spiffe://mesh.test/ns/a/sa/w0"));
                }
                From::Nothing => assert!(agg.reason.as_deref().unwrap().contains("from unknown")),
            }
        }
    }

    #[tokio::test]
    async fn many_sources_are_bounded_and_overflow_under_other() {
        let dir = tempfile::tempdir().unwrap();
        // 3 refusals each from 100 sources, with room for 10 sources per window.
        let events = flood(
            dir.path(),
            |l| l.aggregate_unauthenticated(Duration::from_secs(3600), 10),
            From::Ip,
            100,
            300,
        )
        .await;
        assert_eq!(refusals(&events), 300);
        // 10 sources told apart and `other`: one normal event and one aggregate each.
        assert_eq!(events.len(), 22, "{events:#?}");
        assert!(
            events
                .iter()
                .any(|e| e.reason.as_deref().unwrap().contains("from other in 3600s"))
        );
    }

    #[tokio::test]
    async fn without_aggregation_every_refusal_is_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let events = flood(dir.path(), AuditLayer::no_aggregation, From::Ip, 1, 50).await;
        assert_eq!(events.len(), 50);
    }

    #[tokio::test]
    async fn shutting_the_auditor_down_writes_the_open_window_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.jsonl");
        let sink = JsonLinesSink::open(&path, JsonLinesConfig::default()).unwrap();
        let auditor = Auditor::builder(sink).spawn();
        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))));
        let svc = ServiceBuilder::new()
            .layer(
                // A window far longer than the test: only the close can write its count.
                AuditLayer::new(auditor.clone(), "svc")
                    .aggregate_unauthenticated(Duration::from_secs(3600), 16),
            )
            .layer(AuthenticateLayer::from_verifier(verifier, 16))
            .service(service_fn(|_req: Request<String>| async {
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            }));
        for _ in 0..5 {
            svc.clone().oneshot(request(From::Ip, 7)).await.unwrap();
        }
        // The service (and its layer) is still alive when the auditor is shut down.
        auditor.shutdown();
        let (events, _) = read_events(&[&path]).unwrap();
        assert_eq!(refusals(&events), 5, "{events:?}");
        drop(svc);
        // Nothing is counted twice when the layer drops afterwards.
        let (events, _) = read_events(&[&path]).unwrap();
        assert_eq!(refusals(&events), 5);
    }

    #[tokio::test]
    async fn a_window_is_written_when_it_ends_without_another_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.jsonl");
        let sink = JsonLinesSink::open(&path, JsonLinesConfig::default()).unwrap();
        let auditor = Auditor::builder(sink).spawn();
        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))));
        let svc = ServiceBuilder::new()
            .layer(
                AuditLayer::new(auditor.clone(), "svc")
                    .aggregate_unauthenticated(Duration::from_millis(100), 16),
            )
            .layer(AuthenticateLayer::from_verifier(verifier, 16))
            .service(service_fn(|_req: Request<String>| async {
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            }));
        for _ in 0..5 {
            svc.clone().oneshot(request(From::Ip, 7)).await.unwrap();
        }
        // The layer stays alive and idle: the timer writes the window's count.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            auditor.flush().unwrap();
            let (events, _) = read_events(&[&path]).unwrap();
            if refusals(&events) == 5 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the window's count was never written"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(svc);
        auditor.shutdown();
    }
}
