//! Logs of several services verified together (each service's set on its own), and a changed
//! record reported at its own line, on real files written by the sink.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use secmesh_audit::chain::{AuditKey, hash_line, to_hex};
use secmesh_audit::event::{AuditEvent, Direction};
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
use secmesh_audit::verify::{FailureKind, Verifier, group_by_service};

/// `n` events of `service` in `dir`, in batches of 2, rotating past `rotate` bytes (0: never),
/// signed with `key` (or unsigned); closed. Returns every file, oldest first.
fn write_log(
    dir: &Path,
    key: Option<&AuditKey>,
    service: &str,
    n: usize,
    rotate: u64,
) -> Vec<PathBuf> {
    let live = dir.join(format!("{service}.jsonl"));
    let mut config = JsonLinesConfig::default()
        .with_service(service)
        .with_rotation(rotate)
        .with_checkpoints(4, Some(Duration::from_secs(3600)));
    if let Some(k) = key {
        config = config.with_key(AuditKey::from_pem(&k.to_pem()).unwrap());
    }
    let mut sink = JsonLinesSink::open(&live, config).unwrap();
    for i in (0..n).step_by(2) {
        let mut batch: Vec<AuditEvent> = (i..n.min(i + 2))
            .map(|j| {
                let mut e = AuditEvent::now(service, Direction::In);
                e.object = Some(format!("{service}/{j}"));
                e
            })
            .collect();
        sink.write_batch(&mut batch).unwrap();
    }
    sink.close().unwrap();
    let mut rotated: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let f = p.file_name()?.to_string_lossy().into_owned();
            let n = f.strip_prefix(&format!("{service}.jsonl."))?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(live);
    files
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

#[test]
fn several_services_are_grouped_and_each_verified_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let orders = write_log(dir.path(), Some(&key), "orders", 12, 900);
    let payments = write_log(dir.path(), Some(&key), "payments", 12, 900);
    assert!(orders.len() >= 2 && payments.len() >= 2);
    // Interleaved, newest first: the order given does not matter.
    let mut all: Vec<PathBuf> = orders
        .iter()
        .rev()
        .zip(payments.iter().rev())
        .flat_map(|(a, b)| [b.clone(), a.clone()])
        .collect();
    all.extend(orders.iter().rev().skip(payments.len()).cloned());
    all.extend(payments.iter().rev().skip(orders.len()).cloned());

    let groups = group_by_service(&all);
    let names: Vec<_> = groups.iter().map(|g| g.service.as_deref()).collect();
    assert_eq!(names, [Some("orders"), Some("payments")]);
    assert_eq!(groups[0].files.len(), orders.len());
    assert_eq!(groups[1].files.len(), payments.len());

    let verifier = Verifier::new(Some(key.public_key()));
    let outcomes = verifier.verify_services(&all);
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        let r = o.result.as_ref().unwrap();
        assert_eq!(r.events, 12, "{:?}", o.service);
        assert_eq!(r.service.as_deref(), o.service.as_deref());
    }
    // One set of mixed files stays what it was: a service mismatch.
    let f = verifier.verify_files(&all).unwrap_err();
    assert_eq!(f.kind, FailureKind::ServiceMismatch);
    // With the service named, every file must be that service's.
    let named = verifier.clone().service("orders").verify_services(&all);
    assert_eq!(named.len(), 1);
    assert_eq!(
        named[0].result.as_ref().unwrap_err().kind,
        FailureKind::ServiceMismatch
    );

    // A change in one service's log fails that service only.
    let oldest = &payments[0];
    let mut l = lines(oldest);
    let i = l.iter().position(|x| x.contains("payments/")).unwrap();
    l[i] = l[i].replace("payments/", "payments/x");
    write_lines(oldest, &l);
    let outcomes = verifier.verify_services(&all);
    assert!(outcomes[0].result.is_ok());
    let f = outcomes[1].result.as_ref().unwrap_err();
    assert_eq!((&f.file, f.line), (oldest, i as u64 + 1), "{f}");
}

#[test]
fn a_file_substituted_from_another_service_fails_its_service() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let orders = write_log(dir.path(), Some(&key), "orders", 12, 900);
    let payments = write_log(dir.path(), Some(&key), "payments", 12, 900);
    // The oldest orders file replaced by the oldest payments file, same key, same name.
    std::fs::copy(&payments[0], &orders[0]).unwrap();
    let outcomes = Verifier::new(Some(key.public_key())).verify_services(&orders);
    assert_eq!(outcomes.len(), 2);
    let orders_outcome = outcomes
        .iter()
        .find(|o| o.service.as_deref() == Some("orders"))
        .unwrap();
    // The orders set now starts at a later generation than 0.
    assert_eq!(
        orders_outcome.result.as_ref().unwrap_err().kind,
        FailureKind::GenerationGap
    );
}

#[test]
fn unreadable_files_form_their_own_groups() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let orders = write_log(dir.path(), Some(&key), "orders", 4, 0);
    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "not json\n").unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let all = [orders[0].clone(), garbage.clone(), empty.clone()];
    let outcomes = Verifier::new(Some(key.public_key())).verify_services(&all);
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes[0].result.is_ok());
    assert_eq!(outcomes[1].service, None);
    assert_eq!(
        outcomes[1].result.as_ref().unwrap_err().kind,
        FailureKind::Malformed
    );
    assert_eq!(
        outcomes[2].result.as_ref().unwrap_err().kind,
        FailureKind::NoCheckpoint
    );
}

/// Every record of a log changed in turn (signed and unsigned, events and signed records):
/// the failure names that record's own line.
#[test]
fn a_changed_record_is_reported_at_its_own_line() {
    for signed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let key = AuditKey::generate().unwrap();
        let files = write_log(dir.path(), signed.then_some(&key), "orders", 9, 0);
        let path = &files[0];
        let original = lines(path);
        let verifier = if signed {
            Verifier::new(Some(key.public_key()))
        } else {
            Verifier::new(None)
        };
        verifier.verify_files(&[path]).unwrap();
        // The last record has nothing after it to chain. In an unsigned log, nothing after the
        // last record says whether it or the one before changed (documented): the last one is
        // reported. Every other change is found in place.
        let n = original.len();
        let found_in_place = if signed { n - 1 } else { n - 2 };
        for i in 0..n - 1 {
            let mut l = original.clone();
            if l[i].contains("orders/") {
                l[i] = l[i].replace("orders/", "orders/changed-");
            } else {
                l[i] = l[i].replace("\"seq\":", "\"seq\": ");
            }
            assert_ne!(l[i], original[i]);
            write_lines(path, &l);
            let f = verifier.verify_files(&[path]).unwrap_err();
            let expected = if i < found_in_place { i + 1 } else { n };
            assert_eq!(
                f.line,
                expected as u64,
                "signed {signed}, line {}: {f}",
                i + 1
            );
            assert!(
                matches!(
                    f.kind,
                    FailureKind::BrokenChain | FailureKind::BadCheckpoint
                ),
                "{f}"
            );
        }
    }
}

/// A record whose own `prev` was changed is the one reported, not the record before.
#[test]
fn a_changed_prev_is_reported_at_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_log(dir.path(), None, "orders", 6, 0);
    let path = &files[0];
    let mut l = lines(path);
    let mut v: serde_json::Value = serde_json::from_str(&l[2]).unwrap();
    v["prev"] = to_hex(&hash_line(b"something else")).into();
    l[2] = serde_json::to_string(&v).unwrap();
    write_lines(path, &l);
    let f = Verifier::new(None).verify_files(&[path]).unwrap_err();
    assert_eq!((f.line, f.kind), (3, FailureKind::BrokenChain), "{f}");
}

/// An unsigned log that begins with the audit queue's own events (drop reports) is grouped
/// under the service of its first other event.
#[test]
fn the_queue_s_own_events_do_not_name_a_file_s_service() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let mut sink = JsonLinesSink::open(&path, JsonLinesConfig::default()).unwrap();
    let mut batch = vec![
        AuditEvent::now("secmesh-audit", Direction::In),
        AuditEvent::now("orders", Direction::In),
    ];
    sink.write_batch(&mut batch).unwrap();
    drop(sink);
    let only_queue = dir.path().join("queue.jsonl");
    let mut sink = JsonLinesSink::open(&only_queue, JsonLinesConfig::default()).unwrap();
    sink.write_batch(&mut [AuditEvent::now("secmesh-audit", Direction::In)])
        .unwrap();
    drop(sink);
    let groups = group_by_service(&[&path, &only_queue]);
    let names: Vec<_> = groups.iter().map(|g| g.service.as_deref()).collect();
    assert_eq!(names, [Some("orders"), Some("secmesh-audit")]);
}
