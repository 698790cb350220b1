//! The file key source: a JWKS file re-read when it changes (the secmesh-fs watcher).

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use secmesh_fs::watch::{FileWatch, Reload, Snapshot, WatchError};

use super::{KeySource, SourceError};
use crate::error::KeyError;
use crate::key::KeySet;

/// Swaps the file's set into the source it belongs to.
pub(crate) struct FileReload(Weak<KeySource>);

impl Reload for FileReload {
    type Error = KeyError;

    fn reload(&self, files: &Snapshot) -> Result<(), KeyError> {
        let text = std::str::from_utf8(files.file(0))
            .map_err(|_| KeyError::Jwk("the key file is not UTF-8".into()))?;
        let keys = KeySet::from_jwks_json(text)?;
        if let Some(source) = self.0.upgrade() {
            source.loaded(keys, None, None);
        }
        Ok(())
    }

    fn failed(&self, error: &WatchError<KeyError>) {
        if let Some(source) = self.0.upgrade() {
            source.failed(&SourceError::Read(error.to_string()), |_| None);
        }
    }
}

impl KeySource {
    /// A source that reads the JWKS file at `path` now and again whenever it changes (checked
    /// every second); a file that becomes unreadable or invalid keeps the last good set. Needs
    /// a tokio runtime; the watch stops when the source is dropped.
    pub fn file(path: impl Into<PathBuf>) -> Result<Arc<KeySource>, SourceError> {
        KeySource::file_every(path, std::time::Duration::from_secs(1))
    }

    /// [`file`](Self::file), checking the file every `interval`.
    pub fn file_every(
        path: impl Into<PathBuf>,
        interval: std::time::Duration,
    ) -> Result<Arc<KeySource>, SourceError> {
        let path = path.into();
        let snapshot = Snapshot::read(std::slice::from_ref(&path), secmesh_fs::DOCUMENT)
            .map_err(|e| SourceError::Read(e.to_string()))?;
        let text = std::str::from_utf8(snapshot.file(0))
            .map_err(|_| SourceError::Keys(KeyError::Jwk("the key file is not UTF-8".into())))?;
        let keys = KeySet::from_jwks_json(text)?;
        let source = Arc::new(KeySource::fixed(keys));
        let watcher = FileWatch::new([path])
            .interval(interval)
            .since(snapshot.stamps().clone())
            .spawn(Arc::new(FileReload(Arc::downgrade(&source))))
            .map_err(|_| SourceError::NoRuntime)?;
        *source
            .watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(watcher);
        Ok(source)
    }
}
