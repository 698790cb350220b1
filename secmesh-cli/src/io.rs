//! Small I/O helpers shared by the commands: reading inputs, writing key files, exit codes.
//!
//! Every file the CLI reads goes through `secmesh_fs`: regular files only (a device, a FIFO, a
//! directory is refused without hanging), with a size limit suited to what is read. Every
//! private key is written with mode 0600 from the start; everything printed that came from an
//! input is escaped for the terminal.

use std::path::Path;
use std::process::ExitCode;

use secmesh_fs::{FileError, Input, Overwrite};
use secmesh_tokens::Algorithm;

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

fn overwrite(force: bool) -> Overwrite {
    if force { Overwrite::Yes } else { Overwrite::No }
}

fn write_error(e: &FileError) -> String {
    match e {
        FileError::Exists { .. } => format!("cannot write {e}; --force replaces it"),
        _ => format!("cannot write {e}"),
    }
}

/// Refuse, before anything is written, when one of the files a command writes exists and
/// `force` is not set: a command that writes a key and its key set never leaves one of the
/// two replaced and the other not.
pub(crate) fn refuse_existing(paths: &[&Path], force: bool) -> Result<(), String> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| std::fs::symlink_metadata(p).is_ok()) {
        Some(p) => Err(write_error(&FileError::Exists {
            path: p.to_path_buf(),
        })),
        None => Ok(()),
    }
}

/// Write a file readable only by its owner (mode 0600 whatever the umask, by rename), for
/// private keys and secrets. An existing file is refused unless `force` is set; then it is
/// replaced, even a world-readable one, by a private one.
pub(crate) fn write_private(path: &Path, contents: &[u8], force: bool) -> Result<(), String> {
    secmesh_fs::write_private(path, contents, overwrite(force)).map_err(|e| write_error(&e))
}

/// Write a public file (mode 0644, by rename); an existing file only with `force`.
pub(crate) fn write_public(path: &Path, contents: &[u8], force: bool) -> Result<(), String> {
    secmesh_fs::write_public(path, contents, overwrite(force)).map_err(|e| write_error(&e))
}

/// Print one JSON document on standard output, escaped for the terminal (still the same JSON).
pub(crate) fn print_json(value: &serde_json::Value) {
    use std::io::Write;
    let text = value.to_string();
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error of the command.
    let _ = writeln!(out, "{}", json_for_terminal(&text)).and_then(|()| out.flush());
}

/// The algorithm named `s`, whatever its case (`es256`, `EdDSA`, `eddsa`); an unknown name is
/// refused with the list of the names this build supports.
pub(crate) fn parse_alg(s: &str) -> Result<Algorithm, String> {
    Algorithm::ALL
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
        .filter(|a| a.is_supported())
        .ok_or_else(|| {
            let valid: Vec<&str> = Algorithm::ALL
                .into_iter()
                .filter(|a| a.is_supported())
                .map(Algorithm::as_str)
                .collect();
            format!(
                "unknown algorithm {:?}: expected one of {}",
                shown(s.chars().take(32).collect::<String>()),
                valid.join(", ")
            )
        })
}

/// A Unix time as RFC 3339 in UTC (`2026-12-02T13:21:37Z`), for human output; a time outside
/// the years 0000..=9999, which RFC 3339 cannot write, as the number of seconds.
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = secmesh_core::clock::civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return format!("{secs} seconds since 1970-01-01T00:00:00Z");
    }
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert!(rfc3339(253_402_300_800).starts_with("253402300800 seconds"));
        assert!(rfc3339(i64::MAX).starts_with(&i64::MAX.to_string()));
        assert!(rfc3339(i64::MIN).starts_with(&i64::MIN.to_string()));
    }

    #[test]
    fn every_day_of_400_years_follows_the_one_before() {
        // One full Gregorian cycle from 1970: each midnight is the day after the previous one.
        let mut prev = rfc3339(0);
        for d in 1..146_097_i64 {
            let now = rfc3339(d * 86_400);
            assert!(now > prev, "{prev} then {now}");
            assert!(now.ends_with("T00:00:00Z"));
            prev = now;
        }
        assert_eq!(prev, "2369-12-31T00:00:00Z");
    }

    #[test]
    fn algorithm_names_ignore_case_and_errors_list_the_valid_ones() {
        assert_eq!(parse_alg("es256"), Ok(Algorithm::Es256));
        assert_eq!(parse_alg("EDDSA"), Ok(Algorithm::EdDsa));
        assert_eq!(parse_alg("Hs512"), Ok(Algorithm::Hs512));
        let e = parse_alg("none").unwrap_err();
        assert!(e.contains("EdDSA, ES256"), "{e}");
        assert!(parse_alg("").is_err());
        assert!(parse_alg("ES256 ").is_err());
    }
}
