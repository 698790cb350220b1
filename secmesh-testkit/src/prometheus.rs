//! A real `prometheus` server for the metrics tests: on 127.0.0.1, a free port, its own
//! directory (configuration and storage), scraping the targets it is given every second,
//! stopped when dropped.
//!
//! [`Prometheus::start`] returns `None` (the test skips, with a loud message) when
//! `prometheus` is not installed, except in CI (`CI=true`), where that is a failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `prometheus`.
pub struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Prometheus {
    /// Start one scraping `targets` (`host:port`, path `/metrics`) every second, or `None`
    /// when `prometheus` is missing outside CI.
    ///
    /// # Panics
    /// In CI without `prometheus`, or when it does not answer within 30 s.
    pub fn start(targets: &[String]) -> Option<Prometheus> {
        if !crate::require_program("prometheus", "prometheus") {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: secmesh\n    static_configs:\n      - targets: [{list}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.get("/-/ready").is_none_or(|(status, _)| status != 200) {
            assert!(Instant::now() < deadline, "prometheus did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(p)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// GET `path` (with its query) from the server: the status and the body, or `None` when
    /// it does not answer. Plain HTTP/1.0 over a socket: no client crate needed.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut out = Vec::new();
        s.take(16 << 20).read_to_end(&mut out).ok()?;
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    }

    /// The instant query `promql` (URL-encoded here): the API's JSON answer.
    pub fn query(&self, promql: &str) -> Option<String> {
        let mut q = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"_-.~".contains(&b) {
                q.push(char::from(b));
            } else {
                q.push_str(&format!("%{b:02X}"));
            }
        }
        self.get(&format!("/api/v1/query?query={q}"))
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
