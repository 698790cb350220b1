//! The file watcher with real files: changes are picked up, an atomic rename-replace and a
//! delete-then-recreate are seen, garbage keeps the last good value, and the errors are typed.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secmesh_fs::FileError;
use secmesh_fs::watch::{FileWatch, Reload, Snapshot, Stamps, WatchError};

/// The consumer: the last good pair of numbers (one per file), and what failed.
#[derive(Default)]
struct Pair {
    good: Mutex<Option<(u64, u64)>>,
    reloads: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a number: {0:?}")]
struct NotANumber(String);

fn number(bytes: &[u8]) -> Result<u64, NotANumber> {
    let text = String::from_utf8_lossy(bytes);
    text.trim()
        .parse()
        .map_err(|_| NotANumber(text.into_owned()))
}

impl Reload for Pair {
    type Error = NotANumber;
    fn reload(&self, files: &Snapshot) -> Result<(), NotANumber> {
        let pair = (number(files.file(0))?, number(files.file(1))?);
        *self.good.lock().unwrap() = Some(pair);
        Ok(())
    }
    fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::SeqCst);
    }
    fn failed(&self, error: &WatchError<NotANumber>) {
        self.failures.lock().unwrap().push(error.to_string());
    }
}

impl Pair {
    fn good(&self) -> Option<(u64, u64)> {
        *self.good.lock().unwrap()
    }
    fn failures(&self) -> usize {
        self.failures.lock().unwrap().len()
    }
}

/// Poll with a bound on the number of tries (a bound, not a timing: a hang fails the test).
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn watch(dir: &Path, pair: &Arc<Pair>) -> secmesh_fs::watch::Watcher<Pair> {
    FileWatch::new([dir.join("a"), dir.join("b")])
        .interval(Duration::from_millis(10))
        .debounce(Duration::from_millis(5))
        .spawn(Arc::clone(pair))
        .unwrap()
}

#[tokio::test]
async fn the_first_check_loads_and_a_rename_replace_of_the_same_size_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), "1").unwrap();
    std::fs::write(dir.path().join("b"), "2").unwrap();
    let pair = Arc::new(Pair::default());
    let watcher = watch(dir.path(), &pair);
    assert!(eventually(|| pair.good() == Some((1, 2))).await);

    // Same length, written elsewhere and renamed into place (a new inode).
    replace(&dir.path().join("a"), "3");
    assert!(eventually(|| pair.good() == Some((3, 2))).await);
    assert_eq!(pair.failures(), 0);
    watcher.shutdown().await;
}

#[tokio::test]
async fn garbage_keeps_the_last_good_value_until_the_file_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), "1").unwrap();
    std::fs::write(dir.path().join("b"), "2").unwrap();
    let pair = Arc::new(Pair::default());
    let watcher = watch(dir.path(), &pair);
    assert!(eventually(|| pair.good() == Some((1, 2))).await);

    replace(&dir.path().join("b"), "two");
    assert!(eventually(|| pair.failures() == 1).await);
    assert_eq!(pair.good(), Some((1, 2)), "the last good value stays");
    assert!(pair.failures.lock().unwrap()[0].contains("\"two\""));

    replace(&dir.path().join("b"), "22");
    assert!(eventually(|| pair.good() == Some((1, 22))).await);
    // The bad contents were reported once, not at every tick.
    assert_eq!(pair.failures(), 1);
    drop(watcher);
}

#[tokio::test]
async fn a_deleted_file_is_a_typed_read_error_and_its_return_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::write(&a, "1").unwrap();
    std::fs::write(dir.path().join("b"), "2").unwrap();
    let pair = Arc::new(Pair::default());
    let watcher = watch(dir.path(), &pair);
    assert!(eventually(|| pair.good() == Some((1, 2))).await);

    std::fs::remove_file(&a).unwrap();
    assert!(eventually(|| pair.failures() == 1).await);
    assert_eq!(pair.good(), Some((1, 2)));
    match watcher.reload_now() {
        Err(WatchError::Read(FileError::Io { path, source })) => {
            assert_eq!(path, a);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }

    std::fs::write(&a, "5").unwrap();
    assert!(eventually(|| pair.good() == Some((5, 2))).await);
    watcher.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn hostile_replacements_are_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::write(&a, "1").unwrap();
    std::fs::write(dir.path().join("b"), "2").unwrap();
    let pair = Arc::new(Pair::default());
    let watcher = FileWatch::new([a.clone(), dir.path().join("b")])
        .interval(Duration::from_millis(10))
        .limit(16)
        .spawn(Arc::clone(&pair))
        .unwrap();
    assert!(eventually(|| pair.good() == Some((1, 2))).await);

    std::fs::remove_file(&a).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &a).unwrap();
    assert!(matches!(
        watcher.reload_now(),
        Err(WatchError::Read(FileError::NotRegular { .. }))
    ));
    std::fs::remove_file(&a).unwrap();
    std::fs::write(&a, "9".repeat(17)).unwrap();
    assert!(matches!(
        watcher.reload_now(),
        Err(WatchError::Read(FileError::TooLarge { limit: 16, .. }))
    ));
    assert_eq!(pair.good(), Some((1, 2)));
    watcher.shutdown().await;
}

#[tokio::test]
async fn a_watch_since_the_loaded_stamps_does_not_reload_until_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [dir.path().join("a"), dir.path().join("b")];
    std::fs::write(&paths[0], "1").unwrap();
    std::fs::write(&paths[1], "2").unwrap();
    let loaded = Snapshot::read(&paths, 1024).unwrap();
    assert_eq!(loaded.stamps(), &Stamps::of(&paths));
    let pair = Arc::new(Pair::default());
    let watcher = FileWatch::new(paths.clone())
        .interval(Duration::from_millis(10))
        .since(loaded.stamps().clone())
        .spawn(Arc::clone(&pair))
        .unwrap();
    replace(&paths[1], "4");
    assert!(eventually(|| pair.good() == Some((1, 4))).await);
    // Only the change was loaded: the unchanged files at start were not.
    assert_eq!(pair.reloads.load(Ordering::SeqCst), 1);
    watcher.shutdown().await;
}

#[test]
fn spawning_outside_a_runtime_is_a_typed_error() {
    let err = FileWatch::new(["/nonexistent"])
        .spawn(Arc::new(Pair::default()))
        .unwrap_err();
    assert!(matches!(err, WatchError::NoRuntime));
}
