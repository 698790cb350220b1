//! Key sources: where a [`Verifier`](crate::Verifier) finds its keys, swapped live.
//!
//! A [`KeySource`] holds the current [`KeySet`] behind an atomic swap: the hot path reads it
//! without a lock. Kinds:
//!
//! - [`KeySource::fixed`]: a set loaded once (what [`Verifier::new`](crate::Verifier::new)
//!   builds).
//! - `KeySource::file` (the `watch` feature): a JWKS file re-read when it changes, through the
//!   same watcher as the policy and TLS reloads.
//! - `KeySource::jwks_url` and `KeySource::discover` (the `remote` feature): a JWKS fetched
//!   over HTTPS (rustls with the caller's client configuration, so mutual TLS works), or found
//!   through OpenID Connect / RFC 8414 metadata whose `issuer` must be the configured one byte
//!   for byte. The set is refreshed in the background (`Cache-Control: max-age` clamped to
//!   [min, max] refresh), on an unknown `kid` (single-flight, at most once per interval, the
//!   `kid` never sent), and kept when a refresh fails (stale-if-error) up to a maximum
//!   staleness, after which verification fails closed with
//!   [`ErrorKind::KeysUnavailable`].
//!
//! [`KeySource::status`] tells what the source holds and how its fetches went.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use secmesh_tokens::source::KeySource;
//! use secmesh_tokens::{Algorithm, KeySet, SigningKey, Verifier};
//!
//! let old = SigningKey::generate(Algorithm::EdDsa)?;
//! let source = Arc::new(KeySource::fixed(KeySet::single(old.verifying_key(Some("k1".into())))));
//! let verifier = Verifier::with_source(source.clone());
//! assert_eq!(source.status().kids, ["k1"]);
//!
//! // A new set swapped in is seen by the next verification, without a lock.
//! let new = SigningKey::generate(Algorithm::EdDsa)?;
//! source.replace(KeySet::single(new.verifying_key(Some("k2".into()))));
//! assert!(verifier.keys().get(Some("k2")).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
#[cfg(feature = "remote")]
mod fetch;
#[cfg(feature = "watch")]
mod file;
#[cfg(feature = "remote")]
mod remote;
pub mod response;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, Guard};

pub use error::SourceError;
#[cfg(feature = "remote")]
pub use remote::{RemoteBuilder, Startup};

use crate::error::{ErrorKind, VerifyError};
use crate::key::KeySet;

/// What a key source holds and how its fetches went (for health checks and metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceStatus {
    /// The `kid`s of the current set.
    pub kids: Vec<String>,
    /// When the current set was loaded.
    pub fetched_at: Option<SystemTime>,
    /// When the next background refresh is due (remote sources).
    pub next_refresh: Option<SystemTime>,
    /// Why the last fetch or reload failed, if it did (cleared by a success).
    pub last_error: Option<String>,
    /// Fetches or reloads attempted.
    pub fetches: u64,
    /// Fetches or reloads that failed.
    pub failures: u64,
    /// Fetches made because a token named an unknown `kid`.
    pub unknown_kid_refreshes: u64,
    /// Whether the set is older than the maximum staleness (verification fails closed).
    pub unavailable: bool,
}

#[derive(Debug, Default)]
#[cfg_attr(not(any(feature = "remote", feature = "watch")), allow(dead_code))]
struct Counters {
    fetched_at: Option<SystemTime>,
    next_refresh: Option<Instant>,
    last_error: Option<String>,
    fetches: u64,
    failures: u64,
    unknown_kid_refreshes: u64,
    consecutive_failures: u32,
}

/// The verification keys of a [`Verifier`](crate::Verifier), swapped live; see the
/// [module docs](self).
pub struct KeySource {
    keys: ArcSwap<KeySet>,
    base: Instant,
    /// Milliseconds after `base` past which the set is too stale to use; `u64::MAX`: never.
    stale_after_ms: AtomicU64,
    warned: AtomicBool,
    counters: Mutex<Counters>,
    #[cfg(feature = "remote")]
    remote: Option<remote::Remote>,
    /// The background refresh, stopped when the source is dropped.
    #[cfg(feature = "remote")]
    task: Mutex<Option<tokio::task::AbortHandle>>,
    #[cfg(feature = "watch")]
    watcher: Mutex<Option<secmesh_fs::watch::Watcher<file::FileReload>>>,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySource")
            .field("kids", &self.status().kids)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "remote")]
impl Drop for KeySource {
    fn drop(&mut self) {
        let task = self.task.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

impl KeySource {
    fn with_keys(keys: Arc<KeySet>, stale_after_ms: u64) -> KeySource {
        KeySource {
            keys: ArcSwap::new(keys),
            base: Instant::now(),
            stale_after_ms: AtomicU64::new(stale_after_ms),
            warned: AtomicBool::new(false),
            counters: Mutex::new(Counters {
                fetched_at: Some(SystemTime::now()),
                ..Counters::default()
            }),
            #[cfg(feature = "remote")]
            remote: None,
            #[cfg(feature = "remote")]
            task: Mutex::new(None),
            #[cfg(feature = "watch")]
            watcher: Mutex::new(None),
        }
    }

    /// A source that holds `keys` until [`replace`](Self::replace)d; never stale.
    pub fn fixed(keys: impl Into<Arc<KeySet>>) -> KeySource {
        KeySource::with_keys(keys.into(), u64::MAX)
    }

    /// Swap in a new set (seen by the next verification). A remote or file source replaces it
    /// again at its next refresh.
    pub fn replace(&self, keys: impl Into<Arc<KeySet>>) {
        self.keys.store(keys.into());
        let mut c = self.lock();
        c.fetched_at = Some(SystemTime::now());
    }

    /// The current set (a clone of the `Arc`), stale or not.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// The current set for a verification: lock-free; `keys_unavailable` once it is older
    /// than the maximum staleness.
    pub(crate) fn current(&self) -> Result<Guard<Arc<KeySet>>, VerifyError> {
        let limit = self.stale_after_ms.load(Ordering::Relaxed);
        if limit != u64::MAX && self.elapsed_ms() > limit {
            self.warn_unavailable();
            return Err(VerifyError::new(
                ErrorKind::KeysUnavailable,
                "the key set could not be refreshed within its maximum staleness",
            ));
        }
        Ok(self.keys.load())
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn warn_unavailable(&self) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            #[cfg(feature = "remote")]
            tracing::warn!(
                last_error = ?self.lock().last_error,
                "the key set is older than its maximum staleness: tokens are refused (keys_unavailable)"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg_attr(not(any(feature = "remote", feature = "watch")), allow(dead_code))]
    /// A new set was loaded: swap it in, good for `staleness` more.
    fn loaded(&self, keys: KeySet, staleness: Option<Duration>, next: Option<Instant>) {
        self.keys.store(Arc::new(keys));
        if let Some(s) = staleness {
            let ms = u64::try_from(s.as_millis()).unwrap_or(u64::MAX - 1);
            self.stale_after_ms.store(
                self.elapsed_ms().saturating_add(ms).min(u64::MAX - 1),
                Ordering::Relaxed,
            );
        }
        self.warned.store(false, Ordering::Relaxed);
        let mut c = self.lock();
        c.fetches += 1;
        c.fetched_at = Some(SystemTime::now());
        c.last_error = None;
        c.consecutive_failures = 0;
        c.next_refresh = next;
    }

    #[cfg_attr(not(any(feature = "remote", feature = "watch")), allow(dead_code))]
    /// A fetch or reload failed: the last good set stays. Returns the consecutive failures.
    fn failed(&self, error: &SourceError, next: impl FnOnce(u32) -> Option<Instant>) -> u32 {
        let mut c = self.lock();
        c.fetches += 1;
        c.failures += 1;
        c.last_error = Some(error.to_string());
        c.consecutive_failures = c.consecutive_failures.saturating_add(1);
        c.next_refresh = next(c.consecutive_failures);
        c.consecutive_failures
    }

    /// What the source holds and how its fetches went.
    pub fn status(&self) -> SourceStatus {
        let keys = self.keys.load();
        let c = self.lock();
        let now = (Instant::now(), SystemTime::now());
        let limit = self.stale_after_ms.load(Ordering::Relaxed);
        SourceStatus {
            kids: keys.kids().flatten().map(str::to_owned).collect(),
            fetched_at: c.fetched_at,
            next_refresh: c
                .next_refresh
                .map(|t| now.1 + t.saturating_duration_since(now.0)),
            last_error: c.last_error.clone(),
            fetches: c.fetches,
            failures: c.failures,
            unknown_kid_refreshes: c.unknown_kid_refreshes,
            unavailable: limit != u64::MAX && self.elapsed_ms() > limit,
        }
    }

    /// Whether an unknown `kid` may be looked up again (a remote source).
    pub(crate) fn refreshes(&self) -> bool {
        #[cfg(feature = "remote")]
        return self.remote.is_some();
        #[cfg(not(feature = "remote"))]
        false
    }

    /// How many fetches have ended: read before looking a `kid` up, handed to
    /// [`refresh_unknown_kid`](Self::refresh_unknown_kid).
    pub(crate) fn generation(&self) -> u64 {
        #[cfg(feature = "remote")]
        if let Some(remote) = &self.remote {
            return remote.generation();
        }
        0
    }

    /// Without the `remote` feature no source refreshes: nothing to start.
    #[cfg(not(feature = "remote"))]
    pub(crate) fn refresh_in_background(self: &Arc<Self>, generation: u64) {
        let _ = generation;
    }

    /// A token named a `kid` the set held at `generation` does not hold: refresh once
    /// (single-flight, at most once per interval; no fetch when one ended since). Whether the
    /// set may have changed since the caller looked.
    pub(crate) async fn refresh_unknown_kid(&self, generation: u64) -> bool {
        #[cfg(feature = "remote")]
        if let Some(remote) = &self.remote {
            return remote.refresh_unknown_kid(self, generation).await;
        }
        let _ = generation;
        false
    }

    /// Run `verify` against the current keys without waiting: on `unknown_kid` from a
    /// refreshing source, start the single-flight refresh in the background (the synchronous
    /// verifiers' path).
    pub(crate) fn verify_or_kick<T>(
        self: &Arc<Self>,
        verify: impl FnOnce() -> Result<T, VerifyError>,
    ) -> Result<T, VerifyError> {
        let generation = self.generation();
        let result = verify();
        if let Err(e) = &result
            && e.kind() == ErrorKind::UnknownKid
            && self.refreshes()
        {
            self.refresh_in_background(generation);
        }
        result
    }

    /// Run `verify`; on `unknown_kid` from a refreshing source, wait for the single-flight,
    /// rate-limited refresh and run it once more (the asynchronous verifiers' path).
    pub(crate) async fn verify_or_refresh<T>(
        &self,
        verify: impl Fn() -> Result<T, VerifyError>,
    ) -> Result<T, VerifyError> {
        let generation = self.generation();
        match verify() {
            Err(e) if e.kind() == ErrorKind::UnknownKid && self.refreshes() => {
                if self.refresh_unknown_kid(generation).await {
                    verify()
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }
}

#[cfg_attr(not(feature = "remote"), allow(dead_code))]
/// A jitter factor in [0.5, 1.0) from the clock (no random number generator needed: it only
/// spreads retries).
fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let mixed = u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
    d / 2 + d.mul_f64(mixed as f64 / 2048.0)
}
