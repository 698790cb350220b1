//! A rate limit shared by a fleet through Redis.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use secmesh_core::limit::{Rate, Verdict};

use super::{Decide, LimitStore, LocalLimiter};

/// GCRA in one atomic step, on Redis's clock (microseconds). KEYS[1]: the key's TAT. ARGV:
/// emission interval (µs), tolerance (µs). Returns {allowed, retry_after_us, remaining,
/// reset_us}. The TAT expires when it no longer matters.
const GCRA: &str = r"
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - tau
if now < allow_at then
  return {0, allow_at - now, 0, tat - now}
end
local new_tat = tat + t
local used = new_tat - now
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(used / 1000) + 1)
local remaining = math.floor((tau + t - used) / t)
if remaining < 0 then remaining = 0 end
return {1, 0, remaining, used}
";

/// Why the shared limiter could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisLimiterError {
    /// The Redis URL or the first connection.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The rate divided by the replica count.
    #[error(transparent)]
    Rate(#[from] secmesh_core::limit::RateError),
}

/// What the shared limiter knows about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisLimiterStatus {
    /// Deciding locally (Redis unreachable): the local rate is the shared one divided by the
    /// replica count.
    pub degraded: bool,
    /// Decisions made through Redis.
    pub shared_decisions: u64,
    /// Decisions made locally because Redis could not answer in time.
    pub local_decisions: u64,
}

/// A rate limit shared by every instance through Redis: one round trip per decision (an atomic
/// script on Redis's clock); when Redis does not answer within the timeout (200 ms), the
/// decision is made by a local limiter with the rate divided by the replica count, and the
/// limiter says so (logged once each way, [`status`](Self::status)). While Redis is
/// unreachable, decisions are local at once and one decision every 500 ms tries Redis again.
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    con: ::redis::aio::ConnectionManager,
    script: ::redis::Script,
    rate: Rate,
    prefix: String,
    timeout: Duration,
    fallback: LocalLimiter,
    replicas: u64,
    degraded: AtomicBool,
    /// While degraded: when to ask Redis again (ms on `epoch`); until then decide locally at
    /// once, so that no request pays the timeout while Redis is down.
    retry_at_ms: AtomicU64,
    epoch: std::time::Instant,
    shared: AtomicU64,
    local: AtomicU64,
}

/// While Redis is unreachable, how often one decision tries it again.
const RETRY_EVERY_MS: u64 = 500;

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("rate", &self.inner.rate)
            .field("status", &self.status())
            .finish()
    }
}

impl RedisLimiter {
    /// A limiter of `rate` per key shared through `url`, keys under `prefix`, for a fleet of
    /// `replicas` instances (the local fallback allows `rate / replicas`). Connects now; later
    /// reconnections are the connection manager's.
    pub async fn connect(
        url: &str,
        prefix: impl Into<String>,
        rate: Rate,
        replicas: u64,
    ) -> Result<RedisLimiter, RedisLimiterError> {
        let client = ::redis::Client::open(url)?;
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(200)))
            .set_number_of_retries(1);
        let con = ::redis::aio::ConnectionManager::new_with_config(client, config).await?;
        let replicas = replicas.max(1);
        let local = share(rate, replicas)?;
        Ok(RedisLimiter {
            inner: Arc::new(Inner {
                con,
                script: ::redis::Script::new(GCRA),
                rate,
                prefix: prefix.into(),
                timeout: Duration::from_millis(200),
                fallback: LocalLimiter::new(local),
                replicas,
                degraded: AtomicBool::new(false),
                retry_at_ms: AtomicU64::new(0),
                epoch: std::time::Instant::now(),
                shared: AtomicU64::new(0),
                local: AtomicU64::new(0),
            }),
        })
    }

    /// The counters of declared limits ([`LimitStore`]: each limit brings its own rate),
    /// shared through `url` under `prefix` by a fleet of `replicas` instances.
    pub async fn for_limits(
        url: &str,
        prefix: impl Into<String>,
        replicas: u64,
    ) -> Result<RedisLimiter, RedisLimiterError> {
        RedisLimiter::connect(url, prefix, Rate::new(1, 1)?, replicas).await
    }

    /// The shared rate.
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// Decide one request of `key`.
    pub async fn check(&self, key: &str) -> Verdict {
        self.check_rate(self.inner.rate, key).await
    }

    /// Decide one request of `key` under `rate` (keys under different rates should not share
    /// a name: the declared limits put the limit's id in each key). While Redis is
    /// unreachable: under `rate` divided by the replica count, in process.
    pub async fn check_rate(&self, rate: Rate, key: &str) -> Verdict {
        let i = &*self.inner;
        let now_ms = i.now_ms();
        if i.degraded.load(Ordering::Acquire) {
            let retry_at = i.retry_at_ms.load(Ordering::Acquire);
            // One decision at a time probes Redis; the others decide locally at once.
            if now_ms < retry_at
                || i.retry_at_ms
                    .compare_exchange(
                        retry_at,
                        now_ms + RETRY_EVERY_MS,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_err()
            {
                return i.decide_locally(rate, key);
            }
        }
        let t_us = rate.emission_interval_ns().div_ceil(1000).max(1);
        let tau_us = rate.tolerance_ns() / 1000;
        let mut con = i.con.clone();
        let mut invocation = i.script.key(format!("{}:rl:{key}", i.prefix));
        invocation.arg(t_us).arg(tau_us);
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut con);
        match tokio::time::timeout(i.timeout, call).await {
            Ok(Ok((allowed, retry_us, remaining, reset_us))) => {
                if i.degraded.swap(false, Ordering::AcqRel) {
                    tracing::warn!(target: "secmesh::limit", "Redis answers again: shared rate limits resume");
                }
                i.shared.fetch_add(1, Ordering::Relaxed);
                let us = |v: i64| u64::try_from(v).unwrap_or(0).saturating_mul(1000);
                Verdict::from_parts(
                    allowed == 1,
                    0,
                    us(retry_us),
                    u64::try_from(remaining).unwrap_or(0),
                    us(reset_us),
                    rate.burst_size(),
                )
            }
            outcome => {
                i.retry_at_ms
                    .store(now_ms + RETRY_EVERY_MS, Ordering::Release);
                if !i.degraded.swap(true, Ordering::AcqRel) {
                    let why = match outcome {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {:?}", i.timeout),
                    };
                    tracing::error!(target: "secmesh::limit", error = %why, rate = %i.fallback.rate(), "Redis unreachable: rate limits are local, the shared rate divided by the replica count");
                }
                i.decide_locally(rate, key)
            }
        }
    }

    /// Whether decisions are local now (Redis unreachable and not yet due for another try).
    pub fn is_degraded(&self) -> bool {
        self.inner.degraded.load(Ordering::Acquire)
    }

    /// Whether decisions are local now, and how many went which way.
    pub fn status(&self) -> RedisLimiterStatus {
        RedisLimiterStatus {
            degraded: self.inner.degraded.load(Ordering::Acquire),
            shared_decisions: self.inner.shared.load(Ordering::Relaxed),
            local_decisions: self.inner.local.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    /// Milliseconds on this limiter's clock.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Decide in process (Redis unreachable): under `rate` divided by the replica count.
    fn decide_locally(&self, rate: Rate, key: &str) -> Verdict {
        self.local.fetch_add(1, Ordering::Relaxed);
        let local = if rate == self.rate {
            self.fallback.rate()
        } else {
            share(rate, self.replicas).unwrap_or(self.fallback.rate())
        };
        self.fallback.check_rate(local, key)
    }
}

/// `rate` shared by `replicas` instances: the count and the burst divided (at least 1 each).
fn share(rate: Rate, replicas: u64) -> Result<Rate, secmesh_core::limit::RateError> {
    let replicas = replicas.max(1);
    Rate::new((rate.count() / replicas).max(1), rate.period_secs())?
        .burst((rate.burst_size() / replicas).max(1))
}

impl LimitStore for RedisLimiter {
    /// Through Redis, one round trip bounded by the limiter's timeout; while Redis is known to
    /// be unreachable, in process at once.
    fn decide(&self, rate: Rate, key: &str) -> Decide {
        let i = &*self.inner;
        if i.degraded.load(Ordering::Acquire) && i.now_ms() < i.retry_at_ms.load(Ordering::Acquire)
        {
            return Decide::Now(i.decide_locally(rate, key));
        }
        let this = self.clone();
        let key = key.to_owned();
        Decide::Later(Box::pin(async move { this.check_rate(rate, &key).await }))
    }
}
