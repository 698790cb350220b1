//! The policy watcher with a real file: changes are picked up, bad files are refused and the
//! last good policy stays, an atomic rename is seen.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use secmesh_core::policy::SharedPolicy;
use secmesh_tower::reload::PolicyWatcher;

fn rules(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[rule]]\nid = \"r{i}\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"read\"]\nobjects = [\"o{i}/**\"]\n"
            )
        })
        .collect()
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn reloads_on_change_and_keeps_the_last_good_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, rules(1)).unwrap();
    let shared = SharedPolicy::default();
    let watcher = PolicyWatcher::spawn(&path, shared.clone(), Duration::from_millis(20)).unwrap();
    assert_eq!(shared.current().rules().len(), 1);

    std::fs::write(&path, rules(3)).unwrap();
    assert!(eventually(|| shared.current().rules().len() == 3).await);

    std::fs::write(&path, "[[rule]]\nid = \"broken\"\neffect = \"maybe\"\n").unwrap();
    assert!(eventually(|| watcher.last_error().is_some()).await);
    assert_eq!(shared.current().rules().len(), 3, "last good policy kept");
    assert!(watcher.last_error().unwrap().contains("policy.toml"));

    // Written elsewhere and renamed into place, as deployment tools do.
    let tmp = dir.path().join("policy.toml.new");
    std::fs::write(&tmp, rules(5)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(eventually(|| shared.current().rules().len() == 5).await);
    assert!(watcher.last_error().is_none());
}

#[tokio::test]
async fn a_missing_file_at_start_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = PolicyWatcher::spawn(
        dir.path().join("absent.toml"),
        SharedPolicy::default(),
        Duration::from_millis(20),
    )
    .unwrap_err();
    assert!(err.to_string().contains("absent.toml"));
}

/// Put a file made by `make` at `p` by rename, as a deployment does: the watcher never sees it
/// half written (a 16 MiB file written in place is, for a while, a shorter file of newlines,
/// which is a valid empty policy).
fn replace(p: &std::path::Path, make: impl FnOnce(&std::path::Path)) {
    let tmp = p.with_extension("toml.new");
    make(&tmp);
    std::fs::rename(&tmp, p).unwrap();
}

/// Reload in a blocking task with a deadline (a bound, not a timing): a hang fails the test.
async fn reload_bounded(watcher: &std::sync::Arc<PolicyWatcher>) -> Result<(), String> {
    let w = watcher.clone();
    let task = tokio::task::spawn_blocking(move || w.reload_now().map_err(|e| e.to_string()));
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("reload hung")
        .unwrap()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_replacements_keep_the_last_good_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, rules(2)).unwrap();
    let shared = SharedPolicy::default();
    let watcher = std::sync::Arc::new(
        PolicyWatcher::spawn(&path, shared.clone(), Duration::from_millis(20)).unwrap(),
    );
    let max = secmesh_core::policy::parse::MAX_POLICY_LEN;
    type Make = Box<dyn Fn(&std::path::Path)>;
    let variants: Vec<(&str, Make, &str)> = vec![
        (
            "symlink to /dev/zero",
            Box::new(|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap()),
            "not a regular file",
        ),
        (
            "FIFO without a writer",
            Box::new(|p| {
                assert!(
                    std::process::Command::new("mkfifo")
                        .arg(p)
                        .status()
                        .unwrap()
                        .success()
                )
            }),
            "not a regular file (a FIFO)",
        ),
        (
            "directory",
            Box::new(|p| std::fs::create_dir(p).unwrap()),
            "not a regular file (a directory)",
        ),
        (
            "2 GiB sparse file",
            Box::new(|p| {
                replace(p, |tmp| {
                    std::fs::File::create(tmp)
                        .unwrap()
                        .set_len(2 << 30)
                        .unwrap()
                })
            }),
            "larger than the limit",
        ),
        (
            "one byte over the limit",
            Box::new(move |p| replace(p, |tmp| std::fs::write(tmp, vec![b'\n'; max + 1]).unwrap())),
            "larger than the limit",
        ),
        (
            "more rules than a policy may hold",
            Box::new(|p| replace(p, |tmp| std::fs::write(tmp, rules(10_001)).unwrap())),
            "more than 10000 rules",
        ),
    ];
    for (label, make, why) in &variants {
        // Replaced by rename, as a deployment would, or in place.
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&path);
        make(&path);
        let err = reload_bounded(&watcher).await.unwrap_err();
        assert!(err.contains(why), "{label}: {err}");
        assert!(err.contains("policy.toml"), "{label}: {err}");
        assert_eq!(shared.current().rules().len(), 2, "{label}: last good kept");
        // The watcher's own tick meets the same file and reports it, without hanging.
        assert!(
            eventually(|| watcher.last_error().is_some_and(|e| e.contains(why))).await,
            "{label}"
        );
        assert_eq!(shared.current().rules().len(), 2, "{label}: last good kept");
    }
    // A file exactly at the limit is read (and judged: blank lines are an empty policy).
    let _ = std::fs::remove_file(&path);
    let mut text = rules(4).into_bytes();
    text.resize(max, b'\n');
    std::fs::write(&path, &text).unwrap();
    reload_bounded(&watcher).await.unwrap();
    assert_eq!(shared.current().rules().len(), 4);
    assert!(watcher.last_error().is_none());
}

#[tokio::test]
async fn a_deleted_policy_keeps_the_last_good_one_until_it_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, rules(2)).unwrap();
    let shared = SharedPolicy::default();
    let watcher = PolicyWatcher::spawn(&path, shared.clone(), Duration::from_millis(20)).unwrap();

    std::fs::remove_file(&path).unwrap();
    assert!(eventually(|| watcher.last_error().is_some()).await);
    assert!(watcher.last_error().unwrap().starts_with("cannot read "));
    assert_eq!(shared.current().rules().len(), 2, "last good policy kept");

    std::fs::write(&path, rules(4)).unwrap();
    assert!(eventually(|| shared.current().rules().len() == 4).await);
    assert!(watcher.last_error().is_none());
}
