//! The demo mesh: five nodes on 127.0.0.1 with mutual TLS between them, an identity provider
//! outside, a scenario, a tree of every transaction from the audit logs, and the logs' chains
//! verified at the end.
//!
//! ```text
//! cargo run --example mesh [-- --audit-dir DIR] [-- --serve]
//! ```
//!
//! One file per node:
//! - [`idp`]: an identity provider (simulated: its own Ed25519 key, its JWKS served over plain
//!   HTTP on loopback) issues RFC 9068 access tokens (`at+jwt`) to users;
//! - [`sts`], the Txn-Token Service, is the only node with a signing key (a rotating key ring
//!   in `DIR/sts-keys/`): it exchanges the IdP's tokens and the reconciler's own requests for
//!   txn-tokens as the exchange policy (`exchange.toml`) allows, replaces them for renewal,
//!   and publishes its keys at `/.well-known/jwks.json` on the same mutual-TLS listener;
//! - [`gateway`] (axum, plain HTTP on 127.0.0.1 for the outside) is the library's edge layer:
//!   it verifies the IdP's tokens (keys by JWKS URL) and exchanges each, through the token
//!   service, for an internal fast txn-token narrowed to the request, that travels through the
//!   mesh in the `Txn-Token` header without any handler touching it;
//! - [`orders`] and [`payments`] (axum) and [`inventory`] (tonic) talk over mutual TLS with
//!   X.509-SVIDs from the internal CA ([`node`]); each verifies txn-tokens with the token
//!   service's keys (fetched from its JWKS URL), authorizes with the mesh policy
//!   (`policy.toml`; the caller is the peer's SPIFFE ID), and writes a chained, signed audit
//!   log to `DIR/<service>.jsonl` (default `target/secmesh-demo/`), as the token service does.
//!
//! The [`scenario`]: a call allowed through three hops; a call denied with its reason; a
//! confused-deputy attempt (payments, holding a user's token, asks orders for a refund) denied;
//! a batch job's slow token, from and renewed through the token service, accepted on a batch
//! route and refused on an API route; a tampered token and an expired one refused; the token
//! service's key rotated while requests flow, none failing. With `--serve` the mesh then keeps
//! running, and the ports and a curl command are printed. At the end the [`report`] verifies
//! every log's chain and writes `DIR/report.html` (what `secmesh report` writes: the service
//! graph, the transactions, the denials, the access matrix, each log's integrity) and prints
//! its path.
#![allow(clippy::unwrap_used)]

mod gateway;
mod idp;
mod inventory;
mod node;
mod orders;
mod payments;
mod report;
mod scenario;
mod sts;

use std::path::{Path, PathBuf};

use secmesh::audit::chain::AuditKey;
use secmesh::core::policy::{Format, Policy, SharedPolicy};

use idp::Idp;
use node::{Node, Pki, mesh_verifier};

const TRUST_DOMAIN: &str = "mesh.test";
const IDP: &str = "https://idp.example.test";
/// The token service: its issuer name and its workload.
const STS_ISS: &str = "https://sts.mesh.test";
const STS_ID: &str = "spiffe://mesh.test/sts";
/// The audience of every txn-token: the trust domain.
const MESH_AUD: &str = "mesh.test";
const SERVICES: [&str; 5] = ["gateway", "sts", "orders", "payments", "inventory"];

/// The mesh policy: one shared store, rules per service (by object) and per caller.
const POLICY: &str = include_str!("policy.toml");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // One exporter for the process; each node reports its own `service` label.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    secmesh::tower::metrics::describe();
    std::fs::create_dir_all(&opts.audit_dir)?;
    remove_old_logs(&opts.audit_dir)?;
    let pki = Pki::create(&opts.audit_dir)?;
    let audit_key = AuditKey::generate()?;
    std::fs::write(
        opts.audit_dir.join("audit-key.pub"),
        audit_key.public_key_b64(),
    )?;

    // The IdP (outside the mesh) and its keys by URL.
    let idp = Idp::new();
    let idp_jwks = idp.serve().await?;
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml)?);

    let [gateway, sts, orders, payments, inventory] =
        SERVICES.map(|name| Node::new(&pki, &opts.audit_dir, &audit_key, name));

    // The token service first: every other node fetches its keys at start.
    let token_service = sts::start(&sts, &opts.audit_dir, &idp_jwks).await?;
    let sts_addr = token_service.addr;
    let inventory_addr = inventory::start(
        &inventory,
        &mesh_verifier(&inventory.workload, sts_addr).await?,
        &policy,
    )
    .await?;
    // payments and orders need each other's address (the deputy calls back): bind first.
    let payments_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let payments_addr = payments_listener.local_addr()?;
    let orders_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let orders_addr = orders_listener.local_addr()?;
    payments::start(
        &payments,
        payments_listener,
        orders_addr,
        &mesh_verifier(&payments.workload, sts_addr).await?,
        &policy,
    );
    orders::start(
        &orders,
        orders_listener,
        payments_addr,
        inventory_addr,
        &mesh_verifier(&orders.workload, sts_addr).await?,
        &policy,
    )?;
    let gateway_addr = gateway::start(&gateway, &idp_jwks, sts_addr, orders_addr).await?;

    println!("secmesh demo mesh on 127.0.0.1 (trust domain {TRUST_DOMAIN}, mutual TLS inside)");
    println!("  gateway   http://{gateway_addr}   (edge: IdP bearer tokens, exchanged at sts)");
    println!("  sts       https://{sts_addr}  (Txn-Token Service: /token, /.well-known/jwks.json)");
    println!("  orders    https://{orders_addr}  (axum)");
    println!("  payments  https://{payments_addr}  (axum)");
    println!("  inventory https://{inventory_addr}  (tonic)");
    println!("  idp       {idp_jwks}  (outside the mesh: its keys)");
    println!("  audit logs in {}", opts.audit_dir.display());
    println!();

    let failures = scenario::run(&scenario::Mesh {
        gateway: &gateway,
        nodes: [&gateway, &sts, &orders, &payments, &inventory],
        gateway_addr,
        orders_addr,
        sts: &token_service,
        idp: &idp,
        pki: &pki,
    })
    .await?;

    if opts.serve {
        println!();
        for node in [&gateway, &sts, &orders, &payments, &inventory] {
            let addr = node.serve_metrics(prometheus.clone()).await?;
            println!("  metrics {:<9} http://{addr}/metrics", node.name);
        }
        println!("The mesh keeps running; Ctrl-C to stop. Try, as alice (an IdP access token):");
        println!(
            "  curl -i -H 'Authorization: Bearer {}' http://{gateway_addr}/orders/user:alice/42",
            idp.token("alice")
        );
        println!(
            "and follow the log: cargo run -p secmesh-cli -- audit tail {}",
            orders.log.display()
        );
        tokio::signal::ctrl_c().await?;
    }

    // Close the logs (a final checkpoint each) and verify every chain with the audit key.
    println!();
    let chains_ok = report::close_and_verify(
        vec![gateway, sts, orders, payments, inventory],
        &opts.audit_dir,
        &audit_key,
    )?;
    // The page that shows the run: `secmesh report` on the audit directory.
    report::write_page(&opts.audit_dir, POLICY, &audit_key)?;
    if failures > 0 || !chains_ok {
        eprintln!("{failures} step(s) did not go as expected");
        std::process::exit(1);
    }
    Ok(())
}

struct Options {
    audit_dir: PathBuf,
    serve: bool,
}

fn options() -> Result<Options, String> {
    let mut audit_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/secmesh-demo");
    let mut serve = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--audit-dir" => {
                audit_dir = args.next().ok_or("--audit-dir needs a directory")?.into();
            }
            "--serve" => serve = true,
            "-h" | "--help" => {
                return Err(
                    "usage: cargo run --example mesh [-- [--audit-dir DIR] [--serve]]".into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Options { audit_dir, serve })
}

/// A fresh run starts fresh logs (rotated ones included).
fn remove_old_logs(audit_dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(audit_dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if SERVICES
            .iter()
            .any(|s| name.starts_with(&format!("{s}.jsonl")))
        {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
