//! Every kind of tampering with a real log file is found, at the right line.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use secmesh_audit::chain::AuditKey;
use secmesh_audit::event::{AuditEvent, Direction};
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
use secmesh_audit::verify::{FailureKind, verify_files};

/// A log of `n` events with a checkpoint every 5 lines, signed with `key`.
fn write_log(dir: &Path, n: usize, key: &AuditKey) -> PathBuf {
    let path = dir.join("orders.jsonl");
    let config = JsonLinesConfig::default()
        .with_key(AuditKey::from_pem(&key.to_pem()).unwrap())
        .with_checkpoints(5, None);
    let mut sink = JsonLinesSink::open(&path, config).unwrap();
    let mut events: Vec<AuditEvent> = (0..n)
        .map(|i| {
            let mut e = AuditEvent::now("orders", Direction::In);
            e.object = Some(format!("orders/{i}"));
            e
        })
        .collect();
    sink.write_batch(&mut events).unwrap();
    drop(sink);
    path
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn failure(path: &Path, key: &AuditKey) -> (u64, FailureKind) {
    let f = verify_files(&[path], Some(key.public_key())).unwrap_err();
    (f.line, f.kind)
}

#[test]
fn a_sound_log_verifies_with_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let path = write_log(dir.path(), 12, &key);
    let report = verify_files(&[&path], Some(key.public_key())).unwrap();
    assert_eq!(report.events, 12);
    // The open record, one every 5 lines, and the closing record.
    assert_eq!(report.checkpoints, 4);
    assert!(report.closed);
    assert_eq!(report.after_last_checkpoint, 0);
    assert!(report.key_checked);
}

#[test]
fn changed_deleted_swapped_inserted_records_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let path = write_log(dir.path(), 12, &key);
    let original = lines(&path);
    // Line 1 is the `open` record; event i is on line i + 2 up to the first checkpoint.
    assert!(original[0].contains("\"kind\":\"open\""));

    // Changed: line 4's object. Reported at line 4 itself (it used to be reported at line 5,
    // the first record that does not chain to it).
    let mut l = original.clone();
    l[3] = l[3].replace("orders/2", "orders/9");
    write_lines(&path, &l);
    assert_eq!(failure(&path, &key), (4, FailureKind::BrokenChain));

    // Deleted: line 3.
    let mut l = original.clone();
    l.remove(2);
    write_lines(&path, &l);
    assert_eq!(failure(&path, &key), (3, FailureKind::BrokenChain));

    // Swapped: lines 2 and 3.
    let mut l = original.clone();
    l.swap(1, 2);
    write_lines(&path, &l);
    assert_eq!(failure(&path, &key), (2, FailureKind::BrokenChain));

    // Inserted: a copy of line 2 after it.
    let mut l = original.clone();
    l.insert(2, original[1].clone());
    write_lines(&path, &l);
    assert_eq!(failure(&path, &key), (3, FailureKind::BrokenChain));

    // Truncated before the last checkpoint: the first 6 lines cut away.
    let l = original[6..].to_vec();
    write_lines(&path, &l);
    assert_eq!(failure(&path, &key), (1, FailureKind::BrokenChain));

    // A record re-chained by someone without the key: the chain holds, the checkpoint fails.
    let mut l = original.clone();
    let forged = l[1].replace("orders/0", "orders/X");
    l[1] = forged;
    for i in 1..l.len() {
        let prev =
            secmesh_audit::chain::to_hex(&secmesh_audit::chain::hash_line(l[i - 1].as_bytes()));
        let mut v: serde_json::Value = serde_json::from_str(&l[i]).unwrap();
        v["prev"] = serde_json::Value::String(prev);
        l[i] = serde_json::to_string(&v).unwrap();
    }
    write_lines(&path, &l);
    assert_eq!(failure(&path, &key), (7, FailureKind::BadCheckpoint));

    // Signed by another key.
    write_lines(&path, &original);
    let other = AuditKey::generate().unwrap();
    let f = verify_files(&[&path], Some(other.public_key())).unwrap_err();
    assert_eq!(f.kind, FailureKind::BadCheckpoint);
}

#[test]
fn a_torn_last_line_is_reported_never_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let path = write_log(dir.path(), 3, &key);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.truncate(text.len() - 10);
    std::fs::write(&path, &text).unwrap();
    let n = text.lines().count() as u64;
    assert_eq!(failure(&path, &key), (n, FailureKind::TornLine));
}

#[test]
fn rotation_continues_the_chain_and_a_missing_file_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let path = dir.path().join("payments.jsonl");
    let config = JsonLinesConfig::default()
        .with_key(AuditKey::from_pem(&key.to_pem()).unwrap())
        .with_rotation(2_000)
        .with_checkpoints(10, Some(Duration::from_secs(3600)));
    let mut sink = JsonLinesSink::open(&path, config).unwrap();
    for _ in 0..20 {
        let mut batch = vec![AuditEvent::now("payments", Direction::In); 3];
        sink.write_batch(&mut batch).unwrap();
    }
    drop(sink);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() > 3, "rotated into {} files", files.len());
    files.reverse(); // any order: verification orders them by seq
    let report = verify_files(&files, Some(key.public_key())).unwrap();
    assert_eq!(report.events, 60);

    // A rotated file missing from the set: the next generation does not follow.
    let without: Vec<PathBuf> = files
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".jsonl.2"))
        .cloned()
        .collect();
    let f = verify_files(&without, Some(key.public_key())).unwrap_err();
    assert_eq!((f.line, f.kind), (1, FailureKind::GenerationGap), "{f}");
}

#[test]
fn reopening_continues_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let path = write_log(dir.path(), 3, &key);
    let config = JsonLinesConfig::default().with_key(AuditKey::from_pem(&key.to_pem()).unwrap());
    let mut sink = JsonLinesSink::open(&path, config).unwrap();
    sink.write_batch(&mut vec![AuditEvent::now("orders", Direction::Out); 2])
        .unwrap();
    drop(sink);
    let report = verify_files(&[&path], Some(key.public_key())).unwrap();
    assert_eq!(report.events, 5);
    // open, close; open, close.
    assert_eq!(report.checkpoints, 4);
    assert_eq!(report.recoveries, 0);
}
