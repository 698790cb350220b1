//! # secmesh-fs
//!
//! Every file secmesh reads is hostile: a key set, a policy, a certificate or an audit log may
//! be `/dev/zero`, a symlink to it, a FIFO with no writer, or a gigabyte of garbage. This crate
//! is the one place where secmesh opens files, so that every read in the workspace (the CLI,
//! the policy and TLS watchers, the audit reader) has the same guarantees:
//!
//! - **Regular files only.** The file is opened without blocking (`O_NONBLOCK`, so a FIFO with
//!   no writer cannot hang the open) and its type is checked on the open descriptor (`fstat`,
//!   so a symlink swapped between a check and the open cannot slip a device in). Anything but a
//!   regular file is refused with [`FileError::NotRegular`].
//! - **Bounded.** [`read`] takes a size limit suited to what is read and refuses a larger file
//!   with [`FileError::TooLarge`] after reading at most `limit + 1` bytes, whatever the file
//!   claims its size to be.
//! - **Private writes.** [`write_private`] creates key material with mode `0600` from the start
//!   (never world-readable, not even for an instant), writes it to a temporary file in the same
//!   directory, syncs it and renames it into place; it refuses to replace an existing file
//!   unless told to.
//! - **Standard input on request.** [`Input`] is what a command-line argument names: a file,
//!   or standard input when the argument is `-`. [`read_input`] reads either with the same
//!   bound (standard input is whatever the caller's shell connected, so only its size is
//!   checked).
//!
//! - **Watched.** [`watch`] (the `watch` feature) reloads a set of files when they change: one
//!   helper for the policy and the TLS material.
//!
//! Errors are typed and name the file, escaped so that a hostile file name cannot drive a
//! terminal.
//!
//! # Example
//! ```
//! use secmesh_fs::{read, FileError, Overwrite, write_private};
//!
//! let dir = tempfile::tempdir()?;
//! let key = dir.path().join("key.pem");
//! write_private(&key, b"secret", Overwrite::No)?;
//! assert_eq!(read(&key, 1024)?, b"secret");
//! assert!(matches!(read(&key, 3), Err(FileError::TooLarge { limit: 3, .. })));
//! assert!(matches!(write_private(&key, b"x", Overwrite::No), Err(FileError::Exists { .. })));
//! # #[cfg(unix)]
//! assert!(matches!(read("/dev/zero", 1024), Err(FileError::NotRegular { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

#[cfg(feature = "watch")]
pub mod watch;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A size limit for small configuration inputs: keys, certificates, JWKS, tokens (1 MiB).
pub const SMALL: u64 = 1 << 20;

/// A size limit for larger documents: policies, CA bundles, CRLs (16 MiB).
pub const DOCUMENT: u64 = 16 << 20;

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The path names something other than a regular file (a directory, a device, a FIFO, a
    /// socket).
    #[error("{}: not a regular file (a {kind})", Shown(path))]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than the limit for what it holds.
    #[error("{}: larger than the limit of {limit} bytes", Shown(path))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{}: not UTF-8 text", Shown(path))]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// The file exists and overwriting was not asked for.
    #[error("{}: already exists (refusing to overwrite it)", Shown(path))]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The operating system refused.
    #[error("{}: {source}", Shown(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl FileError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FileError::NotRegular { path, .. }
            | FileError::TooLarge { path, .. }
            | FileError::NotText { path }
            | FileError::Exists { path }
            | FileError::Io { path, .. } => path,
        }
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
        move |source| FileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<FileError> for io::Error {
    /// The error as an [`io::Error`] for callers whose own error names the path already: the
    /// message leaves the path out (`not a regular file (a FIFO)`), the kind says what
    /// happened (`InvalidInput` for a file of the wrong type, `FileTooLarge`, `InvalidData`,
    /// `AlreadyExists`, or the operating system's own error).
    fn from(e: FileError) -> io::Error {
        let (kind, msg) = match e {
            FileError::Io { source, .. } => return source,
            FileError::NotRegular { kind, .. } => (
                io::ErrorKind::InvalidInput,
                format!("not a regular file (a {kind})"),
            ),
            FileError::TooLarge { limit, .. } => (
                io::ErrorKind::FileTooLarge,
                format!("larger than the limit of {limit} bytes"),
            ),
            FileError::NotText { .. } => (io::ErrorKind::InvalidData, "not UTF-8 text".to_owned()),
            FileError::Exists { .. } => (
                io::ErrorKind::AlreadyExists,
                "already exists (refusing to overwrite it)".to_owned(),
            ),
        };
        io::Error::new(kind, msg)
    }
}

/// The name errors give standard input (read through [`Input::Stdin`]).
pub const STDIN_NAME: &str = "standard input";

/// A path shown with control characters and bidirectional overrides escaped; `-` (standard
/// input in [`read_input`]'s errors) is shown as [`STDIN_NAME`].
pub struct Shown<'a>(pub &'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Path::new("-") {
            return f.write_str(STDIN_NAME);
        }
        for c in self.0.to_string_lossy().chars() {
            if is_unsafe_char(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Whether a character must not reach a terminal raw: C0 and C1 controls (escape sequences,
/// carriage returns), DEL, and the Unicode bidirectional controls that reorder what is shown
/// (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// `s` with every [unsafe](is_unsafe_char) character but `\n` escaped as `\u{..}`, so that it
/// can be printed to a terminal.
pub fn escape_for_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && is_unsafe_char(c)) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c != '\n' && is_unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "FIFO";
        }
        if ft.is_char_device() {
            return "character device";
        }
        if ft.is_block_device() {
            return "block device";
        }
        if ft.is_socket() {
            return "socket";
        }
    }
    if ft.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Open `path` for reading if it is a regular file (following symlinks), without blocking on
/// a FIFO; the type is checked on the open descriptor. For readers that stream a large file
/// (audit logs) with their own per-record bounds; everyone else uses [`read`].
pub fn open_regular(path: impl AsRef<Path>) -> Result<File, FileError> {
    let path = path.as_ref();
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = opts.open(path).map_err(FileError::io(path))?;
    let meta = file.metadata().map_err(FileError::io(path))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok(file)
}

/// Open `path` for appending, creating it (mode `0644` before the umask) if absent, if it is a
/// regular file: a FIFO with no reader is refused instead of blocking the open, a device
/// instead of being written to.
pub fn open_append(path: impl AsRef<Path>) -> Result<File, FileError> {
    let path = path.as_ref();
    let mut opts = OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = match opts.open(path) {
        Ok(f) => f,
        // A FIFO without a reader refuses a non-blocking open for writing.
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(FileError::NotRegular {
                path: path.to_path_buf(),
                kind: "FIFO",
            });
        }
        Err(e) => return Err(FileError::io(path)(e)),
    };
    let meta = file.metadata().map_err(FileError::io(path))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok(file)
}

/// Read a whole regular file of at most `limit` bytes.
pub fn read(path: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>, FileError> {
    let path = path.as_ref();
    let file = open_regular(path)?;
    // A file that says it is too large is refused without reading it (a 2 GiB sparse file
    // costs nothing); one that grows while read is still cut at `limit + 1`.
    if file.metadata().is_ok_and(|m| m.len() > limit) {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    read_bounded(file, limit).map_err(|e| match e {
        Bounded::TooLarge => FileError::TooLarge {
            path: path.to_path_buf(),
            limit,
        },
        Bounded::Io(source) => FileError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Read a whole regular file of at most `limit` bytes as UTF-8 text.
pub fn read_to_string(path: impl AsRef<Path>, limit: u64) -> Result<String, FileError> {
    let path = path.as_ref();
    String::from_utf8(read(path, limit)?).map_err(|_| FileError::NotText {
        path: path.to_path_buf(),
    })
}

/// What a command-line argument names: a file, or standard input (`-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// A file: a regular file only, as [`read`] reads it.
    File(&'a Path),
    /// Standard input, as the caller's shell connected it; only its size is checked.
    Stdin,
}

impl<'a> Input<'a> {
    /// `-` is standard input, anything else a file (`./-` names a file called `-`).
    pub fn from_arg(arg: &'a Path) -> Input<'a> {
        if arg == Path::new("-") {
            Input::Stdin
        } else {
            Input::File(arg)
        }
    }

    /// The path errors name: the file, or `-` for standard input (shown as
    /// [`STDIN_NAME`]).
    pub fn path(&self) -> &Path {
        match self {
            Input::File(p) => p,
            Input::Stdin => Path::new("-"),
        }
    }
}

/// Read a whole [`Input`] of at most `limit` bytes: a regular file as [`read`] does, or
/// standard input, reading at most `limit + 1` bytes of it.
pub fn read_input(input: Input<'_>, limit: u64) -> Result<Vec<u8>, FileError> {
    match input {
        Input::File(p) => read(p, limit),
        Input::Stdin => {
            let path = input.path();
            read_bounded(io::stdin().lock(), limit).map_err(|e| match e {
                Bounded::TooLarge => FileError::TooLarge {
                    path: path.to_path_buf(),
                    limit,
                },
                Bounded::Io(source) => FileError::Io {
                    path: path.to_path_buf(),
                    source,
                },
            })
        }
    }
}

/// [`read_input`] as UTF-8 text.
pub fn read_input_to_string(input: Input<'_>, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_input(input, limit)?).map_err(|_| FileError::NotText {
        path: input.path().to_path_buf(),
    })
}

/// Why a bounded read stopped.
#[derive(Debug)]
pub enum Bounded {
    /// More than the limit was available.
    TooLarge,
    /// The reader failed.
    Io(io::Error),
}

/// Read all of `reader` (a file, standard input) if it holds at most `limit` bytes; reads at
/// most `limit + 1` bytes either way.
pub fn read_bounded(reader: impl Read, limit: u64) -> Result<Vec<u8>, Bounded> {
    let mut out = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(Bounded::Io)?;
    if out.len() as u64 > limit {
        return Err(Bounded::TooLarge);
    }
    Ok(out)
}

/// Whether [`write_private`] may replace an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse with [`FileError::Exists`].
    No,
    /// Replace it (atomically, by rename).
    Yes,
}

/// Write secret material (a private key) to `path`: created with mode `0600` in a temporary
/// file beside it, synced, then renamed into place, so that the key is never readable by
/// others and a crash leaves either the old file or the whole new one.
pub fn write_private(
    path: impl AsRef<Path>,
    contents: &[u8],
    overwrite: Overwrite,
) -> Result<(), FileError> {
    write_with_mode(path.as_ref(), contents, overwrite, 0o600)
}

/// Write a public file (a certificate, a public key) the same way, with mode `0644`.
pub fn write_public(
    path: impl AsRef<Path>,
    contents: &[u8],
    overwrite: Overwrite,
) -> Result<(), FileError> {
    write_with_mode(path.as_ref(), contents, overwrite, 0o644)
}

fn write_with_mode(
    path: &Path,
    contents: &[u8],
    overwrite: Overwrite,
    mode: u32,
) -> Result<(), FileError> {
    if overwrite == Overwrite::No && std::fs::symlink_metadata(path).is_ok() {
        return Err(FileError::Exists {
            path: path.to_path_buf(),
        });
    }
    let name = path.file_name().ok_or_else(|| FileError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    // The process id and a per-process counter: two threads writing the same file never
    // share (or remove) each other's temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    // A stale temporary file of an earlier crash of a process with this id is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let written = opts.open(&tmp).and_then(|mut f| {
        #[cfg(unix)]
        {
            // The umask may have narrowed the mode; never widened it. Set it exactly.
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.write_all(contents)?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| {
        if overwrite == Overwrite::No {
            // Refuse a file that appeared meanwhile: link fails on an existing target.
            std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp))
        } else {
            std::fs::rename(&tmp, path)
        }
    });
    if let Err(source) = renamed {
        let _ = std::fs::remove_file(&tmp);
        if source.kind() == io::ErrorKind::AlreadyExists {
            return Err(FileError::Exists {
                path: path.to_path_buf(),
            });
        }
        return Err(FileError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_directories_and_fifos_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(dir.path(), 10),
            Err(FileError::NotRegular {
                kind: "directory",
                ..
            })
        ));
        #[cfg(unix)]
        {
            assert!(matches!(
                read("/dev/zero", 10),
                Err(FileError::NotRegular {
                    kind: "character device",
                    ..
                })
            ));
            let link = dir.path().join("zero-link");
            std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
            assert!(matches!(read(&link, 10), Err(FileError::NotRegular { .. })));
            let fifo = dir.path().join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                // No writer: a blocking open would hang here forever.
                assert!(matches!(
                    read(&fifo, 10),
                    Err(FileError::NotRegular { kind: "FIFO", .. })
                ));
            }
        }
    }

    #[test]
    #[cfg(unix)]
    fn appends_to_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        open_append(&p).unwrap().write_all(b"a\n").unwrap();
        open_append(&p).unwrap().write_all(b"b\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"a\nb\n");
        assert!(matches!(
            open_append(dir.path()),
            Err(FileError::NotRegular { .. } | FileError::Io { .. })
        ));
        assert!(matches!(
            open_append("/dev/null"),
            Err(FileError::NotRegular {
                kind: "character device",
                ..
            })
        ));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // No reader: a blocking open would hang here forever.
            assert!(matches!(
                open_append(&fifo),
                Err(FileError::NotRegular { kind: "FIFO", .. })
            ));
        }
    }

    #[test]
    fn limits_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [7u8; 100]).unwrap();
        assert_eq!(read(&p, 100).unwrap().len(), 100);
        assert!(matches!(
            read(&p, 99),
            Err(FileError::TooLarge { limit: 99, .. })
        ));
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_to_string(&p, 10),
            Err(FileError::NotText { .. })
        ));
    }

    #[test]
    #[cfg(unix)]
    fn private_files_are_0600_and_not_overwritten_unless_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        write_private(&p, b"one", Overwrite::No).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            write_private(&p, b"two", Overwrite::No),
            Err(FileError::Exists { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        // Replacing a world-readable file leaves a private one.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"two", Overwrite::Yes).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Nothing is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sparse_files_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let f = File::create(&p).unwrap();
        f.set_len(2 << 30).unwrap();
        drop(f);
        assert!(matches!(
            read(&p, SMALL),
            Err(FileError::TooLarge { limit: SMALL, .. })
        ));
        assert!(matches!(
            read_input(Input::from_arg(&p), DOCUMENT),
            Err(FileError::TooLarge { .. })
        ));
    }

    #[test]
    fn inputs_and_io_errors() {
        assert_eq!(Input::from_arg(Path::new("-")), Input::Stdin);
        assert_eq!(
            Input::from_arg(Path::new("./-")),
            Input::File(Path::new("./-"))
        );
        let e = FileError::TooLarge {
            path: Input::Stdin.path().to_path_buf(),
            limit: 5,
        };
        assert_eq!(
            e.to_string(),
            "standard input: larger than the limit of 5 bytes"
        );
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(io.to_string(), "larger than the limit of 5 bytes");
        let io: io::Error = FileError::NotRegular {
            path: PathBuf::from("/dev/zero"),
            kind: "character device",
        }
        .into();
        assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
        assert!(!io.to_string().contains("/dev/zero"));
    }

    #[test]
    fn hostile_names_and_text_are_escaped() {
        let e = FileError::Exists {
            path: PathBuf::from("a\u{1b}[2J\u{202e}b"),
        };
        let shown = e.to_string();
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{202e}'),
            "{shown}"
        );
        assert_eq!(escape_for_terminal("ok\nline"), "ok\nline");
        let s = escape_for_terminal("x\u{9b}31m\ry\u{2067}");
        assert!(s.chars().all(|c| c == '\n' || !is_unsafe_char(c)), "{s}");
    }
}
