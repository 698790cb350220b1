//! An attacker who can rewrite, cut, replace, delete and reorder log files (but does not hold
//! the audit key) tries each variant of issue 11 §2, and more. Every one fails verification
//! with the key; the untampered logs pass. The cuts that cannot be told from a clean end
//! without a witness are shown to be caught by the witness.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use secmesh_audit::chain::{AuditKey, hash_line, to_hex};
use secmesh_audit::checkpoint::{Checkpoint, CheckpointKind};
use secmesh_audit::event::{AuditEvent, Direction};
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
use secmesh_audit::verify::{FailureKind, Verifier, VerifyFailure};

struct Log {
    dir: tempfile::TempDir,
    key: AuditKey,
    live: PathBuf,
    witness: PathBuf,
}

fn config(key: &AuditKey, service: &str, witness: &Path) -> JsonLinesConfig {
    JsonLinesConfig::default()
        .with_key(AuditKey::from_pem(&key.to_pem()).unwrap())
        .with_service(service)
        .with_witness(witness)
        .with_checkpoints(4, Some(Duration::from_secs(3600)))
}

fn event(service: &str, i: usize) -> AuditEvent {
    let mut e = AuditEvent::now(service, Direction::In);
    e.object = Some(format!("orders/{i}"));
    e
}

/// `n` events of `service` in batches of 3, rotating past `rotate` bytes (0: never), closed.
fn write_log_in(
    dir: tempfile::TempDir,
    key: AuditKey,
    service: &str,
    n: usize,
    rotate: u64,
) -> Log {
    let live = dir.path().join(format!("{service}.jsonl"));
    let witness = dir.path().join(format!("{service}.witness"));
    let mut sink =
        JsonLinesSink::open(&live, config(&key, service, &witness).with_rotation(rotate)).unwrap();
    let mut i = 0;
    while i < n {
        let mut batch: Vec<AuditEvent> = (i..n.min(i + 3)).map(|j| event(service, j)).collect();
        sink.write_batch(&mut batch).unwrap();
        i += 3;
    }
    sink.close().unwrap();
    Log {
        dir,
        key,
        live,
        witness,
    }
}

fn write_log(service: &str, n: usize, rotate: u64) -> Log {
    write_log_in(
        tempfile::tempdir().unwrap(),
        AuditKey::generate().unwrap(),
        service,
        n,
        rotate,
    )
}

impl Log {
    /// The live file and its rotated ones, oldest first.
    fn files(&self) -> Vec<PathBuf> {
        let name = self
            .live
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut rotated: Vec<(u64, PathBuf)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|p| {
                let f = p.file_name()?.to_string_lossy().into_owned();
                let n = f.strip_prefix(&format!("{name}."))?.parse().ok()?;
                Some((n, p))
            })
            .collect();
        rotated.sort();
        let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
        files.push(self.live.clone());
        files
    }

    fn verifier(&self) -> Verifier<'_> {
        Verifier::new(Some(self.key.public_key())).service("orders")
    }

    fn check<P: AsRef<Path>>(&self, files: &[P]) -> Result<(), VerifyFailure> {
        self.verifier().verify_files(files).map(|_| ())
    }

    fn kind<P: AsRef<Path>>(&self, files: &[P]) -> FailureKind {
        self.check(files).unwrap_err().kind
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn is_signed(line: &str) -> bool {
    line.contains("\"kind\":")
}

/// Forged events appended after `lines`, chained and numbered as the writer would.
fn append_forged(lines: &mut Vec<String>, n: usize) {
    for i in 0..n {
        let last = lines.last().unwrap().clone();
        let seq = serde_json::from_str::<serde_json::Value>(&last).unwrap()["seq"]
            .as_u64()
            .unwrap();
        let mut e = event("orders", 900 + i);
        e.seq = seq + 1;
        let mut v = serde_json::to_value(&e).unwrap();
        v["prev"] = to_hex(&hash_line(last.as_bytes())).into();
        lines.push(serde_json::to_string(&v).unwrap());
    }
}

/// Change one field of a JSON line.
fn with_field(line: &str, field: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    v[field] = value;
    serde_json::to_string(&v).unwrap()
}

#[test]
fn untampered_logs_pass() {
    let log = write_log("orders", 20, 0);
    let report = log
        .verifier()
        .witness(&log.witness)
        .verify_files(&log.files())
        .unwrap();
    assert_eq!(report.events, 20);
    assert!(report.closed && report.key_checked);
    assert_eq!(report.witnessed, report.checkpoints);
    assert_eq!(report.service.as_deref(), Some("orders"));

    let set = write_log("orders", 60, 1500);
    let mut files = set.files();
    assert!(files.len() >= 4, "{} files", files.len());
    files.reverse(); // any order
    let report = set
        .verifier()
        .witness(&set.witness)
        .verify_files(&files)
        .unwrap();
    assert_eq!(report.events, 60);
    assert_eq!(report.generations, Some((0, files.len() as u64 - 1)));
    // A closed log also passes when an open tail is allowed.
    set.verifier()
        .allow_open_tail(true)
        .verify_files(&files)
        .unwrap();
}

#[test]
fn a_log_cut_after_an_earlier_signed_record_fails() {
    let log = write_log("orders", 20, 0);
    let original = lines(&log.live);
    let signed: Vec<usize> = (0..original.len() - 1)
        .filter(|i| is_signed(&original[*i]))
        .collect();
    assert!(signed.len() >= 4);
    for &k in &signed {
        write_lines(&log.live, &original[..=k]);
        assert_eq!(
            log.kind(&[&log.live]),
            FailureKind::Truncated,
            "cut after line {}",
            k + 1
        );
        // Allowed open (a live file), the witness still holds the later records.
        let f = log
            .verifier()
            .allow_open_tail(true)
            .witness(&log.witness)
            .verify_files(&[&log.live])
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::WitnessMismatch, "{f}");
        // Without a witness, that cut is what a live file looks like (documented).
        log.verifier()
            .allow_open_tail(true)
            .verify_files(&[&log.live])
            .unwrap();
    }
    // Cut after an event: an unsigned tail.
    let k = (0..original.len())
        .rev()
        .find(|i| !is_signed(&original[*i]))
        .unwrap();
    write_lines(&log.live, &original[..=k]);
    assert_eq!(log.kind(&[&log.live]), FailureKind::UnsignedTail);
}

#[test]
fn a_cut_log_with_forged_events_rechained_fails() {
    let log = write_log("orders", 20, 0);
    let original = lines(&log.live);
    let k = original
        .iter()
        .position(|l| l.contains("\"kind\":\"checkpoint\""))
        .unwrap();
    for forged in [1, 5, 30] {
        let mut l = original[..=k].to_vec();
        append_forged(&mut l, forged);
        write_lines(&log.live, &l);
        assert_eq!(log.kind(&[&log.live]), FailureKind::UnsignedTail);
        let f = log
            .verifier()
            .allow_open_tail(true)
            .witness(&log.witness)
            .verify_files(&[&log.live])
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::WitnessMismatch);
        // The original `close` pasted after them: it does not chain.
        l.push(original.last().unwrap().clone());
        write_lines(&log.live, &l);
        assert_eq!(log.kind(&[&log.live]), FailureKind::BrokenChain);
    }
}

#[test]
fn a_log_replaced_by_forged_events_fails() {
    let log = write_log("orders", 6, 0);
    // Events only, chained from the genesis.
    let mut l = vec![];
    let mut first = event("orders", 0);
    first.seq = 1;
    let mut v = serde_json::to_value(&first).unwrap();
    v["prev"] = secmesh_audit::chain::GENESIS.into();
    l.push(serde_json::to_string(&v).unwrap());
    append_forged(&mut l, 10);
    write_lines(&log.live, &l);
    let f = log.check(&[&log.live]).unwrap_err();
    assert_eq!((f.line, f.kind), (1, FailureKind::NoCheckpoint));
    // An empty file.
    write_lines(&log.live, &[]);
    assert_eq!(log.kind(&[&log.live]), FailureKind::NoCheckpoint);
    // A whole log written by the attacker with a key of their own.
    let forger = write_log("orders", 6, 0);
    std::fs::copy(&forger.live, &log.live).unwrap();
    assert_eq!(log.kind(&[&log.live]), FailureKind::BadCheckpoint);
    // Without --key it passes, and says the key was not checked (documented).
    let r = Verifier::new(None).verify_files(&[&log.live]).unwrap();
    assert!(!r.key_checked);
}

#[test]
fn another_services_log_fails() {
    let orders = write_log("orders", 9, 600);
    let key = AuditKey::from_pem(&orders.key.to_pem()).unwrap();
    let payments = write_log_in(tempfile::tempdir().unwrap(), key, "payments", 9, 600);
    // The payments log in place of the orders log, same key.
    assert_eq!(orders.kind(&payments.files()), FailureKind::ServiceMismatch);
    // One file of each in a set.
    let mut mixed = orders.files();
    let last = mixed.len() - 1;
    mixed[last] = payments.live.clone();
    assert!(orders.check(&mixed).is_err());
    let mut mixed = payments.files();
    mixed[0] = orders.files()[0].clone();
    let f = Verifier::new(Some(orders.key.public_key()))
        .verify_files(&mixed)
        .unwrap_err();
    assert_eq!(f.kind, FailureKind::ServiceMismatch, "{f}");
}

#[test]
fn a_rotated_set_without_its_live_file_fails() {
    let set = write_log("orders", 40, 1200);
    let mut files = set.files();
    assert!(files.len() >= 3);
    files.pop();
    assert_eq!(set.kind(&files), FailureKind::MissingLiveFile);
    let f = set
        .verifier()
        .allow_open_tail(true)
        .verify_files(&files)
        .unwrap_err();
    assert_eq!(f.kind, FailureKind::MissingLiveFile);
    // And a set without its newest rotated file.
    let mut files = set.files();
    files.remove(files.len() - 2);
    assert_eq!(set.kind(&files), FailureKind::GenerationGap);
}

#[test]
fn every_field_of_a_signed_record_is_covered() {
    let log = write_log("orders", 10, 0);
    let original = lines(&log.live);
    let other = AuditKey::generate().unwrap();
    let signed: Vec<usize> = (0..original.len())
        .filter(|i| is_signed(&original[*i]))
        .collect();
    let changes: Vec<(&str, serde_json::Value)> = vec![
        ("count", 7.into()),
        ("count", 0.into()),
        ("service", "payments".into()),
        ("gen", 1.into()),
        ("time", "2020-01-01T00:00:00.000000Z".into()),
        ("prev_sig", "".into()),
        ("retained", 0.into()),
        ("kind", "checkpoint".into()),
        ("kind", "close".into()),
        ("key", other.public_key_b64().into()),
        ("torn_bytes", 3.into()),
        ("sig", other.sign(b"x").into()),
        ("v", 1.into()),
        ("extra", true.into()),
    ];
    for &k in &signed {
        for (field, value) in &changes {
            let mut l = original.clone();
            let changed = with_field(&l[k], field, value.clone());
            let same = |a: &str, b: &str| {
                serde_json::from_str::<serde_json::Value>(a).unwrap()
                    == serde_json::from_str::<serde_json::Value>(b).unwrap()
            };
            if same(&changed, &l[k]) {
                continue;
            }
            l[k] = changed;
            write_lines(&log.live, &l);
            let f = log.check(&[&log.live]).unwrap_err();
            assert_eq!(f.line, k as u64 + 1, "{field} on line {}: {f}", k + 1);
        }
    }
    // A record re-signed by another key, everything else kept.
    let mut l = original.clone();
    let mut c = Checkpoint::parse(l[signed[1]].as_bytes()).unwrap();
    c.count += 1;
    c.sign(&other);
    l[signed[1]] = String::from_utf8(c.to_line()).unwrap();
    write_lines(&log.live, &l);
    assert_eq!(log.kind(&[&log.live]), FailureKind::BadCheckpoint);
}

#[test]
fn a_forged_event_after_the_last_signed_record_fails() {
    let log = write_log("orders", 10, 0);
    let original = lines(&log.live);
    let mut l = original.clone();
    append_forged(&mut l, 1);
    write_lines(&log.live, &l);
    assert_eq!(log.kind(&[&log.live]), FailureKind::UnsignedTail);
    // After a `close`, not even an open tail accepts it.
    let f = log
        .verifier()
        .allow_open_tail(true)
        .verify_files(&[&log.live])
        .unwrap_err();
    assert_eq!(f.kind, FailureKind::UnsignedTail);
    // Inserted before the `close`: the close no longer chains.
    let mut l = original[..original.len() - 1].to_vec();
    append_forged(&mut l, 1);
    l.push(original.last().unwrap().clone());
    write_lines(&log.live, &l);
    assert_eq!(log.kind(&[&log.live]), FailureKind::BrokenChain);
}

#[test]
fn generation_gaps_and_repeats_fail() {
    let set = write_log("orders", 60, 1200);
    let files = set.files();
    assert!(files.len() >= 4);
    for missing in 0..files.len() - 1 {
        let mut f = files.clone();
        f.remove(missing);
        assert_eq!(
            set.kind(&f),
            FailureKind::GenerationGap,
            "without file {missing}"
        );
    }
    // The oldest one missing is accepted only when the caller says where the set starts.
    set.verifier()
        .from_generation(1)
        .verify_files(&files[1..])
        .unwrap();
    assert_eq!(set.kind(&files[2..]), FailureKind::GenerationGap);
    // A generation given twice (a copy under another name).
    let copy = set.dir.path().join("copy");
    std::fs::copy(&files[1], &copy).unwrap();
    let mut f = files.clone();
    f.push(copy);
    assert_eq!(set.kind(&f), FailureKind::GenerationGap);
}

#[test]
fn the_witness_catches_a_log_rolled_back_to_an_earlier_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let log = write_log_in(dir, key, "orders", 6, 0);
    let old = std::fs::read(&log.live).unwrap();
    // The service runs on, closes again.
    let mut sink =
        JsonLinesSink::open(&log.live, config(&log.key, "orders", &log.witness)).unwrap();
    sink.write_batch(&mut vec![event("orders", 100); 5])
        .unwrap();
    sink.close().unwrap();
    log.check(&[&log.live]).unwrap();
    log.verifier()
        .witness(&log.witness)
        .verify_files(&[&log.live])
        .unwrap();
    // Rolled back to the earlier copy: a sound log by itself, not with the witness.
    std::fs::write(&log.live, &old).unwrap();
    log.check(&[&log.live]).unwrap();
    let f = log
        .verifier()
        .witness(&log.witness)
        .verify_files(&[&log.live])
        .unwrap_err();
    assert_eq!(f.kind, FailureKind::WitnessMismatch);
    // A witness line forged by the attacker is refused, not trusted.
    let mut w = lines(&log.witness);
    w[0] = with_field(&w[0], "count", 99.into());
    write_lines(&log.witness, &w);
    let f = log
        .verifier()
        .witness(&log.witness)
        .verify_files(&[&log.live])
        .unwrap_err();
    assert_eq!(f.kind, FailureKind::WitnessMismatch);
    // Another service's records in the same witness are not this log's business.
    let other = write_log("payments", 3, 0);
    let mut w = lines(&log.witness)[1..].to_vec();
    w.extend(lines(&other.witness));
    write_lines(&log.witness, &w);
    let f = log
        .verifier()
        .witness(&log.witness)
        .verify_files(&[&log.live])
        .unwrap_err();
    assert_eq!(
        f.kind,
        FailureKind::WitnessMismatch,
        "still rolled back: {f}"
    );
}

#[test]
fn reordered_files_and_records_fail_but_names_carry_no_meaning() {
    let set = write_log("orders", 40, 1200);
    let files = set.files();
    assert!(files.len() >= 3);
    // Two generations concatenated in the wrong order, into one file.
    let (a, b) = (lines(&files[0]), lines(&files[1]));
    let mut l = b.clone();
    l.extend(a.clone());
    let merged = set.dir.path().join("merged");
    write_lines(&merged, &l);
    let mut f = vec![merged.clone()];
    f.extend(files[2..].iter().cloned());
    assert!(set.check(&f).is_err());
    // In the right order, but in one file: the `rotate` record must end its file.
    let mut l = a.clone();
    l.extend(b.clone());
    write_lines(&merged, &l);
    assert_eq!(set.kind(&f), FailureKind::Malformed);
    // A record moved from one file to the next.
    let mut a2 = a.clone();
    let moved = a2.remove(a2.len() - 2);
    let mut b2 = b.clone();
    b2.insert(1, moved);
    write_lines(&files[0], &a2);
    write_lines(&files[1], &b2);
    assert!(set.check(&files).is_err());
    write_lines(&files[0], &a);
    write_lines(&files[1], &b);
    // Files renamed (contents swapped between names): the signed generation orders them.
    std::fs::rename(&files[0], set.dir.path().join("tmp")).unwrap();
    std::fs::rename(&files[1], &files[0]).unwrap();
    std::fs::rename(set.dir.path().join("tmp"), &files[1]).unwrap();
    set.check(&files).unwrap();
}

#[test]
fn signed_records_out_of_place_fail_even_with_the_key() {
    let log = write_log("orders", 6, 0);
    let original = lines(&log.live);
    let last = Checkpoint::parse(original.last().unwrap().as_bytes()).unwrap();
    let next = |kind| {
        let mut c = Checkpoint::unsigned(
            kind,
            "orders",
            0,
            last.seq + 1,
            last.count,
            &to_hex(&hash_line(original.last().unwrap().as_bytes())),
        );
        c.prev_sig = last.sig.clone();
        c.sign(&log.key);
        String::from_utf8(c.to_line()).unwrap()
    };
    // After a `close`, only an `open` may follow.
    for kind in [
        CheckpointKind::Recover,
        CheckpointKind::Checkpoint,
        CheckpointKind::Rotate,
        CheckpointKind::Close,
    ] {
        let mut l = original.clone();
        l.push(next(kind));
        write_lines(&log.live, &l);
        assert_eq!(
            log.kind(&[&log.live]),
            FailureKind::BadCheckpoint,
            "{kind:?}"
        );
    }
    // A record of format 1 (signed over prev and seq only).
    let mut l = original.clone();
    l.push(format!(
        r#"{{"v":1,"kind":"checkpoint","seq":{},"prev":"{}","count":6,"key":"{}","sig":"AAAA"}}"#,
        last.seq + 1,
        to_hex(&hash_line(original.last().unwrap().as_bytes())),
        log.key.public_key_b64()
    ));
    write_lines(&log.live, &l);
    assert_eq!(log.kind(&[&log.live]), FailureKind::Malformed);
}
