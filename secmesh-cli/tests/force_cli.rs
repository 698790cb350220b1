//! Key-writing commands (`keygen`, `audit keygen`, `ca issue`, `ca init`) refuse to replace an
//! existing file without `--force`, write nothing then, and replace with `--force` (private
//! keys still 0600). Through the real binary, on real files.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Refused: exit 2, the file named, `--force` suggested.
fn assert_refused(o: &Output, existing: &Path) {
    assert_eq!(code(o), 2, "{}", stderr(o));
    let err = stderr(o);
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains(s(existing)), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(o.stdout.is_empty());
}

fn keygen(alg: &str, private: &Path, jwks: &Path, force: bool) -> Output {
    let mut args = vec![
        "keygen",
        "--alg",
        alg,
        "--kid",
        "k1",
        "--private-out",
        s(private),
        "--jwks-out",
        s(jwks),
    ];
    if force {
        args.push("--force");
    }
    run(&args)
}

#[test]
fn keygen_refuses_existing_files_and_replaces_them_with_force() {
    for alg in ["EdDSA", "HS256"] {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("key");
        let jwks = dir.path().join("jwks.json");
        let o = keygen(alg, &private, &jwks, false);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let (old_key, old_jwks) = (
            std::fs::read(&private).unwrap(),
            std::fs::read(&jwks).unwrap(),
        );

        // Both exist: refused, nothing changed.
        assert_refused(&keygen(alg, &private, &jwks, false), &private);
        assert_eq!(std::fs::read(&private).unwrap(), old_key);
        assert_eq!(std::fs::read(&jwks).unwrap(), old_jwks);

        // Only the key set exists: refused before the private key is written.
        let fresh = dir.path().join("fresh.key");
        assert_refused(&keygen(alg, &fresh, &jwks, false), &jwks);
        assert!(!fresh.exists(), "a private key written although refused");

        // --force: both replaced, the private key 0600 even over a world-readable file.
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = keygen(alg, &private, &jwks, true);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_ne!(std::fs::read(&private).unwrap(), old_key);
        assert_ne!(std::fs::read(&jwks).unwrap(), old_jwks);
        assert_eq!(mode(&private), 0o600);
    }
}

#[test]
fn audit_keygen_refuses_existing_files_and_replaces_them_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("audit.key");
    let public = dir.path().join("audit.pub");
    let gen_key = |force: bool| {
        let mut args = vec![
            "audit",
            "keygen",
            "--private-out",
            s(&private),
            "--public-out",
            s(&public),
        ];
        if force {
            args.push("--force");
        }
        run(&args)
    };
    assert_eq!(code(&gen_key(false)), 0);
    let old = std::fs::read(&public).unwrap();
    assert_refused(&gen_key(false), &private);
    assert_eq!(std::fs::read(&public).unwrap(), old);
    std::fs::remove_file(&private).unwrap();
    // The public key alone is there: refused, no private key written.
    assert_refused(&gen_key(false), &public);
    assert!(!private.exists());
    let o = gen_key(true);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_ne!(std::fs::read(&public).unwrap(), old);
    assert_eq!(mode(&private), 0o600);
}

fn ca_init(dir: &Path, force: bool) -> Output {
    let mut args = vec!["ca", "init", "--dir", s(dir), "--trust-domain", "mesh.test"];
    if force {
        args.push("--force");
    }
    run(&args)
}

fn ca_issue(ca: &Path, cert: &Path, key: &Path, force: bool) -> Output {
    let mut args = vec![
        "ca",
        "issue",
        "--dir",
        s(ca),
        "--spiffe-id",
        "spiffe://mesh.test/orders",
        "--cert-out",
        s(cert),
        "--key-out",
        s(key),
    ];
    if force {
        args.push("--force");
    }
    run(&args)
}

#[test]
fn ca_init_and_issue_refuse_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    assert_eq!(code(&ca_init(&ca, false)), 0);
    let old_crt = std::fs::read(ca.join("ca.crt")).unwrap();

    // issue: refused over an existing key or certificate, nothing issued.
    let cert = dir.path().join("orders.crt");
    let key = dir.path().join("orders.key");
    let o = ca_issue(&ca, &cert, &key, false);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let serial = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let issued = std::fs::read_to_string(ca.join("issued.log")).unwrap();
    assert_refused(&ca_issue(&ca, &cert, &key, false), &key);
    std::fs::remove_file(&key).unwrap();
    assert_refused(&ca_issue(&ca, &cert, &key, false), &cert);
    assert!(!key.exists());
    assert_eq!(
        std::fs::read_to_string(ca.join("issued.log")).unwrap(),
        issued,
        "a certificate issued although refused"
    );
    let o = ca_issue(&ca, &cert, &key, true);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(mode(&key), 0o600);

    // init: refused with the same exit code as before, and now a hint.
    let o = ca_init(&ca, false);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("already holds a CA"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(ca.join("ca.crt")).unwrap(), old_crt);

    // init --force: a new CA in place, its key 0600, the old CA's lists gone.
    let o = ca_init(&ca, true);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_ne!(std::fs::read(ca.join("ca.crt")).unwrap(), old_crt);
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    assert!(!ca.join("issued.log").exists());
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&ca)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The old serial is unknown to the new CA; the new CA issues.
    let o = run(&["ca", "revoke", "--dir", s(&ca), "--serial", &serial]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let o = ca_issue(&ca, &cert, &key, true);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // init --force on a directory without a CA is a plain init.
    let other = dir.path().join("other");
    assert_eq!(code(&ca_init(&other, true)), 0);
    assert!(other.join("ca.key").exists());
}
