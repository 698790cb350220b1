//! Small I/O helpers shared by the commands: reading inputs, writing key files, exit codes.
//!
//! Every file the CLI reads goes through `secmesh_fs`: regular files only (a device, a FIFO, a
//! directory is refused without hanging), with a size limit suited to what is read. Every
//! private key is written with mode 0600 from the start; everything printed that came from an
//! input is escaped for the terminal.

use std::path::Path;
use std::process::ExitCode;

use secmesh_fs::{FileError, Input, Overwrite};

pub(crate) use secmesh_fs::{DOCUMENT, SMALL};

/// Exit code for a checked and rejected input.
pub(crate) const REJECTED: u8 = 1;
/// Exit code for usage and configuration errors.
pub(crate) const USAGE: u8 = 2;

/// Print `error: <msg>` to stderr (escaped for the terminal) and return the exit code.
pub(crate) fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {}", shown(msg));
    ExitCode::from(code)
}

/// Text that came from an input, escaped for the terminal (controls, C1, bidi overrides).
pub(crate) fn shown(s: impl std::fmt::Display) -> String {
    let s = s.to_string();
    secmesh_fs::escape_for_terminal(&s).into_owned()
}

/// A path for messages, escaped for the terminal.
pub(crate) fn path_shown(path: &Path) -> String {
    secmesh_fs::Shown(path).to_string()
}

/// JSON text with every character that must not reach a terminal raw (C1 controls such as
/// U+009B, bidirectional overrides such as U+202E; serde_json already escapes C0) written as a
/// `\uXXXX` escape: the same JSON value, safe to print. Outside strings JSON is ASCII, so
/// only string contents change.
pub(crate) fn json_for_terminal(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.chars().any(secmesh_fs::is_unsafe_char) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if secmesh_fs::is_unsafe_char(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn read_error(e: &FileError) -> String {
    format!("cannot read {e}")
}

/// Read a whole file of at most [`SMALL`] bytes (a key, a certificate, a key set) as UTF-8,
/// naming the file in the error.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    read_text_limited(path, SMALL)
}

/// Read a whole file of at most `limit` bytes as UTF-8, naming the file in the error.
pub(crate) fn read_text_limited(path: &Path, limit: u64) -> Result<String, String> {
    secmesh_fs::read_to_string(path, limit).map_err(|e| read_error(&e))
}

/// Read a file, or standard input when the path is `-`, of at most `limit` bytes as UTF-8.
pub(crate) fn read_input_text(path: &Path, limit: u64) -> Result<String, String> {
    secmesh_fs::read_input_to_string(Input::from_arg(path), limit).map_err(|e| read_error(&e))
}

/// The argument itself, or standard input when it is `-` (at most [`SMALL`] bytes), with
/// surrounding whitespace trimmed.
pub(crate) fn arg_or_stdin(arg: &str) -> Result<String, String> {
    if arg != "-" {
        return Ok(arg.trim().to_owned());
    }
    read_input_text(Path::new("-"), SMALL).map(|s| s.trim().to_owned())
}

/// Write a file readable only by its owner (mode 0600 whatever the umask, by rename: an
/// existing file, even a world-readable one, is replaced by a private one), for private keys
/// and secrets.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    secmesh_fs::write_private(path, contents, Overwrite::Yes)
        .map_err(|e| format!("cannot write {e}"))
}

/// Write a public file (mode 0644, by rename).
pub(crate) fn write_public(path: &Path, contents: &[u8]) -> Result<(), String> {
    secmesh_fs::write_public(path, contents, Overwrite::Yes)
        .map_err(|e| format!("cannot write {e}"))
}
