//! A full disk (a real 64 KiB tmpfs): a failed write never leaves a partial line, the log
//! verifies (open tail) at every failure, and once space comes back writing continues and the
//! whole chain verifies strictly. Needs `mount` (root); outside CI a machine without it skips
//! loudly, in CI (`CI=true`) it must run.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use secmesh_audit::chain::AuditKey;
use secmesh_audit::event::{AuditEvent, Direction};
use secmesh_audit::sink::{Fsync, JsonLinesConfig, JsonLinesSink, Sink};
use secmesh_audit::verify::Verifier;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Option<Tmpfs> {
        Tmpfs::mount_sized(dir, "64k")
    }

    fn mount_sized(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Tmpfs(dir.to_path_buf()));
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: this test must be able to mount a tmpfs"
        );
        eprintln!(
            "\n!!!!!!!! SKIPPED full_disk: cannot mount a tmpfs here (not root?); run as root or in CI !!!!!!!!\n"
        );
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn events(n: usize, size: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            let mut e = AuditEvent::now("orders", Direction::In);
            e.object = Some(format!("orders/{i}/{}", "x".repeat(size)));
            e
        })
        .collect()
}

fn no_partial_line(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.is_empty() || bytes.ends_with(b"\n"), "a partial line");
}

fn run(fsync: Fsync) {
    let outer = tempfile::tempdir().unwrap();
    let Some(mount) = Tmpfs::mount(outer.path()) else {
        return;
    };
    let dir = &mount.0;
    let key = AuditKey::generate().unwrap();
    let path = dir.join("orders.jsonl");
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; 24 << 10]).unwrap();
    let config = JsonLinesConfig::default()
        .with_key(AuditKey::from_pem(&key.to_pem()).unwrap())
        .with_service("orders")
        .with_fsync(fsync)
        .with_checkpoints(10, None);
    let mut sink = JsonLinesSink::open(&path, config).unwrap();
    let verifier = Verifier::new(Some(key.public_key()))
        .service("orders")
        .allow_open_tail(true);

    // Write until the disk is full, then keep trying: every failure leaves a sound file.
    let mut written = 0u64;
    let mut failures = 0;
    for round in 0..2_000 {
        match sink.write_batch(&mut events(5, 40 + round % 300)) {
            Ok(()) => {
                assert_eq!(
                    failures, 0,
                    "a write succeeded after a failure with no space freed"
                );
                written += 5;
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                failures += 1;
                no_partial_line(&path);
                let r = verifier.verify_files(&[&path]).unwrap();
                assert_eq!(
                    r.events, written,
                    "nothing of a failed batch is in the file"
                );
                if failures == 20 {
                    break;
                }
            }
        }
    }
    assert_eq!(failures, 20, "the disk never filled");
    assert!(written > 0);

    // Space comes back: writing continues on the same chain.
    std::fs::remove_file(&filler).unwrap();
    for _ in 0..10 {
        sink.write_batch(&mut events(5, 40)).unwrap();
        written += 5;
    }
    sink.sync().unwrap();
    sink.close().unwrap();
    no_partial_line(&path);
    let r = Verifier::new(Some(key.public_key()))
        .service("orders")
        .verify_files(&[&path])
        .unwrap();
    assert_eq!(r.events, written);
    assert!(r.closed);
}

#[test]
fn a_full_disk_never_corrupts_the_log_fsync_per_batch() {
    run(Fsync::PerBatch);
}

#[test]
fn a_full_disk_never_corrupts_the_log_fsync_every_second() {
    run(Fsync::EveryMillis(1000));
}

/// A batch larger than the sink's spill size goes out in pieces before it ends; when a later
/// piece fails, nothing of the batch stays in the file (the pieces written are cut off) and
/// the chain continues from the last good record once space comes back.
#[test]
fn a_failure_after_a_spilled_piece_leaves_nothing_of_the_batch() {
    let outer = tempfile::tempdir().unwrap();
    let Some(mount) = Tmpfs::mount_sized(outer.path(), "1m") else {
        return;
    };
    let dir = &mount.0;
    let key = AuditKey::generate().unwrap();
    let path = dir.join("orders.jsonl");
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; 512 << 10]).unwrap();
    let config = JsonLinesConfig::default()
        .with_key(AuditKey::from_pem(&key.to_pem()).unwrap())
        .with_service("orders")
        .with_fsync(Fsync::PerBatch)
        .with_checkpoints(100, None);
    let mut sink = JsonLinesSink::open(&path, config).unwrap();
    sink.write_batch(&mut events(10, 100)).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();

    // About 1 MiB of lines: the first pieces fit, a later one does not.
    let e = sink.write_batch(&mut events(1000, 1000)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
    no_partial_line(&path);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
    let r = Verifier::new(Some(key.public_key()))
        .service("orders")
        .allow_open_tail(true)
        .verify_files(&[&path])
        .unwrap();
    assert_eq!(r.events, 10, "nothing of the failed batch is in the file");

    // Space comes back: a large batch (in pieces) continues the same chain.
    std::fs::remove_file(&filler).unwrap();
    sink.write_batch(&mut events(600, 1000)).unwrap();
    sink.close().unwrap();
    no_partial_line(&path);
    let r = Verifier::new(Some(key.public_key()))
        .service("orders")
        .verify_files(&[&path])
        .unwrap();
    assert_eq!(r.events, 610);
    assert!(r.closed);
}
