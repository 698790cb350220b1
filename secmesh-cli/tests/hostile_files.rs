//! Every file the CLI reads is hostile (issue 11 §4): `/dev/zero` and a symlink to it, a FIFO
//! with no writer, a directory, a 2 GiB sparse file, a file one byte over its limit. Each is a
//! clear error naming the path, exit 2, promptly: never a hang, never an abort (134), never
//! gigabytes read. A file exactly at its limit is read (and then judged on its contents).
//! Private keys are written 0600, whatever the umask and whatever file was there before.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SMALL: u64 = 1 << 20;
const DOCUMENT: u64 = 16 << 20;

/// Run the binary with a deadline (generous: it is a bound, not a timing); a run that does not
/// finish in it is killed and fails the test.
fn secmesh(args: &[&str]) -> Output {
    secmesh_in(
        Command::new(env!("CARGO_BIN_EXE_secmesh"))
            .args(args)
            .stdin(Stdio::null()),
    )
}

fn secmesh_in(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run secmesh");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "secmesh hung: {}",
                String::from_utf8_lossy(&out.stderr).into_owned()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The hostile things a path may name, each made in `dir`: (label, path, what the error says).
fn hostile(dir: &Path, limit: u64) -> Vec<(&'static str, PathBuf, &'static str)> {
    let link = dir.join("zero-link");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let fifo = dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success(),
        "mkfifo"
    );
    let sub = dir.join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let sparse = dir.join("sparse");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let over = dir.join("over");
    std::fs::write(&over, vec![b' '; usize::try_from(limit).unwrap() + 1]).unwrap();
    vec![
        (
            "/dev/zero",
            PathBuf::from("/dev/zero"),
            "not a regular file",
        ),
        ("symlink to /dev/zero", link, "not a regular file"),
        ("FIFO without a writer", fifo, "not a regular file (a FIFO)"),
        ("directory", sub, "not a regular file (a directory)"),
        ("2 GiB sparse file", sparse, "larger than the limit"),
        ("one byte over", over, "larger than the limit"),
    ]
}

fn assert_refused(label: &str, path: &Path, why: &str, o: &Output) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{label}: {err}");
    assert!(err.contains(why), "{label}: {err}");
    assert!(err.contains(path.to_str().unwrap()), "{label}: {err}");
    assert_eq!(err.lines().count(), 1, "{label}: one line: {err}");
}

/// A token-shaped string (never verified: the key set fails first).
const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.e30.c2ln";

#[test]
fn key_sets_keys_and_certificates_refuse_hostile_files() {
    let dir = tempfile::tempdir().unwrap();
    for (label, p, why) in hostile(dir.path(), SMALL) {
        let path = p.to_str().unwrap();
        let runs: [&[&str]; 4] = [
            &["token", "verify", "--jwks", path, TOKEN],
            &["jws", "verify", "--jwk", path, TOKEN],
            &[
                "token", "mint", "--key", path, "--alg", "EdDSA", "--kid", "k", "--iss", "i",
                "--sub", "user:a", "--aud", "a", "--class", "fast",
            ],
            &[
                "ca",
                "revoke",
                "--dir",
                dir.path().to_str().unwrap(),
                "--cert",
                path,
            ],
        ];
        for args in runs {
            let o = secmesh(args);
            assert_refused(&format!("{label} {args:?}"), &p, why, &o);
        }
    }
}

#[test]
fn policies_refuse_hostile_files() {
    let dir = tempfile::tempdir().unwrap();
    for (label, p, why) in hostile(dir.path(), DOCUMENT) {
        let path = p.to_str().unwrap();
        let check = [
            "policy", "check", "--policy", path, "--sub", "user:a", "--verb", "read", "--object",
            "a",
        ];
        for args in [&check[..], &["policy", "lint", path][..]] {
            let o = secmesh(args);
            assert_refused(&format!("{label} {args:?}"), &p, why, &o);
            assert!(o.stdout.is_empty(), "{label}");
        }
    }
}

#[test]
fn a_file_exactly_at_the_limit_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // A JWKS of exactly 1 MiB: read, then judged (not JSON: padding).
    let jwks = dir.path().join("at-limit.json");
    let mut text = b"{\"keys\": []}".to_vec();
    text.resize(usize::try_from(SMALL).unwrap(), b' ');
    std::fs::write(&jwks, &text).unwrap();
    let o = secmesh(&["token", "verify", "--jwks", jwks.to_str().unwrap(), TOKEN]);
    assert!(!stderr(&o).contains("larger than"), "{}", stderr(&o));
    // A policy of exactly 16 MiB: one rule and padding, read and linted.
    let policy = dir.path().join("at-limit.toml");
    let mut text = b"[[rule]]\nid = \"a\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"read\"]\nobjects = [\"a\"]\n".to_vec();
    text.resize(usize::try_from(DOCUMENT).unwrap(), b'\n');
    std::fs::write(&policy, &text).unwrap();
    let o = secmesh(&["policy", "lint", policy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // One byte more is refused.
    text.push(b'\n');
    std::fs::write(&policy, &text).unwrap();
    let o = secmesh(&["policy", "lint", policy.to_str().unwrap()]);
    assert_refused("policy one over", &policy, "larger than the limit", &o);
}

#[test]
fn standard_input_is_read_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("k");
    let jwks = dir.path().join("jwks.json");
    let o = secmesh(&[
        "keygen",
        "--alg",
        "EdDSA",
        "--kid",
        "k",
        "--private-out",
        keys.to_str().unwrap(),
        "--jwks-out",
        jwks.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // `-` reads standard input: /dev/zero there is cut at the limit, not read for ever; a
    // file one byte over is refused; one exactly at the limit is read (and is no token).
    let over = dir.path().join("over");
    std::fs::write(&over, vec![b'a'; usize::try_from(SMALL).unwrap() + 1]).unwrap();
    let at = dir.path().join("at");
    std::fs::write(&at, vec![b'a'; usize::try_from(SMALL).unwrap()]).unwrap();
    for (stdin, code, why) in [
        (
            Path::new("/dev/zero"),
            2,
            "standard input: larger than the limit",
        ),
        (&over, 2, "standard input: larger than the limit"),
        (&at, 1, "too_large"),
    ] {
        let o = secmesh_in(
            Command::new(env!("CARGO_BIN_EXE_secmesh"))
                .args(["token", "verify", "--jwks", jwks.to_str().unwrap(), "-"])
                .stdin(std::fs::File::open(stdin).unwrap()),
        );
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
    }
    // A file named `-` is still reachable as `./-`.
    let o = secmesh_in(
        Command::new(env!("CARGO_BIN_EXE_secmesh"))
            .current_dir(dir.path())
            .args(["policy", "lint", "./-"]),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("./-"), "{}", stderr(&o));
}

#[test]
fn the_ca_directory_is_hostile_too() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let o = secmesh(&[
        "ca",
        "init",
        "--dir",
        ca.to_str().unwrap(),
        "--trust-domain",
        "mesh.test",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let issue = |out: &Path| {
        secmesh(&[
            "ca",
            "issue",
            "--dir",
            ca.to_str().unwrap(),
            "--spiffe-id",
            "spiffe://mesh.test/a",
            "--cert-out",
            out.join("a.crt").to_str().unwrap(),
            "--key-out",
            out.join("a.key").to_str().unwrap(),
        ])
    };
    // The certificate, the key and the issued log replaced by hostile files, one at a time.
    for name in ["ca.crt", "ca.key", "issued.log"] {
        let p = ca.join(name);
        let saved = std::fs::read(&p).ok();
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        let o = issue(dir.path());
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
        std::fs::remove_file(&p).unwrap();
        assert!(
            Command::new("mkfifo").arg(&p).status().unwrap().success(),
            "mkfifo"
        );
        let o = issue(dir.path());
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains("FIFO"), "{}", stderr(&o));
        std::fs::remove_file(&p).unwrap();
        if let Some(b) = saved {
            std::fs::write(&p, b).unwrap();
        }
    }
    let o = issue(dir.path());
    assert_eq!(o.status.code(), Some(0), "restored: {}", stderr(&o));
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Run secmesh with umask 000 (through `sh`, as a user's shell would).
fn secmesh_umask0(args: &[&str]) -> Output {
    secmesh_in(
        Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_secmesh"))
            .args(args),
    )
}

#[test]
fn private_keys_are_0600_whatever_the_umask_and_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
    // Pre-existing world-readable files are replaced by private ones (with --force: without
    // it, an existing output file is refused).
    for n in ["ed.key", "hs.key", "hs.jwks", "svid.key"] {
        std::fs::write(d(n), "old").unwrap();
        std::fs::set_permissions(d(n), std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    for (alg, key, jwks) in [
        ("EdDSA", d("ed.key"), d("ed.jwks")),
        ("ES256", d("es.key"), d("es.jwks")),
        ("HS256", d("hs.key"), d("hs.jwks")),
    ] {
        let o = secmesh_umask0(&[
            "keygen",
            "--alg",
            alg,
            "--kid",
            "k",
            "--private-out",
            &s(&key),
            "--jwks-out",
            &s(&jwks),
            "--force",
        ]);
        assert_eq!(o.status.code(), Some(0), "{alg}: {}", stderr(&o));
        assert_eq!(mode(&key), 0o600, "{alg} private key");
        if alg == "HS256" {
            assert_eq!(mode(&jwks), 0o600, "the HMAC key set holds the secret");
        } else {
            assert_eq!(mode(&jwks), 0o644, "{alg} public key set");
        }
    }
    let ca = d("ca");
    let o = secmesh_umask0(&[
        "ca",
        "init",
        "--dir",
        &s(&ca),
        "--trust-domain",
        "mesh.test",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    assert_eq!(mode(&ca.join("ca.crt")), 0o644);
    for key in [d("svid.key"), d("fresh-svid.key")] {
        let o = secmesh_umask0(&[
            "ca",
            "issue",
            "--dir",
            &s(&ca),
            "--spiffe-id",
            "spiffe://mesh.test/a",
            "--cert-out",
            &s(&d("svid.crt")),
            "--key-out",
            &s(&key),
            "--force",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(mode(&key), 0o600, "{key:?}");
        assert!(
            std::fs::read_to_string(&key)
                .unwrap()
                .contains("PRIVATE KEY")
        );
    }
    // No temporary files are left beside them.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn hostile_names_are_escaped_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("x\u{1b}[2J\u{202e}\u{9b}31m.toml");
    std::os::unix::fs::symlink("/dev/zero", &name).unwrap();
    let o = secmesh(&["policy", "lint", name.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for c in ['\u{1b}', '\u{202e}', '\u{9b}'] {
        assert!(!err.contains(c), "{c:?} raw in {err:?}");
    }
    assert!(err.contains("\\u{202e}"), "{err}");
}
