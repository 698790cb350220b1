//! Policy reload without restart: watch a policy file and swap it into a [`SharedPolicy`].
//!
//! [`PolicyWatcher`] polls the file's modification time and size (cheap, portable, and it
//! sees files replaced by an atomic rename, as config-management tools write them). When they
//! change it reads and compiles the file off the request path and swaps it in atomically;
//! requests keep deciding lock-free against whichever policy is current. A file that fails to
//! read or parse is reported (tracing, and [`PolicyWatcher::last_error`]) and the last good
//! policy stays. [`PolicyWatcher::reload_now`] is the explicit trigger.
//!
//! The file is hostile like any input: it is read through `secmesh_fs`, so a replacement by a
//! FIFO (no hang: the open does not block), a device or a symlink to one, a directory, or a
//! file larger than [`MAX_POLICY_LEN`] is a read error
//! and the last good policy stays.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use secmesh_core::policy::SharedPolicy;
//! use secmesh_tower::reload::PolicyWatcher;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("secmesh-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("policy.toml");
//! std::fs::write(&path, "[[rule]]\nid = \"r1\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"read\"]\nobjects = [\"**\"]\n")?;
//!
//! let shared = SharedPolicy::default();
//! let watcher = PolicyWatcher::spawn(&path, shared.clone(), Duration::from_millis(50))?;
//! assert_eq!(shared.current().rules().len(), 1);
//!
//! std::fs::write(&path, "not a policy")?;
//! assert!(watcher.reload_now().is_err());
//! assert_eq!(shared.current().rules().len(), 1, "the last good policy stays");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use secmesh_core::policy::parse::MAX_POLICY_LEN;
use secmesh_core::policy::{Format, PolicyError, SharedPolicy};

/// Why a reload failed; the previous policy stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", secmesh_fs::Shown(path))]
    Io {
        /// The policy file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("invalid policy {}: {source}", secmesh_fs::Shown(path))]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// What is wrong, with its position.
        source: PolicyError,
    },
}

#[derive(Debug)]
struct State {
    path: PathBuf,
    format: Format,
    shared: SharedPolicy,
    seen: Mutex<Option<(SystemTime, u64)>>,
    last_error: Mutex<Option<String>>,
}

impl State {
    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    fn reload(&self) -> Result<(), ReloadError> {
        let stamp = self.stamp();
        let limit = u64::try_from(MAX_POLICY_LEN).unwrap_or(u64::MAX);
        let result = secmesh_fs::read(&self.path, limit)
            .map_err(|e| ReloadError::Io {
                path: self.path.clone(),
                source: e.into(),
            })
            .and_then(|bytes| {
                self.shared
                    .reload_from_slice(&bytes, self.format)
                    .map_err(|source| ReloadError::Invalid {
                        path: self.path.clone(),
                        source,
                    })
            });
        if let Ok(mut seen) = self.seen.lock() {
            *seen = stamp;
        }
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(()) => {
                tracing::info!(target: "secmesh::policy", path = %secmesh_fs::Shown(&self.path), "policy loaded");
                *last = None;
            }
            Err(e) => {
                tracing::error!(target: "secmesh::policy", error = %e, "policy reload failed; keeping the last good policy");
                *last = Some(e.to_string());
            }
        }
        result
    }
}

/// Watches one policy file; dropping it stops the watch.
#[derive(Debug)]
pub struct PolicyWatcher {
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PolicyWatcher {
    /// Load `path` into `shared` now (an error here is returned: a service should not start
    /// without a policy), then check it every `interval` on the current tokio runtime. The
    /// format comes from the extension (`.json` is JSON, anything else TOML).
    pub fn spawn(
        path: impl AsRef<Path>,
        shared: SharedPolicy,
        interval: Duration,
    ) -> Result<PolicyWatcher, ReloadError> {
        let path = path.as_ref().to_path_buf();
        let format = path
            .extension()
            .and_then(|e| e.to_str())
            .and_then(Format::from_extension)
            .unwrap_or(Format::Toml);
        let state = Arc::new(State {
            path,
            format,
            shared,
            seen: Mutex::new(None),
            last_error: Mutex::new(None),
        });
        state.reload()?;
        let s = state.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let now = s.stamp();
                let changed = s.seen.lock().map(|seen| *seen != now).unwrap_or(true);
                if changed {
                    let s = s.clone();
                    // Reading and compiling a large policy is blocking work.
                    let _ = tokio::task::spawn_blocking(move || s.reload()).await;
                }
            }
        });
        Ok(PolicyWatcher { state, task })
    }

    /// Reload now, whatever the file's time stamp says.
    pub fn reload_now(&self) -> Result<(), ReloadError> {
        self.state.reload()
    }

    /// The error of the last reload, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.state
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
