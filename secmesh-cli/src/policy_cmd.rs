//! `secmesh policy check` and `secmesh policy lint`.
//!
//! Policy files are read bounded (16 MiB, regular files only); a policy holds at most 10,000
//! rules, and lint is indexed (linear in the rules for policies whose rules differ by verb,
//! object prefix or subject, with a budget of comparisons otherwise). Rule ids, paths and
//! messages are printed escaped for the terminal.
//!
//! `check` decides one request against a policy file and prints one JSON object,
//! `{"decision":"allow"|"deny","rule":ID|null,"reason":TEXT,"shadow":{"decision":..,"rule":..}|null}`,
//! exiting 0 on allow, 1 on deny and 2 on an invalid policy or usage. With `--explain`, a deny
//! explains itself: the rules that came closest and the first condition each failed, printed as
//! text, or with `--explain --json` as an `"explanation"` key added to the same object (exit
//! codes unchanged). `lint` reports rules that can never match or never decide, exiting 0 when
//! there are none, 1 when there are findings and 2 on an invalid policy; it also warns (without
//! changing the exit code) about verbs no built-in classifier produces, unless declared with
//! `--known-verb`. A file ending in `.json` is read as JSON, anything else as TOML.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use secmesh_core::ExpiryClass;
use secmesh_core::policy::{
    Closest, Decision, Effect, Explanation, Failure, Format, Grant, Policy, Request, parse_scope,
};
use secmesh_core::svo::{Object, Subject, Verb};

use crate::io::{
    DOCUMENT, REJECTED, USAGE, fail, json_for_terminal, path_shown, read_text_limited, shown,
};

/// The `policy` subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum PolicyCommand {
    /// Decide one request against a policy file; prints the decision as JSON.
    ///
    /// Exit status: 0 allow, 1 deny, 2 invalid policy or usage.
    Check(CheckArgs),
    /// Report errors and rules that can never match or are shadowed by a deny.
    ///
    /// Exit status: 0 clean, 1 findings, 2 invalid policy or usage.
    Lint(LintArgs),
    /// Validate a policy and store it in Redis as the fleet's next version; every instance
    /// following the fleet policy takes it. Prints the version.
    ///
    /// Exit status: 0 pushed, 2 invalid policy, Redis unreachable, or usage.
    Push(PushArgs),
    /// List the instances following the fleet policy, the version each runs, and flag the
    /// stragglers (another version, an error, or no report for --stale seconds).
    ///
    /// Exit status: 0 every instance current, 1 stragglers, 2 Redis unreachable or usage.
    Status(StatusArgs),
}

/// Arguments of `policy push`.
#[derive(clap::Args, Debug)]
pub(crate) struct PushArgs {
    /// The Redis the fleet follows (`redis://host:port/db`).
    #[arg(long, value_name = "URL")]
    redis: String,
    /// The key prefix the fleet uses.
    #[arg(long, default_value = "secmesh")]
    prefix: String,
    /// The policy file (TOML).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Arguments of `policy status`.
#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    /// The Redis the fleet follows.
    #[arg(long, value_name = "URL")]
    redis: String,
    /// The key prefix the fleet uses.
    #[arg(long, default_value = "secmesh")]
    prefix: String,
    /// An instance silent for this many seconds is a straggler.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    stale: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `policy check`.
#[derive(clap::Args, Debug)]
pub(crate) struct CheckArgs {
    /// The policy file (TOML, or JSON when it ends in .json).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The token subject, e.g. user:alice.
    #[arg(long, value_name = "SUB")]
    sub: String,
    /// The verb: read, create, update, delete or a custom verb.
    #[arg(long, value_name = "VERB")]
    verb: String,
    /// The object, e.g. orders/42 (no leading '/').
    #[arg(long, value_name = "OBJ")]
    object: String,
    /// The calling workload, e.g. spiffe://mesh.test/gateway.
    #[arg(long, value_name = "C")]
    caller: Option<String>,
    /// The token's expiry class: fast, medium or slow.
    #[arg(long, value_name = "CLS")]
    class: Option<String>,
    /// The token's scope: space-separated verb:object-pattern grants.
    #[arg(long, value_name = "SCOPE", allow_hyphen_values = true)]
    scope: Option<String>,
    /// A subject attribute for rules with `attributes`, e.g. role=admin (repeatable).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attrs: Vec<String>,
    /// Explain a deny: the rules that came closest and the first condition each failed.
    #[arg(long)]
    explain: bool,
    /// Print JSON (the default output is JSON already; with --explain, the explanation is
    /// added to it instead of printed as text).
    #[arg(long)]
    json: bool,
}

/// Arguments of `policy lint`.
#[derive(clap::Args, Debug)]
pub(crate) struct LintArgs {
    /// The policy file (TOML, or JSON when it ends in .json).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// A verb a custom classifier of the service produces (repeatable): no warning for it.
    #[arg(long = "known-verb", value_name = "VERB")]
    known_verbs: Vec<String>,
}

/// Run a `policy` subcommand.
pub(crate) fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Check(args) => check(&args),
        PolicyCommand::Lint(args) => lint(&args),
        PolicyCommand::Push(args) => push(&args),
        PolicyCommand::Status(args) => status(&args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn push(args: &PushArgs) -> ExitCode {
    use secmesh_tower::fleet_policy::{self, FleetPolicyError};
    let text = match read_text_limited(&args.file, DOCUMENT) {
        Ok(t) => t,
        Err(e) => return fail(USAGE, e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(USAGE, e),
    };
    match rt.block_on(fleet_policy::push(&args.redis, &args.prefix, &text)) {
        Ok(version) => {
            println!("pushed {} as version {version}", path_shown(&args.file));
            ExitCode::SUCCESS
        }
        Err(FleetPolicyError::Invalid(e)) => fail(
            USAGE,
            format!(
                "invalid policy {}: {e} (nothing pushed)",
                path_shown(&args.file)
            ),
        ),
        Err(e) => fail(USAGE, format!("cannot push: {e}")),
    }
}

fn status(args: &StatusArgs) -> ExitCode {
    use secmesh_tower::fleet_policy;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(USAGE, e),
    };
    let read = rt.block_on(async {
        let current = fleet_policy::current_version(&args.redis, &args.prefix).await?;
        let instances = fleet_policy::instances(&args.redis, &args.prefix).await?;
        Ok::<_, fleet_policy::FleetPolicyError>((current.unwrap_or(0), instances))
    });
    let (current, instances) = match read {
        Ok(r) => r,
        Err(e) => return fail(USAGE, format!("cannot read the fleet policy: {e}")),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut stragglers = 0;
    let mut rows = Vec::new();
    for i in &instances {
        let age = now.saturating_sub(i.at);
        let straggler = i.version != current || i.error.is_some() || age > args.stale;
        stragglers += usize::from(straggler);
        rows.push((i, age, straggler));
    }
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(i, age, s)| {
                serde_json::json!({"instance": i.instance, "version": i.version,
                    "error": i.error, "seen_secs_ago": age, "straggler": s})
            })
            .collect();
        let doc =
            serde_json::json!({"current": current, "instances": list, "stragglers": stragglers});
        println!("{}", json_for_terminal(&doc.to_string()));
    } else {
        println!("current version {current}, {} instance(s)", instances.len());
        for (i, age, straggler) in &rows {
            println!(
                "{}  version {}  seen {age} s ago{}{}",
                shown(&i.instance),
                i.version,
                i.error
                    .as_ref()
                    .map(|e| format!("  error: {}", shown(e)))
                    .unwrap_or_default(),
                if *straggler { "  STRAGGLER" } else { "" }
            );
        }
    }
    if stragglers == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(REJECTED)
    }
}

fn format_of(path: &Path) -> Format {
    path.extension()
        .and_then(|e| e.to_str())
        .and_then(Format::from_extension)
        .unwrap_or(Format::Toml)
}

/// Read and compile a policy file; the error names the file and the position.
fn load(path: &Path) -> Result<Policy, String> {
    let text = read_text_limited(path, DOCUMENT)?;
    Policy::parse(&text, format_of(path)).map_err(|e| match e.position() {
        Some(pos) => format!("{}:{pos}: {}", path_shown(path), e.message()),
        None => format!("{}: {e}", path_shown(path)),
    })
}

fn check(args: &CheckArgs) -> ExitCode {
    let subject: Subject = match args.sub.parse() {
        Ok(s) => s,
        Err(e) => return fail(USAGE, format_args!("invalid --sub: {e}")),
    };
    let verb: Verb = match args.verb.parse() {
        Ok(v) => v,
        Err(e) => return fail(USAGE, format_args!("invalid --verb: {e}")),
    };
    let object: Object = match args.object.parse() {
        Ok(o) => o,
        Err(e) => return fail(USAGE, format_args!("invalid --object: {e}")),
    };
    let class: Option<ExpiryClass> = match args.class.as_deref().map(str::parse).transpose() {
        Ok(c) => c,
        Err(e) => return fail(USAGE, format_args!("invalid --class: {e}")),
    };
    let grants: Option<Vec<Grant>> = match args.scope.as_deref().map(parse_scope).transpose() {
        Ok(g) => g,
        Err(e) => return fail(USAGE, format_args!("invalid --scope: {e}")),
    };
    if let Some(c) = &args.caller
        && (c.is_empty() || c.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return fail(USAGE, "invalid --caller: empty or whitespace");
    }
    let mut attrs: Vec<(&str, &str)> = Vec::with_capacity(args.attrs.len());
    for a in &args.attrs {
        match a.split_once('=') {
            Some((name, value)) if !name.is_empty() => attrs.push((name, value)),
            _ => {
                return fail(
                    USAGE,
                    format_args!("invalid --attr `{a}`: expected NAME=VALUE"),
                );
            }
        }
    }
    let policy = match load(&args.policy) {
        Ok(p) => p,
        Err(e) => return fail(USAGE, e),
    };
    let mut req = Request::new(&subject, &verb, &object);
    if let Some(c) = &args.caller {
        req = req.with_caller(c);
    }
    if let Some(c) = class {
        req = req.with_class(c);
    }
    if let Some(g) = &grants {
        req = req.with_grants(g);
    }
    let req = req.with_attributes(&attrs);
    let decision = policy.decide(&req);
    match (args.explain, args.json) {
        (false, _) => println!("{}", json_for_terminal(&decision_json(&decision, None))),
        (true, true) => {
            let why = policy.explain(&req);
            println!(
                "{}",
                json_for_terminal(&decision_json(&decision, Some(&why)))
            );
        }
        (true, false) => print_explanation(&decision, &policy.explain(&req)),
    }
    if decision.is_allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(REJECTED)
    }
}

/// The explanation as text, one line per closest rule, escaped for the terminal.
fn print_explanation(d: &Decision, why: &Explanation) {
    let rule = why.rule().map(|r| format!(" (rule `{}`)", shown(r)));
    println!("{}: {}{}", d.effect(), d.reason(), rule.unwrap_or_default());
    if let Some(s) = d.shadow() {
        let rule = s.rule().map(|r| format!(" (rule `{}`)", shown(r)));
        println!(
            "shadow: {}: {}{}",
            s.effect(),
            s.reason(),
            rule.unwrap_or_default()
        );
    }
    if why.closest().is_empty() {
        if why.reason() == secmesh_core::policy::Reason::NoRule {
            println!("the policy has no allow rule");
        }
        return;
    }
    println!("closest rules:");
    for (i, c) in why.closest().iter().enumerate() {
        println!("  {}. {}", i + 1, shown(c));
    }
}

/// One closest rule as JSON: the rule, the count of conditions met, and the first failed
/// condition with what the request had and what the rule wanted.
fn closest_json(c: &Closest) -> serde_json::Value {
    use serde_json::{Value, json};
    let strings = |v: &mut dyn Iterator<Item = String>| Value::from(v.collect::<Vec<_>>());
    let (request, rule, name) = match c.failure() {
        Failure::Subject { subject, subjects } => (
            json!(&**subject),
            strings(&mut subjects.iter().map(ToString::to_string)),
            None,
        ),
        Failure::Verb { verb, verbs } => (
            json!(&**verb),
            strings(&mut verbs.iter().map(ToString::to_string)),
            None,
        ),
        Failure::Object { object, objects } => (
            json!(&**object),
            strings(&mut objects.iter().map(ToString::to_string)),
            None,
        ),
        Failure::Caller { caller, callers } => (
            json!(caller.as_deref()),
            strings(&mut callers.iter().map(ToString::to_string)),
            None,
        ),
        Failure::Class { class, max_class } => (
            json!(class.map(|c| c.as_str())),
            json!(max_class.as_str()),
            None,
        ),
        Failure::Attribute {
            name,
            values,
            globs,
        } => (
            strings(&mut values.iter().map(ToString::to_string)),
            strings(&mut globs.iter().map(ToString::to_string)),
            Some(&**name),
        ),
        Failure::Grant { verb, object } => (json!(format!("{verb}:{object}")), Value::Null, None),
        _ => (Value::Null, Value::Null, None),
    };
    let mut failed = json!({
        "condition": c.failure().condition().as_str(),
        "request": request,
        "rule": rule,
        "message": c.failure().to_string(),
    });
    if let Some(name) = name {
        failed["attribute"] = json!(name);
    }
    json!({
        "rule": c.rule(),
        "index": c.index() + 1,
        "effect": c.effect().as_str(),
        "matched": c.matched(),
        "conditions": c.conditions(),
        "failed": failed,
    })
}

fn explanation_json(why: &Explanation) -> String {
    serde_json::json!({
        "reason": why.reason().code(),
        "rule": why.rule(),
        "closest": why.closest().iter().map(closest_json).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The decision as one JSON object, keys in the documented order; with an explanation, an
/// `"explanation"` key last.
fn decision_json(d: &Decision, why: Option<&Explanation>) -> String {
    let string = |s: &str| serde_json::Value::from(s).to_string();
    let rule = |r: Option<&str>| r.map_or_else(|| "null".to_owned(), string);
    let effect = |e: Effect| string(e.as_str());
    let shadow = d.shadow().map_or_else(
        || "null".to_owned(),
        |s| {
            format!(
                "{{\"decision\":{},\"rule\":{}}}",
                effect(s.effect()),
                rule(s.rule())
            )
        },
    );
    let explanation = why.map_or_else(String::new, |w| {
        format!(",\"explanation\":{}", explanation_json(w))
    });
    format!(
        "{{\"decision\":{},\"rule\":{},\"reason\":{},\"shadow\":{}{explanation}}}",
        effect(d.effect()),
        rule(d.rule()),
        string(d.reason().as_str()),
        shadow
    )
}

fn lint(args: &LintArgs) -> ExitCode {
    let policy = match load(&args.file) {
        Ok(p) => p,
        Err(e) => return fail(USAGE, e),
    };
    let known: Vec<&str> = args.known_verbs.iter().map(String::as_str).collect();
    let report = policy.lint_report_with_verbs(&known);
    let (warnings, findings): (Vec<_>, Vec<_>) = report
        .findings()
        .iter()
        .partition(|f| f.kind().is_advisory());
    let file = path_shown(&args.file);
    if !report.is_complete() {
        eprintln!(
            "{file}: note: stopped comparing rules after {} inclusion tests (very many rules \
             overlap); rules covered by earlier ones may be missing below",
            report.comparisons()
        );
    }
    for f in report.findings() {
        println!("{file}: warning: {}", shown(f));
    }
    let rules = policy.rules().len();
    let warned = match warnings.len() {
        0 => String::new(),
        1 => ", 1 warning".to_owned(),
        n => format!(", {n} warnings"),
    };
    if findings.is_empty() {
        println!("{file}: {rules} rules, no findings{warned}");
        ExitCode::SUCCESS
    } else {
        println!("{file}: {rules} rules, {} findings{warned}", findings.len());
        ExitCode::from(REJECTED)
    }
}
