//! The secmesh command-line tool as a library: the parts other programs reuse.
//!
//! - [`report`]: `secmesh report`, one self-contained HTML page that shows the mesh from its
//!   audit logs and policy files (the service graph, transactions as waterfalls, the denials,
//!   the access matrix, the logs' integrity). The demo mesh writes it at the end of its run.
//!
//! The commands themselves (their options, output and exit codes) live in the `secmesh`
//! binary.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod report;
