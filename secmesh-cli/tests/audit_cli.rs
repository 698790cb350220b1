//! `secmesh audit verify|trace|tail|keygen` through the real binary, on logs written with the
//! library by three services whose spans link up.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use secmesh_audit::chain::AuditKey;
use secmesh_audit::event::{AuditEvent, Decision, Direction};
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
use secmesh_core::{SpanId, TxnId};

const BIN: &str = env!("CARGO_BIN_EXE_secmesh");
const TXN: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn span(s: &str) -> Option<SpanId> {
    Some(s.parse().unwrap())
}

fn ev(
    service: &str,
    dir: Direction,
    span_id: &str,
    parent: Option<&str>,
    object: &str,
) -> AuditEvent {
    let mut e = AuditEvent::now(service, dir);
    e.txn = Some(TXN.parse::<TxnId>().unwrap());
    e.span_id = span(span_id);
    e.parent_span_id = parent.and_then(span);
    e.verb = Some("read".into());
    e.object = Some(object.into());
    e.sub = Some("user:alice".into());
    e.status = Some(200);
    e.latency_us = Some(1500);
    e
}

/// gateway → orders → payments, one log per service, signed with `key`.
fn mesh_logs(dir: &Path, key: &AuditKey) -> Vec<PathBuf> {
    let mut denied = ev(
        "payments",
        Direction::In,
        "00000000000000e1",
        Some("00000000000000d1"),
        "payments/7",
    );
    denied.decision = Decision::Deny;
    denied.rule = Some("no-refunds".into());
    denied.status = Some(403);
    let logs = [
        (
            "gateway",
            vec![
                ev(
                    "gateway",
                    Direction::In,
                    "00000000000000a1",
                    None,
                    "orders/7",
                ),
                ev(
                    "gateway",
                    Direction::Out,
                    "00000000000000b1",
                    Some("00000000000000a1"),
                    "orders/7",
                ),
            ],
        ),
        (
            "orders",
            vec![
                ev(
                    "orders",
                    Direction::In,
                    "00000000000000c1",
                    Some("00000000000000b1"),
                    "orders/7",
                ),
                ev(
                    "orders",
                    Direction::Out,
                    "00000000000000d1",
                    Some("00000000000000c1"),
                    "payments/7",
                ),
            ],
        ),
        ("payments", vec![denied]),
    ];
    logs.into_iter()
        .map(|(name, mut events)| {
            let path = dir.join(format!("{name}.jsonl"));
            let config =
                JsonLinesConfig::default().with_key(AuditKey::from_pem(&key.to_pem()).unwrap());
            let mut sink = JsonLinesSink::open(&path, config).unwrap();
            sink.write_batch(&mut events).unwrap();
            path
        })
        .collect()
}

fn s(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn verify_sound_and_tampered_logs() {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("audit.pub");
    let private = dir.path().join("audit.key");
    let (code, _, err) = s(&run(&[
        "audit",
        "keygen",
        "--private-out",
        private.to_str().unwrap(),
        "--public-out",
        keyfile.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    let key = AuditKey::from_pem(&std::fs::read_to_string(&private).unwrap()).unwrap();
    let logs = mesh_logs(dir.path(), &key);
    let orders = logs[1].to_str().unwrap();

    let (code, out, err) = s(&run(&[
        "audit",
        "verify",
        "--key",
        keyfile.to_str().unwrap(),
        orders,
    ]));
    assert_eq!(code, 0, "{err}");
    // The `open` and `close` records.
    assert!(out.starts_with("ok: 2 events, 2 checkpoints"), "{out}");

    let text = std::fs::read_to_string(&logs[1]).unwrap();
    std::fs::write(&logs[1], text.replacen("orders/7", "orders/8", 1)).unwrap();
    let (code, _, err) = s(&run(&[
        "audit",
        "verify",
        "--key",
        keyfile.to_str().unwrap(),
        orders,
    ]));
    assert_eq!(code, 1);
    // The changed record itself, line 2 (it used to be reported at line 3, the record after
    // it, which reads as if line 3 had been changed).
    assert!(
        err.starts_with(&format!("error: {orders}:2: broken_chain")),
        "{err}"
    );

    // Another key: the checkpoint fails.
    std::fs::write(&logs[1], &text).unwrap();
    let other = dir.path().join("other.pub");
    std::fs::write(&other, AuditKey::generate().unwrap().public_key_b64()).unwrap();
    let (code, _, err) = s(&run(&[
        "audit",
        "verify",
        "--key",
        other.to_str().unwrap(),
        orders,
    ]));
    assert_eq!(code, 1);
    assert!(err.contains("bad_checkpoint"), "{err}");

    // Usage.
    assert_eq!(s(&run(&["audit", "verify"])).0, 2);
    assert_eq!(s(&run(&["audit", "verify", "/nonexistent.jsonl"])).0, 2);
    assert_eq!(
        s(&run(&["audit", "verify", "--key", "/nonexistent", orders])).0,
        2
    );
}

#[test]
fn trace_rebuilds_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let logs = mesh_logs(dir.path(), &key);
    let mut args: Vec<&str> = vec!["audit", "trace", TXN];
    // The order of the files does not matter.
    args.extend(logs.iter().rev().map(|p| p.to_str().unwrap()));
    let (code, out, err) = s(&run(&args));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("transaction {TXN}"));
    assert!(
        lines[1].starts_with("gateway read orders/7 -> allow"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("    orders read orders/7 -> allow"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("        payments read payments/7 -> deny (no-refunds) 403"),
        "{out}"
    );

    args.push("--json");
    let (code, out, _) = s(&run(&args));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["roots"][0]["calls"][0]["callee"]["calls"][0]["callee"]["in"]["service"],
        "payments"
    );

    let (code, _, _) = s(&run(&[
        "audit",
        "trace",
        "00000000000000000000000000000001",
        logs[0].to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "no such transaction");
    assert_eq!(
        s(&run(&[
            "audit",
            "trace",
            "nothex",
            logs[0].to_str().unwrap()
        ]))
        .0,
        2
    );
}

#[test]
fn tail_prints_one_line_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let logs = mesh_logs(dir.path(), &key);
    let (code, out, _) = s(&run(&[
        "audit",
        "tail",
        "--no-follow",
        logs[2].to_str().unwrap(),
    ]));
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "-- open #1 (generation 0)");
    assert!(
        lines[1].contains("payments in  DENY  read payments/7"),
        "{out}"
    );
    assert!(lines[1].contains("(no-refunds)"));
    assert_eq!(lines[2], "-- close #3");
}

/// Run with a bounded wait: a command that hangs (a FIFO) is killed and fails the test.
fn run_bounded(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    use std::io::Read as _;
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("hung: {args:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), out, err)
}

#[test]
fn hostile_files_are_refused_without_crash_or_hang() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let logs = mesh_logs(dir.path(), &key);
    let keyfile = dir.path().join("audit.pub");
    std::fs::write(&keyfile, key.public_key_b64()).unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let long = dir.path().join("long.jsonl");
    std::fs::write(&long, vec![b'{'; 3 << 20]).unwrap();
    let log = logs[0].as_os_str();
    let zero = std::ffi::OsStr::new("/dev/zero");
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let cases: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec![os("audit"), os("verify"), zero],
        vec![os("audit"), os("verify"), os("--key"), zero, log],
        vec![
            os("audit"),
            os("verify"),
            os("--key"),
            fifo.as_os_str(),
            log,
        ],
        vec![os("audit"), os("verify"), fifo.as_os_str()],
        vec![os("audit"), os("verify"), long.as_os_str()],
        vec![os("audit"), os("verify"), log, os("--witness"), zero],
        vec![os("audit"), os("tail"), os("--no-follow"), zero],
        vec![os("audit"), os("tail"), os("--no-follow"), fifo.as_os_str()],
        vec![os("audit"), os("tail"), os("--no-follow"), long.as_os_str()],
        vec![os("audit"), os("tail"), long.as_os_str()],
        vec![os("audit"), os("trace"), os(TXN), zero],
        vec![os("audit"), os("trace"), os(TXN), fifo.as_os_str()],
        vec![os("audit"), os("trace"), os(TXN), long.as_os_str()],
    ];
    for args in cases {
        let (code, _, err) = run_bounded(&args);
        let code = code.unwrap_or_else(|| panic!("killed by a signal: {args:?}"));
        assert!(code == 1 || code == 2, "{args:?}: exit {code}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
}

#[test]
fn log_contents_reach_the_terminal_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    // A file name and an event carrying a bidi override, an escape sequence and a C1 CSI.
    let path = dir.path().join("orders\u{202E}lmx.jsonl");
    let mut e = ev("orders", Direction::In, "00000000000000a1", None, "x");
    e.object = Some("orders/\u{202E}7\u{1b}[31m\u{9b}2J".into());
    e.reason = Some("\u{202E}evil\u{7}".into());
    let config = JsonLinesConfig::default().with_key(AuditKey::from_pem(&key.to_pem()).unwrap());
    let mut sink = JsonLinesSink::open(&path, config).unwrap();
    sink.write_batch(&mut [e]).unwrap();
    drop(sink);
    let raw = |s: &str| s.contains(['\u{202E}', '\u{1b}', '\u{9b}', '\u{7}']);

    let (code, out, err) = s(&run(&[
        "audit",
        "tail",
        "--no-follow",
        path.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(!raw(&out), "{out:?}");
    assert!(
        out.contains("orders/\\u{202e}7\\u{1b}[31m\\u{9b}2J"),
        "{out}"
    );

    let (code, out, _) = s(&run(&["audit", "trace", TXN, path.to_str().unwrap()]));
    assert_eq!(code, 0);
    assert!(!raw(&out) && out.contains("\\u{202e}"), "{out:?}");
    let (code, out, _) = s(&run(&[
        "audit",
        "trace",
        "--json",
        TXN,
        path.to_str().unwrap(),
    ]));
    assert_eq!(code, 0);
    assert!(!raw(&out), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["roots"][0]["in"]["object"], "orders/\u{202E}7\u{1b}[31m\u{9b}2J",
        "the same JSON, escaped"
    );

    // A failure naming the file.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("orders/", "orderz/")).unwrap();
    let (code, _, err) = s(&run(&["audit", "verify", path.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(
        !raw(&err) && err.contains("orders\\u{202e}lmx.jsonl"),
        "{err:?}"
    );
}

#[test]
fn verify_flags_for_live_logs_services_and_witnesses() {
    let dir = tempfile::tempdir().unwrap();
    let key = AuditKey::generate().unwrap();
    let keyfile = dir.path().join("audit.pub");
    std::fs::write(&keyfile, key.public_key_b64()).unwrap();
    let k = keyfile.to_str().unwrap();
    let path = dir.path().join("orders.jsonl");
    let witness = dir.path().join("witness.jsonl");
    let p = path.to_str().unwrap();
    let w = witness.to_str().unwrap();
    let config = JsonLinesConfig::default()
        .with_key(AuditKey::from_pem(&key.to_pem()).unwrap())
        .with_witness(&witness)
        .with_checkpoints(3, None);
    let mut sink = JsonLinesSink::open(&path, config).unwrap();
    let mut events: Vec<AuditEvent> = (0..7)
        .map(|i| {
            ev(
                "orders",
                Direction::In,
                "00000000000000a1",
                None,
                &format!("o/{i}"),
            )
        })
        .collect();
    sink.write_batch(&mut events).unwrap();
    std::mem::forget(sink); // a live file: no `close`

    let (code, _, err) = s(&run(&["audit", "verify", "--key", k, p]));
    assert_eq!(code, 1);
    assert!(err.contains("unsigned_tail"), "{err}");
    let (code, out, err) = s(&run(&[
        "audit",
        "verify",
        "--key",
        k,
        "--allow-open-tail",
        p,
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("ok: 7 events, 3 checkpoints, 1 after the last checkpoint"),
        "{out}"
    );
    let (code, _, err) = s(&run(&[
        "audit",
        "verify",
        "--key",
        k,
        "--allow-open-tail",
        "--service",
        "payments",
        p,
    ]));
    assert_eq!(code, 1);
    assert!(err.contains("service_mismatch"), "{err}");
    let (code, _, err) = s(&run(&[
        "audit",
        "verify",
        "--key",
        k,
        "--allow-open-tail",
        "--service",
        "orders",
        "--witness",
        w,
        p,
    ]));
    assert_eq!(code, 0, "{err}");
    // Cut back before the last witnessed checkpoint.
    let text = std::fs::read_to_string(&path).unwrap();
    let cut: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, cut).unwrap();
    let (code, _, err) = s(&run(&[
        "audit",
        "verify",
        "--key",
        k,
        "--allow-open-tail",
        "--witness",
        w,
        p,
    ]));
    assert_eq!(code, 1);
    assert!(err.contains("witness_mismatch"), "{err}");
    // No checkpoint at all.
    std::fs::write(&path, "").unwrap();
    let (code, _, err) = s(&run(&["audit", "verify", "--key", k, p]));
    assert_eq!(code, 1);
    assert!(err.contains("no_checkpoint"), "{err}");
}
