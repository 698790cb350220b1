//! `secmesh audit verify|trace|tail|keygen`.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use secmesh_audit::chain::{AuditKey, parse_public_key};
use secmesh_audit::event::{AuditEvent, Decision, Direction};
use secmesh_audit::verify::{Record, parse_line, read_events, verify_files};
use secmesh_core::TxnId;

use crate::io::{REJECTED, USAGE, fail, read_text, write_private, write_public};

/// `secmesh audit ...`
#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Verify the hash chain and signed checkpoints of one service's log files.
    Verify(VerifyArgs),
    /// Rebuild one transaction's path through the services from their logs.
    Trace(TraceArgs),
    /// Follow a log, one readable line per event.
    Tail(TailArgs),
    /// Make an audit key: the private key (PKCS#8 PEM) and the public key (base64url).
    Keygen(KeygenArgs),
}

/// `secmesh audit verify` options.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The audit public key (base64url raw Ed25519, or SPKI PEM) checkpoints must be signed with.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The log files (a service's live file and its rotated ones, in any order).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// `secmesh audit trace` options.
#[derive(Args, Debug)]
pub(crate) struct TraceArgs {
    /// The transaction id (32 lowercase hex digits).
    txn: TxnId,
    /// Every service's log files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print the tree as JSON.
    #[arg(long)]
    json: bool,
}

/// `secmesh audit tail` options.
#[derive(Args, Debug)]
pub(crate) struct TailArgs {
    /// The log file.
    file: PathBuf,
    /// Print what is there and exit instead of following.
    #[arg(long)]
    no_follow: bool,
}

/// `secmesh audit keygen` options.
#[derive(Args, Debug)]
pub(crate) struct KeygenArgs {
    /// Where to write the private key (mode 0600).
    #[arg(long)]
    private_out: PathBuf,
    /// Where to write the public key.
    #[arg(long)]
    public_out: PathBuf,
}

pub(crate) fn run(cmd: AuditCommand) -> ExitCode {
    match cmd {
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::Trace(a) => trace(a),
        AuditCommand::Tail(a) => tail(a),
        AuditCommand::Keygen(a) => keygen(a),
    }
}

fn verify(args: VerifyArgs) -> ExitCode {
    let key = match &args.key {
        Some(p) => match read_text(p)
            .and_then(|t| parse_public_key(&t).map_err(|e| format!("{}: {e}", p.display())))
        {
            Ok(k) => Some(k),
            Err(e) => return fail(USAGE, e),
        },
        None => None,
    };
    for f in &args.files {
        if !f.is_file() {
            return fail(USAGE, format!("cannot read {}", f.display()));
        }
    }
    match verify_files(&args.files, key.as_deref()) {
        Ok(r) => {
            println!(
                "ok: {} events, {} checkpoints{}{}",
                r.events,
                r.checkpoints,
                if r.after_last_checkpoint > 0 {
                    format!(", {} after the last checkpoint", r.after_last_checkpoint)
                } else {
                    String::new()
                },
                if r.key_checked {
                    ""
                } else {
                    " (checkpoints not checked against a trusted key: pass --key)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(f) => fail(REJECTED, f),
    }
}

fn trace(args: TraceArgs) -> ExitCode {
    let (events, _bad) = match read_events(&args.files) {
        Ok(e) => e,
        Err(e) => return fail(USAGE, format!("cannot read the logs: {e}")),
    };
    let tree = secmesh_audit::trace::build(args.txn, events);
    if tree.roots.is_empty() && tree.orphan_calls.is_empty() {
        return fail(REJECTED, format!("no events of transaction {}", args.txn));
    }
    if args.json {
        match serde_json::to_string(&tree) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(USAGE, e),
        }
    } else {
        println!("transaction {}", args.txn);
        print!("{}", tree.render());
    }
    ExitCode::SUCCESS
}

fn line_of(ev: &AuditEvent) -> String {
    let dir = match ev.dir {
        Direction::In => "in ",
        Direction::Out => "out",
    };
    let decision = match ev.decision {
        Decision::Allow => "allow",
        Decision::Deny => "DENY ",
        Decision::Error => "ERROR",
    };
    format!(
        "{} #{} {} {dir} {decision} {} {} {} status={} {}us txn={} sub={} caller={}{}",
        ev.time,
        ev.seq,
        ev.service,
        ev.verb.as_deref().unwrap_or("-"),
        ev.object.as_deref().unwrap_or("-"),
        ev.target
            .as_deref()
            .map(|t| format!("-> {t}"))
            .unwrap_or_default(),
        ev.status.map_or("-".into(), |s| s.to_string()),
        ev.latency_us.unwrap_or(0),
        ev.txn.map_or("-".into(), |t| t.to_string()),
        ev.sub.as_deref().unwrap_or("-"),
        ev.caller.as_deref().unwrap_or("-"),
        ev.rule
            .as_deref()
            .or(ev.reason.as_deref())
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
    )
}

fn tail(args: TailArgs) -> ExitCode {
    let file = match std::fs::File::open(&args.file) {
        Ok(f) => f,
        Err(e) => return fail(USAGE, format!("cannot read {}: {e}", args.file.display())),
    };
    let mut reader = BufReader::new(file);
    let mut out = std::io::stdout().lock();
    let mut pending = Vec::new();
    loop {
        match reader.read_until(b'\n', &mut pending) {
            Ok(0) => {
                if args.no_follow {
                    return ExitCode::SUCCESS;
                }
                if rotated(&args.file, &mut reader) {
                    continue;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(_) if pending.ends_with(b"\n") => {
                let line = &pending[..pending.len() - 1];
                let text = match parse_line(line) {
                    Ok((Record::Event(ev), _)) => line_of(&ev),
                    Ok((Record::Checkpoint { seq }, _)) => format!("-- checkpoint #{seq}"),
                    Err(e) => format!("!! unreadable record: {e}"),
                };
                if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                    return ExitCode::SUCCESS; // the reader went away (e.g. `| head`)
                }
                pending.clear();
            }
            Ok(_) => {
                // A partial line: wait for the rest (or report it when not following).
                if args.no_follow {
                    println!("!! torn last line ({} bytes)", pending.len());
                    return ExitCode::from(REJECTED);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return fail(USAGE, format!("cannot read {}: {e}", args.file.display())),
        }
    }
}

/// Whether the file at `path` was replaced (rotation): then reopen it from the start.
fn rotated(path: &Path, reader: &mut BufReader<std::fs::File>) -> bool {
    let Ok(pos) = reader.stream_position() else {
        return false;
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() < pos => match std::fs::File::open(path) {
            Ok(f) => {
                *reader = BufReader::new(f);
                let _ = reader.seek(SeekFrom::Start(0));
                true
            }
            Err(_) => false,
        },
        _ => false,
    }
}

fn keygen(args: KeygenArgs) -> ExitCode {
    let key = match AuditKey::generate() {
        Ok(k) => k,
        Err(e) => return fail(USAGE, e),
    };
    match write_private(&args.private_out, key.to_pem().as_bytes()).and_then(|()| {
        write_public(
            &args.public_out,
            format!("{}\n", key.public_key_b64()).as_bytes(),
        )
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(USAGE, e),
    }
}
