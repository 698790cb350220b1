//! Reloading the workload's files when they change, on `secmesh_fs`'s file watcher.

use std::sync::Arc;
use std::time::Duration;

use secmesh_fs::watch::{FileWatch, Reload, Snapshot, WatchError, Watcher};

use super::{Inner, TlsError, Workload};

impl Reload for Inner {
    type Error = TlsError;

    fn reload(&self, files: &Snapshot) -> Result<(), TlsError> {
        self.swap(files)
    }

    fn reloaded(&self) {
        let id = self.material.load().id.clone();
        tracing::info!(target: "secmesh::tls", id = %id, "TLS material reloaded");
    }

    fn failed(&self, error: &WatchError<TlsError>) {
        tracing::warn!(target: "secmesh::tls", error = %error, "TLS reload failed; keeping the previous material");
    }
}

/// The file watch of [`Workload::watch`]; dropping it stops the watch.
#[derive(Debug)]
pub struct Watch(Watcher<Inner>);

impl Watch {
    /// Stop the watch and wait until it has finished (a reload under way completes).
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

impl Workload {
    /// Check the files every `every` and reload them when they change (after a short debounce;
    /// an atomic rename-replace and a file deleted then written again are seen). A failed
    /// reload is logged with `tracing` and the previous material stays until the files change
    /// again. The watch is a task on the current tokio runtime ([`WatchError::NoRuntime`]
    /// outside one); it stops when the returned [`Watch`] is dropped.
    pub fn watch(&self, every: Duration) -> Result<Watch, WatchError<TlsError>> {
        let since = self.inner.material.load().stamps.clone();
        FileWatch::new(self.inner.files.paths())
            .interval(every)
            .limit(secmesh_fs::DOCUMENT)
            .since(since)
            .spawn(Arc::clone(&self.inner))
            .map(Watch)
    }
}
