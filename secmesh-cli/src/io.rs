//! Small I/O helpers shared by the commands: reading inputs, writing key files, exit codes.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// Exit code for a checked and rejected input.
pub(crate) const REJECTED: u8 = 1;
/// Exit code for usage and configuration errors.
pub(crate) const USAGE: u8 = 2;

/// Print `error: <msg>` to stderr and return the exit code.
pub(crate) fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

/// Read a whole file as UTF-8, naming the file in the error.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The argument itself, or standard input when it is `-`, with surrounding whitespace trimmed.
pub(crate) fn arg_or_stdin(arg: &str) -> Result<String, String> {
    if arg != "-" {
        return Ok(arg.trim().to_owned());
    }
    let mut s = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut s)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(s.trim().to_owned())
}

/// Write a file readable only by its owner (on Unix), for private keys and secrets.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Write a public file.
pub(crate) fn write_public(path: &Path, contents: &[u8]) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
