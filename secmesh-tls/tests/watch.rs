//! The workload's file watch with real files: a renewed SVID written by rename is swapped in,
//! garbage and a deleted file keep the material in use, and the file's return is loaded.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use secmesh_tls::ca::Ca;
use secmesh_tls::config::{TlsFiles, Workload};

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

#[tokio::test]
async fn renewals_are_swapped_in_and_bad_files_keep_the_material_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse().unwrap()).unwrap();
    let id = "spiffe://mesh.test/orders".parse().unwrap();
    let first = ca.issue(&id, 1).unwrap();
    let (crt, key) = (dir.path().join("o.crt"), dir.path().join("o.key"));
    std::fs::write(&crt, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let workload = Workload::load(TlsFiles::new(&crt, &key, dir.path().join("ca/ca.crt"))).unwrap();
    let watch = workload.watch(Duration::from_millis(10)).unwrap();
    let before = workload.thumbprint();

    // Garbage in the certificate file: the material in use stays.
    replace(
        &crt,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    );
    assert!(workload.reload().is_err());
    assert_eq!(workload.thumbprint(), before);

    // Deleted: still the same material; written again (a renewal, key first): swapped in.
    std::fs::remove_file(&crt).unwrap();
    assert!(workload.reload().is_err());
    let generation = workload.generation();
    let renewed = ca.issue(&id, 1).unwrap();
    replace(&key, &renewed.key_pem);
    std::fs::write(&crt, &renewed.cert_pem).unwrap();
    let expected = secmesh_tls::svid::thumbprint_pem(&renewed.cert_pem).unwrap();
    assert!(eventually(|| workload.thumbprint() == expected).await);
    assert!(workload.generation() > generation);
    assert_eq!(workload.id().as_str(), "spiffe://mesh.test/orders");
    watch.shutdown().await;
}

#[test]
fn a_watch_outside_a_tokio_runtime_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse().unwrap()).unwrap();
    let svid = ca
        .issue(&"spiffe://mesh.test/a".parse().unwrap(), 1)
        .unwrap();
    std::fs::write(dir.path().join("a.crt"), &svid.cert_pem).unwrap();
    std::fs::write(dir.path().join("a.key"), &svid.key_pem).unwrap();
    let workload = Workload::load(TlsFiles::new(
        dir.path().join("a.crt"),
        dir.path().join("a.key"),
        dir.path().join("ca/ca.crt"),
    ))
    .unwrap();
    assert!(matches!(
        workload.watch(Duration::from_millis(10)),
        Err(secmesh_fs::watch::WatchError::NoRuntime)
    ));
}
