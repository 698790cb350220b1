//! Metrics through the [`metrics`] facade (the `metrics` feature, on by default): the
//! application installs the exporter it wants (Prometheus, StatsD, ...); without one every
//! call is a no-op.
//!
//! Counted as it happens, by the one stack ([`SecureLayer`](crate::SecureLayer)):
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `secmesh_decisions_total` | counter | `service`, `effect` (allow / deny), `reason` ([`DenyReason::kind`], or `allowed`), `rule` (the deciding rule or limit id, or empty) |
//! | `secmesh_token_rejections_total` | counter | `service`, `kind` ([`ErrorKind::as_str`](secmesh_tokens::ErrorKind::as_str)) |
//! | `secmesh_token_verify_seconds` | histogram | `service`, `result` (`ok` / `refused`): a token not in the cache, verified (hits read no clock) |
//!
//! Read when the exporter asks ([`Collector::collect`], e.g. in the `/metrics` handler):
//! the verified-token cache's `secmesh_token_cache_{hits,misses,evictions,admissions_refused}_total`
//! and `secmesh_token_cache_entries`; the audit log's `secmesh_audit_events_written_total`,
//! `secmesh_audit_checkpoints_total`, `secmesh_audit_queue_depth` (and `_capacity`),
//! `secmesh_audit_dropped_total`, `secmesh_audit_write_errors_total` and
//! `secmesh_audit_healthy`; a server's
//! `secmesh_connections_open`, `secmesh_connections_{accepted,refused}_total`,
//! `secmesh_connections_closed_total{reason}`, `secmesh_tls_handshakes_total` and
//! `secmesh_tls_handshakes_refused_total{reason}`; a shared limiter's
//! `secmesh_rate_limit_decisions_total{where}` and `secmesh_rate_limit_degraded`; a key
//! source's `secmesh_key_source_{fetches,failures,unknown_kid_refreshes}_total`,
//! `secmesh_key_source_age_seconds` and `secmesh_key_source_unavailable`; a revocation
//! set's `secmesh_revocation_entries`; a replica's the same and `_connected`, `_refusing` and
//! `secmesh_revocation_{syncs,messages,failures}_total`.
//!
//! Names and labels follow the Prometheus conventions (`_total` counters, base units); no
//! label ever holds a subject, a token, a path or anything else a client chooses: a rule or
//! limit id comes from the policy file (at most 10,000 rules), a reason or kind from a fixed
//! list. Handles are registered on first use and kept, so install the exporter before the
//! first request; a decision then costs a lookup in a read-mostly map and an atomic add.
//!
//! # Example
//! ```
//! use secmesh_tower::metrics::{Collector, describe};
//!
//! describe(); // once, after installing the exporter
//! let collector = Collector::new("orders");
//! // .cache(layer.cache().clone()).auditor(auditor.clone()).server(server.stats()) ...
//! collector.collect(); // in the /metrics handler, before rendering
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use secmesh_audit::Auditor;
use secmesh_tokens::cache::VerifiedCache;

use crate::deny::DenyReason;

/// Describe every metric secmesh emits (names, units, help texts) to the installed exporter.
pub fn describe() {
    describe_counter!(
        "secmesh_decisions_total",
        Unit::Count,
        "Requests decided by the secmesh stack, by effect, reason and deciding rule"
    );
    describe_counter!(
        "secmesh_token_rejections_total",
        Unit::Count,
        "Tokens refused, by kind"
    );
    for (name, help) in [
        (
            "secmesh_token_cache_hits_total",
            "Verified-token cache hits",
        ),
        (
            "secmesh_token_cache_misses_total",
            "Verified-token cache misses",
        ),
        (
            "secmesh_token_cache_evictions_total",
            "Verified-token cache evictions",
        ),
        (
            "secmesh_token_cache_admissions_refused_total",
            "Verified tokens not cached (seen once)",
        ),
        (
            "secmesh_audit_dropped_total",
            "Audit events dropped (queue full, drop policy)",
        ),
        (
            "secmesh_audit_write_errors_total",
            "Audit events lost to write errors",
        ),
        (
            "secmesh_audit_events_written_total",
            "Audit events written to the log",
        ),
        (
            "secmesh_audit_checkpoints_total",
            "Signed audit records written (checkpoints, rotations, closes)",
        ),
        (
            "secmesh_connections_refused_total",
            "Connections refused over the limits",
        ),
        (
            "secmesh_tls_handshakes_refused_total",
            "TLS handshakes refused, by reason",
        ),
        (
            "secmesh_tls_handshakes_total",
            "TLS handshakes completed (peer certificate accepted)",
        ),
        (
            "secmesh_connections_accepted_total",
            "Connections accepted within the limits",
        ),
        (
            "secmesh_connections_closed_total",
            "Connections closed by the server, by reason",
        ),
        (
            "secmesh_rate_limit_decisions_total",
            "Shared rate-limit decisions, by where made",
        ),
    ] {
        describe_counter!(name, Unit::Count, help);
    }
    describe_histogram!(
        "secmesh_token_verify_seconds",
        Unit::Seconds,
        "Time to verify a token not in the cache (signature and claims), by result"
    );
    describe_gauge!(
        "secmesh_token_cache_entries",
        Unit::Count,
        "Verified tokens held"
    );
    describe_gauge!(
        "secmesh_audit_queue_depth",
        Unit::Count,
        "Audit events queued, not yet taken by the writer"
    );
    describe_gauge!(
        "secmesh_audit_queue_capacity",
        Unit::Count,
        "The most audit events the queue holds"
    );
    describe_gauge!(
        "secmesh_audit_healthy",
        "1 while the audit log takes events"
    );
    describe_gauge!("secmesh_connections_open", Unit::Count, "Open connections");
    describe_gauge!(
        "secmesh_key_source_age_seconds",
        Unit::Seconds,
        "Age of the oldest key set in use"
    );
    describe_gauge!(
        "secmesh_key_source_unavailable",
        "1 while a key set is too stale to use (verification fails closed)"
    );
    describe_gauge!(
        "secmesh_revocation_entries",
        Unit::Count,
        "Revocations held by the replica"
    );
    describe_gauge!(
        "secmesh_revocation_connected",
        "1 while the replica follows Redis"
    );
    describe_gauge!(
        "secmesh_revocation_refusing",
        "1 while the replica refuses every token (fail-closed, out of step too long)"
    );
    describe_gauge!(
        "secmesh_rate_limit_degraded",
        "1 while shared rate limits are decided locally (Redis unreachable)"
    );
}

/// reason -> rule -> handle.
type Handles = HashMap<&'static str, HashMap<Box<str>, Counter>>;

/// Series registered and not yet in the lock-free map.
#[derive(Default)]
struct Grow {
    fresh: Handles,
    fresh_len: usize,
    /// Every series registered (both maps).
    series: usize,
}

/// The stack's decision counters: one handle per (reason, rule), registered on first use.
pub(crate) struct Decisions {
    service: Arc<str>,
    /// `secmesh_token_verify_seconds`, by result (accepted, refused).
    /// Registered on first use, as the counters are.
    verify: OnceLock<[Histogram; 2]>,
    /// Read without a lock; extended from `grow` in amortised O(1) per series.
    handles: ArcSwap<Handles>,
    grow: Mutex<Grow>,
}

impl fmt::Debug for Decisions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decisions")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// The most (reason, rule) pairs kept; past it, a decision is counted under the rule `other`
/// (rules come from the operator's policy, but reloads could add ids without end).
const MAX_SERIES: usize = 20_000;

impl Decisions {
    pub(crate) fn new(service: Arc<str>) -> Decisions {
        Decisions {
            service,
            verify: OnceLock::new(),
            handles: ArcSwap::from_pointee(HashMap::new()),
            grow: Mutex::new(Grow::default()),
        }
    }

    fn count(&self, reason: &'static str, rule: Option<&str>) {
        let rule = rule.unwrap_or("");
        if let Some(c) = self.handles.load().get(reason).and_then(|m| m.get(rule)) {
            c.increment(1);
            return;
        }
        let mut grow = self.grow.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.handles.load();
        let find = |fresh: &Handles, rule: &str| {
            current
                .get(reason)
                .and_then(|m| m.get(rule))
                .or_else(|| fresh.get(reason).and_then(|m| m.get(rule)))
                .cloned()
        };
        if let Some(c) = find(&grow.fresh, rule) {
            c.increment(1);
            return;
        }
        let series = grow.series;
        let rule = if series >= MAX_SERIES { "other" } else { rule };
        if let Some(c) = find(&grow.fresh, rule) {
            c.increment(1);
            return;
        }
        let effect = if reason == "allowed" { "allow" } else { "deny" };
        let handle = counter!(
            "secmesh_decisions_total",
            "service" => self.service.to_string(),
            "effect" => effect,
            "reason" => reason,
            "rule" => rule.to_owned()
        );
        handle.increment(1);
        grow.fresh
            .entry(reason)
            .or_default()
            .insert(rule.into(), handle);
        grow.series += 1;
        grow.fresh_len += 1;
        // New series wait in `fresh` (read under the lock) until they are as many as those
        // in the lock-free map, then move there in one copy: each series is copied a
        // bounded number of times in all (amortised O(1)), however many there are.
        if grow.fresh_len >= (grow.series - grow.fresh_len).max(16) {
            let mut next: Handles = (**current).clone();
            for (reason, rules) in grow.fresh.drain() {
                next.entry(reason).or_default().extend(rules);
            }
            grow.fresh_len = 0;
            self.handles.store(Arc::new(next));
        }
    }

    /// A token verified (not from the cache): how long the verifier took.
    pub(crate) fn verified(&self, took: Duration, ok: bool) {
        let handles = self.verify.get_or_init(|| {
            ["ok", "refused"].map(|result| {
                histogram!(
                    "secmesh_token_verify_seconds",
                    "service" => self.service.to_string(),
                    "result" => result
                )
            })
        });
        handles[usize::from(!ok)].record(took.as_secs_f64());
    }

    /// An allowed request, by the rule that allowed it (if any).
    pub(crate) fn allowed(&self, rule: Option<&str>) {
        self.count("allowed", rule);
    }

    /// A refusal made in the stack.
    pub(crate) fn denied(&self, reason: &DenyReason) {
        self.count(reason.kind(), reason.rule());
        if let Some(e) = reason.token_error() {
            counter!(
                "secmesh_token_rejections_total",
                "service" => self.service.to_string(),
                "kind" => e.kind().as_str()
            )
            .increment(1);
        }
    }
}

/// Reads what secmesh's parts count and hands it to the exporter; see the
/// [module docs](self). Cheap to clone.
#[derive(Clone, Default)]
pub struct Collector {
    service: Arc<str>,
    caches: Vec<Arc<VerifiedCache>>,
    auditors: Vec<Auditor>,
    #[cfg(feature = "serve")]
    servers: Vec<crate::serve::ServerStats>,
    #[cfg(feature = "redis")]
    limiters: Vec<crate::limit::RedisLimiter>,
    sources: Vec<Arc<secmesh_tokens::source::KeySource>>,
    sets: Vec<Arc<secmesh_tokens::revocation::RevocationSet>>,
    #[cfg(feature = "redis")]
    replicas: Vec<Arc<secmesh_tokens::revocation::redis::Replica>>,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// A collector for `service` (the `service` label of everything it reports).
    pub fn new(service: impl Into<Arc<str>>) -> Collector {
        Collector {
            service: service.into(),
            ..Collector::default()
        }
    }

    /// Report this verified-token cache (e.g. [`SecureLayer::cache`](crate::SecureLayer::cache)).
    pub fn cache(mut self, cache: Arc<VerifiedCache>) -> Self {
        self.caches.push(cache);
        self
    }

    /// Report this audit log.
    pub fn auditor(mut self, auditor: Auditor) -> Self {
        self.auditors.push(auditor);
        self
    }

    /// Report this server's connections and handshakes.
    #[cfg(feature = "serve")]
    pub fn server(mut self, stats: crate::serve::ServerStats) -> Self {
        self.servers.push(stats);
        self
    }

    /// Report this shared rate limiter.
    #[cfg(feature = "redis")]
    pub fn limiter(mut self, limiter: crate::limit::RedisLimiter) -> Self {
        self.limiters.push(limiter);
        self
    }

    /// Report this key source (fetches, failures, the age of its set, whether it is too
    /// stale to use).
    pub fn key_source(mut self, source: Arc<secmesh_tokens::source::KeySource>) -> Self {
        self.sources.push(source);
        self
    }

    /// Report this in-process revocation set (its entries; a replica reports its own).
    pub fn revocation_set(mut self, set: Arc<secmesh_tokens::revocation::RevocationSet>) -> Self {
        self.sets.push(set);
        self
    }

    /// Report this revocation replica (entries, in step, syncs, failures).
    #[cfg(feature = "redis")]
    pub fn replica(mut self, replica: Arc<secmesh_tokens::revocation::redis::Replica>) -> Self {
        self.replicas.push(replica);
        self
    }

    /// Hand the current values to the exporter (call it before rendering a scrape).
    pub fn collect(&self) {
        let svc = || self.service.to_string();
        let mut sum = secmesh_tokens::cache::CacheStats::default();
        for c in &self.caches {
            let s = c.stats();
            sum.hits += s.hits;
            sum.misses += s.misses;
            sum.evictions += s.evictions;
            sum.admissions_refused += s.admissions_refused;
            sum.entries += s.entries;
        }
        if !self.caches.is_empty() {
            counter!("secmesh_token_cache_hits_total", "service" => svc()).absolute(sum.hits);
            counter!("secmesh_token_cache_misses_total", "service" => svc()).absolute(sum.misses);
            counter!("secmesh_token_cache_evictions_total", "service" => svc())
                .absolute(sum.evictions);
            counter!("secmesh_token_cache_admissions_refused_total", "service" => svc())
                .absolute(sum.admissions_refused);
            gauge!("secmesh_token_cache_entries", "service" => svc()).set(sum.entries as f64);
        }
        if !self.auditors.is_empty() {
            let dropped = self.auditors.iter().map(Auditor::dropped).sum();
            let errors = self.auditors.iter().map(Auditor::write_errors).sum();
            let healthy = self.auditors.iter().all(Auditor::is_healthy);
            let written = self.auditors.iter().map(Auditor::written).sum();
            let checkpoints = self.auditors.iter().map(Auditor::checkpoints).sum();
            let depth: usize = self.auditors.iter().map(Auditor::queue_depth).sum();
            let capacity: usize = self.auditors.iter().map(Auditor::capacity).sum();
            counter!("secmesh_audit_events_written_total", "service" => svc()).absolute(written);
            counter!("secmesh_audit_checkpoints_total", "service" => svc()).absolute(checkpoints);
            gauge!("secmesh_audit_queue_depth", "service" => svc()).set(depth as f64);
            gauge!("secmesh_audit_queue_capacity", "service" => svc()).set(capacity as f64);
            counter!("secmesh_audit_dropped_total", "service" => svc()).absolute(dropped);
            counter!("secmesh_audit_write_errors_total", "service" => svc()).absolute(errors);
            gauge!("secmesh_audit_healthy", "service" => svc()).set(f64::from(u8::from(healthy)));
        }
        #[cfg(feature = "serve")]
        if !self.servers.is_empty() {
            let sum =
                |f: fn(&crate::serve::ServerStats) -> u64| self.servers.iter().map(f).sum::<u64>();
            let open: usize = self.servers.iter().map(|s| s.open_connections()).sum();
            gauge!("secmesh_connections_open", "service" => svc()).set(open as f64);
            counter!("secmesh_connections_refused_total", "service" => svc())
                .absolute(sum(crate::serve::ServerStats::refused_connections));
            counter!("secmesh_connections_accepted_total", "service" => svc())
                .absolute(sum(crate::serve::ServerStats::accepted_connections));
            counter!("secmesh_tls_handshakes_total", "service" => svc())
                .absolute(sum(crate::serve::ServerStats::handshakes));
            for (reason, f) in [
                (
                    "first_request_timeout",
                    crate::serve::ServerStats::first_request_timeouts as fn(&_) -> u64,
                ),
                (
                    "header_read_timeout",
                    crate::serve::ServerStats::header_read_timeouts,
                ),
                ("idle", crate::serve::ServerStats::idle_closes),
                ("revoked", crate::serve::ServerStats::revoked_closes),
            ] {
                counter!("secmesh_connections_closed_total", "service" => svc(), "reason" => reason)
                    .absolute(sum(f));
            }
            for (reason, f) in [
                (
                    "refused",
                    crate::serve::ServerStats::refused_handshakes as fn(&_) -> u64,
                ),
                ("timeout", crate::serve::ServerStats::handshake_timeouts),
                ("failed", crate::serve::ServerStats::handshake_failures),
            ] {
                counter!("secmesh_tls_handshakes_refused_total", "service" => svc(), "reason" => reason)
                    .absolute(sum(f));
            }
        }
        if !self.sources.is_empty() {
            let (mut fetches, mut failures, mut unknown, mut unavailable) = (0, 0, 0, false);
            let mut age = 0f64;
            for source in &self.sources {
                let s = source.status();
                fetches += s.fetches;
                failures += s.failures;
                unknown += s.unknown_kid_refreshes;
                unavailable |= s.unavailable;
                if let Some(at) = s.fetched_at {
                    let secs = std::time::SystemTime::now()
                        .duration_since(at)
                        .unwrap_or_default()
                        .as_secs_f64();
                    age = age.max(secs);
                }
            }
            counter!("secmesh_key_source_fetches_total", "service" => svc()).absolute(fetches);
            counter!("secmesh_key_source_failures_total", "service" => svc()).absolute(failures);
            counter!("secmesh_key_source_unknown_kid_refreshes_total", "service" => svc())
                .absolute(unknown);
            gauge!("secmesh_key_source_age_seconds", "service" => svc()).set(age);
            gauge!("secmesh_key_source_unavailable", "service" => svc())
                .set(f64::from(u8::from(unavailable)));
        }
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let mut entries: usize = self.sets.iter().map(|s| s.len()).sum();
        #[cfg(feature = "redis")]
        if !self.replicas.is_empty() {
            let (mut syncs, mut messages, mut failures) = (0, 0, 0);
            let (mut connected, mut refusing) = (true, false);
            for r in &self.replicas {
                let s = r.status();
                entries += s.entries;
                syncs += s.syncs;
                messages += s.messages;
                failures += s.failures;
                connected &= s.connected;
                refusing |= s.refusing;
            }
            gauge!("secmesh_revocation_connected", "service" => svc())
                .set(f64::from(u8::from(connected)));
            gauge!("secmesh_revocation_refusing", "service" => svc())
                .set(f64::from(u8::from(refusing)));
            counter!("secmesh_revocation_syncs_total", "service" => svc()).absolute(syncs);
            counter!("secmesh_revocation_messages_total", "service" => svc()).absolute(messages);
            counter!("secmesh_revocation_failures_total", "service" => svc()).absolute(failures);
        }
        #[cfg(feature = "redis")]
        let replicas = !self.replicas.is_empty();
        #[cfg(not(feature = "redis"))]
        let replicas = false;
        if replicas || !self.sets.is_empty() {
            gauge!("secmesh_revocation_entries", "service" => svc()).set(entries as f64);
        }
        #[cfg(feature = "redis")]
        if !self.limiters.is_empty() {
            let (mut shared, mut local, mut degraded) = (0, 0, false);
            for l in &self.limiters {
                let s = l.status();
                shared += s.shared_decisions;
                local += s.local_decisions;
                degraded |= s.degraded;
            }
            counter!("secmesh_rate_limit_decisions_total", "service" => svc(), "where" => "shared")
                .absolute(shared);
            counter!("secmesh_rate_limit_decisions_total", "service" => svc(), "where" => "local")
                .absolute(local);
            gauge!("secmesh_rate_limit_degraded", "service" => svc())
                .set(f64::from(u8::from(degraded)));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    /// Rule ids beyond the bound share the series `other`; every decision is counted once,
    /// whether its series is in the lock-free map or still waiting to move there.
    #[test]
    fn series_are_bounded_and_every_decision_counted() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let extra = 5_000;
        metrics::with_local_recorder(&recorder, || {
            let d = Decisions::new("svc".into());
            for _round in 0..2 {
                for i in 0..MAX_SERIES + extra {
                    d.count("no_rule", Some(&format!("r{i}")));
                }
            }
            d.count("allowed", None);
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let mut series = 0;
        let mut total = 0;
        let mut other = 0;
        for (key, _, _, value) in snapshot {
            if key.key().name() != "secmesh_decisions_total" {
                continue;
            }
            let DebugValue::Counter(n) = value else {
                panic!("a counter")
            };
            series += 1;
            total += n;
            if key
                .key()
                .labels()
                .any(|l| l.key() == "rule" && l.value() == "other")
            {
                other += n;
            }
        }
        // MAX_SERIES rules of `no_rule`, then `other` for the rest of them and for
        // `allowed` (registered past the bound).
        assert_eq!(series, MAX_SERIES + 2);
        assert_eq!(total, 2 * (MAX_SERIES + extra) as u64 + 1);
        assert_eq!(other, 2 * extra as u64 + 1);
    }
}
