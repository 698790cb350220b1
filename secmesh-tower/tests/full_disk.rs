//! A full disk under a serving stack: a real 64 KiB tmpfs holds the audit log, a filler file
//! takes its last byte, a real server on 127.0.0.1 takes requests.
//!
//! - Fail-closed (queued and durable): requests are refused with 503 while events cannot be
//!   written, memory stays bounded over thousands of refusals, and once space is freed the
//!   service answers again without a restart; the loss (if any) is reported in the log and the
//!   chain verifies. In durable mode no answered request lacks its event.
//! - Drop-and-count: requests are served throughout, the lost events are counted and reported
//!   in the log after recovery.
//!
//! Mounting needs root; without it the tests are skipped loudly, except under `CI=true`, where
//! they must run.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
use secmesh_audit::verify::{read_events, verify_files};
use secmesh_audit::{Auditor, FullPolicy};
use secmesh_tower::audit::AuditLayer;

/// One test at a time: they measure the process's memory.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A mounted 64 KiB tmpfs, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Tmpfs { dir });
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot mount a tmpfs, and under CI this test must run"
        );
        eprintln!(
            "\n*** SKIPPED: cannot mount a tmpfs (needs root); the full-disk test did not run ***\n"
        );
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a failed test may still hold the log open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fill the file system: a filler file grows until ENOSPC, in big then 1-byte writes.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [4096, 1] {
        let buf = vec![b'x'; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

/// This process's resident memory in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

struct Server {
    addr: SocketAddr,
    auditor: Auditor,
    task: tokio::task::JoinHandle<()>,
    client: Client<HttpConnector, Empty<Bytes>>,
    log: PathBuf,
    next: u64,
    answered: Vec<u64>,
}

impl Server {
    async fn start(dir: &Path, policy: FullPolicy, durable: bool) -> Server {
        let log = dir.join("svc.jsonl");
        let sink = JsonLinesSink::open(&log, JsonLinesConfig::default()).unwrap();
        let auditor = Auditor::builder(sink)
            .full_policy(policy)
            .probe_interval(Duration::from_millis(50))
            .spawn();
        let layer = AuditLayer::new(auditor.clone(), "svc");
        let layer = if durable { layer.durable() } else { layer };
        let app = Router::new()
            .route("/items/{n}", get(|| async { "ok" }))
            .layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            addr,
            auditor,
            task,
            client: Client::builder(TokioExecutor::new()).build_http(),
            log,
            next: 0,
            answered: Vec::new(),
        }
    }

    /// One request; its status.
    async fn get(&mut self) -> u16 {
        let n = self.next;
        self.next += 1;
        let uri = format!("http://{}/items/{n}", self.addr).parse().unwrap();
        let res = tokio::time::timeout(Duration::from_secs(20), self.client.get(uri))
            .await
            .expect("the server answers")
            .unwrap();
        let status = res.status().as_u16();
        if status == 200 {
            self.answered.push(n);
        }
        status
    }

    /// Requests until `k` in a row got `status` (at most `max`).
    async fn until_in_a_row(&mut self, status: u16, k: usize, max: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut row = 0;
        for _ in 0..max {
            if self.get().await == status {
                row += 1;
                if row == k {
                    return;
                }
            } else {
                row = 0;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(Instant::now() < deadline, "never {k} x {status} in a row");
        }
        panic!("never {k} x {status} in a row in {max} requests");
    }

    /// Stop serving and the writer; the log's events, after checking that its chain verifies
    /// and that the loss reports add up to the events lost.
    async fn finish(self) -> (Vec<secmesh_audit::event::AuditEvent>, Vec<u64>, u64) {
        self.task.abort();
        let _ = self.task.await;
        let lost = self.auditor.write_errors();
        self.auditor.shutdown();
        let report = verify_files(&[&self.log], None).expect("the chain verifies");
        let (events, bad) = read_events(&[&self.log]).unwrap();
        assert_eq!(bad, 0, "no torn or corrupt line");
        assert_eq!(report.events, events.len() as u64);
        let reported: u64 = events
            .iter()
            .filter(|e| e.service == "secmesh-audit")
            .filter_map(|e| e.reason.as_deref()?.strip_prefix("lost "))
            .map(|r| r.split(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(reported, lost, "every lost event is reported in the log");
        (events, self.answered, lost)
    }
}

async fn fail_closed(durable: bool) {
    let _serial = SERIAL.lock().await;
    let Some(disk) = Tmpfs::mount() else { return };
    let mut s = Server::start(disk.path(), FullPolicy::FailClosed, durable).await;
    for _ in 0..20 {
        assert_eq!(s.get().await, 200);
    }
    let filler = fill(disk.path());
    // The log's last page may still take a few events; then the sink fails.
    s.until_in_a_row(503, 50, 5_000).await;
    assert!(!s.auditor.is_healthy());
    let err = s.auditor.last_write_error().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
    let before = rss();
    let mut served = 0;
    for _ in 0..3_000 {
        if s.get().await != 503 {
            served += 1;
        }
    }
    let grown = rss().saturating_sub(before);
    eprintln!(
        "fail-closed (durable: {durable}): 3,000 requests on a full disk: {served} served, \
         RSS grew {} KiB",
        grown / 1024
    );
    if durable {
        // A response waits for its event: none can be released while none can be written.
        assert_eq!(served, 0, "durable fail-closed served without writing");
    } else {
        // Queued: refused while the auditor knows the sink fails. When a small loss report
        // still fits in the log's last page the sink looks healthy for a moment and a few
        // requests pass; their events' loss is counted and reported (checked below).
        assert!(served <= 300, "fail-closed served {served} of 3,000");
    }
    assert!(grown < 20 << 20, "memory grew by {grown} bytes");
    // Space again: the service recovers by itself.
    std::fs::remove_file(filler).unwrap();
    s.until_in_a_row(200, 20, 5_000).await;
    assert!(s.auditor.is_healthy());
    let (events, answered, lost) = s.finish().await;
    eprintln!(
        "fail-closed (durable: {durable}): {lost} events lost and reported, {} answered",
        answered.len()
    );
    assert!(
        events.iter().any(|e| e.service == "secmesh-audit"),
        "the outage is reported in the log"
    );
    // The AuditLayer alone does not classify: the request is named by its path.
    let logged: HashSet<&str> = events.iter().filter_map(|e| e.path.as_deref()).collect();
    let missing: Vec<_> = answered
        .iter()
        .filter(|n| !logged.contains(format!("/items/{n}").as_str()))
        .collect();
    if durable {
        assert!(missing.is_empty(), "answered without an event: {missing:?}");
    } else {
        // Nothing lost silently: every answered request without an event is in a loss count.
        assert!(
            missing.len() as u64 <= lost,
            "{} missing, {lost} reported",
            missing.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_on_a_full_disk_and_recovers() {
    fail_closed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_fail_closed_refuses_on_a_full_disk_and_answers_nothing_unlogged() {
    fail_closed(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_and_count_serves_on_a_full_disk_counts_and_reports() {
    let _serial = SERIAL.lock().await;
    let Some(disk) = Tmpfs::mount() else { return };
    let mut s = Server::start(disk.path(), FullPolicy::DropAndCount, false).await;
    for _ in 0..20 {
        assert_eq!(s.get().await, 200);
    }
    let filler = fill(disk.path());
    let before = rss();
    for _ in 0..3_000 {
        assert_eq!(s.get().await, 200, "drop-and-count serves");
    }
    s.auditor.flush().unwrap();
    let grown = rss().saturating_sub(before);
    let lost = s.auditor.write_errors();
    eprintln!(
        "drop-and-count: 3,000 requests on a full disk: {lost} events lost, RSS grew {} KiB",
        grown / 1024
    );
    assert!(lost > 2_500, "the losses are counted ({lost})");
    assert!(!s.auditor.is_healthy());
    assert!(grown < 20 << 20, "memory grew by {grown} bytes");
    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.auditor.is_healthy() {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..20 {
        assert_eq!(s.get().await, 200);
    }
    let (events, _, lost) = s.finish().await;
    let report = events
        .iter()
        .find(|e| e.service == "secmesh-audit")
        .expect("the loss is reported in the log");
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("could not write"),
        "{report:?}"
    );
    assert!(lost > 2_500);
}
