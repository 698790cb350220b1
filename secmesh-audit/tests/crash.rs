//! A writer killed with SIGKILL mid-stream loses nothing it acknowledged under fsync-per-batch,
//! the chain verifies up to the last whole record, a torn last line is reported, and a restart
//! sets the torn tail aside, signs what the crash left unsigned with a `recover` record, and
//! the log verifies strictly again.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use secmesh_audit::Auditor;
use secmesh_audit::chain::AuditKey;
use secmesh_audit::event::{AuditEvent, Direction};
use secmesh_audit::sink::Sink;
use secmesh_audit::sink::{Fsync, JsonLinesConfig, JsonLinesSink};
use secmesh_audit::verify::{FailureKind, Verifier, read_events, verify_files};

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

    // Strict verification refuses the crashed log: an unsigned tail, or a torn last line.
    let f = verify_files(&[&log], Some(key.public_key())).unwrap_err();
    assert!(
        matches!(f.kind, FailureKind::TornLine | FailureKind::UnsignedTail),
        "{f}"
    );
    let open_tail = Verifier::new(Some(key.public_key())).allow_open_tail(true);
    let torn = match open_tail.verify_files(&[&log]) {
        Ok(report) => {
            assert!(report.events >= acked);
            false
        }
        Err(f) => {
            assert_eq!(f.kind, FailureKind::TornLine, "{f}");
            true
        }
    };

    // Restart on the same file: the torn tail is set aside, the rest is signed by `recover`.
    let before = std::fs::read(&log).unwrap();
    let config = JsonLinesConfig::default().with_key(AuditKey::from_pem(&key.to_pem()).unwrap());
    let mut sink = JsonLinesSink::open(&log, config).unwrap();
    sink.write_batch(&mut [AuditEvent::now("crash", Direction::In)])
        .unwrap();
    sink.close().unwrap();
    let report = verify_files(&[&log], Some(key.public_key())).unwrap();
    assert_eq!(report.recoveries, 1);
    assert!(report.closed);
    assert!(report.events > acked);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".torn-"))
        .collect();
    if torn {
        assert_eq!(aside.len(), 1, "the torn tail is kept");
        let kept = std::fs::read(&aside[0]).unwrap();
        let whole = before.iter().rposition(|b| *b == b'\n').unwrap() + 1;
        assert_eq!(
            kept,
            &before[whole..],
            "exactly the torn bytes are set aside"
        );
        assert!(std::fs::read(&log).unwrap().starts_with(&before[..whole]));
    } else {
        assert!(aside.is_empty());
        assert!(std::fs::read(&log).unwrap().starts_with(&before));
    }
}
