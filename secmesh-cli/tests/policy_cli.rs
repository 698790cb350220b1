//! `secmesh policy check` and `secmesh policy lint`, run as the real binary on real files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::io::Write;
use std::process::{Command, Output};

use serde_json::Value;

const POLICY: &str = r#"
[[rule]]
id = "owners-read-own-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/{sub}/**"]
callers = ["spiffe://mesh.test/gateway"]
max_class = "fast"

[[rule]]
id = "no-archive"
effect = "deny"
subjects = ["*"]
verbs = ["*"]
objects = ["orders/*/archive/**"]

[[rule]]
id = "dry-run-no-bob"
effect = "deny"
subjects = ["user:bob"]
verbs = ["*"]
objects = ["**"]
mode = "shadow"
"#;

fn file(suffix: &str, text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.flush().unwrap();
    f
}

fn secmesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secmesh"))
        .args(args)
        .output()
        .expect("run secmesh")
}

fn check(policy: &tempfile::NamedTempFile, extra: &[&str]) -> (i32, Value) {
    let path = policy.path().to_str().unwrap();
    let mut args = vec!["policy", "check", "--policy", path];
    args.extend_from_slice(extra);
    let out = secmesh(&args);
    let code = out.status.code().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout:?}");
    (code, serde_json::from_str(&stdout).unwrap())
}

const ALICE_OWN: &[&str] = &[
    "--sub",
    "user:alice",
    "--verb",
    "read",
    "--object",
    "orders/user:alice/42",
    "--caller",
    "spiffe://mesh.test/gateway",
    "--class",
    "fast",
];

#[test]
fn allow_prints_exact_shape_and_exits_0() {
    let p = file(".toml", POLICY);
    let path = p.path().to_str().unwrap();
    let mut args = vec!["policy", "check", "--policy", path];
    args.extend_from_slice(ALICE_OWN);
    let out = secmesh(&args);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"decision\":\"allow\",\"rule\":\"owners-read-own-orders\",\"reason\":\"allow rule\",\
         \"shadow\":{\"decision\":\"deny\",\"rule\":null}}\n"
    );
}

#[test]
fn deny_by_rule_exits_1() {
    let p = file(".toml", POLICY);
    let (code, v) = check(
        &p,
        &[
            "--sub",
            "user:alice",
            "--verb",
            "read",
            "--object",
            "orders/user:alice/archive/1",
            "--caller",
            "spiffe://mesh.test/gateway",
            "--class",
            "fast",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], "no-archive");
    assert_eq!(v["reason"], "deny rule");
}

#[test]
fn no_rule_without_caller_or_class() {
    let p = file(".toml", POLICY);
    let (code, v) = check(&p, &ALICE_OWN[..6]);
    assert_eq!(code, 1);
    assert_eq!(v["rule"], Value::Null);
    assert_eq!(v["reason"], "no rule");
    let (code, _) = check(&p, &[&ALICE_OWN[..8], &["--class", "slow"][..]].concat());
    assert_eq!(code, 1);
}

#[test]
fn shadow_is_reported_not_enforced() {
    let p = file(".toml", POLICY);
    let (code, v) = check(
        &p,
        &[
            "--sub",
            "user:bob",
            "--verb",
            "read",
            "--object",
            "orders/user:bob",
            "--caller",
            "spiffe://mesh.test/gateway",
            "--class",
            "fast",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["shadow"]["decision"], "deny");
    assert_eq!(v["shadow"]["rule"], "dry-run-no-bob");
}

#[test]
fn grants() {
    let p = file(".toml", POLICY);
    let (code, v) = check(
        &p,
        &[
            ALICE_OWN,
            &["--scope", "read:orders/* read:orders/{sub}/*"][..],
        ]
        .concat(),
    );
    assert_eq!((code, &v["decision"]), (0, &Value::from("allow")));
    let (code, v) = check(
        &p,
        &[ALICE_OWN, &["--scope", "write:orders/**"][..]].concat(),
    );
    assert_eq!(code, 1);
    assert_eq!(v["reason"], "missing grant");
    assert_eq!(v["rule"], Value::Null);
    let (code, v) = check(&p, &[ALICE_OWN, &["--scope", ""][..]].concat());
    assert_eq!((code, &v["reason"]), (1, &Value::from("missing grant")));
}

#[test]
fn attributes() {
    let p = file(
        ".toml",
        "[[rule]]\nid = \"ops\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"*\"]\nobjects = [\"ops/**\"]\nattributes = { role = [\"ops*\"] }\n",
    );
    let base = ["--sub", "user:a", "--verb", "read", "--object", "ops/x"];
    let (code, v) = check(&p, &base);
    assert_eq!((code, &v["reason"]), (1, &Value::from("no rule")));
    let (code, v) = check(
        &p,
        &[
            &base[..],
            &["--attr", "team=x", "--attr", "role=ops-lead"][..],
        ]
        .concat(),
    );
    assert_eq!((code, &v["rule"]), (0, &Value::from("ops")));
    let path = p.path().to_str().unwrap();
    usage_error(
        &[
            &["policy", "check", "--policy", path][..],
            &base[..],
            &["--attr", "role"][..],
        ]
        .concat(),
    );
}

#[test]
fn json_policy_and_no_shadow() {
    let p = file(
        ".json",
        r#"{"rule": [{"id": "all", "effect": "allow", "subjects": ["*"], "verbs": ["*"], "objects": ["**"]}]}"#,
    );
    let (code, v) = check(&p, &["--sub", "s", "--verb", "approve", "--object", "x/y"]);
    assert_eq!(code, 0);
    assert_eq!(v["rule"], "all");
    assert_eq!(v["shadow"], Value::Null);
}

fn usage_error(args: &[&str]) -> String {
    let out = secmesh(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn invalid_policy_exits_2_with_position() {
    let p = file(
        ".toml",
        "[[rule]]\nid = \"a\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"read\"]\nobjects = [\"a\"]\nmax_class = \"sometimes\"\n",
    );
    let path = p.path().to_str().unwrap();
    let err = usage_error(&[
        "policy", "check", "--policy", path, "--sub", "s", "--verb", "read", "--object", "a",
    ]);
    assert!(err.contains(&format!("{path}:7:13:")), "{err}");
    let err = usage_error(&["policy", "lint", path]);
    assert!(err.contains(":7:13:"), "{err}");
    let dup = file(
        ".toml",
        &format!(
            "{POLICY}{}",
            &POLICY[..POLICY.find("[[rule]]\nid = \"no-archive\"").unwrap()]
        ),
    );
    let err = usage_error(&["policy", "lint", dup.path().to_str().unwrap()]);
    assert!(err.contains("duplicate rule id"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let p = file(".toml", POLICY);
    let path = p.path().to_str().unwrap();
    let base = [
        "policy", "check", "--policy", path, "--sub", "s", "--verb", "read",
    ];
    usage_error(&base);
    usage_error(&[&base[..], &["--object", "/a"][..]].concat());
    usage_error(&[&base[..], &["--object", "a", "--class", "quick"][..]].concat());
    usage_error(&[&base[..], &["--object", "a", "--scope", "read"][..]].concat());
    usage_error(&[&base[..], &["--object", "a", "--bogus"][..]].concat());
    let err = usage_error(&[
        "policy",
        "check",
        "--policy",
        "/nonexistent/p.toml",
        "--sub",
        "s",
        "--verb",
        "read",
        "--object",
        "a",
    ]);
    assert!(err.contains("cannot read"), "{err}");
    usage_error(&["policy", "lint"]);
}

#[test]
fn lint_reports_findings() {
    let clean = file(".toml", POLICY);
    let out = secmesh(&["policy", "lint", clean.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("3 rules, no findings")
    );

    let bad = file(
        ".toml",
        &format!(
            "{POLICY}
[[rule]]
id = \"archived\"
effect = \"allow\"
subjects = [\"user:*\"]
verbs = [\"read\"]
objects = [\"orders/x/archive/*\"]

[[rule]]
id = \"empty\"
effect = \"allow\"
subjects = [\"*\"]
verbs = []
objects = [\"a\"]
"
        ),
    );
    let out = secmesh(&["policy", "lint", bad.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("rule `archived` (#4): shadowed by deny rule `no-archive`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule `empty` (#5): can never match"),
        "{stdout}"
    );
    assert!(stdout.contains("5 rules, 2 findings"), "{stdout}");
}

fn run_check(policy: &tempfile::NamedTempFile, extra: &[&str]) -> (i32, String) {
    let path = policy.path().to_str().unwrap();
    let mut args = vec!["policy", "check", "--policy", path];
    args.extend_from_slice(extra);
    let out = secmesh(&args);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// Alice on her own order through the gateway, but without `--class`: the owners' rule has
/// `max_class`, so it cannot match.
const ALICE_NO_CLASS: &[&str] = &[
    "--sub",
    "user:alice",
    "--verb",
    "read",
    "--object",
    "orders/user:alice/42",
    "--caller",
    "spiffe://mesh.test/gateway",
];

#[test]
fn explain_names_the_closest_rule_and_the_failed_condition() {
    let p = file(".toml", POLICY);
    let (code, plain) = run_check(&p, ALICE_NO_CLASS);
    let (code_explained, text) = run_check(&p, &[ALICE_NO_CLASS, &["--explain"][..]].concat());
    assert_eq!((code, code_explained), (1, 1), "exit codes do not change");
    assert_eq!(
        serde_json::from_str::<Value>(&plain).unwrap()["reason"],
        "no rule"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "deny: no rule",
            "shadow: deny: no rule",
            "closest rules:",
            "  1. rule `owners-read-own-orders` (#1, allow, 4 of 5 conditions met): class: the \
             request has no class; the rule accepts fast or faster",
        ],
        "{text}"
    );

    let (code, v) = check(&p, &[ALICE_NO_CLASS, &["--explain", "--json"][..]].concat());
    assert_eq!(code, 1);
    assert_eq!(
        (&v["decision"], &v["reason"]),
        (&"deny".into(), &"no rule".into())
    );
    let why = &v["explanation"];
    assert_eq!(why["reason"], "no_rule");
    assert_eq!(why["rule"], Value::Null);
    let first = &why["closest"][0];
    assert_eq!(first["rule"], "owners-read-own-orders");
    assert_eq!(
        (&first["index"], &first["matched"], &first["conditions"]),
        (&1.into(), &4.into(), &5.into())
    );
    assert_eq!(first["failed"]["condition"], "class");
    assert_eq!(first["failed"]["request"], Value::Null);
    assert_eq!(first["failed"]["rule"], "fast");
    assert_eq!(
        why["closest"].as_array().unwrap().len(),
        1,
        "one allow rule"
    );

    // An allow explains nothing more; the deny rule names itself.
    let (code, v) = check(&p, &[ALICE_OWN, &["--explain", "--json"][..]].concat());
    assert_eq!(code, 0);
    assert_eq!(v["explanation"]["closest"], serde_json::json!([]));
    let (code, text) = run_check(
        &p,
        &[
            "--sub",
            "user:alice",
            "--verb",
            "read",
            "--object",
            "orders/x/archive/1",
            "--explain",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        text.starts_with("deny: deny rule (rule `no-archive`)\n"),
        "{text}"
    );
}

#[test]
fn json_flag_alone_keeps_the_output() {
    let p = file(".toml", POLICY);
    for args in [ALICE_OWN, ALICE_NO_CLASS] {
        let (code, plain) = run_check(&p, args);
        let (code_json, json) = run_check(&p, &[args, &["--json"][..]].concat());
        assert_eq!((code, plain), (code_json, json));
    }
}

#[test]
fn explain_escapes_what_came_from_input() {
    let p = file(
        ".toml",
        r#"
[[rule]]
id = "ops"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["ops/**"]
callers = ["spiffe://mesh.test/*"]
attributes = { role = ["ops"] }
"#,
    );
    let base = ["--sub", "user:a", "--verb", "read", "--object", "ops/x"];
    let evil_caller = "spiffe://evil.test/\u{202E}gateway";
    let (code, text) = run_check(
        &p,
        &[&base[..], &["--caller", evil_caller, "--explain"]].concat(),
    );
    assert_eq!(code, 1);
    assert!(!text.contains('\u{202E}'), "{text:?}");
    assert!(text.contains("caller: `spiffe://evil.test/"), "{text}");

    let (code, text) = run_check(
        &p,
        &[
            &base[..],
            &[
                "--caller",
                "spiffe://mesh.test/gw",
                "--attr",
                "role=\u{9b}31m",
                "--explain",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 1);
    assert!(!text.contains('\u{9b}'), "{text:?}");
    assert!(text.contains("attribute: `role` = ["), "{text}");

    let (_, v) = check(
        &p,
        &[&base[..], &["--caller", evil_caller, "--explain", "--json"]].concat(),
    );
    assert_eq!(
        v["explanation"]["closest"][0]["failed"]["request"],
        evil_caller
    );
}

#[test]
fn lint_warns_on_verbs_no_classifier_produces() {
    let p = file(
        ".toml",
        r#"
[[rule]]
id = "approvers"
effect = "allow"
subjects = ["user:*"]
verbs = ["approve", "read"]
objects = ["refunds/**"]
"#,
    );
    let path = p.path().to_str().unwrap();
    let out = secmesh(&["policy", "lint", path]);
    assert_eq!(out.status.code(), Some(0), "a warning, not a finding");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(
            "warning: rule `approvers` (#1): verb `approve` is produced by no built-in \
             classifier (read, create, update, delete, call)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 rules, no findings, 1 warning"),
        "{stdout}"
    );

    let out = secmesh(&["policy", "lint", path, "--known-verb", "approve"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("warning"), "{stdout}");
    assert!(stdout.contains("1 rules, no findings\n"), "{stdout}");
}
