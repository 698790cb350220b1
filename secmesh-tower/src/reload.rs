//! Policy reload without restart: watch a policy file and swap it into a [`SharedPolicy`].
//!
//! [`PolicyWatcher`] runs `secmesh_fs`'s file watch: it polls the file's stamps (cheap,
//! portable, and it sees files replaced by an atomic rename, as config-management tools write
//! them, or deleted and written again). When they change it reads and compiles the file off the
//! request path and swaps it in atomically;
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
use std::time::Duration;

use secmesh_core::policy::parse::MAX_POLICY_LEN;
use secmesh_core::policy::{Format, PolicyError, SharedPolicy};
use secmesh_fs::watch::{FileWatch, Reload, Snapshot, WatchError, Watcher};

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
    last_error: Mutex<Option<String>>,
}

impl State {
    /// The reload error for what the file watch reports.
    fn error(&self, e: WatchError<ReloadError>) -> ReloadError {
        match e {
            WatchError::Rejected(e) => e,
            WatchError::Read(e) => ReloadError::Io {
                path: self.path.clone(),
                source: e.into(),
            },
            other => ReloadError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }

    fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
}

/// The file watch (`secmesh_fs::watch`) hands over the bytes, read bounded; this compiles them.
impl Reload for State {
    type Error = ReloadError;

    fn reload(&self, files: &Snapshot) -> Result<(), ReloadError> {
        self.shared
            .reload_from_slice(files.file(0), self.format)
            .map_err(|source| ReloadError::Invalid {
                path: self.path.clone(),
                source,
            })
    }

    fn reloaded(&self) {
        tracing::info!(target: "secmesh::policy", path = %secmesh_fs::Shown(&self.path), "policy loaded");
        self.set_last_error(None);
    }

    fn failed(&self, error: &WatchError<ReloadError>) {
        // The same words as `ReloadError::Io` (`cannot read <path>: <why>`).
        let text = match error {
            WatchError::Read(e) => format!("cannot read {e}"),
            other => other.to_string(),
        };
        tracing::error!(target: "secmesh::policy", error = %text, "policy reload failed; keeping the last good policy");
        self.set_last_error(Some(text));
    }
}

/// Watches one policy file; dropping it stops the watch.
#[derive(Debug)]
pub struct PolicyWatcher {
    state: Arc<State>,
    watcher: Watcher<State>,
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
            path: path.clone(),
            format,
            shared,
            last_error: Mutex::new(None),
        });
        let watcher = FileWatch::new([path])
            .interval(interval)
            .limit(u64::try_from(MAX_POLICY_LEN).unwrap_or(u64::MAX))
            .spawn(Arc::clone(&state))
            .map_err(|e| state.error(e))?;
        let watcher = PolicyWatcher { state, watcher };
        watcher.reload_now()?;
        Ok(watcher)
    }

    /// Reload now, whatever the file's time stamp says.
    pub fn reload_now(&self) -> Result<(), ReloadError> {
        self.watcher.reload_now().map_err(|e| self.state.error(e))
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
