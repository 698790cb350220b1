//! What the audit logs say: one transaction's tree through every service, a service's last
//! event, every log's chain verified with the audit key at the end, and the page that shows
//! it all (`secmesh report`).

use std::path::{Path, PathBuf};

use secmesh::audit::chain::AuditKey;
use secmesh::audit::trace;
use secmesh::audit::verify::{read_events, verify_files};
use secmesh::core::TxnId;

use crate::node::Node;

/// Print what the service's log says of its last request (for refusals before any txn);
/// `seen` is how many events the log held when this was last asked.
pub(crate) fn print_last(node: &Node, seen: &mut usize) {
    node.auditor.flush().unwrap();
    let (events, _) = read_events(&[&node.log]).unwrap();
    if events.len() == *seen {
        // Refusals before authentication from one source are aggregated: the first is written,
        // the next ones in the same window are counted into one summary record.
        println!(
            "    {} logged: counted (a repeated refusal from the same source; one summary record per window)",
            node.name
        );
        return;
    }
    *seen = events.len();
    if let Some(e) = events.last() {
        println!(
            "    {} logged: {} {} -> {} ({}) {}",
            node.name,
            e.verb.as_deref().or(e.method.as_deref()).unwrap_or("-"),
            e.object.as_deref().or(e.path.as_deref()).unwrap_or("-"),
            format!("{:?}", e.decision).to_lowercase(),
            e.reason.as_deref().or(e.rule.as_deref()).unwrap_or("-"),
            e.status.map_or(String::new(), |s| s.to_string()),
        );
    }
}

/// Print the tree of `txn` from every service's log.
pub(crate) fn print_tree(nodes: &[&Node], txn: &str) {
    for n in nodes {
        n.auditor.flush().unwrap();
    }
    let logs: Vec<&PathBuf> = nodes.iter().map(|n| &n.log).collect();
    let (events, _) = read_events(&logs).unwrap();
    let Ok(txn) = txn.parse::<TxnId>() else {
        println!("    (no transaction: refused before one was started)");
        return;
    };
    for line in trace::build(txn, events).render().lines() {
        println!("    {line}");
    }
}

/// Close every node's log (a final checkpoint each) and verify its chain with the audit key;
/// `false` when a chain does not verify.
pub(crate) fn close_and_verify(
    nodes: Vec<Node>,
    audit_dir: &Path,
    key: &AuditKey,
) -> std::io::Result<bool> {
    let mut all_ok = true;
    for n in nodes {
        n.auditor.shutdown();
        // The whole set: the live file and every file rotated out of it.
        match verify_files(&log_set(&n.log)?, Some(key.public_key())) {
            Ok(r) => println!(
                "audit log {:<42} {} events, {} signed checkpoints: chain ok",
                n.log.display().to_string(),
                r.events,
                r.checkpoints
            ),
            Err(e) => {
                all_ok = false;
                println!("audit log {}: {e}", n.log.display());
            }
        }
    }
    println!(
        "verify again with: cargo run -p secmesh-cli -- audit verify --key {} {}*",
        audit_dir.join("audit-key.pub").display(),
        audit_dir.join("orders.jsonl").display()
    );
    Ok(all_ok)
}

/// A service's log files: the live `NAME.jsonl` and every rotated `NAME.jsonl.*` beside it
/// (files set aside after a crash, `*.torn-*`, are not part of the chain).
fn log_set(live: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = live.parent().unwrap_or(Path::new("."));
    let name = live.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut set = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let f = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if (f == name || f.starts_with(&format!("{name}."))) && !f.contains(".torn") {
            set.push(path);
        }
    }
    Ok(set)
}

/// Write `secmesh report`'s page for the run to `DIR/report.html`: the service graph, the
/// transactions, the denials, the access matrix of the mesh policy (copied to
/// `DIR/policy.toml`) and each log's integrity checked with the audit key.
pub(crate) fn write_page(
    audit_dir: &Path,
    policy: &str,
    key: &AuditKey,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let policy_file = audit_dir.join("policy.toml");
    std::fs::write(&policy_file, policy)?;
    let out = audit_dir.join("report.html");
    let opts = secmesh_cli::report::Options::new(audit_dir)
        .policy(policy_file)
        .key(
            key.public_key(),
            audit_dir.join("audit-key.pub").display().to_string(),
        );
    let model = secmesh_cli::report::write(&opts, &out)?;
    println!(
        "report: {} ({} events, {} transactions, {} denials; open it in a browser)",
        out.display(),
        model.events,
        model.txns_total,
        model.denials_total
    );
    Ok(out)
}
