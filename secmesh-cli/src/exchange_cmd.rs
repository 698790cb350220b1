//! `secmesh token exchange`: ask the Txn-Token Service for a txn-token over mutual TLS.
//!
//! The subject token never reaches standard output or standard error, and neither does
//! anything the service sends except the issued token (visible ASCII, checked by the client)
//! and, on a refusal, its error code and description (escaped for the terminal).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use secmesh_core::claims::JsonMap;
use secmesh_core::exchange::{SubjectToken, SubjectTokenType, TxnTokenRequest};
use secmesh_core::json::{DEFAULT_MAX_DEPTH, check_object};
use secmesh_core::{ExpiryClass, Scope, SpiffeId};
use secmesh_tls::config::{ServerId, TlsFiles, Workload};
use secmesh_tower::sts_client::{DEFAULT_CONNECT_TIMEOUT, StsClient, StsClientError};

use crate::io::{REJECTED, USAGE, arg_or_stdin, fail, path_shown, print_json, read_text, shown};

/// The exit codes, in the command's help.
const EXIT_CODES: &str = "\
Exit status:
  0  the txn-token is on standard output (the response JSON with --json)
  1  the service refused the request: `error: CODE: DESCRIPTION` on standard error (with
     --json, the RFC 6749 error object on standard output too)
  2  a usage or configuration error, or no answer from the service in the profile: it cannot
     be reached, TLS fails (its SPIFFE ID included), the time is up, another status, a
     malformed answer";

/// `secmesh token exchange` options.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct ExchangeArgs {
    /// The service's token endpoint, e.g. `https://sts.mesh.internal:8443/token` (https only).
    #[arg(long, value_name = "URL")]
    sts: String,
    /// The SPIFFE ID the service must present; without it, any workload of the trust domain
    /// is accepted as the service.
    #[arg(long, value_name = "SPIFFE_ID")]
    sts_id: Option<String>,
    /// This workload's X.509-SVID (PEM), presented to the service.
    #[arg(long, value_name = "CERT.pem")]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long, value_name = "KEY.pem")]
    key: PathBuf,
    /// The trust domain's CA bundle (PEM) the service's certificate must chain to.
    #[arg(long, value_name = "CA.pem")]
    ca: PathBuf,
    /// The subject token: the token itself, `@FILE` to read it from a file, or `-` to read
    /// it from standard input. Prefer `@FILE` or `-`: a command line is visible to other users
    /// of the machine.
    #[arg(long, value_name = "TOKEN|@FILE|-", value_parser = secret_arg)]
    subject_token: SecretArg,
    /// What the subject token is: access_token, id_token, jwt, txn_token (a replacement),
    /// self_signed, unsigned_json, or a token type URI.
    #[arg(long, value_name = "TYPE")]
    subject_token_type: String,
    /// The trust domain the txn-token is for.
    #[arg(long)]
    audience: String,
    /// The grants asked for, space-separated `verb:object` (e.g. "read:orders/* create:carts").
    #[arg(long, value_name = "GRANTS")]
    scope: String,
    /// The expiry class asked for: fast, medium or slow (the service chooses without it).
    #[arg(long)]
    class: Option<ExpiryClass>,
    /// The transaction's context (`request_context`): a JSON object.
    #[arg(long, value_name = "JSON")]
    request_context: Option<String>,
    /// Details of the request (`request_details`): a JSON object.
    #[arg(long, value_name = "JSON")]
    request_details: Option<String>,
    /// Print the response as one JSON object (access_token, issued_token_type, token_type,
    /// expires_in, scope) instead of the bare token.
    #[arg(long)]
    json: bool,
    /// The time allowed for the whole exchange, in seconds (connecting takes at most 5 of
    /// them).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

/// An argument that is a secret: its `Debug` does not show it.
#[derive(Clone)]
pub(crate) struct SecretArg(String);

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretArg(..)")
    }
}

fn secret_arg(s: &str) -> Result<SecretArg, String> {
    Ok(SecretArg(s.to_owned()))
}

/// What an exchange that did not yield a token ends with.
enum Failure {
    /// Exit 2 with this message.
    Usage(String),
    /// The service's answer.
    Exchange(StsClientError),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Usage(e)
    }
}

pub(crate) fn exchange(args: ExchangeArgs) -> ExitCode {
    let json = args.json;
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => fail(USAGE, e),
        Err(Failure::Exchange(StsClientError::Refused(refused))) => {
            if json {
                print_json(&serde_json::json!({
                    "error": refused.code().as_str(),
                    "error_description": refused.description(),
                }));
            }
            if refused.description().is_empty() {
                fail(REJECTED, refused.code())
            } else {
                fail(REJECTED, &refused)
            }
        }
        Err(Failure::Exchange(e)) => fail(USAGE, format!("cannot exchange the token: {e}")),
    }
}

fn run(args: ExchangeArgs) -> Result<(), Failure> {
    let request = build_request(&args)?;
    let server = match &args.sts_id {
        Some(id) => ServerId::exact(
            id.parse::<SpiffeId>()
                .map_err(|e| format!("invalid --sts-id {:?}: {e}", shown(id)))?,
        ),
        None => ServerId::TrustDomain,
    };
    let workload = Workload::load(TlsFiles::new(&args.cert, &args.key, &args.ca))
        .map_err(|e| format!("cannot load this workload's certificate: {e}"))?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let client = StsClient::builder(&workload, server, args.sts.as_str())
        .timeout(timeout)
        .connect_timeout(timeout.min(DEFAULT_CONNECT_TIMEOUT))
        .build()
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let response = runtime
        .block_on(client.exchange(&request))
        .map_err(Failure::Exchange)?;
    if args.json {
        let value = serde_json::from_str(&response.to_json())
            .map_err(|e| format!("cannot encode the response: {e}"))?;
        print_json(&value);
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error of the command.
        let _ = writeln!(out, "{}", response.access_token()).and_then(|()| out.flush());
    }
    Ok(())
}

/// The Txn-Token Request the options describe; every refusal is a usage error.
fn build_request(args: &ExchangeArgs) -> Result<TxnTokenRequest, String> {
    let token = subject_token(&args.subject_token.0)?;
    let token_type = subject_token_type(&args.subject_token_type)?;
    let scope = Scope::new(args.scope.as_str())
        .map_err(|e| format!("invalid --scope {:?}: {e}", shown(&args.scope)))?;
    if args.audience.trim().is_empty() {
        return Err("--audience is empty: name the trust domain".into());
    }
    let mut request = TxnTokenRequest::new(args.audience.clone(), scope, token, token_type);
    if let Some(class) = args.class {
        request = request.class(class);
    }
    if let Some(text) = &args.request_context {
        request = request.request_context(json_object("--request-context", text)?);
    }
    if let Some(text) = &args.request_details {
        request = request.request_details(json_object("--request-details", text)?);
    }
    Ok(request)
}

/// The subject token: the argument, a file's contents (`@FILE`) or standard input (`-`),
/// trimmed. No message ever shows it.
fn subject_token(arg: &str) -> Result<SubjectToken, String> {
    let token = match arg.strip_prefix('@') {
        Some(path) => read_text(Path::new(path))
            .map_err(|e| format!("--subject-token: {e}"))?
            .trim()
            .to_owned(),
        None => arg_or_stdin(arg).map_err(|e| format!("--subject-token: {e}"))?,
    };
    if token.is_empty() {
        let from = match arg.strip_prefix('@') {
            Some(path) => format!(" ({} is empty)", path_shown(Path::new(path))),
            None => String::new(),
        };
        return Err(format!("--subject-token is empty{from}"));
    }
    Ok(SubjectToken::new(token))
}

/// A short type name or a token type URI.
fn subject_token_type(arg: &str) -> Result<SubjectTokenType, String> {
    Ok(match arg {
        "access_token" => SubjectTokenType::AccessToken,
        "id_token" => SubjectTokenType::IdToken,
        "jwt" => SubjectTokenType::Jwt,
        "txn_token" => SubjectTokenType::TxnToken,
        "self_signed" => SubjectTokenType::SelfSigned,
        "unsigned_json" => SubjectTokenType::UnsignedJson,
        uri => SubjectTokenType::from_uri(uri).map_err(|e| {
            format!(
                "invalid --subject-token-type {:?}: {} (or one of access_token, id_token, \
                 jwt, txn_token, self_signed, unsigned_json)",
                shown(uri),
                e.description()
            )
        })?,
    })
}

/// A strict JSON object (no duplicate key, bounded depth).
fn json_object(flag: &str, text: &str) -> Result<JsonMap, String> {
    check_object(text.as_bytes(), DEFAULT_MAX_DEPTH)
        .ok()
        .and_then(|()| serde_json::from_str(text).ok())
        .ok_or_else(|| format!("{flag} is not a JSON object (strict: no duplicate key)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_types_by_short_name_or_uri() {
        assert_eq!(
            subject_token_type("access_token"),
            Ok(SubjectTokenType::AccessToken)
        );
        assert_eq!(
            subject_token_type("urn:ietf:params:oauth:token-type:txn_token"),
            Ok(SubjectTokenType::TxnToken)
        );
        assert!(matches!(
            subject_token_type("urn:example:token-type:custom"),
            Ok(SubjectTokenType::Other(_))
        ));
        assert!(subject_token_type("urn:ietf:params:oauth:token-type:refresh_token").is_err());
        assert!(subject_token_type("bearer").is_err());
    }

    #[test]
    fn json_objects_are_strict() {
        assert!(json_object("--x", r#"{"req_ip":"192.0.2.1"}"#).is_ok());
        assert!(json_object("--x", r#"{"a":1,"a":2}"#).is_err());
        assert!(json_object("--x", "[1]").is_err());
        assert!(json_object("--x", "{").is_err());
    }

    #[test]
    fn the_secret_is_not_in_debug() {
        let arg = secret_arg("SECRET").unwrap();
        assert!(!format!("{arg:?}").contains("SECRET"));
        assert_eq!(subject_token("  tok \n").unwrap().expose(), "tok");
        assert!(subject_token("").is_err());
    }
}
