//! `secmesh audit verify` over several services' rotated logs in one call (grouped by service,
//! one result per service), `--json`, and `audit tail --json`. Through the real binary, on
//! logs written by the library's sink.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use secmesh_audit::chain::AuditKey;
use secmesh_audit::event::{AuditEvent, Direction};
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn s(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `n` events of `service`, rotating past 900 bytes, closed; every file, oldest first.
fn write_log(dir: &Path, key: &AuditKey, service: &str, n: usize) -> Vec<PathBuf> {
    let live = dir.join(format!("{service}.jsonl"));
    let config = JsonLinesConfig::default()
        .with_key(AuditKey::from_pem(&key.to_pem()).unwrap())
        .with_service(service)
        .with_rotation(900)
        .with_checkpoints(4, Some(Duration::from_secs(3600)));
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

struct Mesh {
    _dir: tempfile::TempDir,
    keyfile: PathBuf,
    orders: Vec<PathBuf>,
    payments: Vec<PathBuf>,
}

fn mesh() -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let keyfile = dir.path().join("audit.pub");
    std::fs::write(&keyfile, key.public_key_b64()).unwrap();
    let orders = write_log(dir.path(), &key, "orders", 10);
    let payments = write_log(dir.path(), &key, "payments", 12);
    assert!(orders.len() >= 2 && payments.len() >= 2);
    Mesh {
        _dir: dir,
        keyfile,
        orders,
        payments,
    }
}

impl Mesh {
    fn verify(&self, extra: &[&str]) -> Output {
        let mut args = vec!["audit", "verify", "--key", self.keyfile.to_str().unwrap()];
        args.extend_from_slice(extra);
        // Payments first, each set newest first: the order given does not matter.
        for f in self.payments.iter().rev().chain(self.orders.iter().rev()) {
            args.push(f.to_str().unwrap());
        }
        run(&args)
    }
}

#[test]
fn several_services_in_one_call_are_verified_each_on_its_own() {
    let m = mesh();
    let (code, out, err) = s(&m.verify(&[]));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("orders: ok: 10 events, "), "{out}");
    assert!(lines[1].starts_with("payments: ok: 12 events, "), "{out}");
    assert!(err.is_empty(), "{err}");

    // One service alone: the single-set output, as before.
    let mut args = vec!["audit", "verify", "--key", m.keyfile.to_str().unwrap()];
    args.extend(m.orders.iter().map(|p| p.to_str().unwrap()));
    let (code, out, err) = s(&run(&args));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: 10 events, "), "{out}");

    // --service with several services' files: every file must be that service's.
    let (code, _, err) = s(&m.verify(&["--service", "orders"]));
    assert_eq!(code, 1);
    assert!(err.contains("service_mismatch"), "{err}");
}

#[test]
fn a_changed_record_fails_its_service_only_at_its_own_line() {
    let m = mesh();
    let file = &m.payments[0];
    let text = std::fs::read_to_string(file).unwrap();
    let lineno = text.lines().position(|l| l.contains("payments/1")).unwrap() + 1;
    std::fs::write(file, text.replacen("payments/1", "payments/9", 1)).unwrap();
    let (code, out, err) = s(&m.verify(&[]));
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("orders: ok: 10 events"), "{out}");
    assert!(!out.contains("payments"), "{out}");
    let want = format!(
        "error: payments: {}:{lineno}: broken_chain",
        file.to_str().unwrap()
    );
    assert!(err.starts_with(&want), "{err}\nwanted {want}");

    // The same as JSON: one document, stable keys, exit 1.
    let (code, out, _) = s(&m.verify(&["--json"]));
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    let services = v["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    assert_eq!(services[0]["service"], "orders");
    assert_eq!(services[0]["ok"], true);
    assert_eq!(services[0]["events"], 10);
    assert_eq!(services[0]["key_checked"], true);
    assert_eq!(
        services[0]["files"].as_array().unwrap().len(),
        m.orders.len()
    );
    assert_eq!(services[1]["service"], "payments");
    assert_eq!(services[1]["ok"], false);
    let f = &services[1]["failure"];
    assert_eq!(f["kind"], "broken_chain");
    assert_eq!(f["line"], lineno);
    assert_eq!(f["file"], file.to_str().unwrap());
}

#[test]
fn verify_json_when_sound() {
    let m = mesh();
    let (code, out, err) = s(&m.verify(&["--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    let payments = &v["services"][1];
    assert_eq!(payments["events"], 12);
    assert_eq!(payments["closed"], true);
    assert_eq!(payments["generations"][0], 0);
    assert_eq!(
        payments["generations"][1],
        u64::try_from(m.payments.len() - 1).unwrap()
    );
}

#[test]
fn tail_json_prints_each_record_as_a_json_line() {
    let m = mesh();
    let file = m.orders.last().unwrap();
    let o = run(&[
        "audit",
        "tail",
        "--no-follow",
        "--json",
        file.to_str().unwrap(),
    ]);
    let (code, out, err) = s(&o);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(file).unwrap();
    assert_eq!(out.lines().count(), text.lines().count());
    for (printed, stored) in out.lines().zip(text.lines()) {
        let a: serde_json::Value = serde_json::from_str(printed).unwrap();
        let b: serde_json::Value = serde_json::from_str(stored).unwrap();
        assert_eq!(a, b);
    }
    // A torn last line: reported as JSON too, exit 1.
    std::fs::write(file, format!("{text}{{\"seq\":")).unwrap();
    let (code, out, _) = s(&run(&[
        "audit",
        "tail",
        "--no-follow",
        "--json",
        file.to_str().unwrap(),
    ]));
    assert_eq!(code, 1);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["torn_bytes"], 7);
}
