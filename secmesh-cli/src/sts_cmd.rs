//! `secmesh sts`: the Txn-Token Service as a process.
//!
//! `secmesh sts serve --config sts.toml` serves, on one mutual-TLS listener:
//!
//! - `POST /token`: the Txn-Token Service (the token-exchange profile of the transaction
//!   tokens draft; `secmesh_tower::sts`);
//! - `GET /.well-known/jwks.json` and the issuer's metadata: the key ring's published keys
//!   (`secmesh_tower::jwks`).
//!
//! The key ring, the TLS files and the exchange policy are followed while serving: a rotation
//! by `secmesh keys rotate`, a renewed certificate or a new CRL, an edited policy take effect
//! without a restart (a policy that does not load is reported and the last good one stays).
//!
//! ```toml
//! listen = "127.0.0.1:8443"
//! issuer = "https://sts.mesh.test"      # iss of the issued tokens, and the metadata's issuer
//! trust_domain = "mesh.test"            # the audience requests name and tokens carry
//! key_dir = "ring"                      # `secmesh keys init --dir ring`
//! policy = "exchange.toml"              # the exchange policy
//! rotate_every = 86400                  # optional: rotate the ring's key this often (seconds)
//!
//! [tls]                                 # this service's X.509-SVID and the trust bundle
//! cert = "sts.crt"
//! key = "sts.key"
//! ca = "ca.crt"
//! crl = "ca.crl"                        # optional
//!
//! [audit]                               # optional: one signed, chained JSON-lines log
//! log = "audit/sts.jsonl"
//! key = "audit.key"                     # optional: the audit signing key (PEM)
//!
//! [[idp]]                               # identity providers whose tokens are exchanged
//! issuer = "https://idp.example"
//! audience = "gateway"                  # the aud their tokens must name
//! jwks_url = "https://idp.example/jwks" # or: discover = true (OIDC / RFC 8414), or jwks = "idp.jwks"
//! ca = "idp-ca.pem"                     # optional: roots for the IdP's https
//! allow_http = false
//! subject_prefix = "user:"              # the mesh subject is prefix + sub
//! allow_missing_typ = false
//! ```
//!
//! Relative paths are relative to the configuration file's directory. Exit codes of `serve`:
//! 0 after a clean shutdown (SIGTERM, Ctrl-C), 2 for a configuration that cannot be used
//! (unknown key, unreadable file, a policy that does not load, a port that cannot be bound).
//! `check` loads the same, lints the exchange policy (findings and advisory warnings on
//! stdout) and exits 0 (fine, warnings allowed), 1 (lint findings) or 2 (would not serve).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use secmesh_audit::Auditor;
use secmesh_audit::chain::AuditKey;
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
use secmesh_core::SystemClock;
use secmesh_core::exchange_policy::{ExchangePolicy, SharedExchangePolicy};
use secmesh_tls::config::{ClientAuth, TlsFiles, Workload};
use secmesh_tokens::external::{IdpVerifier, IdpVerifiers};
use secmesh_tokens::keyring::KeyRing;
use secmesh_tokens::source::KeySource;
use secmesh_tower::jwks::{self, JwksLayer};
use secmesh_tower::serve::ServerLimits;
use secmesh_tower::sts::{Sts, TxnTokenService};
use secmesh_tower::tls::TlsServer;
use serde::Deserialize;
use tower_layer::Layer;

use crate::io::{USAGE, fail, path_shown, read_text, read_text_limited};

/// `secmesh sts ...`
#[derive(Subcommand, Debug)]
pub(crate) enum StsCommand {
    /// Serve the Txn-Token Service: POST /token over mutual TLS, and the ring's JWKS.
    Serve(ServeArgs),
    /// Load a configuration as `serve` would (files, keys, policy), lint the exchange policy,
    /// print a summary, and exit: 0 when it would serve (advisory warnings only), 1 when the
    /// exchange policy has findings (rules that never match or never decide), 2 when it would
    /// not serve.
    Check(ServeArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The service's configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
}

/// The configuration file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Config {
    listen: SocketAddr,
    issuer: String,
    trust_domain: String,
    key_dir: PathBuf,
    policy: PathBuf,
    #[serde(default)]
    rotate_every: Option<u64>,
    tls: TlsSection,
    #[serde(default)]
    audit: Option<AuditSection>,
    #[serde(default)]
    idp: Vec<IdpSection>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    #[serde(default)]
    crl: Option<PathBuf>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    log: PathBuf,
    #[serde(default)]
    key: Option<PathBuf>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct IdpSection {
    issuer: String,
    audience: String,
    #[serde(default)]
    jwks_url: Option<String>,
    #[serde(default)]
    discover: bool,
    #[serde(default)]
    jwks: Option<PathBuf>,
    #[serde(default)]
    ca: Option<PathBuf>,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    subject_prefix: Option<String>,
    #[serde(default)]
    allow_missing_typ: bool,
}

pub(crate) fn run(cmd: StsCommand) -> ExitCode {
    match cmd {
        StsCommand::Serve(args) => serve(args, false),
        StsCommand::Check(args) => serve(args, true),
    }
}

fn read_config(path: &Path) -> Result<Config, String> {
    let text = read_text(path)?;
    let mut config: Config = toml::from_str(&text).map_err(|e| {
        format!(
            "invalid configuration {}: {}",
            path_shown(path),
            e.message()
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let at = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    at(&mut config.key_dir);
    at(&mut config.policy);
    at(&mut config.tls.cert);
    at(&mut config.tls.key);
    at(&mut config.tls.ca);
    if let Some(crl) = &mut config.tls.crl {
        at(crl);
    }
    if let Some(audit) = &mut config.audit {
        at(&mut audit.log);
        if let Some(k) = &mut audit.key {
            at(k);
        }
    }
    for idp in &mut config.idp {
        if let Some(j) = &mut idp.jwks {
            at(j);
        }
        if let Some(c) = &mut idp.ca {
            at(c);
        }
    }
    Ok(config)
}

fn serve(args: ServeArgs, check_only: bool) -> ExitCode {
    let config = match read_config(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(USAGE, e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(USAGE, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        match start(config, check_only).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(crate::io::REJECTED),
            Err(e) => fail(USAGE, e),
        }
    })
}

/// Serve (or only check); `Ok(false)` when a check found lint findings.
async fn start(config: Config, check_only: bool) -> Result<bool, String> {
    let ring = Arc::new(
        KeyRing::open(&config.key_dir, Arc::new(SystemClock))
            .map_err(|e| format!("key ring {}: {e}", path_shown(&config.key_dir)))?,
    );
    let policy = load_policy(&config.policy)?;
    let shared = SharedExchangePolicy::new(policy);
    let mut files = TlsFiles::new(&config.tls.cert, &config.tls.key, &config.tls.ca);
    if let Some(crl) = &config.tls.crl {
        files = files.crl(crl);
    }
    let workload = Workload::load(files).map_err(|e| format!("TLS files: {e}"))?;
    let mut idps = IdpVerifiers::new();
    let mut prefixes = Vec::new();
    for idp in &config.idp {
        let source = idp_source(idp).await?;
        let mut v = IdpVerifier::new(source, idp.issuer.clone(), idp.audience.clone());
        if idp.allow_missing_typ {
            v = v.allow_missing_typ();
        }
        idps = idps.issuer(v);
        if let Some(p) = &idp.subject_prefix {
            prefixes.push((idp.issuer.clone(), p.clone()));
        }
    }
    let mut builder = Sts::builder(&ring, config.issuer.clone(), config.trust_domain.clone())
        .shared_policy(shared.clone())
        .idps(idps);
    for (iss, p) in prefixes {
        builder = builder.subject_prefix(iss, p);
    }
    let auditor = match &config.audit {
        Some(a) => Some(open_audit(a)?),
        None => None,
    };
    if let Some(a) = &auditor {
        builder = builder.auditor(a.clone(), "sts");
    }
    let sts = builder.build().map_err(|e| e.to_string())?;
    let jwks_layer = JwksLayer::new(ring.clone())
        .issuer(config.issuer.clone())
        .map_err(|e| e.to_string())?;
    if check_only {
        let policy = shared.current();
        let report = policy.lint();
        let file = path_shown(&config.policy);
        for f in report.findings() {
            println!("{file}: warning: {}", crate::io::shown(f));
        }
        let findings = report
            .findings()
            .iter()
            .filter(|f| !f.kind().is_advisory())
            .count();
        println!(
            "{}: issuer {} for {}, key {}, {} exchange rule(s) ({findings} finding(s)), {} identity provider(s)",
            if findings == 0 { "ok" } else { "findings" },
            crate::io::shown(&config.issuer),
            crate::io::shown(&config.trust_domain),
            ring.current_kid(),
            policy.len(),
            config.idp.len(),
        );
        return Ok(findings == 0);
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    let ring_watch = jwks::watch(ring.clone(), Duration::from_secs(1))
        .map_err(|e| format!("cannot watch the key ring: {e}"))?;
    let tls_watch = workload
        .watch(Duration::from_secs(10))
        .map_err(|e| format!("cannot watch the TLS files: {e}"))?;
    let policy_watch = secmesh_tower::sts::PolicyFileWatch::spawn(
        &config.policy,
        shared.clone(),
        Duration::from_secs(2),
    )
    .map_err(|e| e.to_string())?;
    if let Some(every) = config.rotate_every {
        let ring = ring.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(e) = ring.maintain(every) {
                    tracing::error!(target: "secmesh::sts", error = %e, "key rotation failed");
                }
            }
        });
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}").and_then(|()| out.flush());
    }
    let app = jwks_layer.layer(TokenPath(TxnTokenService::<jwks::JwksBody>::new(sts)));
    let served = TlsServer::from_workload(&workload, ClientAuth::Required)
        .limits(ServerLimits::default())
        .serve_with_shutdown(listener, app, crate::keys_cmd::shutdown_signal())
        .await;
    ring_watch.shutdown().await;
    drop(tls_watch);
    drop(policy_watch);
    if let Some(a) = auditor {
        let _ = a.flush();
        a.shutdown();
    }
    served
        .map(|()| true)
        .map_err(|e| format!("serving failed: {e}"))
}

fn load_policy(path: &Path) -> Result<ExchangePolicy, String> {
    let text = read_text_limited(path, secmesh_fs::DOCUMENT)?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        ExchangePolicy::from_json(&text)
    } else {
        ExchangePolicy::from_toml(&text)
    };
    parsed.map_err(|e| format!("invalid exchange policy {}: {e}", path_shown(path)))
}

fn open_audit(a: &AuditSection) -> Result<Auditor, String> {
    let mut config = JsonLinesConfig::default();
    config.service = Some("sts".to_owned());
    if let Some(key) = &a.key {
        let pem = read_text(key)?;
        let key = AuditKey::from_pem(&pem)
            .map_err(|e| format!("invalid audit key {}: {e}", path_shown(key)))?;
        config = config.with_key(key);
    }
    if let Some(dir) = a.log.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", path_shown(dir)))?;
    }
    let sink = JsonLinesSink::open(&a.log, config)
        .map_err(|e| format!("audit log {}: {e}", path_shown(&a.log)))?;
    Ok(Auditor::builder(sink).spawn())
}

async fn idp_source(idp: &IdpSection) -> Result<Arc<KeySource>, String> {
    let named = |what: &str| {
        format!(
            "identity provider {}: {what}",
            crate::io::shown(&idp.issuer)
        )
    };
    let builder = match (&idp.jwks_url, idp.discover, &idp.jwks) {
        (Some(url), false, None) => KeySource::jwks_url(url.clone()),
        (None, true, None) => KeySource::discover(idp.issuer.clone()),
        (None, false, Some(path)) => {
            return KeySource::file(path.clone()).map_err(|e| named(&e.to_string()));
        }
        _ => return Err(named("exactly one of jwks_url, discover = true, jwks")),
    };
    let mut builder = builder.allow_http(idp.allow_http);
    builder = builder.tls(crate::token_cmd::roots_config(idp.ca.as_deref())?);
    builder
        .build()
        .await
        .map_err(|e| named(&format!("cannot fetch its keys: {e}")))
}

/// Routes `/token` to the Txn-Token Service and answers 404 elsewhere (the JWKS layer in
/// front answers the `.well-known` paths).
#[derive(Clone)]
struct TokenPath(TxnTokenService<jwks::JwksBody>);

impl<B> tower_service::Service<http::Request<B>> for TokenPath
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    type Response = http::Response<jwks::JwksBody>;
    type Error = std::convert::Infallible;
    type Future = futures_either::Either;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == "/token" {
            futures_either::Either::Token(self.0.call(req))
        } else {
            futures_either::Either::NotFound
        }
    }
}

mod futures_either {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use secmesh_tower::jwks::JwksBody;
    use secmesh_tower::sts::ResponseFuture;

    /// The token endpoint's future, or an immediate 404.
    pub(super) enum Either {
        Token(ResponseFuture<JwksBody>),
        NotFound,
    }

    impl Future for Either {
        type Output = Result<http::Response<JwksBody>, Infallible>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.get_mut() {
                Either::Token(f) => Pin::new(f).poll(cx),
                Either::NotFound => {
                    let mut res = http::Response::new(JwksBody::new(bytes_of("not found\n")));
                    *res.status_mut() = http::StatusCode::NOT_FOUND;
                    Poll::Ready(Ok(res))
                }
            }
        }
    }

    fn bytes_of(s: &'static str) -> bytes::Bytes {
        bytes::Bytes::from_static(s.as_bytes())
    }
}
