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
