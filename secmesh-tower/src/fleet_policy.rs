//! One access policy for a fleet, distributed through Redis (the `redis` feature): versioned
//! pushes, every instance following, and a view of which version each one runs.
//!
//! [`push`] validates a policy (it must compile) and stores it as the next version, atomically
//! (`MULTI`): the text in the hash `PREFIX:policy:versions` (the last [`KEEP_VERSIONS`] kept),
//! the number in `PREFIX:policy:current`, and an announcement on `PREFIX:policy:events`.
//!
//! [`PolicySubscription`] keeps a [`SharedPolicy`] on the current version: it subscribes, then
//! reads the current version and compiles it; every announcement and a periodic check do the
//! same. A version that does not compile is not taken: the last good policy stays in force and
//! the instance reports the error. Each instance reports itself in `PREFIX:policy:instances`
//! (its id -> the version it runs, the last error, when it last reported) every few seconds;
//! [`instances`] reads that back, and `secmesh policy status` flags stragglers. The hot path
//! never waits on Redis: decisions read the shared policy, swapped atomically.
//!
//! # Example
//! ```no_run
//! use secmesh_core::policy::SharedPolicy;
//! use secmesh_tower::fleet_policy::{PolicySubscription, push};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "redis://127.0.0.1:6379/";
//! let shared = SharedPolicy::default();
//! let sub = PolicySubscription::start(url, "secmesh", "orders-1", shared.clone())?;
//! // Elsewhere (or `secmesh policy push --redis URL policy.toml`):
//! let version = push(url, "secmesh", "[[rule]]\nid = \"r\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"read\"]\nobjects = [\"**\"]\n").await?;
//! # let _ = (sub, version);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use serde::{Deserialize, Serialize};

/// How many versions Redis keeps.
pub const KEEP_VERSIONS: u64 = 20;

/// How often an instance reports itself and checks the current version.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Why a push or a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetPolicyError {
    /// Redis said no or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The policy does not compile (nothing was pushed).
    #[error("invalid policy: {0}")]
    Invalid(#[from] secmesh_core::policy::PolicyError),
    /// No answer in time.
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

const TIMEOUT: Duration = Duration::from_secs(5);

struct Keys {
    seq: String,
    versions: String,
    current: String,
    channel: String,
    instances: String,
}

fn keys(prefix: &str) -> Keys {
    Keys {
        seq: format!("{prefix}:policy:seq"),
        versions: format!("{prefix}:policy:versions"),
        current: format!("{prefix}:policy:current"),
        channel: format!("{prefix}:policy:events"),
        instances: format!("{prefix}:policy:instances"),
    }
}

async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection, FleetPolicyError> {
    let client = redis::Client::open(url)?;
    tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| FleetPolicyError::Timeout(TIMEOUT))?
        .map_err(Into::into)
}

/// Validate `text` (TOML) and store it as the fleet's next policy version; the version.
pub async fn push(url: &str, prefix: &str, text: &str) -> Result<u64, FleetPolicyError> {
    Policy::parse(text, Format::Toml)?;
    let k = keys(prefix);
    let mut con = connect(url).await?;
    let version: u64 = redis::cmd("INCR").arg(&k.seq).query_async(&mut con).await?;
    let mut pipe = redis::pipe();
    pipe.atomic()
        .hset(&k.versions, version, text)
        .ignore()
        .set(&k.current, version)
        .ignore()
        .publish(&k.channel, version)
        .ignore();
    if version > KEEP_VERSIONS {
        pipe.hdel(&k.versions, version - KEEP_VERSIONS).ignore();
    }
    tokio::time::timeout(TIMEOUT, pipe.query_async::<()>(&mut con))
        .await
        .map_err(|_| FleetPolicyError::Timeout(TIMEOUT))??;
    Ok(version)
}

/// The current version number, if one was pushed.
pub async fn current_version(url: &str, prefix: &str) -> Result<Option<u64>, FleetPolicyError> {
    let k = keys(prefix);
    let mut con = connect(url).await?;
    Ok(redis::cmd("GET")
        .arg(&k.current)
        .query_async(&mut con)
        .await?)
}

/// What one instance reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InstanceReport {
    /// The instance's id.
    #[serde(default)]
    pub instance: String,
    /// The version it runs (0: none yet).
    pub version: u64,
    /// Why the newest version was not taken, if it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it last reported (Unix seconds).
    pub at: u64,
}

/// Every instance's last report.
pub async fn instances(url: &str, prefix: &str) -> Result<Vec<InstanceReport>, FleetPolicyError> {
    let k = keys(prefix);
    let mut con = connect(url).await?;
    let all: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(&k.instances)
        .query_async(&mut con)
        .await?;
    let mut out: Vec<InstanceReport> = all
        .into_iter()
        .filter_map(|(id, json)| {
            let mut r: InstanceReport = serde_json::from_str(&json).ok()?;
            r.instance = id;
            Some(r)
        })
        .collect();
    out.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(out)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Keeps a [`SharedPolicy`] on the fleet's current version; see the [module docs](self).
/// Dropping it stops following.
#[derive(Debug)]
pub struct PolicySubscription {
    running: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PolicySubscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PolicySubscription {
    /// Follow the policy under `prefix` at `url` as instance `instance`, into `shared`, on the
    /// current tokio runtime. Returns at once; [`version`](Self::version) says what runs.
    pub fn start(
        url: &str,
        prefix: &str,
        instance: impl Into<String>,
        shared: SharedPolicy,
    ) -> Result<PolicySubscription, FleetPolicyError> {
        let client = redis::Client::open(url)?;
        let running = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(follow(
            client,
            keys(prefix),
            instance.into(),
            shared,
            running.clone(),
        ));
        Ok(PolicySubscription { running, task })
    }

    /// The version this instance runs (0: none yet).
    pub fn version(&self) -> u64 {
        self.running.load(Ordering::Acquire)
    }
}

async fn follow(
    client: redis::Client,
    keys: Keys,
    instance: String,
    shared: SharedPolicy,
    running: Arc<AtomicU64>,
) {
    let mut error: Option<String> = None;
    loop {
        if let Err(e) = session(&client, &keys, &instance, &shared, &running, &mut error).await {
            tracing::warn!(target: "secmesh::policy", error = %e, "fleet policy: Redis unreachable; keeping the policy in force");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn session(
    client: &redis::Client,
    keys: &Keys,
    instance: &str,
    shared: &SharedPolicy,
    running: &AtomicU64,
    error: &mut Option<String>,
) -> Result<(), FleetPolicyError> {
    let within = |_| FleetPolicyError::Timeout(TIMEOUT);
    let mut pubsub = tokio::time::timeout(TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(within)??;
    tokio::time::timeout(TIMEOUT, pubsub.subscribe(&keys.channel))
        .await
        .map_err(within)??;
    let mut con = tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(within)??;
    let mut messages = pubsub.on_message();
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tokio::time::timeout(TIMEOUT, sync(&mut con, keys, shared, running, error))
            .await
            .map_err(within)??;
        let report = InstanceReport {
            instance: String::new(),
            version: running.load(Ordering::Acquire),
            error: error.clone(),
            at: now_secs(),
        };
        let json = serde_json::to_string(&report).unwrap_or_default();
        tokio::time::timeout(
            TIMEOUT,
            redis::cmd("HSET")
                .arg(&keys.instances)
                .arg(instance)
                .arg(json)
                .query_async::<()>(&mut con),
        )
        .await
        .map_err(within)??;
        tokio::select! {
            msg = messages.next() => {
                if msg.is_none() {
                    return Ok(());
                }
            }
            _ = tick.tick() => {}
        }
    }
}

/// Take the current version if it is newer than the running one and compiles.
async fn sync(
    con: &mut redis::aio::MultiplexedConnection,
    keys: &Keys,
    shared: &SharedPolicy,
    running: &AtomicU64,
    error: &mut Option<String>,
) -> Result<(), FleetPolicyError> {
    let current: Option<u64> = redis::cmd("GET")
        .arg(&keys.current)
        .query_async(con)
        .await?;
    let Some(current) = current else {
        return Ok(());
    };
    if current == running.load(Ordering::Acquire) {
        return Ok(());
    }
    let text: Option<String> = redis::cmd("HGET")
        .arg(&keys.versions)
        .arg(current)
        .query_async(con)
        .await?;
    match text.map(|t| shared.reload_from_str(&t, Format::Toml)) {
        Some(Ok(())) => {
            running.store(current, Ordering::Release);
            *error = None;
            tracing::info!(target: "secmesh::policy", version = current, "fleet policy version in force");
        }
        Some(Err(e)) => {
            let text = format!("version {current}: {e}");
            if error.as_deref() != Some(text.as_str()) {
                tracing::error!(target: "secmesh::policy", error = %text, "fleet policy version not taken; keeping the last good policy");
            }
            *error = Some(text);
        }
        None => {
            *error = Some(format!("version {current}: missing from Redis"));
        }
    }
    Ok(())
}
