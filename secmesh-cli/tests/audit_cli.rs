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
    assert!(
        err.starts_with(&format!("error: {orders}:3: broken_chain")),
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
