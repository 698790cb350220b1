//! Watching files and reloading them without a restart (the `watch` feature): the one helper
//! behind the policy reload (`secmesh-tower`) and the TLS material reload (`secmesh-tls`).
//!
//! A [`FileWatch`] polls the [`Stamps`] of a set of files (size, modification and change times
//! and, on Unix, device and inode: an atomic rename-replace is always seen, even within one
//! clock tick and at the same size). When they differ from those of the last attempt it waits
//! a short debounce, checks they are settled, reads every file through [`read`](crate::read)
//! (regular files only, bounded), and hands the [`Snapshot`] to a [`Reload`] on a blocking
//! thread. A file that is missing for a while (deleted, then written again), unreadable,
//! hostile or rejected by the reload is reported once through [`Reload::failed`] with a typed
//! [`WatchError`]; the consumer keeps its last good value, and the set is tried again when its
//! stamps change. The watch runs as a tokio task; [`Watcher::shutdown`] stops it and waits,
//! dropping the [`Watcher`] stops it too.
//!
//! Polling is deliberate: it is portable, needs no platform watcher, and sees replacements by
//! rename (which inotify-style watchers of the old file miss) with one `stat` per file per tick.
//!
//! # Example
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use secmesh_fs::watch::{FileWatch, Reload, Snapshot};
//!
//! /// Keeps the last good number written in the file.
//! #[derive(Default)]
//! struct Number(Mutex<u64>);
//!
//! impl Reload for Number {
//!     type Error = std::num::ParseIntError;
//!     fn reload(&self, files: &Snapshot) -> Result<(), Self::Error> {
//!         let n = String::from_utf8_lossy(files.file(0)).trim().parse()?;
//!         *self.0.lock().unwrap() = n;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("n.txt");
//! std::fs::write(&path, "7")?;
//! let number = Arc::new(Number::default());
//! let watcher = FileWatch::new([&path])
//!     .interval(Duration::from_millis(20))
//!     .spawn(number.clone())?;
//! watcher.reload_now()?;
//! assert_eq!(*number.0.lock().unwrap(), 7);
//!
//! std::fs::write(&path, "not a number")?;
//! assert!(watcher.reload_now().is_err());
//! assert_eq!(*number.0.lock().unwrap(), 7, "the last good value stays");
//! watcher.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::FileError;

/// What is compared to see that a file changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    unix: (u64, u64, i64, i64),
}

impl Stamp {
    /// The stamp of `path` now (following symlinks); `None` when it cannot be `stat`ed.
    pub fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let unix = {
            use std::os::unix::fs::MetadataExt as _;
            (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
        };
        Some(Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            unix,
        })
    }
}

/// The stamps of a set of files, in order (`None` for a file that is not there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stamps(Vec<Option<Stamp>>);

impl Stamps {
    /// The stamps of `paths` now.
    pub fn of<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Stamps {
        Stamps(paths.into_iter().map(|p| Stamp::of(p.as_ref())).collect())
    }
}

/// The contents of every watched file, read at one time, and their stamps taken just before
/// reading (so a file changed during the read is read again at the next check).
#[derive(Clone, Debug)]
pub struct Snapshot {
    stamps: Stamps,
    files: Vec<Vec<u8>>,
}

impl Snapshot {
    /// Read every file of `paths`, each at most `limit` bytes, regular files only.
    pub fn read<P: AsRef<Path>>(paths: &[P], limit: u64) -> Result<Snapshot, FileError> {
        let stamps = Stamps::of(paths);
        let files = paths
            .iter()
            .map(|p| crate::read(p, limit))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Snapshot { stamps, files })
    }

    /// The contents of the `i`-th file (empty past the end).
    pub fn file(&self, i: usize) -> &[u8] {
        self.files.get(i).map_or(&[], Vec::as_slice)
    }

    /// The stamps the files had when they were read.
    pub fn stamps(&self) -> &Stamps {
        &self.stamps
    }
}

/// Why a reload did not happen; the consumer's last good value stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError<E> {
    /// A file could not be read: missing, not a regular file, too large, unreadable.
    #[error(transparent)]
    Read(FileError),
    /// The files were read and the [`Reload`] refused their contents.
    #[error(transparent)]
    Rejected(E),
    /// [`FileWatch::spawn`] was called outside a tokio runtime.
    #[error("the file watch needs a tokio runtime")]
    NoRuntime,
}

/// What a [`FileWatch`] reloads: parse the files and swap the result in, or refuse them.
pub trait Reload: Send + Sync + 'static {
    /// Why the contents were refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Build the new value from the files' contents and swap it in.
    fn reload(&self, files: &Snapshot) -> Result<(), Self::Error>;

    /// Called after a successful reload (from the watch or [`Watcher::reload_now`]).
    fn reloaded(&self) {}

    /// Called when a reload failed (the last good value stays).
    fn failed(&self, error: &WatchError<Self::Error>) {
        let _ = error;
    }
}

/// The files to watch and how; [`spawn`](Self::spawn) starts the watch.
#[derive(Clone, Debug)]
#[must_use]
pub struct FileWatch {
    paths: Vec<PathBuf>,
    interval: Duration,
    debounce: Duration,
    limit: u64,
    since: Option<Stamps>,
}

impl FileWatch {
    /// Watch `paths` (read together, in this order), by default every second with a 50 ms
    /// debounce and reads of at most [`DOCUMENT`](crate::DOCUMENT) bytes per file.
    pub fn new<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> FileWatch {
        FileWatch {
            paths: paths.into_iter().map(Into::into).collect(),
            interval: Duration::from_secs(1),
            debounce: Duration::from_millis(50),
            limit: crate::DOCUMENT,
            since: None,
        }
    }

    /// How often the files' stamps are checked.
    pub fn interval(mut self, every: Duration) -> FileWatch {
        self.interval = every;
        self
    }

    /// How long the stamps must stay the same after a change before the files are read (a
    /// writer that writes in place is given the time to finish).
    pub fn debounce(mut self, wait: Duration) -> FileWatch {
        self.debounce = wait;
        self
    }

    /// The most bytes read from any one file.
    pub fn limit(mut self, bytes: u64) -> FileWatch {
        self.limit = bytes;
        self
    }

    /// The stamps of the files the consumer already loaded (from [`Snapshot::stamps`]): the
    /// watch reloads only once they change. Without it, the first check reloads.
    pub fn since(mut self, stamps: Stamps) -> FileWatch {
        self.since = Some(stamps);
        self
    }

    /// Start the watch as a task on the current tokio runtime.
    pub fn spawn<R: Reload>(self, reload: Arc<R>) -> Result<Watcher<R>, WatchError<R::Error>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
        let shared = Arc::new(Shared {
            paths: self.paths,
            limit: self.limit,
            reload,
            seen: Mutex::new(self.since),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = runtime.spawn(run(
            Arc::clone(&shared),
            self.interval,
            self.debounce,
            stopped,
        ));
        Ok(Watcher {
            shared,
            stop,
            task: Some(task),
        })
    }
}

struct Shared<R: Reload> {
    paths: Vec<PathBuf>,
    limit: u64,
    reload: Arc<R>,
    /// The stamps of the last attempt, good or bad. The lock also serializes attempts, so two
    /// concurrent ones cannot swap in older contents last.
    seen: Mutex<Option<Stamps>>,
}

impl<R: Reload> Shared<R> {
    fn changed(&self) -> Option<Stamps> {
        let now = Stamps::of(&self.paths);
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        (seen.as_ref() != Some(&now)).then_some(now)
    }

    fn attempt(&self) -> Result<(), WatchError<R::Error>> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let result = match Snapshot::read(&self.paths, self.limit) {
            Ok(snapshot) => {
                *seen = Some(snapshot.stamps.clone());
                self.reload.reload(&snapshot).map_err(WatchError::Rejected)
            }
            Err(e) => {
                *seen = Some(Stamps::of(&self.paths));
                Err(WatchError::Read(e))
            }
        };
        drop(seen);
        match &result {
            Ok(()) => self.reload.reloaded(),
            Err(e) => self.reload.failed(e),
        }
        result
    }
}

async fn run<R: Reload>(
    shared: Arc<Shared<R>>,
    interval: Duration,
    debounce: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    // Waits `d`; false once the watch is told to stop (or its handle is gone).
    let mut wait = async move |d: Duration| -> bool {
        tokio::time::timeout(d, stopped.changed()).await.is_err()
    };
    loop {
        if !wait(interval).await {
            return;
        }
        let Some(stamps) = shared.changed() else {
            continue;
        };
        if !debounce.is_zero() {
            if !wait(debounce).await {
                return;
            }
            if Stamps::of(&shared.paths) != stamps {
                // Still being written: look again at the next tick.
                continue;
            }
        }
        let s = Arc::clone(&shared);
        // Reading and parsing is blocking work; its outcome goes to `Reload::failed`.
        let _ = tokio::task::spawn_blocking(move || s.attempt()).await;
    }
}

/// A running watch. Dropping it stops the watch; [`shutdown`](Self::shutdown) also waits for
/// it to finish.
pub struct Watcher<R: Reload> {
    shared: Arc<Shared<R>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl<R: Reload> fmt::Debug for Watcher<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("paths", &self.shared.paths)
            .finish_non_exhaustive()
    }
}

impl<R: Reload> Watcher<R> {
    /// Read the files and reload now, whatever their stamps say (blocking: call it from
    /// `spawn_blocking` on a busy runtime).
    pub fn reload_now(&self) -> Result<(), WatchError<R::Error>> {
        self.shared.attempt()
    }

    /// The files watched.
    pub fn paths(&self) -> &[PathBuf] {
        &self.shared.paths
    }

    /// Stop the watch and wait until its task has finished (a reload under way completes).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl<R: Reload> Drop for Watcher<R> {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
