//! A writer killed with SIGKILL mid-stream loses nothing it acknowledged under fsync-per-batch,
//! the chain verifies up to the last whole record, and a torn last line is reported.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use secmesh_audit::Auditor;
use secmesh_audit::chain::AuditKey;
use secmesh_audit::event::{AuditEvent, Direction};
use secmesh_audit::sink::{Fsync, JsonLinesConfig, JsonLinesSink};
use secmesh_audit::verify::{FailureKind, read_events, verify_files};

const CHILD: &str = "SECMESH_AUDIT_CRASH_CHILD";

/// Runs only as the child process of the test below: writes forever, printing how many events
/// are acknowledged (flushed and synced) after each flush.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let key_pem = std::fs::read_to_string(format!("{dir}/audit.key")).unwrap();
    let config = JsonLinesConfig::default()
        .with_fsync(Fsync::PerBatch)
        .with_key(AuditKey::from_pem(&key_pem).unwrap())
        .with_checkpoints(100, None);
    let sink = JsonLinesSink::open(format!("{dir}/crash.jsonl"), config).unwrap();
    let auditor = Auditor::builder(sink).batch_size(64).spawn();
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let mut ev = AuditEvent::now("crash", Direction::In);
        ev.jti = Some(format!("e{i}"));
        ev.object = Some("x".repeat((i % 200) as usize));
        auditor.record(ev).unwrap();
        if i % 37 == 36 {
            auditor.flush().unwrap();
            writeln!(out, "acked {}", i + 1).unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn sigkill_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    std::fs::write(dir.path().join("audit.key"), key.to_pem()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = 0u64;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            acked = n.parse().unwrap();
            if acked >= 3000 {
                break;
            }
        }
    }
    // SIGKILL on Unix: no destructors, no final flush.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acked >= 3000);

    let log = dir.path().join("crash.jsonl");
    let (events, unreadable) = read_events(&[&log]).unwrap();
    assert!(unreadable <= 1, "at most the torn last line is unreadable");
    let present: std::collections::HashSet<String> =
        events.iter().filter_map(|e| e.jti.clone()).collect();
    for i in 0..acked {
        assert!(
            present.contains(&format!("e{i}")),
            "acknowledged event e{i} lost"
        );
    }

    match verify_files(&[&log], Some(key.public_key())) {
        Ok(report) => assert!(report.events >= acked),
        Err(f) => {
            // Only a torn last line is acceptable, and it is reported, not accepted.
            assert_eq!(f.kind, FailureKind::TornLine, "{f}");
            let text = std::fs::read(&log).unwrap();
            let whole = &text[..=text.iter().rposition(|b| *b == b'\n').unwrap()];
            let repaired = dir.path().join("repaired.jsonl");
            std::fs::write(&repaired, whole).unwrap();
            let report = verify_files(&[&repaired], Some(key.public_key())).unwrap();
            assert!(report.events >= acked);
        }
    }
}
