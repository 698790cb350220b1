//! `secmesh revoke`: revoke tokens for a whole fleet through Redis.
//!
//! ```text
//! secmesh revoke --redis redis://127.0.0.1:6379/ (--jti J | --sub S | --txn T | --kid K)
//!     [--reason TEXT] [--prefix secmesh] [--audit-log FILE [--audit-key FILE]] [--json]
//! secmesh revoke --redis URL --list [--json]
//! ```
//!
//! The revocation is stored and announced in one step; every instance's replica refuses the
//! tokens it names within moments. `--sub` revokes every token of the subject issued up to now;
//! `--txn` every token of a transaction; `--kid` every token a key signed. With `--audit-log`
//! the revocation is also an event of that (chained, optionally signed) audit log, service
//! `revoke`. Prints the stored entry; exit 0 done, 2 for a usage error or when Redis cannot be
//! reached.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use secmesh_audit::Auditor;
use secmesh_audit::chain::AuditKey;
use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
use secmesh_core::TxnId;
use secmesh_tokens::revocation::redis::Publisher;
use secmesh_tokens::revocation::{RevocationKey, Revoked};

use crate::io::{USAGE, fail, path_shown, read_text, shown};

/// `secmesh revoke ...`
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["jti", "sub", "txn", "kid", "list"])))]
pub(crate) struct RevokeArgs {
    /// The Redis the fleet follows (`redis://host:port/db`).
    #[arg(long, value_name = "URL")]
    redis: String,
    /// Revoke one token by its `jti`.
    #[arg(long)]
    jti: Option<String>,
    /// Revoke every token of this subject issued up to now.
    #[arg(long)]
    sub: Option<String>,
    /// Revoke every token of this transaction (32 lowercase hex).
    #[arg(long)]
    txn: Option<String>,
    /// Revoke every token signed by this key.
    #[arg(long)]
    kid: Option<String>,
    /// List the revocations Redis holds instead.
    #[arg(long)]
    list: bool,
    /// Why (kept with the entry and in the audit event; never a token).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// The key prefix the fleet uses.
    #[arg(long, default_value = "secmesh")]
    prefix: String,
    /// Also record the revocation in this audit log (JSON lines, chained).
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// Sign the audit log's checkpoints with this key (PEM).
    #[arg(long, value_name = "FILE", requires = "audit_log")]
    audit_key: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: RevokeArgs) -> ExitCode {
    let key = match what(&args) {
        Ok(k) => k,
        Err(e) => return fail(USAGE, e),
    };
    if let Some(r) = &args.reason
        && (r.len() > 256 || r.chars().any(char::is_control))
    {
        return fail(
            USAGE,
            "--reason is at most 256 characters without control characters",
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(USAGE, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let publisher = match Publisher::connect(&args.redis, &args.prefix).await {
            Ok(p) => p,
            Err(e) => return fail(USAGE, format!("cannot reach Redis: {e}")),
        };
        let Some(key) = key else {
            return list(&publisher, args.json).await;
        };
        let entry = match publisher.revoke(key, args.reason.clone()).await {
            Ok(e) => e,
            Err(e) => return fail(USAGE, format!("cannot revoke: {e}")),
        };
        if let Some(log) = &args.audit_log
            && let Err(e) = audit(log, args.audit_key.as_ref(), &entry)
        {
            return fail(
                USAGE,
                format!("revoked, but the audit event was not written: {e}"),
            );
        }
        print(&entry, args.json);
        ExitCode::SUCCESS
    })
}

/// The key named on the command line (`None` for `--list`).
fn what(args: &RevokeArgs) -> Result<Option<RevocationKey>, String> {
    Ok(match (&args.jti, &args.sub, &args.txn, &args.kid) {
        (Some(j), ..) => Some(RevocationKey::Jti(j.clone())),
        (_, Some(s), ..) => Some(RevocationKey::Sub(s.clone())),
        (_, _, Some(t), _) => {
            Some(RevocationKey::Txn(t.parse::<TxnId>().map_err(|_| {
                "--txn is 32 lowercase hex digits, not all zero".to_owned()
            })?))
        }
        (.., Some(k)) => Some(RevocationKey::Kid(k.clone())),
        _ => None,
    })
}

fn print(entry: &Revoked, json: bool) {
    if json {
        println!(
            "{}",
            crate::io::json_for_terminal(&serde_json::to_string(entry).unwrap_or_default())
        );
    } else {
        println!(
            "revoked {} at {} (kept until {}){}",
            shown(&entry.key),
            entry.at,
            entry.until,
            entry
                .reason
                .as_ref()
                .map(|r| format!(": {}", shown(r)))
                .unwrap_or_default()
        );
    }
}

async fn list(publisher: &Publisher, json: bool) -> ExitCode {
    let mut entries = match publisher.entries().await {
        Ok(e) => e,
        Err(e) => return fail(USAGE, format!("cannot read the revocations: {e}")),
    };
    entries.sort_by_key(|e| (e.at, e.key.to_string()));
    for e in &entries {
        print(e, json);
    }
    if !json {
        println!("{} revocation(s)", entries.len());
    }
    ExitCode::SUCCESS
}

fn audit(log: &PathBuf, key: Option<&PathBuf>, entry: &Revoked) -> Result<(), String> {
    let mut config = JsonLinesConfig::default();
    config.service = Some("revoke".to_owned());
    if let Some(k) = key {
        let pem = read_text(k)?;
        let k = AuditKey::from_pem(&pem)
            .map_err(|e| format!("invalid audit key {}: {e}", path_shown(k)))?;
        config = config.with_key(k);
    }
    let sink = JsonLinesSink::open(log, config)
        .map_err(|e| format!("audit log {}: {e}", path_shown(log)))?;
    let auditor = Auditor::builder(sink).spawn();
    let ev = secmesh_tower::revoke::revocation_event("revoke", entry);
    auditor.record(ev).map_err(|e| e.to_string())?;
    auditor.flush().map_err(|e| e.to_string())?;
    auditor.shutdown();
    Ok(())
}
