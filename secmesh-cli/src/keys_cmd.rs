//! `secmesh keys init|rotate|list|serve`: an issuer's rotating key ring in a directory, and a
//! standalone JWKS endpoint for it.
//!
//! Exit codes as for every command: 0 done, 1 refused by a rule (a rotation before the next
//! key has been published for one max-cache period, without `--force`), 2 usage errors and
//! unreadable or invalid input (no ring in the directory, a refused state or key file, a file
//! that cannot be written, an address that cannot be bound).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use secmesh_core::SystemClock;
use secmesh_tokens::keyring::{KeyRecord, KeyRing, KeyRingError, KeyState, RingConfig, RingState};
use secmesh_tokens::{Algorithm, SigningKey};
use secmesh_tower::jwks::{self, JwksLayer};
use secmesh_tower::serve::PlainServer;

use crate::io::{
    REJECTED, USAGE, fail, parse_alg, path_shown, print_json, read_text, rfc3339, shown,
};

/// `secmesh keys ...`
#[derive(Subcommand, Debug)]
pub(crate) enum KeysCommand {
    /// Create a key ring in a directory: a current key that signs now and a next key published
    /// ahead of its turn.
    Init(InitArgs),
    /// Rotate: retire the current key, promote the next one, publish a new next one, remove
    /// retired keys whose tokens have all expired.
    Rotate {
        /// The ring's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Promote the next key even if it has been published for less than one max-cache
        /// period (verifiers that cached the key set before may refuse its tokens until they
        /// refresh).
        #[arg(long)]
        force: bool,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the ring's keys: state, kid, algorithm, and their times (RFC 3339).
    List {
        /// The ring's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Serve the ring's JWKS (and, with an issuer, its metadata) over HTTP, following
    /// rotations made by `secmesh keys rotate` in another process.
    Serve(ServeArgs),
}

/// `secmesh keys init` options.
#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// The directory (created with mode 0700 if absent; refused if it holds a ring).
    #[arg(long)]
    dir: PathBuf,
    /// The algorithm of the keys: EdDSA (the default), ES256, ES384 (RSA where the backend
    /// makes keys); asymmetric only.
    #[arg(long, value_name = "ALG", default_value = "EdDSA")]
    alg: String,
    /// The issuer (`iss`) the ring signs for, recorded in the ring and named in the metadata.
    #[arg(long, value_name = "ISS")]
    issuer: Option<String>,
    /// How long verifiers may cache the published key set, in seconds: the max-age it is
    /// served with, and how long a next key is published before it may sign.
    #[arg(long, value_name = "SECS", default_value_t = secmesh_tokens::keyring::DEFAULT_MAX_CACHE)]
    max_cache: u64,
    /// How long a retired key stays published, in seconds (default: the slow class bound plus
    /// 60 s of skew, 86460).
    #[arg(long, value_name = "SECS")]
    retain: Option<u64>,
    /// Start from an existing private key (PKCS#8 PEM, e.g. written by `secmesh keygen`) as
    /// the current key instead of a new one.
    #[arg(long, value_name = "FILE")]
    import: Option<PathBuf>,
}

/// `secmesh keys serve` options.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The ring's directory.
    #[arg(long)]
    dir: PathBuf,
    /// The address to listen on (e.g. 127.0.0.1:8443; port 0 picks one). The bound address
    /// is printed on standard output as `listening on ADDR`.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The issuer the metadata names (instead of the one recorded in the ring).
    #[arg(long, value_name = "ISS")]
    issuer: Option<String>,
    /// The jwks_uri the metadata names (by default the issuer's origin with
    /// /.well-known/jwks.json).
    #[arg(long, value_name = "URL")]
    jwks_uri: Option<String>,
    /// How often to check the ring's state file for rotations, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    poll_ms: u64,
}

pub(crate) fn run(cmd: KeysCommand) -> ExitCode {
    match cmd {
        KeysCommand::Init(args) => init(args),
        KeysCommand::Rotate { dir, force, json } => rotate(&dir, force, json),
        KeysCommand::List { dir, json } => list(&dir, json),
        KeysCommand::Serve(args) => serve(args),
    }
}

fn clock() -> Arc<SystemClock> {
    Arc::new(SystemClock)
}

/// A ring error as the exit code and message: refusals 1, everything else 2.
fn ring_fail(e: &KeyRingError) -> ExitCode {
    match e {
        KeyRingError::TooEarly {
            kid,
            published_for,
            max_cache,
            ready_at,
            ..
        } => fail(
            REJECTED,
            format!(
                "refusing to rotate: the next key {kid} was published {published_for} s ago and \
                 verifiers may cache the key set for {max_cache} s; it may sign from {} \
                 (--force rotates now)",
                rfc3339(i64::try_from(*ready_at).unwrap_or(i64::MAX))
            ),
        ),
        other => fail(USAGE, other),
    }
}

fn init(args: InitArgs) -> ExitCode {
    let alg = match parse_alg(&args.alg) {
        Ok(a) => a,
        Err(e) => return fail(USAGE, e),
    };
    let mut config = RingConfig::default().alg(alg).max_cache(args.max_cache);
    if let Some(iss) = args.issuer {
        config = config.issuer(iss);
    }
    if let Some(secs) = args.retain {
        config = config.retain(secs);
    }
    let made = match &args.import {
        Some(path) => match import_key(path, alg) {
            Ok(key) => KeyRing::import(&args.dir, config, clock(), key),
            Err(e) => return fail(USAGE, e),
        },
        None => KeyRing::init(&args.dir, config, clock()),
    };
    match made {
        Ok(ring) => {
            let st = ring.state();
            println!("created key ring {}", path_shown(&args.dir));
            print_keys(&st);
            ExitCode::SUCCESS
        }
        Err(e) => ring_fail(&e),
    }
}

fn import_key(path: &Path, alg: Algorithm) -> Result<SigningKey, String> {
    // The key's text is wiped when dropped.
    let pem = zeroize::Zeroizing::new(read_text(path)?);
    SigningKey::from_pkcs8_pem(alg, &pem)
        .map_err(|e| format!("cannot use key {} for {alg}: {e}", path_shown(path)))
}

fn rotate(dir: &Path, force: bool, json: bool) -> ExitCode {
    let ring = match KeyRing::open(dir, clock()) {
        Ok(r) => r,
        Err(e) => return ring_fail(&e),
    };
    match ring.rotate(force) {
        Ok(rot) => {
            if json {
                print_json(&serde_json::json!({
                    "retired": rot.retired,
                    "current": rot.current,
                    "next": rot.next,
                    "removed": rot.removed,
                }));
            } else {
                match &rot.retired {
                    Some(old) => println!("rotated: {} signs now (was {old})", rot.current),
                    None => println!("rotated: {} signs now", rot.current),
                }
                println!("next: {}", rot.next);
                for kid in &rot.removed {
                    println!("removed: {kid} (every token it signed has expired)");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => ring_fail(&e),
    }
}

fn time(t: Option<u64>) -> Option<String> {
    t.map(|t| rfc3339(i64::try_from(t).unwrap_or(i64::MAX)))
}

/// When the key's state changes next: a next key may sign from, a retired key is
/// unpublished at.
fn milestone(st: &RingState, k: &KeyRecord) -> Option<(&'static str, u64)> {
    match k.state {
        KeyState::Next => Some(("ready", k.published.saturating_add(st.max_cache))),
        KeyState::Retired => Some(("unpublished", k.retired?.saturating_add(st.retain))),
        KeyState::Current => None,
    }
}

fn ordered(st: &RingState) -> Vec<&KeyRecord> {
    let rank = |s: KeyState| match s {
        KeyState::Next => 0,
        KeyState::Current => 1,
        KeyState::Retired => 2,
    };
    let mut keys: Vec<&KeyRecord> = st.keys.iter().collect();
    keys.sort_by(|a, b| {
        rank(a.state)
            .cmp(&rank(b.state))
            .then(b.retired.cmp(&a.retired))
    });
    keys
}

fn print_keys(st: &RingState) {
    let dash = || "-".to_owned();
    println!(
        "{:<8} {:<43} {:<6} {:<20} {:<20} {:<20} {:<20} NOTE",
        "STATE", "KID", "ALG", "CREATED", "PUBLISHED", "ACTIVATED", "RETIRED"
    );
    for k in ordered(st) {
        let note = match milestone(st, k) {
            Some(("ready", t)) => format!(
                "may sign from {}",
                rfc3339(i64::try_from(t).unwrap_or(i64::MAX))
            ),
            Some((_, t)) => format!(
                "published until {}",
                rfc3339(i64::try_from(t).unwrap_or(i64::MAX))
            ),
            None => "signing".to_owned(),
        };
        println!(
            "{:<8} {:<43} {:<6} {:<20} {:<20} {:<20} {:<20} {note}",
            k.state.as_str(),
            shown(&k.kid),
            k.alg.as_str(),
            time(Some(k.created)).unwrap_or_else(dash),
            time(Some(k.published)).unwrap_or_else(dash),
            time(k.activated).unwrap_or_else(dash),
            time(k.retired).unwrap_or_else(dash),
        );
    }
}

fn list(dir: &Path, json: bool) -> ExitCode {
    let ring = match KeyRing::open(dir, clock()) {
        Ok(r) => r,
        Err(e) => return ring_fail(&e),
    };
    let st = ring.state();
    if !json {
        if let Some(iss) = &st.issuer {
            println!("issuer: {}", shown(iss));
        }
        println!(
            "max-cache: {} s, retired keys published for {} s",
            st.max_cache, st.retain
        );
        print_keys(&st);
        return ExitCode::SUCCESS;
    }
    let keys: Vec<serde_json::Value> = ordered(&st)
        .into_iter()
        .map(|k| {
            let (ready, unpublished) = match milestone(&st, k) {
                Some(("ready", t)) => (time(Some(t)), None),
                Some((_, t)) => (None, time(Some(t))),
                None => (None, None),
            };
            serde_json::json!({
                "state": k.state.as_str(),
                "kid": k.kid,
                "alg": k.alg.as_str(),
                "created": time(Some(k.created)),
                "published": time(Some(k.published)),
                "activated": time(k.activated),
                "retired": time(k.retired),
                "ready": ready,
                "unpublished": unpublished,
            })
        })
        .collect();
    print_json(&serde_json::json!({
        "issuer": st.issuer,
        "alg": st.alg.as_str(),
        "max_cache": st.max_cache,
        "retain": st.retain,
        "keys": keys,
    }));
    ExitCode::SUCCESS
}

fn serve(args: ServeArgs) -> ExitCode {
    let ring = match KeyRing::open(&args.dir, clock()) {
        Ok(r) => Arc::new(r),
        Err(e) => return ring_fail(&e),
    };
    let mut layer = JwksLayer::new(ring.clone());
    if let Some(iss) = args.issuer {
        layer = match layer.issuer(iss) {
            Ok(l) => l,
            Err(e) => return fail(USAGE, e),
        };
    }
    if let Some(uri) = args.jwks_uri {
        layer = match layer.jwks_uri(uri) {
            Ok(l) => l,
            Err(e) => return fail(USAGE, e),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(USAGE, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => return fail(USAGE, format!("cannot listen on {}: {e}", args.listen)),
        };
        let addr = listener.local_addr().unwrap_or(args.listen);
        let watcher = match jwks::watch(ring, Duration::from_millis(args.poll_ms.max(10))) {
            Ok(w) => w,
            Err(e) => return fail(USAGE, format!("cannot watch the key ring: {e}")),
        };
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {addr}").and_then(|()| out.flush());
        }
        let served = PlainServer::new()
            .serve_with_shutdown(listener, layer.service(), shutdown_signal())
            .await;
        watcher.shutdown().await;
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(USAGE, format!("serving failed: {e}")),
        }
    })
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
