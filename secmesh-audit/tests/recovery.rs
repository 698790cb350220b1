//! Restarts: a crash's torn tail is set aside (kept) and the unsigned tail signed by a
//! `recover` record that verification accepts exactly there; a corrupt file, another
//! service's log or an unwritable path is a typed error; retention deletes the oldest files
//! and the remaining set still verifies.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use secmesh_audit::chain::AuditKey;
use secmesh_audit::event::{AuditEvent, Direction};
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink, SinkError};
use secmesh_audit::verify::{FailureKind, Verifier};

fn config(key: &AuditKey) -> JsonLinesConfig {
    JsonLinesConfig::default()
        .with_key(AuditKey::from_pem(&key.to_pem()).unwrap())
        .with_service("orders")
        .with_checkpoints(4, None)
}

fn events(n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            let mut e = AuditEvent::now("orders", Direction::In);
            e.object = Some(format!("orders/{i}"));
            e
        })
        .collect()
}

/// A sink killed mid-run: written and synced, never closed.
fn crashed(path: &Path, key: &AuditKey, n: usize) {
    let mut sink = JsonLinesSink::open(path, config(key)).unwrap();
    sink.write_batch(&mut events(n)).unwrap();
    std::mem::forget(sink); // no `close`, as after SIGKILL
}

fn torn_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".torn-"))
        .collect()
}

fn strict(key: &AuditKey) -> Verifier<'_> {
    Verifier::new(Some(key.public_key())).service("orders")
}

#[test]
fn a_crash_without_a_torn_line_is_signed_by_recover() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let path = dir.path().join("orders.jsonl");
    crashed(&path, &key, 7);
    let f = strict(&key).verify_files(&[&path]).unwrap_err();
    assert_eq!(f.kind, FailureKind::UnsignedTail);
    let mut sink = JsonLinesSink::open(&path, config(&key)).unwrap();
    sink.write_batch(&mut events(2)).unwrap();
    sink.close().unwrap();
    let r = strict(&key).verify_files(&[&path]).unwrap();
    assert_eq!((r.events, r.recoveries), (9, 1));
    assert!(torn_files(dir.path()).is_empty());
    // The recover record removed: the chain breaks.
    let text = std::fs::read_to_string(&path).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.contains("\"kind\":\"recover\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, without).unwrap();
    assert!(strict(&key).verify_files(&[&path]).is_err());
}

#[test]
fn every_kind_of_torn_tail_is_set_aside_and_kept() {
    let tails: Vec<(&str, Vec<u8>)> = vec![
        (
            "half a record",
            br#"{"v":1,"seq":99,"time":"2026-"#.to_vec(),
        ),
        ("garbage without newline", b"\x00\x00\x00\xff\xfe".to_vec()),
        ("a whole unparsable line", b"not json at all\n".to_vec()),
        ("a record without prev", b"{\"v\":1}\n".to_vec()),
        ("2 MiB without newline", vec![b'x'; 2 << 20]),
        (
            "2 MiB then a newline",
            [vec![b'y'; 2 << 20], b"\n".to_vec()].concat(),
        ),
    ];
    for (what, tail) in tails {
        let dir = tempfile::tempdir().unwrap();
        let key = AuditKey::generate().unwrap();
        let path = dir.path().join("orders.jsonl");
        crashed(&path, &key, 5);
        let good = std::fs::read(&path).unwrap();
        let mut bytes = good.clone();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            strict(&key)
                .allow_open_tail(true)
                .verify_files(&[&path])
                .is_err()
        );

        let mut sink = JsonLinesSink::open(&path, config(&key)).unwrap();
        sink.write_batch(&mut events(1)).unwrap();
        sink.close().unwrap();
        let aside = torn_files(dir.path());
        assert_eq!(aside.len(), 1, "{what}");
        assert_eq!(
            std::fs::read(&aside[0]).unwrap(),
            tail,
            "{what}: kept as it was"
        );
        let now = std::fs::read(&path).unwrap();
        assert!(now.starts_with(&good), "{what}");
        let r = strict(&key).verify_files(&[&path]).unwrap();
        assert_eq!((r.events, r.recoveries), (6, 1), "{what}");
        let text = String::from_utf8(now).unwrap();
        assert!(
            text.contains(&format!("\"torn_bytes\":{}", tail.len())),
            "{what}: the recover record says what was set aside"
        );
    }
}

#[test]
fn damage_before_the_last_line_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let path = dir.path().join("orders.jsonl");
    crashed(&path, &key, 6);
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines[2] = "garbage".into();
    let text = lines.join("\n") + "\n";
    std::fs::write(&path, &text).unwrap();
    let err = JsonLinesSink::open(&path, config(&key)).unwrap_err();
    assert!(matches!(err, SinkError::Corrupt { line: 3, .. }), "{err}");
    assert!(err.to_string().contains("orders.jsonl:3"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert!(torn_files(dir.path()).is_empty());
}

#[test]
fn opening_errors_are_typed_and_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    for path in [
        dir.path().join("missing-dir/orders.jsonl"),
        dir.path().join("file/orders.jsonl"),
    ] {
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let err = JsonLinesSink::open(&path, config(&key)).unwrap_err();
        assert!(matches!(err, SinkError::Open { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
    // A directory where the log should be.
    let err = JsonLinesSink::open(dir.path(), config(&key)).unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    // Another service's log.
    let path = dir.path().join("orders.jsonl");
    JsonLinesSink::open(&path, config(&key))
        .unwrap()
        .write_batch(&mut events(1))
        .unwrap();
    let err = JsonLinesSink::open(&path, config(&key).with_service("payments")).unwrap_err();
    assert!(matches!(err, SinkError::ServiceMismatch { .. }), "{err}");
    // An unsigned log continued by a signing sink.
    let plain = dir.path().join("plain.jsonl");
    JsonLinesSink::open(&plain, JsonLinesConfig::default())
        .unwrap()
        .write_batch(&mut events(2))
        .unwrap();
    let err = JsonLinesSink::open(&plain, config(&key)).unwrap_err();
    assert!(matches!(err, SinkError::Unsigned { .. }), "{err}");
}

fn rotated_set(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n == "orders.jsonl"
                || n.strip_prefix("orders.jsonl.")
                    .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    // Oldest first: `orders.jsonl.<n>` by n, the live file last.
    files.sort_by_key(|p| {
        p.extension()
            .and_then(|e| e.to_str()?.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    });
    files
}

#[test]
fn retention_keeps_files_and_bytes_and_the_rest_verifies() {
    for (max_files, max_bytes) in [(3, 0), (0, 6_000), (4, 5_000)] {
        let dir = tempfile::tempdir().unwrap();
        let key = AuditKey::generate().unwrap();
        let path = dir.path().join("orders.jsonl");
        let witness = dir.path().join("witness");
        let config = config(&key)
            .with_rotation(1_500)
            .with_retention(max_files, max_bytes)
            .with_witness(&witness);
        let mut sink = JsonLinesSink::open(&path, config).unwrap();
        for _ in 0..40 {
            sink.write_batch(&mut events(3)).unwrap();
        }
        sink.close().unwrap();
        let files = rotated_set(dir.path());
        let total: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        if max_files > 0 {
            assert!(files.len() <= max_files, "{} files", files.len());
        }
        if max_bytes > 0 {
            // Within the budget, give or take the last batch written past the rotation size.
            assert!(total <= max_bytes + 1_500, "{total} bytes");
        }
        let r = strict(&key).witness(&witness).verify_files(&files).unwrap();
        let (first, _) = r.generations.unwrap();
        assert!(first > 0, "older generations were deleted");
        assert!(r.events < 120);
        // One more file deleted than retention did: refused.
        let f = strict(&key).verify_files(&files[1..]).unwrap_err();
        assert_eq!(f.kind, FailureKind::GenerationGap, "{f}");
    }
}

#[test]
fn a_restart_after_a_rotation_continues_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let path = dir.path().join("orders.jsonl");
    let mut sink = JsonLinesSink::open(&path, config(&key).with_rotation(800)).unwrap();
    for _ in 0..10 {
        sink.write_batch(&mut events(2)).unwrap();
    }
    sink.close().unwrap();
    for round in 0..3 {
        let mut sink = JsonLinesSink::open(&path, config(&key).with_rotation(800)).unwrap();
        sink.write_batch(&mut events(3)).unwrap();
        if round == 1 {
            std::mem::forget(sink);
        } else {
            sink.close().unwrap();
        }
    }
    let r = strict(&key).verify_files(&rotated_set(dir.path())).unwrap();
    assert_eq!((r.events, r.recoveries), (29, 1));
}
