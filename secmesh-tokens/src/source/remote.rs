//! The remote key source: a JWKS URL or an issuer's metadata, fetched and refreshed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use http::Uri;

use super::fetch::Client;
use super::response::{self, MAX_BODY};
use super::{KeySource, SourceError, jitter};
use crate::key::KeySet;

/// What building a remote source does when its first fetch fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Startup {
    /// Building fails with the fetch's error (the default: a service does not start without
    /// its keys).
    #[default]
    Fail,
    /// Building retries (with the backoff) until a fetch succeeds; bound it with a timeout.
    Wait,
}

#[derive(Clone, Debug)]
enum Target {
    Jwks(String),
    Issuer(String),
}

/// A remote [`KeySource`] being configured: [`KeySource::jwks_url`] or
/// [`KeySource::discover`], then [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use]
pub struct RemoteBuilder {
    target: Target,
    client: Client,
    min_refresh: Duration,
    max_refresh: Duration,
    unknown_kid_interval: Duration,
    max_staleness: Duration,
    retry_base: Duration,
    retry_max: Duration,
    startup: Startup,
}

impl KeySource {
    /// A source that fetches the JWKS at `url` (https, unless [`allow_http`](RemoteBuilder::allow_http)).
    pub fn jwks_url(url: impl Into<String>) -> RemoteBuilder {
        RemoteBuilder::new(Target::Jwks(url.into()))
    }

    /// A source for the issuer `issuer`: its `/.well-known/openid-configuration`, else its RFC
    /// 8414 `/.well-known/oauth-authorization-server`, must name the same `issuer` (byte for
    /// byte); the `jwks_uri` it names is then fetched.
    pub fn discover(issuer: impl Into<String>) -> RemoteBuilder {
        RemoteBuilder::new(Target::Issuer(issuer.into()))
    }
}

impl RemoteBuilder {
    fn new(target: Target) -> RemoteBuilder {
        RemoteBuilder {
            target,
            client: Client {
                tls: None,
                allow_http: false,
                connect_timeout: Duration::from_secs(5),
                timeout: Duration::from_secs(10),
                max_body: MAX_BODY,
            },
            min_refresh: Duration::from_secs(300),
            max_refresh: Duration::from_secs(3600),
            unknown_kid_interval: Duration::from_secs(30),
            max_staleness: Duration::from_secs(6 * 3600),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            startup: Startup::Fail,
        }
    }

    /// The rustls client configuration for https (its roots; its client certificate for mutual
    /// TLS, e.g. a secmesh workload's).
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.client.tls = Some(config);
        self
    }

    /// Allow plain `http` URLs (loopback tests only). Off by default.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.client.allow_http = allow;
        self
    }

    /// The TCP connect (and TLS handshake) timeout; 5 s by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.client.connect_timeout = timeout;
        self
    }

    /// The timeout of one whole fetch; 10 s by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.client.timeout = timeout;
        self
    }

    /// The largest body read (at most [`MAX_BODY`], 256 KiB, the default).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.client.max_body = bytes.min(MAX_BODY);
        self
    }

    /// The bounds `Cache-Control: max-age` is clamped to; 5 min and 1 h by default. Without a
    /// `max-age` the set is refreshed after `max`.
    pub fn refresh(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min;
        self.max_refresh = max.max(min);
        self
    }

    /// At most one fetch for unknown `kid`s per `interval`; 30 s by default.
    pub fn unknown_kid_interval(mut self, interval: Duration) -> Self {
        self.unknown_kid_interval = interval;
        self
    }

    /// How long after its last successful fetch the set is still used when refreshes fail;
    /// 6 h by default. Past it, tokens are refused with `keys_unavailable`.
    pub fn max_staleness(mut self, staleness: Duration) -> Self {
        self.max_staleness = staleness;
        self
    }

    /// The backoff of retries after a failed fetch: `base * 2^n`, capped at `max`, with
    /// jitter; 1 s and 60 s by default (and never later than the next regular refresh).
    pub fn retry(mut self, base: Duration, max: Duration) -> Self {
        self.retry_base = base;
        self.retry_max = max.max(base);
        self
    }

    /// What happens when the first fetch fails; [`Startup::Fail`] by default.
    pub fn startup(mut self, startup: Startup) -> Self {
        self.startup = startup;
        self
    }

    /// Fetch the keys (and the metadata first, for [`KeySource::discover`]) and start the
    /// background refresh, a task that holds the source weakly and is stopped when the source
    /// is dropped. Needs a tokio runtime.
    pub async fn build(self) -> Result<Arc<KeySource>, SourceError> {
        tokio::runtime::Handle::try_current().map_err(|_| SourceError::NoRuntime)?;
        let mut attempt = 0u32;
        let jwks_uri = loop {
            match self.jwks_uri().await {
                Ok(uri) => break uri,
                Err(e) if self.startup == Startup::Fail => return Err(e),
                Err(_) => {
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
            }
        };
        let mut source = KeySource::with_keys(Arc::new(KeySet::new()), 0);
        source.lock().fetched_at = None;
        source.remote = Some(Remote {
            client: self.client.clone(),
            jwks_uri,
            fetch_lock: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            last_unknown: Mutex::new(None),
            kicked: AtomicBool::new(false),
            settings: self.clone(),
        });
        let source = Arc::new(source);
        loop {
            match source.refresh().await {
                Ok(()) => break,
                Err(e) if self.startup == Startup::Fail => return Err(e),
                Err(_) => {
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
            }
        }
        let task = tokio::spawn(refresh_task(Arc::downgrade(&source)));
        *source.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
        Ok(source)
    }

    async fn jwks_uri(&self) -> Result<Uri, SourceError> {
        match &self.target {
            Target::Jwks(url) => self.client.parse(url),
            Target::Issuer(issuer) => {
                let urls = response::metadata_urls(issuer)?;
                let mut last = None;
                for url in &urls {
                    let uri = self.client.parse(url)?;
                    let answer = self.client.get(&uri).await?;
                    match response::check_status(answer.status) {
                        Ok(()) => {
                            let jwks = response::jwks_uri_from_metadata(&answer.body, issuer)?;
                            return self.client.parse(&jwks);
                        }
                        // Not found (or refused) here: try RFC 8414.
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| SourceError::Metadata("no metadata".into())))
            }
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let exp = self.retry_base.saturating_mul(
            1u32.checked_shl(failures.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        );
        jitter(exp.min(self.retry_max))
    }
}

/// Counts a finished fetch when dropped (after the result is stored).
struct Counted<'a>(&'a AtomicU64);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub(super) struct Remote {
    client: Client,
    jwks_uri: Uri,
    fetch_lock: tokio::sync::Mutex<()>,
    attempts: AtomicU64,
    last_unknown: Mutex<Option<Instant>>,
    /// A background unknown-kid refresh (from a synchronous verification) is under way.
    kicked: AtomicBool,
    settings: RemoteBuilder,
}

impl Remote {
    /// Fetch with the lock held.
    async fn fetch_locked(&self, source: &KeySource) -> Result<(), SourceError> {
        let result = match self.client.get(&self.jwks_uri).await {
            Ok(a) => response::jwks_from_response(
                a.status,
                a.cache_control.as_ref().map(|v| v.as_bytes()),
                &a.body,
            ),
            Err(e) => Err(e),
        };
        let s = &self.settings;
        // Counted once the set (or the failure) is stored: a caller that saw the old count
        // before verifying knows a fetch ended since.
        let _counted = Counted(&self.attempts);
        match result {
            Ok(fetched) => {
                let fresh = fetched
                    .max_age
                    .unwrap_or(s.max_refresh)
                    .clamp(s.min_refresh, s.max_refresh);
                source.loaded(
                    fetched.keys,
                    Some(s.max_staleness),
                    Some(Instant::now() + fresh),
                );
                Ok(())
            }
            Err(e) => {
                source.failed(&e, |n| {
                    Some(Instant::now() + s.backoff(n).min(s.max_refresh))
                });
                tracing::debug!(error = %e, "key source: the fetch failed; the last good set stays");
                Err(e)
            }
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }

    pub(super) async fn refresh_unknown_kid(&self, source: &KeySource, seen: u64) -> bool {
        let _guard = self.fetch_lock.lock().await;
        if self.attempts.load(Ordering::SeqCst) != seen {
            // A fetch ended while this caller waited: look again, no new fetch.
            return true;
        }
        {
            let mut last = self
                .last_unknown
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < self.settings.unknown_kid_interval) {
                return false;
            }
            *last = Some(Instant::now());
        }
        source.lock().unknown_kid_refreshes += 1;
        self.fetch_locked(source).await.is_ok()
    }
}

impl Remote {
    /// Whether an unknown-kid refresh would be refused now (one ran within the interval).
    fn unknown_kid_too_soon(&self) -> bool {
        self.last_unknown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < self.settings.unknown_kid_interval)
    }
}

impl KeySource {
    /// A synchronous verification met a `kid` the set held at `generation` does not hold and
    /// cannot wait: run [`refresh_unknown_kid`](Self::refresh_unknown_kid) on the current
    /// tokio runtime, in the background. At most one such task at a time, none when a refresh
    /// ran within the interval, none outside a runtime: a flood of unknown kids costs an atomic
    /// load each, not a task each.
    pub(crate) fn refresh_in_background(self: &Arc<Self>, generation: u64) {
        let Some(remote) = &self.remote else { return };
        if remote.kicked.load(Ordering::Relaxed) || remote.unknown_kid_too_soon() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if remote.kicked.swap(true, Ordering::AcqRel) {
            return;
        }
        let source = Arc::clone(self);
        runtime.spawn(async move {
            source.refresh_unknown_kid(generation).await;
            if let Some(remote) = &source.remote {
                remote.kicked.store(false, Ordering::Release);
            }
        });
    }

    /// Fetch the set now (a remote source; a no-op for the others). Waits for a fetch in flight
    /// instead of starting a second one at the same time.
    pub async fn refresh(&self) -> Result<(), SourceError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let _guard = remote.fetch_lock.lock().await;
        remote.fetch_locked(self).await
    }

    fn due(&self) -> Option<Instant> {
        self.lock().next_refresh
    }
}

async fn refresh_task(source: Weak<KeySource>) {
    loop {
        let due = match source.upgrade() {
            Some(s) => s.due(),
            None => return,
        };
        let Some(due) = due else { return };
        tokio::time::sleep_until(due.into()).await;
        let Some(s) = source.upgrade() else { return };
        if s.due().is_some_and(|d| d <= Instant::now()) {
            let _ = s.refresh().await;
        }
    }
}
