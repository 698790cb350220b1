//! `secmesh report`: one self-contained HTML page that shows the mesh.
//!
//! From a directory of audit logs and the policy files, [`write()`] makes one HTML file with no
//! network access (inline CSS, script and SVG) that shows:
//! - the service graph: services as nodes with their SPIFFE IDs, calls as edges with the
//!   counts of allowed and denied requests, denials highlighted;
//! - the transactions: pick one and see its tree as a waterfall, with the latency, the
//!   decision and the reason at each hop (what `secmesh audit trace` prints, drawn);
//! - the denials: time, service, subject, caller, verb, object, reason, rule; filterable;
//! - the access matrix of the policy files, with the rules that can never decide (shadowed
//!   or covered, as `secmesh policy lint` finds them) marked;
//! - the integrity of each log: its chain and signed records verified as
//!   `secmesh audit verify` does, with the key used.
//!
//! [`model`] aggregates in Rust (graph counts, one waterfall per transaction) while the logs
//! are verified, reading each file once ([`line`](mod@line) reads what the verification
//! leaves after a failure), and [`html`] writes the page: the data is one compact JSON blob
//! (one string table, transactions and denials as arrays of numbers, times relative to one
//! base) in a `<script type="application/json">` with `<`, `>`, `&` and U+2028/9 escaped,
//! and the page's script builds the DOM with `textContent`, so a subject holding `<script>`
//! shows as text.
//! Tables are paginated; the access matrix is a bounded grid.
//!
//! # Example
//! ```
//! use secmesh_audit::event::{AuditEvent, Decision, Direction};
//! use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
//! use secmesh_cli::report::{self, Options};
//!
//! let dir = tempfile::tempdir()?;
//! let mut sink = JsonLinesSink::open(dir.path().join("orders.jsonl"), JsonLinesConfig::default())?;
//! let mut denied = AuditEvent::now("orders", Direction::In);
//! denied.decision = Decision::Deny;
//! denied.sub = Some("<script>alert(1)</script>".into());
//! sink.write_batch(&mut vec![AuditEvent::now("orders", Direction::In), denied])?;
//! drop(sink);
//!
//! let out = dir.path().join("report.html");
//! let model = report::write(&Options::new(dir.path()), &out)?;
//! assert_eq!((model.nodes[0].handled.allow, model.denials_total), (1, 1));
//! let page = std::fs::read_to_string(&out)?;
//! assert!(!page.contains("<script>alert"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

mod aggregate;
pub mod html;
pub mod line;
pub mod model;
mod tree;

pub use model::{Limits, Model, Options};

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The audit directory could not be listed.
    #[error("cannot list the audit directory {}: {source}", secmesh_fs::Shown(dir))]
    AuditDir {
        /// The directory.
        dir: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// More log files than [`Limits::max_files`].
    #[error("more than {max} log files in {}", secmesh_fs::Shown(dir))]
    TooManyFiles {
        /// The directory.
        dir: PathBuf,
        /// The limit.
        max: usize,
    },
    /// No `*.jsonl` file in the directory.
    #[error("no audit log (*.jsonl) in {}", secmesh_fs::Shown(.0))]
    NoLogs(PathBuf),
    /// A log could not be read.
    #[error(transparent)]
    Read(#[from] secmesh_audit::reader::ReadError),
    /// A policy file could not be read.
    #[error(transparent)]
    File(#[from] secmesh_fs::FileError),
    /// A policy file is not a valid policy.
    #[error("{}: {message}", secmesh_fs::Shown(file))]
    Policy {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The data could not be serialized.
    #[error("cannot serialize the report: {0}")]
    Json(#[from] serde_json::Error),
    /// The page could not be written.
    #[error("cannot write {}: {source}", secmesh_fs::Shown(path))]
    Write {
        /// The output file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Build the model from `opts` and write the page to `out`; returns the model (its counts).
pub fn write(opts: &Options, out: &Path) -> Result<Model, ReportError> {
    let model = model::build(opts)?;
    let page = html::render(&model)?;
    std::fs::write(out, page).map_err(|source| ReportError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(model)
}
