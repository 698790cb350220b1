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

use std::path::PathBuf;
use std::process::Command;

/// A test that cannot run here: in CI (`CI=true`) a failure, since `.ci/run` provides what
/// it needs; elsewhere a loud notice that it is skipped.
///
/// # Panics
/// In CI.
pub fn skip_or_fail(what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} (CI=true: this test must run)"
    );
    eprintln!("\n*** SKIPPED: {what} ***\n");
}

/// Whether `program` (from the Debian package `package`) can be run; when it cannot, see
/// [`skip_or_fail`].
///
/// # Panics
/// In CI, when `program --version` cannot be run.
pub fn require_program(program: &str, package: &str) -> bool {
    if Command::new(program).arg("--version").output().is_ok() {
        return true;
    }
    skip_or_fail(&format!(
        "{program} is not installed (apt-get install {package})"
    ));
    false
}

/// An example's binary built beside the running test's (`target/<profile>/examples/NAME`),
/// or `None` (after [`skip_or_fail`]) when it is not built.
pub fn example_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe
        .parent()?
        .parent()?
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        return Some(path);
    }
    skip_or_fail(&format!(
        "the example binary {} is not built (cargo build --example {name})",
        path.display()
    ));
    None
}
