//! Fixtures shared by secmesh's examples and tests; not published.
//!
//! [`inventory`] is a small gRPC service, `inventory.v1.Inventory` with one unary method
//! `Reserve`, written by hand against tonic's server and client APIs the way `tonic-build`
//! would generate it: prost derives for the messages, no protoc and no build script. The
//! examples (`tonic_service`, the mesh's inventory node) and `secmesh-tower`'s gRPC tests all
//! use this one copy. [`redis`] starts a real `redis-server` for the fleet tests, [`prometheus`]
//! a real `prometheus` that scrapes the metrics tests' servers.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod inventory;
pub mod prometheus;
pub mod redis;

use std::process::Command;

/// Whether `program` (from the Debian package `package`) can be run. When it cannot: in CI
/// (`CI=true`) a failure, since `.ci/run` installs it; elsewhere `false`, after a loud notice
/// that the test is skipped.
///
/// # Panics
/// In CI, when `program --version` cannot be run.
pub fn require_program(program: &str, package: &str) -> bool {
    if Command::new(program).arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{program} is required in CI (apt-get install {package})"
    );
    eprintln!("\n*** SKIPPED: {program} is not installed (apt-get install {package}) ***\n");
    false
}
