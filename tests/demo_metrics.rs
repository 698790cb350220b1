//! The demo's metrics as an operator scrapes them: the demo (five services on 127.0.0.1,
//! mutual TLS inside) runs its scenario with `--serve`, each node exposes `/metrics`, and a
//! real `prometheus` (the Debian package) scrapes all five; the series it stores are the
//! scenario's: allowed and denied decisions per service, by rule and reason, the token caches,
//! five healthy audit logs. Skipped loudly outside CI when prometheus or the demo's binary is
//! missing; a failure in CI.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use secmesh_testkit::prometheus::Prometheus;

/// The values of the series `promql` selects, by the label `by`.
fn values(p: &Prometheus, promql: &str, by: &str) -> Vec<(String, f64)> {
    let Some(body) = p.query(promql) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| {
                    Some((
                        s["metric"][by].as_str().unwrap_or("").to_owned(),
                        s["value"][1].as_str()?.parse().ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn prometheus_scrapes_every_node_of_the_demo() {
    let Some(demo) = secmesh_testkit::example_binary("mesh") else {
        return;
    };
    if !secmesh_testkit::require_program("prometheus", "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(&demo)
        .arg("--audit-dir")
        .arg(dir.path())
        .arg("--serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The scrape endpoints, printed once the scenario has run.
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut targets = Vec::new();
    let mut transcript = String::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while targets.len() < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no metrics endpoints printed:\n{transcript}"));
        transcript.push_str(&line);
        transcript.push('\n');
        if let Some(url) = line.trim().strip_prefix("metrics ") {
            let url = url.split_whitespace().last().unwrap();
            let target = url
                .strip_prefix("http://")
                .and_then(|u| u.strip_suffix("/metrics"))
                .unwrap();
            targets.push(target.to_owned());
        }
    }
    let prometheus = Prometheus::start(&targets).expect("prometheus");

    // Wait until Prometheus has scraped all five, then read what it stores.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = values(&prometheus, "up", "instance");
        if up.len() == 5 && up.iter().all(|(_, v)| *v == 1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "targets not up: {up:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let allowed = values(
        &prometheus,
        r#"sum by (service) (secmesh_decisions_total{effect="allow"})"#,
        "service",
    );
    for service in ["orders", "payments", "inventory"] {
        assert!(
            allowed.iter().any(|(s, v)| s == service && *v > 0.0),
            "{service}: {allowed:?}"
        );
    }
    let denied = values(
        &prometheus,
        r#"sum by (reason) (secmesh_decisions_total{effect="deny"})"#,
        "reason",
    );
    assert!(!denied.is_empty(), "the scenario's refusals: {denied:?}");
    let healthy = values(&prometheus, "secmesh_audit_healthy", "service");
    assert_eq!(healthy.len(), 5, "{healthy:?}");
    assert!(healthy.iter().all(|(_, v)| *v == 1.0), "{healthy:?}");
    let hits = values(&prometheus, "secmesh_token_cache_hits_total", "service");
    assert!(hits.iter().any(|(s, _)| s == "orders"), "{hits:?}");
    // No series carries a subject or a token.
    let series = prometheus
        .get("/api/v1/series?match[]=%7B__name__%3D~%22secmesh_.%2A%22%7D")
        .unwrap()
        .1;
    assert!(
        !series.contains("user:alice") && !series.contains("eyJ"),
        "{series}"
    );

    // Stop the demo as a person would (Ctrl-C): it closes and verifies its logs.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}
