//! `secmesh audit verify|trace|tail|keygen`.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use secmesh_audit::chain::{AuditKey, parse_public_key};
use secmesh_audit::checkpoint::{Checkpoint, CheckpointKind};
use secmesh_audit::event::{AuditEvent, Decision, Direction};
use secmesh_audit::reader::MAX_LINE;
use secmesh_audit::verify::{
    Record, Report, ServiceOutcome, Verifier, VerifyFailure, for_each_event, parse_line,
};
use secmesh_core::TxnId;
use secmesh_fs::escape_for_terminal;

use crate::io::{
    REJECTED, USAGE, fail, json_for_terminal, print_json, refuse_existing, shown, write_private,
    write_public,
};

/// `secmesh audit ...`
#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Verify the hash chain and signed records of services' log files, strictly.
    ///
    /// The files may belong to several services (`orders.jsonl* payments.jsonl*`): they are
    /// grouped by the service their first record names and each service's set is verified on
    /// its own, one line per service (`orders: ok: ..`, `error: payments: ..`); the exit code
    /// is 1 if any set fails. With --service, every file must be that service's. A changed
    /// record is reported at its own line.
    ///
    /// With --key, the log must begin every file with a signed `open` record, chain every
    /// signed record to the one before, and end with a `close` record (a clean shutdown).
    /// Detected: changed, deleted, inserted, swapped or moved records (broken_chain,
    /// bad_sequence); torn or malformed lines (torn_line, malformed, line_too_long); forged or
    /// edited signed records, including their count (bad_checkpoint); a file or log without a
    /// signed record, e.g. replaced by forged events (no_checkpoint); events after the last
    /// signed record (unsigned_tail); a log cut after an earlier checkpoint, with or without
    /// forged events re-chained after it (truncated or unsigned_tail); a rotated set whose
    /// live file was deleted (missing_live_file); missing, repeated or reordered generations
    /// (generation_gap); another service's log (service_mismatch, with --service); a log cut
    /// back before a witnessed record (witness_mismatch, with --witness).
    ///
    /// Not detected: without --key, a rewriter can re-sign with a key of their own (the
    /// output says so); a log cut back to an earlier clean `close`, or with --allow-open-tail
    /// after any signed record, unless a witness holds a later record; events written after
    /// the last signed record before a crash, changed before the restart signed them.
    /// A set may start after generation 0 only where a signed record says the writer's
    /// retention removed the older files, or with --from-generation.
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
    /// The service the log must belong to.
    #[arg(long)]
    service: Option<String>,
    /// Accept a log that does not end with a `close` record (a live file); events after the
    /// last signed record are counted, not refused.
    #[arg(long)]
    allow_open_tail: bool,
    /// Accept a set starting at this generation or lower (older files archived elsewhere).
    #[arg(long)]
    from_generation: Option<u64>,
    /// A witness file (signed records, one JSON line each): every one of this service's
    /// must be in the log.
    #[arg(long)]
    witness: Option<PathBuf>,
    /// Print one JSON object: `ok`, and per service `service`, `files`, `ok` and either the
    /// counts or the `failure` (`file`, `line`, `seq`, `kind`, `detail`).
    #[arg(long)]
    json: bool,
    /// The log files (each service's live file and its rotated ones, in any order).
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
    /// Print each record as one JSON object per line (JSON lines), as it is in the log;
    /// an unreadable record as `{"unreadable": ..}`, a torn last line as `{"torn_bytes": n}`.
    #[arg(long)]
    json: bool,
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
    /// Replace the output files if they exist (without it, an existing file is refused and
    /// nothing is written).
    #[arg(long)]
    force: bool,
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
        Some(p) => match secmesh_fs::read_to_string(p, secmesh_fs::SMALL)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_public_key(&t).map_err(|e| format!("{}: {e}", p.display())))
        {
            Ok(k) => Some(k),
            Err(e) => return fail(USAGE, escape_for_terminal(&e)),
        },
        None => None,
    };
    for f in args.files.iter().chain(&args.witness) {
        if !f.is_file() {
            return fail(
                USAGE,
                format!(
                    "cannot read {}: not a regular file",
                    escape_for_terminal(&f.to_string_lossy())
                ),
            );
        }
    }
    let mut verifier = Verifier::new(key.as_deref()).allow_open_tail(args.allow_open_tail);
    if let Some(s) = args.service {
        verifier = verifier.service(s);
    }
    if let Some(g) = args.from_generation {
        verifier = verifier.from_generation(g);
    }
    if let Some(w) = args.witness {
        verifier = verifier.witness(w);
    }
    let outcomes = verifier.verify_services(&args.files);
    let all_ok = outcomes.iter().all(|o| o.result.is_ok());
    if args.json {
        print_json(&serde_json::json!({
            "ok": all_ok,
            "services": outcomes.iter().map(outcome_json).collect::<Vec<_>>(),
        }));
        for o in &outcomes {
            if let Err(f) = &o.result {
                let name = o.service.as_deref().unwrap_or("(unknown service)");
                let _ = fail(REJECTED, format!("{name}: {f}"));
            }
        }
    } else if let [one] = outcomes.as_slice() {
        // One service: the output of a single set, as before.
        match &one.result {
            Ok(r) => println!("ok: {}", summary(r)),
            Err(f) => return fail(REJECTED, escape_for_terminal(&f.to_string())),
        }
    } else {
        for o in &outcomes {
            let name = o.service.as_deref().unwrap_or("(unknown service)");
            match &o.result {
                Ok(r) => println!("{}: ok: {}", shown(name), summary(r)),
                Err(f) => {
                    let _ = fail(REJECTED, format!("{name}: {f}"));
                }
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(REJECTED)
    }
}

/// `N events, M checkpoints[, K after the last checkpoint][ (not checked against a key)]`.
fn summary(r: &Report) -> String {
    format!(
        "{} events, {} checkpoints{}{}",
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
    )
}

fn outcome_json(o: &ServiceOutcome) -> serde_json::Value {
    let files: Vec<String> = o
        .files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    match &o.result {
        Ok(r) => serde_json::json!({
            "service": o.service,
            "files": files,
            "ok": true,
            "events": r.events,
            "checkpoints": r.checkpoints,
            "after_last_checkpoint": r.after_last_checkpoint,
            "key_checked": r.key_checked,
            "closed": r.closed,
            "generations": r.generations.map(|(a, b)| [a, b]),
            "recoveries": r.recoveries,
            "witnessed": r.witnessed,
        }),
        Err(f) => serde_json::json!({
            "service": o.service,
            "files": files,
            "ok": false,
            "failure": failure_json(f),
        }),
    }
}

fn failure_json(f: &VerifyFailure) -> serde_json::Value {
    serde_json::json!({
        "file": f.file.to_string_lossy(),
        "line": f.line,
        "seq": f.seq,
        "kind": f.kind.as_str(),
        "detail": f.detail,
    })
}

fn trace(args: TraceArgs) -> ExitCode {
    // Stream the logs, keeping only this transaction's events: memory follows the
    // transaction, not the logs.
    let mut events = Vec::new();
    if let Err(e) = for_each_event(&args.files, |ev| {
        if ev.txn == Some(args.txn) {
            events.push(ev);
        }
    }) {
        return fail(USAGE, format!("cannot read the logs: {e}"));
    }
    let tree = secmesh_audit::trace::build(args.txn, events);
    if tree.roots.is_empty() && tree.orphan_calls.is_empty() {
        return fail(REJECTED, format!("no events of transaction {}", args.txn));
    }
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        match serde_json::to_string(&tree) {
            Ok(s) => writeln!(out, "{}", json_for_terminal(&s)),
            Err(e) => return fail(USAGE, e),
        }
    } else {
        writeln!(out, "transaction {}", args.txn)
            .and_then(|()| write!(out, "{}", escape_for_terminal(&tree.render())))
    };
    let _ = written.and_then(|()| out.flush()); // a closed pipe (`| head`) is not an error
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

fn signed_line(c: &Checkpoint) -> String {
    match c.kind {
        CheckpointKind::Checkpoint => format!("-- checkpoint #{}", c.seq),
        CheckpointKind::Open | CheckpointKind::Rotate => {
            format!("-- {} #{} (generation {})", c.kind.as_str(), c.seq, c.r#gen)
        }
        CheckpointKind::Recover => format!(
            "-- recover #{} ({} bytes set aside{})",
            c.seq,
            c.torn_bytes.unwrap_or(0),
            c.torn_file
                .as_deref()
                .map(|f| format!(" to {f}"))
                .unwrap_or_default()
        ),
        _ => format!("-- {} #{}", c.kind.as_str(), c.seq),
    }
}

fn tail(args: TailArgs) -> ExitCode {
    let file = match secmesh_fs::open_regular(&args.file) {
        Ok(f) => f,
        Err(e) => return fail(USAGE, format!("cannot read {e}")),
    };
    let mut reader = BufReader::new(file);
    let mut out = std::io::stdout().lock();
    let mut pending = Vec::new();
    loop {
        // Never more than one bounded line in memory.
        let room = (MAX_LINE + 1).saturating_sub(pending.len()) as u64;
        match (&mut reader).take(room).read_until(b'\n', &mut pending) {
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
                    Ok(_) if args.json => {
                        // The record as it is (strict JSON), escaped like all JSON output.
                        json_for_terminal(&String::from_utf8_lossy(line)).into_owned()
                    }
                    Ok((Record::Event(ev), _)) => line_of(&ev),
                    Ok((Record::Checkpoint(c), _)) => signed_line(&c),
                    Err(e) if args.json => {
                        json_for_terminal(&serde_json::json!({"unreadable": e}).to_string())
                            .into_owned()
                    }
                    Err(e) => format!("!! unreadable record: {e}"),
                };
                let text = escape_for_terminal(&text);
                if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                    return ExitCode::SUCCESS; // the reader went away (e.g. `| head`)
                }
                pending.clear();
            }
            Ok(_) if pending.len() > MAX_LINE => {
                let _ = out.flush();
                return fail(
                    REJECTED,
                    format!("a record longer than {MAX_LINE} bytes: not an audit log"),
                );
            }
            Ok(_) => {
                // A partial line: wait for the rest (or report it when not following).
                if args.no_follow {
                    if args.json {
                        println!("{}", serde_json::json!({"torn_bytes": pending.len()}));
                    } else {
                        println!("!! torn last line ({} bytes)", pending.len());
                    }
                    return ExitCode::from(REJECTED);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                return fail(
                    USAGE,
                    format!(
                        "cannot read {}: {e}",
                        escape_for_terminal(&args.file.to_string_lossy())
                    ),
                );
            }
        }
    }
}

/// Whether the file at `path` was replaced (rotation): then reopen it from the start.
fn rotated(path: &Path, reader: &mut BufReader<std::fs::File>) -> bool {
    let Ok(pos) = reader.stream_position() else {
        return false;
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() < pos => match secmesh_fs::open_regular(path) {
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
    if let Err(e) = refuse_existing(&[&args.private_out, &args.public_out], args.force) {
        return fail(USAGE, e);
    }
    let key = match AuditKey::generate() {
        Ok(k) => k,
        Err(e) => return fail(USAGE, e),
    };
    match write_private(&args.private_out, key.to_pem().as_bytes(), args.force).and_then(|()| {
        write_public(
            &args.public_out,
            format!("{}\n", key.public_key_b64()).as_bytes(),
            args.force,
        )
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(USAGE, e),
    }
}
