//! `secmesh keygen`, `secmesh token mint|verify|inspect` and `secmesh jws verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use std::sync::Arc;

use secmesh_core::{ExpiryClass, ManualClock, SystemClock, TxnId};
use secmesh_tokens::alg::Family;
use secmesh_tokens::{
    Algorithm, Issuer, Jwk, JwkSet, KeyError, KeySet, MintRequest, SigningKey, Verifier, jws,
};

use crate::io::{
    REJECTED, USAGE, arg_or_stdin, fail, json_for_terminal, path_shown, read_text, write_private,
    write_public,
};

/// `secmesh keygen` options.
#[derive(Args, Debug)]
pub(crate) struct KeygenArgs {
    /// The algorithm the key is pinned to (EdDSA, ES256, ES384, RS256.., PS256.., HS256..).
    #[arg(long)]
    alg: Algorithm,
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
}

/// `secmesh token ...`
#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Mint a token and print it.
    Mint(MintArgs),
    /// Verify a token; print its claims as one JSON object.
    Verify(VerifyArgs),
    /// Print a token's header and claims WITHOUT verifying anything.
    Inspect {
        /// The token, or `-` to read it from standard input.
        token: String,
    },
}

/// `secmesh token mint` options.
#[derive(Args, Debug)]
pub(crate) struct MintArgs {
    /// The signing key: PKCS#8 PEM, or a JWK for HS*.
    #[arg(long)]
    key: PathBuf,
    /// The algorithm the key is used with.
    #[arg(long)]
    alg: Algorithm,
    /// The key id to put in the header.
    #[arg(long)]
    kid: String,
    /// The issuer (`iss`).
    #[arg(long)]
    iss: String,
    /// The subject (`sub`), e.g. `user:alice`.
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
}

/// `secmesh token verify` options.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The key set to verify with (JWKS).
    #[arg(long)]
    jwks: PathBuf,
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
    },
}

pub(crate) fn keygen(args: KeygenArgs) -> ExitCode {
    let key = match crate::keygen::generate(args.alg) {
        Ok(k) => k,
        Err(e) => return fail(USAGE, format!("cannot generate a {} key: {e}", args.alg)),
    };
    let written = if args.alg.family() == Family::Hmac {
        match key.to_hmac_jwk(Some(args.kid.clone())) {
            Some(jwk) => to_json_pretty(&jwk).and_then(|one| {
                let set = to_json_pretty(&JwkSet { keys: vec![jwk] })?;
                write_private(&args.private_out, one.as_bytes())?;
                write_private(&args.jwks_out, set.as_bytes())
            }),
            None => Err("cannot export the HMAC secret".to_owned()),
        }
    } else {
        match key.to_pkcs8_pem() {
            Some(pem) => {
                let jwk = key.verifying_key(Some(args.kid.clone())).to_jwk();
                to_json_pretty(&JwkSet { keys: vec![jwk] }).and_then(|set| {
                    write_private(&args.private_out, pem.as_bytes())?;
                    write_public(&args.jwks_out, set.as_bytes())
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
        TokenCommand::Inspect { token } => inspect(&token),
    }
}

fn load_signing_key(path: &std::path::Path, alg: Algorithm) -> Result<SigningKey, String> {
    let text = read_text(path)?;
    let parsed = if text.trim_start().starts_with('{') {
        Jwk::from_json(&text)
            .and_then(|jwk| SigningKey::from_jwk(&jwk))
            .and_then(|k| {
                if k.alg() == alg {
                    Ok(k)
                } else {
                    Err(KeyError::AlgMismatch {
                        alg,
                        detail: format!("the JWK is for {}", k.alg()),
                    })
                }
            })
    } else {
        SigningKey::from_pkcs8_pem(alg, &text)
    };
    parsed.map_err(|e| format!("cannot use key {} for {alg}: {e}", path_shown(path)))
}

fn mint(args: MintArgs) -> ExitCode {
    let key = match load_signing_key(&args.key, args.alg) {
        Ok(k) => k,
        Err(e) => return fail(USAGE, e),
    };
    let issuer = Issuer::new(key, args.kid, args.iss);
    let mut req = MintRequest::new(args.sub, args.class).audience(args.aud);
    for g in &args.grants {
        match g.split_once(':') {
            Some((verb, object)) if !verb.is_empty() && !object.is_empty() && !g.contains(' ') => {
                req = req.grant(verb, object);
            }
            _ => return fail(USAGE, format!("invalid grant {g:?}: expected VERB:OBJECT")),
        }
    }
    if let Some(txn) = args.txn {
        req = req.txn(txn);
    }
    if let Some(act) = args.act {
        req = req.actor(act);
    }
    if let Some(path) = &args.cnf_cert {
        match read_text(path).and_then(|pem| {
            secmesh_tls::svid::thumbprint_pem(&pem)
                .map_err(|e| format!("{}: {e}", path_shown(path)))
        }) {
            Ok(thumb) => req = req.cnf_x5t_s256(thumb),
            Err(e) => return fail(USAGE, e),
        }
    }
    match issuer.mint(&req) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(USAGE, format!("cannot mint: {e}")),
    }
}

fn verify(args: VerifyArgs) -> ExitCode {
    let keys = match read_text(&args.jwks).and_then(|t| {
        KeySet::from_json(&t)
            .map_err(|e| format!("invalid key set {}: {e}", path_shown(&args.jwks)))
    }) {
        Ok(k) => k,
        Err(e) => return fail(USAGE, e),
    };
    let token = match arg_or_stdin(&args.token) {
        Ok(t) => t,
        Err(e) => return fail(USAGE, e),
    };
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
    match verifier.verify(&token) {
        Ok(verified) => match serde_json::to_string(verified.claims()) {
            Ok(json) => {
                println!("{}", json_for_terminal(&json));
                ExitCode::SUCCESS
            }
            Err(e) => fail(USAGE, format!("cannot encode claims: {e}")),
        },
        Err(e) => fail(REJECTED, &e),
    }
}

fn inspect(arg: &str) -> ExitCode {
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
            println!("{}", json_for_terminal(&out.to_string()));
            ExitCode::SUCCESS
        }
        Err(e) => fail(REJECTED, &e),
    }
}

pub(crate) fn run_jws(cmd: JwsCommand) -> ExitCode {
    let JwsCommand::Verify { jwk, jws: arg } = cmd;
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
            return fail(REJECTED, format!("unsupported: {detail}"));
        }
        Err(e) => return fail(REJECTED, format!("invalid_key: {e}")),
    };
    let compact = match arg_or_stdin(&arg) {
        Ok(t) => t,
        Err(e) => return fail(USAGE, e),
    };
    match jws::verify_compact(&compact, &keys) {
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
        Err(e) => fail(REJECTED, &e),
    }
}
