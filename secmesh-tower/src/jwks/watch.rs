//! Following rotations made by another process: poll the ring's state file, reload on change.

use std::sync::Arc;
use std::time::Duration;

use secmesh_fs::watch::{FileWatch, Reload, Snapshot, WatchError, Watcher};
use secmesh_tokens::keyring::{KeyRing, KeyRingError, STATE_FILE};

/// Reloads a [`KeyRing`] when its state file changes (a [`Reload`] for `secmesh_fs`'s watch).
#[derive(Debug)]
pub struct RingReload(Arc<KeyRing>);

impl Reload for RingReload {
    type Error = KeyRingError;

    fn reload(&self, _files: &Snapshot) -> Result<(), KeyRingError> {
        // The ring reads the state and the key files itself (bounded, checked); the snapshot
        // only told us that the state changed.
        if self.0.reload()? {
            tracing::info!(
                target: "secmesh::jwks",
                current = %self.0.current_kid(),
                "key ring reloaded"
            );
        }
        Ok(())
    }

    fn failed(&self, error: &WatchError<KeyRingError>) {
        tracing::warn!(
            target: "secmesh::jwks",
            %error,
            "key ring reload failed; the last good keys stay published"
        );
    }
}

/// Watch `ring`'s directory every `every` and reload the ring when its state file changes
/// (another process rotated it); a state that fails to load is logged and the last good
/// keys stay. Needs a tokio runtime; dropping the [`Watcher`] stops it.
pub fn watch(
    ring: Arc<KeyRing>,
    every: Duration,
) -> Result<Watcher<RingReload>, WatchError<KeyRingError>> {
    let path = ring.dir().join(STATE_FILE);
    FileWatch::new([path])
        .interval(every)
        .limit(secmesh_tokens::keyring::state::MAX_STATE_LEN as u64)
        .spawn(Arc::new(RingReload(ring)))
}
