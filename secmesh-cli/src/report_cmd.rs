//! `secmesh report`: the HTML page that shows the mesh (the work is in the library's
//! `secmesh_cli::report`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use secmesh_audit::chain::parse_public_key;
use secmesh_cli::report::{self, Options};

use crate::io::{USAGE, fail, path_shown};

/// `secmesh report` options.
#[derive(Args, Debug)]
pub(crate) struct ReportArgs {
    /// The directory of the audit logs (every `*.jsonl` and rotated `*.jsonl.*` in it).
    #[arg(long)]
    audit_dir: PathBuf,
    /// A policy file for the access matrix (repeat for several).
    #[arg(long)]
    policy: Vec<PathBuf>,
    /// The audit public key (base64url raw Ed25519, or SPKI PEM) the logs' signed records
    /// must be signed with; without it, the integrity panel says the key was not trusted.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Where to write the page.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

pub(crate) fn run(args: ReportArgs) -> ExitCode {
    let mut opts = Options::new(&args.audit_dir);
    for p in args.policy {
        opts = opts.policy(p);
    }
    if let Some(k) = &args.key {
        match secmesh_fs::read_to_string(k, secmesh_fs::SMALL)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_public_key(&t).map_err(|e| format!("{}: {e}", path_shown(k))))
        {
            Ok(raw) => opts = opts.key(raw, k.display().to_string()),
            Err(e) => return fail(USAGE, e),
        }
    }
    match report::write(&opts, &args.output) {
        Ok(m) => {
            println!(
                "wrote {}: {} events, {} services, {} transactions, {} denials",
                path_shown(&args.output),
                m.events,
                m.nodes.iter().filter(|n| n.kind == "service").count(),
                m.txns_total,
                m.denials_total
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(USAGE, e),
    }
}
