//! `secmesh keygen`, `secmesh token mint|verify|inspect` and `secmesh jws verify`
//! (`secmesh token exchange` is in `exchange_cmd`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use std::sync::Arc;

use secmesh_core::{ClassBounds, ExpiryClass, ManualClock, SystemClock, TxnId};
use secmesh_tokens::alg::Family;
use secmesh_tokens::source::KeySource;
use secmesh_tokens::{
    Algorithm, Issuer, Jwk, JwkSet, KeyError, KeySet, MintRequest, SigningKey, Verifier, jws,
};

use crate::io::{
    REJECTED, USAGE, arg_or_stdin, fail, json_for_terminal, parse_alg, path_shown, print_json,
    read_text, refuse_existing, rfc3339, shown, write_private, write_public,
};

/// `secmesh keygen` options.
#[derive(Args, Debug)]
pub(crate) struct KeygenArgs {
    /// The algorithm the key is pinned to (EdDSA, ES256, ES384, RS256.., PS256.., HS256..;
    /// any case).
    #[arg(long, value_name = "ALG")]
    alg: String,
    /// The key id, written into the JWKS and into tokens as `kid`.
    #[arg(long)]
    kid: String,
    /// Where to write the private key: PKCS#8 PEM, or a JWK for HS* (mode 0600).
    #[arg(long)]
    private_out: PathBuf,
    /// Where to write the key set verifiers use: the public key as a JWKS (for HS* the secret
    /// itself, mode 0600).
    #[arg(long)]
    jwks_out: PathBuf,
    /// Replace the output files if they exist (without it, an existing file is refused and
    /// nothing is written).
    #[arg(long)]
    force: bool,
}

/// `secmesh token ...`
#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Mint a token and print it.
    Mint(MintArgs),
    /// Verify a token; print its claims as one JSON object.
    Verify(VerifyArgs),
    /// Print a token's header and claims WITHOUT verifying anything.
    ///
    /// The output is one JSON object; its times (`iat`, `nbf`, `exp`) are also written to
    /// standard error as RFC 3339, unless --json is given.
    Inspect {
        /// The token, or `-` to read it from standard input.
        token: String,
        /// Machine-readable output only (the same JSON object, no notes on standard error
        /// other than the UNVERIFIED warning).
        #[arg(long)]
        json: bool,
    },
    /// Exchange a subject token for a txn-token at the Txn-Token Service (over mutual TLS);
    /// print the txn-token.
    Exchange(crate::exchange_cmd::ExchangeArgs),
}

/// `secmesh token mint` options.
#[derive(Args, Debug)]
pub(crate) struct MintArgs {
    /// The signing key: PKCS#8 PEM, or a JWK for HS*.
    #[arg(long)]
    key: PathBuf,
    /// The algorithm the key is used with (any case). Taken from the key file when it says
    /// (a JWK's `alg`, an Ed25519 or ECDSA PEM key); needed for an RSA PEM key; an --alg that
    /// contradicts the key file is an error.
    #[arg(long, value_name = "ALG")]
    alg: Option<String>,
    /// The key id to put in the header. Taken from the key file when it has one (a JWK's
    /// `kid`); a --kid that contradicts it is an error.
    #[arg(long)]
    kid: Option<String>,
    /// The issuer (`iss`).
    #[arg(long)]
    iss: String,
    /// The subject (`sub`), e.g. `user:alice`; not empty.
    #[arg(long)]
    sub: String,
    /// The audience (`aud`).
    #[arg(long)]
    aud: String,
    /// The expiry class: fast, medium or slow.
    #[arg(long)]
    class: ExpiryClass,
    /// A grant `VERB:OBJECT-PATTERN`; repeat for more. They become the space-separated `scope`.
    #[arg(long = "grant", value_name = "VERB:OBJECT")]
    grants: Vec<String>,
    /// The transaction id (32 lowercase hex digits); a new one when absent.
    #[arg(long)]
    txn: Option<TxnId>,
    /// The current actor (`act.sub`).
    #[arg(long)]
    act: Option<String>,
    /// Bind the token to this client certificate (PEM): `cnf.x5t#S256` (RFC 8705). It is then
    /// accepted only over a mutual-TLS connection that presents that certificate.
    #[arg(long, value_name = "CERT")]
    cnf_cert: Option<PathBuf>,
    /// The token's lifetime in seconds: at most the class bound (fast 180, medium 5400,
    /// slow 86400); the class bound when absent.
    #[arg(long, value_name = "SECONDS")]
    lifetime: Option<u64>,
    /// A further claim `NAME=VALUE`; repeat for more. VALUE is JSON when it parses as JSON
    /// (`n=3`, `ok=true`, `o={"a":1}`, `s="3"`), else a string. Registered claims (iss, sub,
    /// aud, iat, exp, nbf, jti, txn, cls, scope, req_wl, act, cnf, tctx, rctx) are refused:
    /// they have their own options.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
    /// Print one JSON object (`token`, `alg`, `kid`, `claims`) instead of the bare token.
    #[arg(long)]
    json: bool,
}

/// `secmesh token verify` options.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("keys").required(true).args(["jwks", "jwks_url", "oidc"])))]
pub(crate) struct VerifyArgs {
    /// The key set to verify with (JWKS).
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// Fetch the key set from this JWKS URL (https, unless --allow-http).
    #[arg(long, value_name = "URL")]
    jwks_url: Option<String>,
    /// Find the key set through this issuer's OpenID Connect (else RFC 8414) metadata, which
    /// must name the same issuer.
    #[arg(long, value_name = "ISSUER")]
    oidc: Option<String>,
    /// The CA certificates (PEM) trusted for https fetches.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Allow plain http for --jwks-url / --oidc (local tests only).
    #[arg(long)]
    allow_http: bool,
    /// The timeout of each fetch, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    fetch_timeout: u64,
    /// The expected issuer.
    #[arg(long)]
    iss: Option<String>,
    /// The expected audience.
    #[arg(long)]
    aud: Option<String>,
    /// The slowest expiry class accepted.
    #[arg(long, default_value = "slow")]
    class: ExpiryClass,
    /// The expected `typ` header.
    #[arg(long, default_value = "txntoken+jwt")]
    typ: String,
    /// Clock skew allowed, in seconds.
    #[arg(long, default_value_t = 60)]
    skew: u64,
    /// Verify as of this Unix time instead of now.
    #[arg(long)]
    now: Option<u64>,
    /// Print `{"valid": true, "claims": {..}}`, or `{"valid": false, "error": {"kind", "message"}}`
    /// (exit 1), instead of the bare claims.
    #[arg(long)]
    json: bool,
    /// The token, or `-` to read it from standard input.
    token: String,
}

/// `secmesh jws ...`
#[derive(Subcommand, Debug)]
pub(crate) enum JwsCommand {
    /// Verify a compact JWS; print its payload.
    Verify {
        /// A JWK or a JWKS.
        #[arg(long)]
        jwk: PathBuf,
        /// The compact JWS, or `-` to read it from standard input.
        jws: String,
        /// Print `{"valid": true, "alg", "kid", "payload"}` (the payload as JSON when it is
        /// JSON, else as text), or `{"valid": false, "error": {..}}` (exit 1), instead of
        /// the bare payload.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn keygen(args: KeygenArgs) -> ExitCode {
    let alg = match parse_alg(&args.alg) {
        Ok(a) => a,
        Err(e) => return fail(USAGE, e),
    };
    if let Err(e) = refuse_existing(&[&args.private_out, &args.jwks_out], args.force) {
        return fail(USAGE, e);
    }
    let key = match crate::keygen::generate(alg) {
        Ok(k) => k,
        Err(e) => return fail(USAGE, format!("cannot generate a {alg} key: {e}")),
    };
    let force = args.force;
    let written = if alg.family() == Family::Hmac {
        match key.to_hmac_jwk(Some(args.kid.clone())) {
            Some(jwk) => to_json_pretty(&jwk).and_then(|one| {
                let set = to_json_pretty(&JwkSet { keys: vec![jwk] })?;
                write_private(&args.private_out, one.as_bytes(), force)?;
                write_private(&args.jwks_out, set.as_bytes(), force)
            }),
            None => Err("cannot export the HMAC secret".to_owned()),
        }
    } else {
        match key.to_pkcs8_pem() {
            Some(pem) => {
                let jwk = key.verifying_key(Some(args.kid.clone())).to_jwk();
                to_json_pretty(&JwkSet { keys: vec![jwk] }).and_then(|set| {
                    write_private(&args.private_out, pem.as_bytes(), force)?;
                    write_public(&args.jwks_out, set.as_bytes(), force)
                })
            }
            None => Err("cannot export the private key as PKCS#8".to_owned()),
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(USAGE, e),
    }
}

fn to_json_pretty<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string_pretty(v)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| format!("cannot encode JSON: {e}"))
}

pub(crate) fn run_token(cmd: TokenCommand) -> ExitCode {
    match cmd {
        TokenCommand::Mint(args) => mint(args),
        TokenCommand::Verify(args) => verify(args),
        TokenCommand::Inspect { token, json } => inspect(&token, json),
        TokenCommand::Exchange(args) => crate::exchange_cmd::exchange(args),
    }
}

/// The algorithms a PKCS#8 PEM key names by its type alone (RSA keys serve six).
const SELF_DESCRIBING: [Algorithm; 3] = [Algorithm::EdDsa, Algorithm::Es256, Algorithm::Es384];

/// The signing key in `path` and the `kid` it names, if any. `alg` is the algorithm asked
/// for on the command line: a key file that says otherwise is an error.
fn load_signing_key(
    path: &std::path::Path,
    alg: Option<Algorithm>,
) -> Result<(SigningKey, Option<String>), String> {
    let text = read_text(path)?;
    let cannot = |alg: &dyn std::fmt::Display, e: &dyn std::fmt::Display| {
        format!("cannot use key {} for {alg}: {e}", path_shown(path))
    };
    if text.trim_start().starts_with('{') {
        let name = alg.map_or_else(|| "signing".to_owned(), |a| a.to_string());
        let jwk = Jwk::from_json(&text).map_err(|e| cannot(&name, &e))?;
        let key = SigningKey::from_jwk(&jwk).map_err(|e| cannot(&name, &e))?;
        if let Some(alg) = alg
            && key.alg() != alg
        {
            let e = KeyError::AlgMismatch {
                alg,
                detail: format!("the JWK is for {}", key.alg()),
            };
            return Err(cannot(&alg, &e));
        }
        return Ok((key, jwk.kid.clone()));
    }
    match alg {
        Some(alg) => SigningKey::from_pkcs8_pem(alg, &text)
            .map(|k| (k, None))
            .map_err(|e| cannot(&alg, &e)),
        None => SELF_DESCRIBING
            .into_iter()
            .find_map(|a| SigningKey::from_pkcs8_pem(a, &text).ok())
            .map(|k| (k, None))
            .ok_or_else(|| {
                format!(
                    "cannot tell the algorithm of key {} from the file (an RSA key serves \
                     RS256..PS512): give --alg",
                    path_shown(path)
                )
            }),
    }
}

/// The registered claims `--claim` may not set (they have their own options).
const REGISTERED: [&str; 15] = [
    "iss", "sub", "aud", "iat", "exp", "nbf", "jti", "txn", "cls", "scope", "req_wl", "act", "cnf",
    "tctx", "rctx",
];

/// One `--claim NAME=VALUE`: VALUE as JSON when it parses, else as a string.
fn parse_claim(arg: &str) -> Result<(String, serde_json::Value), String> {
    let Some((name, value)) = arg.split_once('=') else {
        return Err(format!(
            "invalid claim {:?}: expected NAME=VALUE",
            shown(arg)
        ));
    };
    if name.is_empty() || name.trim() != name || name.chars().any(char::is_control) {
        return Err(format!("invalid claim name {:?}", shown(name)));
    }
    if REGISTERED.contains(&name) {
        return Err(format!(
            "`{name}` is a registered claim: set it with its own option, not --claim"
        ));
    }
    let value =
        serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

/// A command-line value that must agree with the key file's, or be taken from it.
fn agreed(flag: &str, given: Option<String>, in_file: Option<String>) -> Result<String, String> {
    match (given, in_file) {
        (Some(g), Some(f)) if g != f => Err(format!(
            "--{flag} {:?} contradicts the key file, which says {:?}",
            shown(&g),
            shown(&f)
        )),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => Err(format!("the key file names no {flag}: give --{flag}")),
    }
}

fn mint(args: MintArgs) -> ExitCode {
    match mint_token(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(USAGE, e),
    }
}

fn mint_token(args: MintArgs) -> Result<(), String> {
    if args.sub.trim().is_empty() {
        return Err("--sub is empty: a token names its subject".into());
    }
    let alg = args.alg.as_deref().map(parse_alg).transpose()?;
    let (key, file_kid) = load_signing_key(&args.key, alg)?;
    let alg = key.alg();
    let kid = agreed("kid", args.kid, file_kid)?;
    let issuer = Issuer::new(key, kid.clone(), args.iss);
    let mut req = MintRequest::new(args.sub, args.class).audience(args.aud);
    for g in &args.grants {
        match g.split_once(':') {
            Some((verb, object)) if !verb.is_empty() && !object.is_empty() && !g.contains(' ') => {
                req = req.grant(verb, object);
            }
            _ => return Err(format!("invalid grant {g:?}: expected VERB:OBJECT")),
        }
    }
    let mut names = std::collections::HashSet::new();
    for c in &args.claims {
        let (name, value) = parse_claim(c)?;
        if !names.insert(name.clone()) {
            return Err(format!("claim `{}` given twice", shown(&name)));
        }
        req = req.claim(name, value);
    }
    if let Some(secs) = args.lifetime {
        let bound = ClassBounds::default().bound(args.class);
        if secs == 0 || secs > bound {
            return Err(format!(
                "--lifetime {secs} is outside 1..={bound} seconds, the bound of class {}",
                args.class
            ));
        }
        req = req.lifetime(secs);
    }
    if let Some(txn) = args.txn {
        req = req.txn(txn);
    }
    if let Some(act) = args.act {
        req = req.actor(act);
    }
    if let Some(path) = &args.cnf_cert {
        let thumb = read_text(path).and_then(|pem| {
            secmesh_tls::svid::thumbprint_pem(&pem)
                .map_err(|e| format!("{}: {e}", path_shown(path)))
        })?;
        req = req.cnf_x5t_s256(thumb);
    }
    let claims = issuer
        .claims_for(&req)
        .map_err(|e| format!("cannot mint: {e}"))?;
    let token = issuer
        .sign_claims(&claims)
        .map_err(|e| format!("cannot mint: {e}"))?;
    if args.json {
        print_json(&serde_json::json!({
            "token": token,
            "alg": alg.as_str(),
            "kid": kid,
            "claims": claims,
        }));
    } else {
        println!("{token}");
    }
    Ok(())
}

/// A key set to verify with: a JWKS or one JWK, refused when it holds no usable key (every
/// token would then fail with unknown_kid: a configuration error, found at start).
fn load_key_set(path: &std::path::Path) -> Result<KeySet, String> {
    let text = read_text(path)?;
    let keys = KeySet::from_json(&text)
        .map_err(|e| format!("invalid key set {}: {e}", path_shown(path)))?;
    if keys.is_empty() {
        return Err(format!(
            "invalid key set {}: {}",
            path_shown(path),
            no_usable_key(&keys)
        ));
    }
    Ok(keys)
}

/// Why a loaded set holds no key: the keys left out and why.
fn no_usable_key(keys: &KeySet) -> String {
    let skipped: Vec<String> = keys
        .skipped()
        .iter()
        .map(|s| format!("{}: {}", s.kid.as_deref().unwrap_or("(no kid)"), s.reason))
        .collect();
    format!(
        "{} (left out: {})",
        KeyError::EmptySet,
        shown(skipped.join("; "))
    )
}

/// The keys of `token verify`: the --jwks file, or fetched from --jwks-url / --oidc (a fetch
/// that fails is a configuration error, exit 2, like an unreadable file).
fn verify_keys(args: &VerifyArgs) -> Result<KeySet, String> {
    if let Some(path) = &args.jwks {
        return load_key_set(path);
    }
    let builder = match (&args.jwks_url, &args.oidc) {
        (Some(url), _) => KeySource::jwks_url(url.clone()),
        (None, Some(issuer)) => KeySource::discover(issuer.clone()),
        (None, None) => return Err("one of --jwks, --jwks-url, --oidc is needed".into()),
    };
    let timeout = std::time::Duration::from_secs(args.fetch_timeout.max(1));
    let mut builder = builder
        .allow_http(args.allow_http)
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(5)));
    if let Some(ca) = &args.ca {
        builder = builder.tls(client_config(ca)?);
    } else {
        builder = builder.tls(client_config_without_roots()?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let source = runtime
        .block_on(builder.build())
        .map_err(|e| format!("cannot fetch the key set: {e}"))?;
    let keys = source.keys();
    if keys.is_empty() {
        return Err(format!("invalid key set: {}", no_usable_key(&keys)));
    }
    Ok(KeySet::clone(&keys))
}

/// An https client trusting the CA certificates of the PEM file `ca`.
fn client_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let text = read_text(ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let cert = cert.map_err(|e| format!("invalid CA file {}: {e}", path_shown(ca)))?;
        roots
            .add(cert)
            .map_err(|e| format!("invalid CA certificate in {}: {e}", path_shown(ca)))?;
    }
    if roots.is_empty() {
        return Err(format!("no CA certificate in {}", path_shown(ca)));
    }
    tls_client(roots)
}

/// Without --ca no certificate is trusted: an https fetch then fails (no system roots).
fn client_config_without_roots() -> Result<Arc<rustls::ClientConfig>, String> {
    tls_client(rustls::RootCertStore::empty())
}

fn tls_client(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(secmesh_tls::crypto_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

fn verify(args: VerifyArgs) -> ExitCode {
    let keys = match verify_keys(&args) {
        Ok(k) => k,
        Err(e) => return fail(USAGE, e),
    };
    // Said after the outcome, so that standard error still begins with `error: KIND: `.
    let unbound = args.iss.is_none() && args.aud.is_none();
    let token = match arg_or_stdin(&args.token) {
        Ok(t) => t,
        Err(e) => return fail(USAGE, e),
    };
    // The CLI has no route: `--class` stays the verifier's (deprecated) slowest-class check.
    #[allow(deprecated)]
    let mut verifier = Verifier::new(keys)
        .typ(args.typ)
        .max_class(args.class)
        .skew(args.skew);
    if let Some(iss) = args.iss {
        verifier = verifier.issuer(iss);
    }
    if let Some(aud) = args.aud {
        verifier = verifier.audience(aud);
    }
    let verifier = match args.now {
        Some(now) => verifier.clock(Arc::new(ManualClock::new(now))),
        None => verifier.clock(Arc::new(SystemClock)),
    };
    let code = match verifier.verify(&token) {
        Ok(verified) if args.json => {
            print_json(&serde_json::json!({"valid": true, "claims": verified.claims()}));
            ExitCode::SUCCESS
        }
        Ok(verified) => match serde_json::to_string(verified.claims()) {
            Ok(json) => {
                println!("{}", json_for_terminal(&json));
                ExitCode::SUCCESS
            }
            Err(e) => fail(USAGE, format!("cannot encode claims: {e}")),
        },
        Err(e) => rejected(args.json, e.kind().as_str(), &e),
    };
    if unbound {
        eprintln!(
            "warning: neither --iss nor --aud given: a token of any issuer, for any audience, \
             signed by one of these keys is accepted"
        );
    }
    code
}

/// A checked and rejected input: `{"valid": false, ..}` on standard output with --json, and
/// the error on standard error either way; exit 1.
fn rejected(json: bool, kind: &str, e: &dyn std::fmt::Display) -> ExitCode {
    if json {
        print_json(&serde_json::json!({
            "valid": false,
            "error": {"kind": kind, "message": e.to_string()},
        }));
    }
    fail(REJECTED, e)
}

fn inspect(arg: &str, json: bool) -> ExitCode {
    let token = match arg_or_stdin(arg) {
        Ok(t) => t,
        Err(e) => return fail(USAGE, e),
    };
    match jws::decode_unverified(&token) {
        Ok(decoded) => {
            let claims: serde_json::Value = serde_json::from_slice(&decoded.payload)
                .unwrap_or_else(|_| {
                    serde_json::Value::String(
                        String::from_utf8_lossy(&decoded.payload).into_owned(),
                    )
                });
            let out = serde_json::json!({
                "verified": false,
                "warning": "UNVERIFIED: the signature and claims of this token were not checked",
                "header": decoded.header,
                "claims": claims,
            });
            eprintln!("warning: UNVERIFIED token: nothing below was checked");
            if !json {
                for name in ["iat", "nbf", "exp"] {
                    if let Some(t) = claims.get(name).and_then(serde_json::Value::as_i64) {
                        eprintln!("{name}: {} (unverified)", rfc3339(t));
                    }
                }
            }
            println!("{}", json_for_terminal(&out.to_string()));
            ExitCode::SUCCESS
        }
        Err(e) => fail(REJECTED, &e),
    }
}

pub(crate) fn run_jws(cmd: JwsCommand) -> ExitCode {
    let JwsCommand::Verify {
        jwk,
        jws: arg,
        json,
    } = cmd;
    let text = match read_text(&jwk) {
        Ok(t) => t,
        Err(e) => return fail(USAGE, e),
    };
    if serde_json::from_str::<serde_json::Value>(&text).is_err() {
        return fail(
            USAGE,
            format!("{} is not JSON (a JWK or a JWKS)", path_shown(&jwk)),
        );
    }
    // A key that is well-formed JSON but unusable (weak, ROCA, mixed set, unsupported) makes
    // the JWS invalid: exit 1, like any other rejection.
    let keys = match KeySet::from_json(&text) {
        Ok(k) => k,
        Err(KeyError::Unsupported(detail)) => {
            return rejected(json, "unsupported", &format!("unsupported: {detail}"));
        }
        Err(e) => return rejected(json, "invalid_key", &format!("invalid_key: {e}")),
    };
    if keys.is_empty() {
        // Every key left out: say why (an unsupported algorithm says `unsupported`).
        let kind = if keys.skipped().iter().all(|s| s.unsupported) {
            "unsupported"
        } else {
            "invalid_key"
        };
        return rejected(json, kind, &format!("{kind}: {}", no_usable_key(&keys)));
    }
    let compact = match arg_or_stdin(&arg) {
        Ok(t) => t,
        Err(e) => return fail(USAGE, e),
    };
    match jws::verify_compact(&compact, &keys) {
        Ok(verified) if json => {
            let payload = serde_json::from_slice::<serde_json::Value>(verified.payload())
                .unwrap_or_else(|_| {
                    String::from_utf8_lossy(verified.payload())
                        .into_owned()
                        .into()
                });
            print_json(&serde_json::json!({
                "valid": true,
                "alg": verified.header().alg.as_str(),
                "kid": verified.header().kid,
                "payload": payload,
            }));
            ExitCode::SUCCESS
        }
        Ok(verified) => {
            use std::io::{IsTerminal, Write};
            let mut out = std::io::stdout().lock();
            // The payload byte for byte, except to a terminal, which gets it escaped.
            let payload = if out.is_terminal() {
                let text = String::from_utf8_lossy(verified.payload());
                std::borrow::Cow::Owned(
                    secmesh_fs::escape_for_terminal(&text)
                        .into_owned()
                        .into_bytes(),
                )
            } else {
                std::borrow::Cow::Borrowed(verified.payload())
            };
            match out.write_all(&payload).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(USAGE, format!("cannot write payload: {e}")),
            }
        }
        Err(e) => rejected(json, e.kind().as_str(), &e),
    }
}

/// An https client configuration trusting the CA certificates of `ca`, or none without it.
pub(crate) fn roots_config(
    ca: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    match ca {
        Some(ca) => client_config(ca),
        None => client_config_without_roots(),
    }
}
