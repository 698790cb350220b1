//! Reloading the exchange policy file while serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secmesh_core::exchange_policy::SharedExchangePolicy;
use secmesh_core::policy::Format;
use secmesh_fs::watch::{FileWatch, Reload, Snapshot, WatchError, Watcher};

/// Why the exchange policy file could not be (re)loaded; the last good policy stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFileError {
    /// The file could not be read.
    #[error("cannot read {}: {detail}", secmesh_fs::Shown(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The file is not a valid exchange policy.
    #[error("invalid exchange policy {}: {detail}", secmesh_fs::Shown(path))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its position.
        detail: String,
    },
}

#[derive(Debug)]
struct State {
    path: PathBuf,
    format: Format,
    shared: SharedExchangePolicy,
    last_error: Mutex<Option<String>>,
}

impl Reload for State {
    type Error = PolicyFileError;

    fn reload(&self, files: &Snapshot) -> Result<(), PolicyFileError> {
        self.shared
            .reload_from_slice(files.file(0), self.format)
            .map(drop)
            .map_err(|e| PolicyFileError::Invalid {
                path: self.path.clone(),
                detail: e.to_string(),
            })
    }

    fn reloaded(&self) {
        tracing::info!(target: "secmesh::sts", path = %secmesh_fs::Shown(&self.path), "exchange policy loaded");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn failed(&self, error: &WatchError<PolicyFileError>) {
        let text = error.to_string();
        tracing::error!(target: "secmesh::sts", error = %text, "exchange policy reload failed; keeping the last good policy");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }
}

/// Follows an exchange policy file: a change is read (bounded, through `secmesh_fs`), compiled
/// off the request path and swapped in; a file that does not load leaves the last good policy
/// in force. Dropping it stops the watch.
#[derive(Debug)]
pub struct PolicyFileWatch {
    state: Arc<State>,
    watcher: Watcher<State>,
}

impl PolicyFileWatch {
    /// Load `path` into `shared` now (an error is returned: a service should not start
    /// without its policy), then check it every `interval` on the current tokio runtime.
    /// `.json` files are JSON, anything else TOML.
    pub fn spawn(
        path: impl AsRef<Path>,
        shared: SharedExchangePolicy,
        interval: Duration,
    ) -> Result<PolicyFileWatch, PolicyFileError> {
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
        let error = |e: WatchError<PolicyFileError>| match e {
            WatchError::Rejected(e) => e,
            other => PolicyFileError::Io {
                path: path.clone(),
                detail: other.to_string(),
            },
        };
        let watcher = FileWatch::new([path.clone()])
            .interval(interval)
            .limit(secmesh_fs::DOCUMENT)
            .spawn(Arc::clone(&state))
            .map_err(error)?;
        watcher.reload_now().map_err(error)?;
        Ok(PolicyFileWatch { state, watcher })
    }

    /// Reload now.
    pub fn reload_now(&self) -> Result<(), PolicyFileError> {
        self.watcher.reload_now().map_err(|e| match e {
            WatchError::Rejected(e) => e,
            other => PolicyFileError::Io {
                path: self.state.path.clone(),
                detail: other.to_string(),
            },
        })
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
