//! What an existing log file says about where to continue it.

use std::path::Path;

use crate::chain;
use crate::checkpoint::CheckpointKind;
use crate::reader::{LineReader, Next};
use crate::sink::SinkError;
use crate::verify::{Record, parse_line};

/// The last record of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Last {
    Event,
    Signed(CheckpointKind),
}

/// The state at the end of the whole records of a file.
#[derive(Clone, Debug, Default)]
pub(super) struct Scan {
    /// The end of the last whole record.
    pub(super) good_len: u64,
    /// Whether bytes follow it (a torn or unreadable last line).
    pub(super) torn: bool,
    pub(super) prev: [u8; 32],
    pub(super) seq: u64,
    /// Events: the last signed record's count plus the events after it.
    pub(super) events: u64,
    pub(super) r#gen: Option<u64>,
    pub(super) last_sig: String,
    pub(super) retained: u64,
    pub(super) service: Option<String>,
    pub(super) last: Option<Last>,
    /// Whether the first line is a signed `open` record.
    pub(super) opened: bool,
}

/// Read `path` to its end. `Ok(None)` when it does not exist. A last line that is torn,
/// unreadable or too long is reported in [`Scan::torn`]; the same earlier in the file is
/// [`SinkError::Corrupt`].
pub(super) fn scan(path: &Path) -> Result<Option<Scan>, SinkError> {
    let mut r = match LineReader::open(path) {
        Ok(r) => r,
        Err(secmesh_fs::FileError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let io = |source| SinkError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut s = Scan::default();
    loop {
        let next = r.next_line().map_err(io)?;
        let problem = match next {
            Next::Eof => break,
            Next::TooLong => {
                if r.skip_rest_is_last().map_err(io)? {
                    s.torn = true;
                    break;
                }
                "a line longer than the limit".to_owned()
            }
            Next::Line { complete: false } => {
                s.torn = true;
                break;
            }
            Next::Line { complete: true } => match parse_line(r.line()) {
                Ok((record, _)) => {
                    s.prev = chain::hash_line(r.line());
                    s.seq = record.seq();
                    match record {
                        Record::Event(_) => {
                            s.events += 1;
                            s.last = Some(Last::Event);
                        }
                        Record::Checkpoint(c) => {
                            if r.lineno() == 1 && c.kind == CheckpointKind::Open {
                                s.opened = true;
                            }
                            s.events = c.count;
                            s.r#gen = Some(c.r#gen);
                            s.retained = c.retained;
                            s.service = Some(c.service.clone());
                            s.last = Some(Last::Signed(c.kind));
                            s.last_sig = c.sig;
                        }
                    }
                    s.good_len = r.end();
                    continue;
                }
                Err(e) => e,
            },
        };
        // An unreadable line: a torn tail if nothing follows it, else the file is corrupt.
        let at = r.lineno();
        if matches!(next, Next::Line { .. }) && r.at_eof().map_err(io)? {
            s.torn = true;
            break;
        }
        return Err(SinkError::Corrupt {
            path: path.to_path_buf(),
            line: at,
            detail: problem,
        });
    }
    Ok(Some(s))
}
