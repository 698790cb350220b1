//! The TLS material files are hostile like every input (issue 11 §4): a certificate, key, CA
//! bundle or CRL replaced by `/dev/zero` (or a symlink to it), a FIFO with no writer, a
//! directory or a 2 GiB sparse file is a prompt error naming the file; a reload that meets one
//! keeps the material in use.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use secmesh_tls::ca::Ca;
use secmesh_tls::config::{TlsFiles, Workload};

/// Run `f` on a thread with a deadline (a bound, not a timing): a hang fails the test.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("hung")
}

fn make_hostile(kind: &str, p: &Path) {
    let _ = std::fs::remove_file(p);
    match kind {
        "zero" => std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
        "fifo" => assert!(
            std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .unwrap()
                .success()
        ),
        "dir" => std::fs::create_dir(p).unwrap(),
        "sparse" => std::fs::File::create(p).unwrap().set_len(2 << 30).unwrap(),
        _ => unreachable!(),
    }
}

fn restore(p: &Path, saved: &[u8]) {
    let _ = std::fs::remove_file(p);
    let _ = std::fs::remove_dir(p);
    std::fs::write(p, saved).unwrap();
}

#[test]
fn hostile_material_files_are_refused_and_the_old_material_stays() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse().unwrap()).unwrap();
    let svid = ca
        .issue(&"spiffe://mesh.test/a".parse().unwrap(), 1)
        .unwrap();
    let d = |n: &str| dir.path().join(n);
    std::fs::write(d("a.crt"), &svid.cert_pem).unwrap();
    std::fs::write(d("a.key"), &svid.key_pem).unwrap();
    std::fs::write(d("crl.pem"), ca.crl(1).unwrap()).unwrap();
    let files =
        || TlsFiles::new(d("a.crt"), d("a.key"), dir.path().join("ca/ca.crt")).crl(d("crl.pem"));
    let workload = Workload::load(files()).unwrap();
    let paths: [PathBuf; 4] = [
        d("a.crt"),
        d("a.key"),
        dir.path().join("ca/ca.crt"),
        d("crl.pem"),
    ];
    for p in &paths {
        let saved = std::fs::read(p).unwrap();
        for (kind, why) in [
            ("zero", "not a regular file"),
            ("fifo", "not a regular file (a FIFO)"),
            ("dir", "not a regular file (a directory)"),
            ("sparse", "larger than the limit"),
        ] {
            make_hostile(kind, p);
            let f = files();
            let err = bounded(move || Workload::load(f).map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{kind} {p:?}: {err}");
            assert!(
                err.contains(p.file_name().unwrap().to_str().unwrap()),
                "{err}"
            );
            let w = workload.clone();
            assert!(bounded(move || w.reload()).is_err(), "{kind} {p:?}");
            assert_eq!(workload.id().as_str(), "spiffe://mesh.test/a");
            restore(p, &saved);
        }
    }
    workload.reload().unwrap();
}

#[test]
fn the_ca_key_is_private_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    Ca::init(&ca_dir, "mesh.test".parse().unwrap()).unwrap();
    let mode = |n: &str| {
        std::fs::metadata(ca_dir.join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("ca.key"), 0o600);
    assert_eq!(mode("ca.crt"), 0o644);
    let key = std::fs::read(ca_dir.join("ca.key")).unwrap();
    assert!(Ca::init(&ca_dir, "mesh.test".parse().unwrap()).is_err());
    assert_eq!(std::fs::read(ca_dir.join("ca.key")).unwrap(), key);
    // A hostile log in the directory: issuing fails promptly, nothing is written to it.
    make_hostile("fifo", &ca_dir.join("issued.log"));
    let ca = Ca::open(&ca_dir).unwrap();
    let err = bounded(move || {
        ca.issue(&"spiffe://mesh.test/a".parse().unwrap(), 1)
            .map(|_| ())
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("FIFO"), "{err}");
}
