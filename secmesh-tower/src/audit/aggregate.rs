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
use secmesh_audit::{Auditor, Durability};

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
        Arc::new(Aggregator {
            auditor,
            service,
            window: window.max(Duration::from_millis(1)),
            max_sources: max_sources.max(1),
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
            timer_started: AtomicBool::new(false),
            timer: OnceLock::new(),
        })
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
            } else if source != OTHER && source != super::UNKNOWN {
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

impl Drop for Aggregator {
    fn drop(&mut self) {
        let ended = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            roll(&mut st, u64::MAX)
        };
        self.write(ended);
        if let Some(t) = self.timer.get() {
            t.unpark();
        }
    }
}
