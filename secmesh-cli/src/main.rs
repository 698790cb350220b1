//! The `secmesh` command-line tool.
//!
//! Its commands, options, output and exit codes are a contract that users script against:
//! exit 0 means success (a valid token, an allowed request, a sound log), 1 means the input was
//! checked and rejected, 2 means a usage or configuration error (clap's own usage errors exit 2
//! too).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit_cmd;
mod ca_cmd;
mod exchange_cmd;
mod io;
mod keygen;
mod keys_cmd;
mod policy_cmd;
mod report_cmd;
mod revoke_cmd;
mod sts_cmd;
mod token_cmd;

/// secmesh: keys, transaction tokens, policies, audit logs and a development CA.
#[derive(Parser, Debug)]
#[command(name = "secmesh", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a signing key: the private key to one file, the public JWKS to another.
    Keygen(token_cmd::KeygenArgs),
    /// An issuer's rotating key ring: init, rotate, list, and serve its JWKS.
    Keys {
        #[command(subcommand)]
        cmd: keys_cmd::KeysCommand,
    },
    /// Mint, verify, inspect and exchange transaction tokens.
    Token {
        #[command(subcommand)]
        cmd: token_cmd::TokenCommand,
    },
    /// Verify a raw JWS (any payload) against a JWK or a JWKS.
    Jws {
        #[command(subcommand)]
        cmd: token_cmd::JwsCommand,
    },
    /// Check requests against access-control policies and lint them.
    Policy {
        #[command(subcommand)]
        cmd: policy_cmd::PolicyCommand,
    },
    /// Verify audit logs, rebuild a transaction's path, follow a log.
    Audit {
        #[command(subcommand)]
        cmd: audit_cmd::AuditCommand,
    },
    /// Write one self-contained HTML page that shows the mesh from its audit logs and policy
    /// files: the service graph, transactions as waterfalls, denials, the access matrix and
    /// each log's integrity.
    Report(report_cmd::ReportArgs),
    /// A development CA: X.509-SVIDs for one trust domain, revocation, CRLs.
    Ca {
        #[command(subcommand)]
        cmd: ca_cmd::CaCommand,
    },
    /// Revoke tokens for the whole fleet through Redis (by jti, sub, txn or kid), or list the
    /// revocations.
    Revoke(revoke_cmd::RevokeArgs),
    /// The Txn-Token Service: serve it (mutual TLS, the key ring's JWKS), check its configuration.
    Sts {
        #[command(subcommand)]
        cmd: sts_cmd::StsCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen(args) => token_cmd::keygen(args),
        Command::Keys { cmd } => keys_cmd::run(cmd),
        Command::Sts { cmd } => sts_cmd::run(cmd),
        Command::Revoke(args) => revoke_cmd::run(args),
        Command::Token { cmd } => token_cmd::run_token(cmd),
        Command::Jws { cmd } => token_cmd::run_jws(cmd),
        Command::Policy { cmd } => policy_cmd::run(cmd),
        Command::Audit { cmd } => audit_cmd::run(cmd),
        Command::Ca { cmd } => ca_cmd::run(cmd),
        Command::Report(args) => report_cmd::run(args),
    }
}
