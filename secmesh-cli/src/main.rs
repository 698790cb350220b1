//! The `secmesh` command-line tool.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[allow(dead_code)] // helpers for the other commands
mod io;
mod policy_cmd;

/// Secure service-to-service calls: tokens, policies, audit logs.
#[derive(Parser, Debug)]
#[command(name = "secmesh", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check requests against access-control policies and lint them.
    Policy {
        #[command(subcommand)]
        cmd: policy_cmd::PolicyCommand,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Policy { cmd } => policy_cmd::run(cmd),
    }
}
