//! Reading log files as hostile input: regular files only, one bounded line at a time.
//!
//! Every reader of audit logs in secmesh (verification, the sink's resume after a restart,
//! `trace`, `tail`) goes through [`LineReader`]: the file is opened with
//! [`secmesh_fs::open_regular`] (a device, a FIFO or a directory is refused, a FIFO without a
//! writer cannot hang the open) and no line longer than [`MAX_LINE`] is ever held in memory.
//!
//! # Example
//! ```
//! use secmesh_audit::reader::{read_events, ReadError};
//!
//! let dir = tempfile::tempdir()?;
//! let long = dir.path().join("long.jsonl");
//! std::fs::write(&long, vec![b'x'; secmesh_audit::reader::MAX_LINE + 10])?;
//! assert!(matches!(read_events(&[&long]), Err(ReadError::LineTooLong { line: 1, .. })));
//! # #[cfg(unix)]
//! assert!(matches!(read_events(&["/dev/zero"]), Err(ReadError::File(_))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::event::AuditEvent;
use crate::verify::{Record, parse_line};

/// The longest line (record) a log may hold: 1 MiB. The sink never writes a longer one.
pub const MAX_LINE: usize = 1 << 20;

/// A log file that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Not a regular file, or it could not be opened.
    #[error(transparent)]
    File(#[from] secmesh_fs::FileError),
    /// A line longer than [`MAX_LINE`].
    #[error("{}:{line}: a line longer than {} bytes", secmesh_fs::escape_for_terminal(&path.to_string_lossy()), MAX_LINE)]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
    },
    /// Reading failed.
    #[error("{}: {source}", secmesh_fs::escape_for_terminal(&path.to_string_lossy()))]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// What [`LineReader::next_line`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// A line, now in [`LineReader::line`]; `complete` says whether it ended with a newline
    /// (only the last line of a file can be incomplete).
    Line {
        /// Whether a newline ended it.
        complete: bool,
    },
    /// A line longer than [`MAX_LINE`]; the reader stopped inside it.
    TooLong,
    /// The end of the file.
    Eof,
}

/// Lines of a file, each at most [`MAX_LINE`] bytes.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
    start: u64,
    end: u64,
    lineno: u64,
}

impl LineReader<File> {
    /// Open a regular file.
    pub fn open(path: &Path) -> Result<LineReader<File>, secmesh_fs::FileError> {
        Ok(LineReader::new(secmesh_fs::open_regular(path)?))
    }
}

impl<R: Read> LineReader<R> {
    /// Lines of `inner`.
    pub fn new(inner: R) -> LineReader<R> {
        LineReader {
            inner: BufReader::with_capacity(64 << 10, inner),
            buf: Vec::new(),
            start: 0,
            end: 0,
            lineno: 0,
        }
    }

    /// Read the next line.
    pub fn next_line(&mut self) -> io::Result<Next> {
        self.buf.clear();
        self.start = self.end;
        let n = (&mut self.inner)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)?;
        self.end += n as u64;
        if n == 0 {
            return Ok(Next::Eof);
        }
        self.lineno += 1;
        let complete = self.buf.last() == Some(&b'\n');
        if complete {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            return Ok(Next::TooLong);
        }
        Ok(Next::Line { complete })
    }

    /// The line read last, without its newline.
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    /// Its 1-based number.
    pub fn lineno(&self) -> u64 {
        self.lineno
    }

    /// The byte offset where it starts.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The byte offset just past it (and its newline).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Whether nothing follows the line read last.
    pub fn at_eof(&mut self) -> io::Result<bool> {
        Ok(self.inner.fill_buf()?.is_empty())
    }

    /// After [`Next::TooLong`]: skip to the end of that line. `Ok(true)` when nothing
    /// follows it in the file (it was the last line).
    pub fn skip_rest_is_last(&mut self) -> io::Result<bool> {
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                return Ok(true);
            }
            if let Some(i) = chunk.iter().position(|b| *b == b'\n') {
                self.inner.consume(i + 1);
                self.end += i as u64 + 1;
                return Ok(self.inner.fill_buf()?.is_empty());
            }
            let n = chunk.len();
            self.inner.consume(n);
            self.end += n as u64;
        }
    }
}

/// Call `f` with every event of some log files, in file order, without verifying (for trace
/// and tail). Lines that do not parse are skipped; their number is returned. Memory stays
/// bounded by one line whatever the files hold.
pub fn for_each_event<P: AsRef<Path>>(
    paths: &[P],
    mut f: impl FnMut(AuditEvent),
) -> Result<u64, ReadError> {
    let mut bad = 0;
    for p in paths {
        let path = p.as_ref();
        let mut r = LineReader::open(path)?;
        let io_err = |source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        };
        loop {
            match r.next_line().map_err(io_err)? {
                Next::Eof => break,
                Next::TooLong => {
                    return Err(ReadError::LineTooLong {
                        path: path.to_path_buf(),
                        line: r.lineno(),
                    });
                }
                Next::Line { .. } => match parse_line(r.line()) {
                    Ok((Record::Event(ev), _)) => f(*ev),
                    Ok(_) => {}
                    Err(_) => bad += 1,
                },
            }
        }
    }
    Ok(bad)
}

/// Every event of some log files, without verifying, and the number of lines that did not
/// parse.
pub fn read_events<P: AsRef<Path>>(paths: &[P]) -> Result<(Vec<AuditEvent>, u64), ReadError> {
    let mut out = Vec::new();
    let bad = for_each_event(paths, |ev| out.push(ev))?;
    Ok((out, bad))
}
