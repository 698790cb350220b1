//! Revocations shared by a fleet through Redis (the `redis` feature).
//!
//! [`Publisher::revoke`] writes an entry to Redis and announces it, atomically (one Lua script):
//! the entry in a hash (`PREFIX:revoked`, one field per key: `jti:...`, `sub:...`, `txn:...`,
//! `kid:...`), its expiry in a sorted set (`PREFIX:revoked:until`; expired fields are dropped
//! on every revocation, so Redis holds what one retention period revoked), and the entry on
//! the channel `PREFIX:revoked:events`. A second revocation of the same key keeps the later
//! time (a subject revoked again revokes its newer tokens too).
//!
//! Each instance keeps a local [`Replica`]: a [`RevocationSet`] that the hot path reads and
//! that a background task keeps in step: it subscribes to the channel first, then reads the
//! whole hash (`HSCAN`, never one huge reply) and swaps it in, then applies every announced
//! entry; a full resync every [`ReplicaConfig::resync`] heals anything missed, and a lost
//! connection is retried with backoff and followed by a resync. The hot path never waits on
//! Redis.
//!
//! When Redis is unreachable, [`WhenUnreachable`] says what happens: keep using the last
//! replica (`KeepReplica`, the default: fail-open), or refuse every token once the replica has
//! not been in step for longer than a bound (`RefuseAfter`: fail-closed). Both are logged and
//! visible in [`Replica::status`].
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use secmesh_tokens::revocation::RevocationKey;
//! use secmesh_tokens::revocation::redis::{Publisher, Replica, ReplicaConfig};
//! use secmesh_tokens::Verifier;
//!
//! # async fn run(verifier: Verifier) -> Result<(), Box<dyn std::error::Error>> {
//! let replica = Replica::start(ReplicaConfig::new("redis://127.0.0.1:6379/"))?;
//! let verifier = verifier.revocation(replica.revocation());
//!
//! // Anywhere in the fleet (or `secmesh revoke --redis URL --sub user:mallory`):
//! let publisher = Publisher::connect("redis://127.0.0.1:6379/", "secmesh").await?;
//! publisher.revoke(RevocationKey::Sub("user:mallory".into()), Some("account closed".into())).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use secmesh_core::claims::Claims;
use secmesh_core::{Clock, SystemClock};

use super::{RevocationError, RevocationKey, RevocationSet, Revoked, default_retention};
use crate::verifier::Revocation;

/// Why a Redis operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisRevocationError {
    /// Redis said no, or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The operation did not finish in time.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
    /// An entry was refused locally.
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    /// Redis holds something that is not an entry.
    #[error("redis holds a malformed revocation entry")]
    Malformed,
}

/// The hash field of a key.
fn field(key: &RevocationKey) -> String {
    match key {
        RevocationKey::Jti(v) => format!("jti:{v}"),
        RevocationKey::Sub(v) => format!("sub:{v}"),
        RevocationKey::Txn(v) => format!("txn:{v}"),
        RevocationKey::Kid(v) => format!("kid:{v}"),
    }
}

struct Keys {
    hash: String,
    until: String,
    channel: String,
}

fn keys(prefix: &str) -> Keys {
    Keys {
        hash: format!("{prefix}:revoked"),
        until: format!("{prefix}:revoked:until"),
        channel: format!("{prefix}:revoked:events"),
    }
}

/// Store (merging with an existing entry: the later `at` and `until` win), index the expiry,
/// drop expired fields, announce. KEYS: hash, until; ARGV: field, entry JSON, now, channel.
const REVOKE: &str = r"
local entry = ARGV[2]
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, o = pcall(cjson.decode, old)
  local n = cjson.decode(ARGV[2])
  if ok and type(o) == 'table' then
    if tonumber(o['at']) and tonumber(o['at']) > tonumber(n['at']) then n['at'] = o['at'] end
    if tonumber(o['until']) and tonumber(o['until']) > tonumber(n['until']) then n['until'] = o['until'] end
  end
  entry = cjson.encode(n)
end
local until_ = tonumber(cjson.decode(entry)['until'])
redis.call('HSET', KEYS[1], ARGV[1], entry)
redis.call('ZADD', KEYS[2], until_, ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, 1000)
for _, f in ipairs(expired) do
  redis.call('HDEL', KEYS[1], f)
  redis.call('ZREM', KEYS[2], f)
end
redis.call('PUBLISH', ARGV[4], entry)
return entry
";

/// Writes revocations to Redis for the fleet.
#[derive(Clone)]
pub struct Publisher {
    con: redis::aio::MultiplexedConnection,
    keys: Arc<Keys>,
    retention: u64,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("hash", &self.keys.hash)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connect to `url` (`redis://host:port/db`), using keys under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Publisher, RedisRevocationError> {
        let timeout = Duration::from_secs(5);
        let client = redis::Client::open(url)?;
        let con = tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| RedisRevocationError::Timeout(timeout))??;
        Ok(Publisher {
            con,
            keys: Arc::new(keys(prefix)),
            retention: default_retention(),
            clock: Arc::new(SystemClock),
            timeout,
        })
    }

    /// Keep entries this long after their revocation (seconds; by default the slowest class
    /// bound plus skew).
    pub fn retention(mut self, secs: u64) -> Self {
        self.retention = secs;
        self
    }

    /// The clock ("now").
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Revoke `key` for the fleet now; the entry as stored (merged with an earlier one).
    pub async fn revoke(
        &self,
        key: RevocationKey,
        reason: Option<String>,
    ) -> Result<Revoked, RedisRevocationError> {
        let at = self.clock.now_unix();
        let mut entry = Revoked::new(key, at, at.saturating_add(self.retention));
        entry.reason = reason;
        // The same checks as a local set's.
        RevocationSet::new()
            .clock(self.clock.clone())
            .insert(entry.clone())?;
        let json = serde_json::to_string(&entry).map_err(|_| RedisRevocationError::Malformed)?;
        let mut con = self.con.clone();
        let stored: String = tokio::time::timeout(
            self.timeout,
            redis::Script::new(REVOKE)
                .key(&self.keys.hash)
                .key(&self.keys.until)
                .arg(field(&entry.key))
                .arg(json)
                .arg(at)
                .arg(&self.keys.channel)
                .invoke_async(&mut con),
        )
        .await
        .map_err(|_| RedisRevocationError::Timeout(self.timeout))??;
        serde_json::from_str(&stored).map_err(|_| RedisRevocationError::Malformed)
    }

    /// Every entry Redis holds (read with `HSCAN`), expired ones left out.
    pub async fn entries(&self) -> Result<Vec<Revoked>, RedisRevocationError> {
        let mut con = self.con.clone();
        let now = self.clock.now_unix();
        let all = tokio::time::timeout(self.timeout, scan(&mut con, &self.keys.hash))
            .await
            .map_err(|_| RedisRevocationError::Timeout(self.timeout))??;
        Ok(all.0.into_iter().filter(|e| e.until > now).collect())
    }
}

/// The whole hash, in pages; malformed fields are counted, not taken.
async fn scan(
    con: &mut redis::aio::MultiplexedConnection,
    hash: &str,
) -> Result<(Vec<Revoked>, u64), RedisRevocationError> {
    let mut out = Vec::new();
    let mut malformed = 0u64;
    let mut iter: redis::AsyncIter<'_, (String, String)> = con.hscan(hash).await?;
    while let Some(item) = iter.next_item().await {
        let (_, value) = item?;
        match serde_json::from_str::<Revoked>(&value) {
            Ok(e) => out.push(e),
            Err(_) => malformed += 1,
        }
    }
    Ok((out, malformed))
}

/// What a replica does while Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenUnreachable {
    /// Keep verifying against the last replica (fail-open; the default).
    KeepReplica,
    /// Refuse every token once the replica has been out of step for longer than this
    /// (fail-closed).
    RefuseAfter(Duration),
}

/// How a [`Replica`] follows Redis.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// The key prefix (`secmesh`).
    pub prefix: String,
    /// How often to read the whole set again (30 s).
    pub resync: Duration,
    /// What to do while Redis is unreachable.
    pub when_unreachable: WhenUnreachable,
    /// The longest wait for one Redis operation (5 s).
    pub timeout: Duration,
    /// The first and the longest wait between reconnection attempts (100 ms, 5 s).
    pub backoff: (Duration, Duration),
}

impl ReplicaConfig {
    /// Follow `url` with the defaults.
    pub fn new(url: impl Into<String>) -> ReplicaConfig {
        ReplicaConfig {
            url: url.into(),
            prefix: "secmesh".into(),
            resync: Duration::from_secs(30),
            when_unreachable: WhenUnreachable::KeepReplica,
            timeout: Duration::from_secs(5),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    /// Keys under `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Read the whole set again this often.
    pub fn resync(mut self, every: Duration) -> Self {
        self.resync = every;
        self
    }

    /// What to do while Redis is unreachable.
    pub fn when_unreachable(mut self, w: WhenUnreachable) -> Self {
        self.when_unreachable = w;
        self
    }

    /// Reconnect after this long at first, doubling up to `max`.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max);
        self
    }
}

#[derive(Default)]
struct Shared {
    connected: AtomicBool,
    /// When the replica was last known in step (Unix ms): a resync, or connected since.
    in_step_ms: AtomicU64,
    /// Set by the watchdog when fail-closed applies.
    refusing: AtomicBool,
    syncs: AtomicU64,
    messages: AtomicU64,
    failures: AtomicU64,
    malformed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// What a [`Replica`] knows about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStatus {
    /// Subscribed and reading.
    pub connected: bool,
    /// When the replica was last known in step with Redis (Unix milliseconds; 0: never).
    pub in_step_ms: u64,
    /// Whether tokens are being refused (fail-closed and out of step too long).
    pub refusing: bool,
    /// Entries held.
    pub entries: usize,
    /// Full reads of the set.
    pub syncs: u64,
    /// Entries received on the channel.
    pub messages: u64,
    /// Connection or read failures.
    pub failures: u64,
    /// Fields or messages that were not entries (ignored).
    pub malformed: u64,
    /// The last failure, in words.
    pub last_error: Option<String>,
}

/// A local replica of the fleet's revocations; see the [module docs](self). Dropping it stops
/// following Redis (the set keeps what it has).
pub struct Replica {
    set: Arc<RevocationSet>,
    shared: Arc<Shared>,
    check: Arc<ReplicaCheck>,
    task: tokio::task::JoinHandle<()>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("status", &self.status())
            .finish()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
        self.watchdog.abort();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Replica {
    /// Start following Redis into a new set, on the current tokio runtime. Returns at once;
    /// [`wait_in_step`](Self::wait_in_step) waits for the first full read.
    pub fn start(config: ReplicaConfig) -> Result<Replica, RedisRevocationError> {
        Replica::start_with(config, Arc::new(RevocationSet::new()))
    }

    /// Start following Redis into `set`.
    pub fn start_with(
        config: ReplicaConfig,
        set: Arc<RevocationSet>,
    ) -> Result<Replica, RedisRevocationError> {
        let client = redis::Client::open(config.url.as_str())?;
        let shared = Arc::new(Shared::default());
        let check = Arc::new(ReplicaCheck {
            set: set.clone(),
            shared: shared.clone(),
        });
        let task = tokio::spawn(follow(client, config.clone(), set.clone(), shared.clone()));
        let watchdog = tokio::spawn(watch(config.when_unreachable, shared.clone()));
        Ok(Replica {
            set,
            shared,
            check,
            task,
            watchdog,
        })
    }

    /// The check to give a [`Verifier`](crate::Verifier) (`.revocation(..)`): the replica, and
    /// a refusal of every token while fail-closed applies.
    pub fn revocation(&self) -> Arc<dyn Revocation> {
        self.check.clone()
    }

    /// The local set.
    pub fn set(&self) -> &Arc<RevocationSet> {
        &self.set
    }

    /// Wait until the replica has read the whole set at least once (or `timeout` passes).
    pub async fn wait_in_step(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.shared.syncs.load(Ordering::Acquire) == 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// The replica's state.
    pub fn status(&self) -> ReplicaStatus {
        let s = &self.shared;
        ReplicaStatus {
            connected: s.connected.load(Ordering::Acquire),
            in_step_ms: s.in_step_ms.load(Ordering::Acquire),
            refusing: s.refusing.load(Ordering::Acquire),
            entries: self.set.len(),
            syncs: s.syncs.load(Ordering::Acquire),
            messages: s.messages.load(Ordering::Acquire),
            failures: s.failures.load(Ordering::Acquire),
            malformed: s.malformed.load(Ordering::Acquire),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// The replica as the verifier asks it.
struct ReplicaCheck {
    set: Arc<RevocationSet>,
    shared: Arc<Shared>,
}

impl fmt::Debug for ReplicaCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaCheck")
            .field("set", &self.set)
            .finish()
    }
}

impl Revocation for ReplicaCheck {
    fn is_revoked(&self, claims: &Claims, kid: Option<&str>) -> bool {
        // Fail-closed and out of step for too long: every token is refused.
        self.shared.refusing.load(Ordering::Acquire) || self.set.is_revoked(claims, kid)
    }
}

/// Fail-closed: refuse once out of step for longer than the bound; say so once each way.
async fn watch(mode: WhenUnreachable, shared: Arc<Shared>) {
    let WhenUnreachable::RefuseAfter(bound) = mode else {
        return;
    };
    let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    let mut tick =
        tokio::time::interval(Duration::from_millis(100).min(bound / 2 + Duration::from_millis(1)));
    loop {
        tick.tick().await;
        let connected = shared.connected.load(Ordering::Acquire);
        if connected {
            shared.in_step_ms.store(now_ms(), Ordering::Release);
        }
        let in_step = shared.in_step_ms.load(Ordering::Acquire);
        let refuse = !connected && now_ms().saturating_sub(in_step) > bound_ms;
        if refuse != shared.refusing.swap(refuse, Ordering::AcqRel) {
            if refuse {
                tracing::error!(target: "secmesh::revocation", "the revocation replica is out of step with Redis for too long: refusing every token (fail-closed)");
            } else {
                tracing::warn!(target: "secmesh::revocation", "the revocation replica is in step again: tokens are checked again");
            }
        }
    }
}

fn failed(shared: &Shared, what: &str, e: &dyn fmt::Display) {
    shared.connected.store(false, Ordering::Release);
    shared.failures.fetch_add(1, Ordering::AcqRel);
    let text = format!("{what}: {e}");
    tracing::warn!(target: "secmesh::revocation", error = %text, "revocation replica: Redis unreachable; keeping the last replica");
    *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
}

/// Subscribe, read everything, follow the channel, read everything again now and then;
/// reconnect with backoff.
async fn follow(
    client: redis::Client,
    config: ReplicaConfig,
    set: Arc<RevocationSet>,
    shared: Arc<Shared>,
) {
    let keys = keys(&config.prefix);
    let mut backoff = config.backoff.0;
    loop {
        match session(&client, &config, &keys, &set, &shared).await {
            Ok(()) => {}
            Err(e) => failed(&shared, "session", &e),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(config.backoff.1);
        if shared.connected.load(Ordering::Acquire) {
            backoff = config.backoff.0;
        }
    }
}

async fn session(
    client: &redis::Client,
    config: &ReplicaConfig,
    keys: &Keys,
    set: &RevocationSet,
    shared: &Shared,
) -> Result<(), RedisRevocationError> {
    let timeout = config.timeout;
    let within = |what| RedisRevocationError::Timeout(what);
    let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(|_| within(timeout))??;
    tokio::time::timeout(timeout, pubsub.subscribe(&keys.channel))
        .await
        .map_err(|_| within(timeout))??;
    let mut con = tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| within(timeout))??;
    // Subscribed first, then read: an entry announced while reading is in the stream.
    resync(&mut con, keys, set, shared, timeout).await?;
    shared.connected.store(true, Ordering::Release);
    let mut messages = pubsub.on_message();
    let mut next_resync = tokio::time::Instant::now() + config.resync;
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err(RedisRevocationError::Redis(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "the subscription ended",
                    ))));
                };
                shared.messages.fetch_add(1, Ordering::AcqRel);
                let entry = msg
                    .get_payload::<String>()
                    .ok()
                    .and_then(|p| serde_json::from_str::<Revoked>(&p).ok());
                match entry {
                    Some(e) => {
                        if let Err(e) = set.insert(e) {
                            tracing::error!(target: "secmesh::revocation", error = %e, "revocation not taken");
                        }
                    }
                    None => {
                        shared.malformed.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
            () = tokio::time::sleep_until(next_resync) => {
                // A failed resync ends the session: the subscription may be dead too.
                resync(&mut con, keys, set, shared, timeout).await?;
                next_resync = tokio::time::Instant::now() + config.resync;
            }
        }
    }
}

async fn resync(
    con: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    set: &RevocationSet,
    shared: &Shared,
    timeout: Duration,
) -> Result<(), RedisRevocationError> {
    let (entries, malformed) = tokio::time::timeout(timeout * 4, scan(con, &keys.hash))
        .await
        .map_err(|_| RedisRevocationError::Timeout(timeout * 4))??;
    let left_out = set.replace_all(entries);
    if left_out > 0 {
        tracing::error!(target: "secmesh::revocation", left_out, "more revocations than the set holds");
    }
    shared.malformed.fetch_add(malformed, Ordering::AcqRel);
    shared.syncs.fetch_add(1, Ordering::AcqRel);
    shared.in_step_ms.store(now_ms(), Ordering::Release);
    Ok(())
}
