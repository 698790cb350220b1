//! The page: a fixed skeleton, the stylesheet and the script (`report.css`, `report.js`,
//! included at build time), and the model as one JSON blob.
//!
//! Rust writes only a few strings into the markup (the title's directory, the generation
//! time), each through [`escape`]; everything else is drawn by the script from the blob with
//! `textContent`. The blob is [`to_script_json`]: no `<` in it
//! can close its `<script>` element.
//!
//! # Example
//! ```
//! use secmesh_cli::report::html::escape;
//!
//! assert_eq!(escape("<script>\"x\" & 'y'"), "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;");
//! ```

use std::fmt::Write as _;

use super::ReportError;
use super::model::{Model, to_script_json};

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");

/// `s` as HTML text or attribute value: `& < > " '` escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub fn render(model: &Model) -> Result<String, ReportError> {
    let data = to_script_json(model)?;
    let mut page = String::with_capacity(data.len() + CSS.len() + JS.len() + 4096);
    let dir = escape(&model.audit_dir);
    let generated = escape(&model.generated);
    let _ = write!(
        page,
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>secmesh report: {dir}</title>
<style>
{CSS}</style>
</head>
<body>
<header>
<h1>secmesh report</h1>
<p class="meta">Audit logs in <code>{dir}</code>, generated {generated}. <span id="report-status">loading</span></p>
<nav><a href="#graph-section">Service graph</a> <a href="#txn-section">Transactions</a> <a href="#denials-section">Denials</a> <a href="#matrix-section">Access matrix</a> <a href="#integrity-section">Integrity</a></nav>
<div id="summary"></div>
</header>
<noscript><p class="warn">This report draws itself with JavaScript: turn it on for this file.</p></noscript>
<main>
<section id="graph-section"><h2>Service graph</h2>
<p class="hint">Who calls whom, as the callees logged it: allowed / <span class="deny-text">denied</span> requests on each edge.</p>
<div id="graph"></div></section>
<section id="txn-section"><h2>Transactions</h2>
<div class="controls"><input id="txn-filter" type="search" placeholder="filter: txn id, service, object…"> <label><input id="txn-denied" type="checkbox"> denied only</label></div>
<div class="split"><div id="txn-list"></div><div id="waterfall"><p class="hint">Pick a transaction to see its path.</p></div></div></section>
<section id="denials-section"><h2>Denials</h2>
<div class="controls"><input id="denial-filter" type="search" placeholder="filter: service, subject, reason, rule…"></div>
<div id="denials"></div></section>
<section id="matrix-section"><h2>Access matrix</h2>
<p class="hint">Who may do what, by which rule, from the policy files: a row per caller and subject pattern, a column per object pattern; a cell lists the rules that match there (<span class="allow">✓ allowed</span> / <span class="deny-text">✗ denied</span> verbs, the rule's id; hover for the details). Rules that can never decide (shadowed, covered, never matching) are struck through; dry-run rules are in italics.</p>
<div id="matrix"></div></section>
<section id="integrity-section"><h2>Integrity</h2>
<div id="integrity"></div></section>
</main>
<script type="application/json" id="report-data">{data}</script>
<script>
{JS}</script>
</body>
</html>
"##
    );
    Ok(page)
}
