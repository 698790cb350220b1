//! The Txn-Token Service under load over mutual TLS (issue 15's "Measures"): exchanges per
//! second on one server core, p50/p99 latency at 1 and 64 concurrent clients, each on its own
//! kept-alive connection, with EdDSA and ES256 IdP access tokens, and the share of the server's
//! core spent in signature work.
//!
//! The service (`TxnTokenService` on `TlsServer`, mutual TLS required, no audit, the ring's
//! EdDSA key) runs on a current-thread tokio runtime on its own OS thread: at most one core.
//! The clients (one `StsClient` each, HTTP/1.1, so one connection each, warmed up before the clock
//! starts) run on a current-thread runtime on the main thread. Each exchange's latency is
//! recorded; the percentiles are of all of them, sorted.
//!
//! The floor of one exchange (one `IdpVerifier::verify` of the subject token plus one
//! `Issuer::sign_claims` of the claims it issues) is measured on the server's thread just
//! before and just after each configuration (300 rounds each, in that thread's CPU time: on a
//! shared machine, wall time would count the time other processes had the core); the
//! signature share of the core is floor x exchanges/s. The server thread's own CPU
//! time (`/proc/thread-self/schedstat`) says how busy that core was: the share of its busy time
//! is floor x exchanges/s / busy. The clients' TLS and the load generator share the machine's
//! cores with the server (2 on the reference machine).
//!
//! ```text
//! cargo bench -p secmesh --bench sts_load
//! STS_LOAD_SECS=10 STS_LOAD_CLIENTS=1,8,64 cargo bench -p secmesh --bench sts_load
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "support/sts_mesh.rs"]
mod sts_mesh;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secmesh::core::claims::Claims;
use secmesh::tokens::external::IdpVerifier;
use secmesh::tokens::{Algorithm, Issuer};
use secmesh_tls::ca::Ca;
use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Workload};
use secmesh_tower::serve::ServerStats;
use secmesh_tower::sts::{StsClient, TxnTokenService};
use secmesh_tower::tls::TlsServer;
use tokio::sync::{mpsc, oneshot};

use sts_mesh::{GATEWAY, StsMesh, TD};

/// Exchanges each client makes before the clock starts (the handshake, warm caches).
const WARM_UP: usize = 20;

fn workload(dir: &Path, ca: &Ca, name: &str) -> Workload {
    let issued = ca
        .issue(&format!("spiffe://{TD}/{name}").parse().unwrap(), 1)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), &issued.cert_pem).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), &issued.key_pem).unwrap();
    Workload::load(TlsFiles::new(
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
        dir.join("ca/ca.crt"),
    ))
    .unwrap()
}

/// The calling thread's time on a CPU and time runnable but waiting for one (another thread
/// or process had it), from /proc (`None` where it does not say).
#[derive(Clone, Copy)]
struct Cpu {
    on: Duration,
    waiting: Duration,
}

fn thread_cpu() -> Option<Cpu> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut f = s.split_whitespace().map(|n| n.parse::<u64>().ok());
    Some(Cpu {
        on: Duration::from_nanos(f.next()??),
        waiting: Duration::from_nanos(f.next()??),
    })
}

impl Cpu {
    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            on: self.on.saturating_sub(earlier.on),
            waiting: self.waiting.saturating_sub(earlier.waiting),
        }
    }
}

/// What the main thread asks the server thread.
enum Ask {
    /// Its CPU time.
    Cpu(oneshot::Sender<Option<Cpu>>),
    /// The floor of one exchange of `token` issuing `claims`, timed there: µs of the thread's
    /// CPU time per verify + sign (the same core, the same moment as the load).
    Floor {
        token: String,
        claims: Box<Claims>,
        reply: oneshot::Sender<f64>,
    },
}

type Probe = mpsc::UnboundedSender<Ask>;

/// Verify + sign `FLOOR_ROUNDS` times on this thread: µs per round, of this thread's CPU time
/// (wall time where /proc does not say).
fn floor_here(idp: &IdpVerifier, issuer: &Issuer, token: &str, claims: &Claims) -> f64 {
    const FLOOR_ROUNDS: u32 = 300;
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    for _ in 0..FLOOR_ROUNDS {
        std::hint::black_box(idp.verify(token).unwrap());
        std::hint::black_box(issuer.sign_claims(claims).unwrap());
    }
    let spent = match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) => b.since(a).on,
        _ => t0.elapsed(),
    };
    spent.as_secs_f64() * 1e6 / f64::from(FLOOR_ROUNDS)
}

/// The service on its own OS thread, on a current-thread runtime: its address, its connection
/// counters and a probe answering the thread's CPU time.
fn serve(mesh: &StsMesh, server: &Workload) -> (SocketAddr, ServerStats, Probe) {
    let tls = TlsServer::from_workload(server, ClientAuth::Required);
    let stats = tls.stats();
    let service = TxnTokenService::<String>::new(mesh.sts.clone());
    let (probe, mut probes) = mpsc::unbounded_channel::<Ask>();
    let (idp, issuer) = (mesh.idp.clone(), mesh.issuer.clone());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sts-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                tokio::spawn(async move {
                    while let Some(ask) = probes.recv().await {
                        match ask {
                            Ask::Cpu(reply) => {
                                let _ = reply.send(thread_cpu());
                            }
                            Ask::Floor {
                                token,
                                claims,
                                reply,
                            } => {
                                let _ = reply.send(floor_here(&idp, &issuer, &token, &claims));
                            }
                        }
                    }
                });
                tls.serve(listener, service).await.unwrap();
            });
        })
        .unwrap();
    (addr_rx.recv().unwrap(), stats, probe)
}

async fn server_cpu(probe: &Probe) -> Option<Cpu> {
    let (tx, rx) = oneshot::channel();
    probe.send(Ask::Cpu(tx)).ok()?;
    rx.await.ok()?
}

async fn server_floor(probe: &Probe, token: &str, claims: &Claims) -> f64 {
    let (reply, rx) = oneshot::channel();
    let ask = Ask::Floor {
        token: token.to_owned(),
        claims: Box::new(claims.clone()),
        reply,
    };
    probe.send(ask).unwrap();
    rx.await.unwrap()
}

struct Run {
    exchanges: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    server: Option<Cpu>,
    clients: Option<Cpu>,
    open_connections: usize,
}

async fn run(
    url: &str,
    gateway: &Workload,
    token: &str,
    clients: usize,
    secs: f64,
    probe: &Probe,
    stats: &ServerStats,
) -> Run {
    let ask = Arc::new(StsMesh::ask(token));
    let ready = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let go = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let sts = StsClient::builder(
            gateway,
            ServerId::exact(format!("spiffe://{TD}/sts").parse().unwrap()),
            url,
        )
        .build()
        .unwrap();
        let (ask, ready, go) = (ask.clone(), ready.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..WARM_UP {
                sts.exchange(&ask).await.unwrap();
            }
            ready.wait().await;
            go.wait().await;
            let deadline = Instant::now() + Duration::from_secs_f64(secs);
            let mut latencies = Vec::with_capacity(4096);
            loop {
                let t = Instant::now();
                if t >= deadline {
                    break;
                }
                sts.exchange(&ask).await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    ready.wait().await;
    let open_connections = stats.open_connections();
    let cpu0 = server_cpu(probe).await;
    let own0 = thread_cpu();
    let start = Instant::now();
    go.wait().await;
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let wall = start.elapsed();
    let own1 = thread_cpu();
    let cpu1 = server_cpu(probe).await;
    latencies.sort();
    Run {
        exchanges: latencies.len(),
        wall,
        latencies,
        server: cpu0.zip(cpu1).map(|(a, b)| b.since(a)),
        clients: own0.zip(own1).map(|(a, b)| b.since(a)),
        open_connections,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or_default()
}

fn main() {
    let secs: f64 = std::env::var("STS_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let client_counts: Vec<usize> = std::env::var("STS_LOAD_CLIENTS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 64]);
    // StsClient speaks HTTP/1.1 (offered alone in ALPN) on kept-alive connections.

    let mesh = StsMesh::new(Algorithm::EdDsa);
    let ca = Ca::init(mesh.dir.path().join("ca"), TD.parse().unwrap()).unwrap();
    let server = workload(mesh.dir.path(), &ca, "sts");
    let gateway = workload(mesh.dir.path(), &ca, "gateway");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // The subject tokens and the claims an exchange of each issues (for the floor).
    let subjects: Vec<(Algorithm, String, Claims)> = [Algorithm::EdDsa, Algorithm::Es256]
        .into_iter()
        .map(|alg| {
            let token = mesh.idp_token(alg);
            let issued = rt
                .block_on(mesh.sts.exchange(GATEWAY, &StsMesh::ask(&token)))
                .unwrap();
            (alg, token, issued.claims)
        })
        .collect();

    let (addr, stats, probe) = serve(&mesh, &server);
    let url = format!("https://{addr}/token");
    eprintln!(
        "sts_load: {secs} s per configuration, ring EdDSA, server on one thread, clients on another; HTTP/1.1; backend {}",
        secmesh::tokens::BACKEND
    );
    eprintln!(
        "subject alg, clients, exchanges/s, latency p50/p99, floor (verify + sign on the server thread, in its CPU time), \
         server thread on CPU / waiting for a CPU / server CPU per exchange, client thread on \
         CPU, signature work as a share of one core (floor x exchanges/s) and of the server \
         thread's CPU time, connections open"
    );
    eprintln!(
        "{:<6} {:>4} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>8} {:>6} {:>8} {:>8} {:>5}",
        "alg",
        "cli",
        "exch/s",
        "p50",
        "p99",
        "floor",
        "srv on",
        "wait",
        "srv/exch",
        "cli on",
        "sig/core",
        "sig/srv",
        "conns"
    );
    let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.1}%", v * 100.0));
    for (alg, token, claims) in &subjects {
        for &clients in &client_counts {
            // The floor on the server's thread just before and just after the load.
            let before = rt.block_on(server_floor(&probe, token, claims));
            let r = rt.block_on(run(&url, &gateway, token, clients, secs, &probe, &stats));
            let after = rt.block_on(server_floor(&probe, token, claims));
            let floor = (before + after) / 2.0;
            let wall = r.wall.as_secs_f64();
            let rate = r.exchanges as f64 / wall;
            let sig_core = floor * 1e-6 * rate;
            let on = r.server.map(|c| c.on.as_secs_f64() / wall);
            let waiting = r.server.map(|c| c.waiting.as_secs_f64() / wall);
            let per_exchange = r.server.map_or("n/a".to_owned(), |c| {
                format!("{:.1}µs", c.on.as_secs_f64() * 1e6 / r.exchanges as f64)
            });
            let cli = r.clients.map(|c| c.on.as_secs_f64() / wall);
            eprintln!(
                "{:<6} {clients:>4} {rate:>8.0} {:>6.0}µs {:>6.0}µs {floor:>6.1}µs {:>6} {:>6} {:>8} {:>6} {:>7.1}% {:>8} {:>5}",
                format!("{alg:?}"),
                percentile(&r.latencies, 0.50).as_secs_f64() * 1e6,
                percentile(&r.latencies, 0.99).as_secs_f64() * 1e6,
                pct(on),
                pct(waiting),
                per_exchange,
                pct(cli),
                sig_core * 100.0,
                pct(on.map(|b| sig_core / b)),
                r.open_connections,
            );
        }
    }
}
