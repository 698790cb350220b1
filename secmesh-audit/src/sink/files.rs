//! The files of a set: rotated names, retention, setting a torn tail aside.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The file name of the live file.
pub(super) fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The name the live file of generation `r#gen` gets when it is rotated: `FILE.<gen+1>`.
pub(super) fn rotated_path(path: &Path, r#gen: u64) -> PathBuf {
    path.with_file_name(format!("{}.{}", base_name(path), r#gen.saturating_add(1)))
}

/// The rotated files of the set (`FILE.<n>`), oldest first, with their sizes.
pub(super) fn rotated_files(path: &Path) -> Vec<(u64, PathBuf, u64)> {
    let base = base_name(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(base.as_str())?.strip_prefix('.')?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let meta = e.metadata().ok()?;
            if !meta.is_file() {
                return None;
            }
            Some((n.parse().ok()?, e.path(), meta.len()))
        })
        .collect();
    out.sort_by_key(|(n, _, _)| *n);
    out
}

/// Delete the oldest rotated files while more than `max_files` files (the live one included)
/// are kept, or the rotated files plus one live file of `rotate_bytes` exceed `max_bytes`.
/// Returns the lowest generation still kept when files were deleted.
pub(super) fn apply_retention(
    path: &Path,
    max_files: usize,
    max_bytes: u64,
    rotate_bytes: u64,
) -> Option<u64> {
    if max_files == 0 && max_bytes == 0 {
        return None;
    }
    let rotated = rotated_files(path);
    let mut files = rotated.len() + 1;
    let mut bytes: u64 = rotated.iter().map(|(_, _, len)| len).sum();
    let mut kept_from = None;
    for (n, file, len) in rotated {
        let over_files = max_files > 0 && files > max_files;
        let over_bytes = max_bytes > 0 && bytes.saturating_add(rotate_bytes) > max_bytes;
        if !over_files && !over_bytes {
            break;
        }
        if let Err(e) = std::fs::remove_file(&file) {
            tracing::error!(target: "secmesh::audit", file = %file.display(), error = %e, "audit retention could not delete a file");
            break;
        }
        tracing::info!(target: "secmesh::audit", file = %file.display(), "audit retention deleted a file");
        files -= 1;
        bytes -= len;
        // `FILE.<n>` held generation n - 1: generation n is the oldest kept now.
        kept_from = Some(n);
    }
    kept_from
}

/// Copy the bytes of `file` from `from` to its end into a new `FILE.torn-<unix time>` (kept,
/// never deleted), sync it, then cut `file` back to `from`. Returns the name and the size.
pub(super) fn set_aside(path: &Path, file: &mut File, from: u64) -> io::Result<(String, u64)> {
    let len = file.metadata()?.len();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = base_name(path);
    let mut k = 0u32;
    let (name, mut out) = loop {
        let name = if k == 0 {
            format!("{base}.torn-{ts}")
        } else {
            format!("{base}.torn-{ts}-{k}")
        };
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path.with_file_name(&name))
        {
            Ok(f) => break (name, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && k < 1000 => k += 1,
            Err(e) => return Err(e),
        }
    };
    let mut src = secmesh_fs::open_regular(path).map_err(io::Error::other)?;
    src.seek(SeekFrom::Start(from))?;
    let n = io::copy(&mut src, &mut out)?;
    out.sync_all()?;
    file.set_len(from)?;
    file.sync_all()?;
    sync_dir(path);
    debug_assert_eq!(n, len - from);
    Ok((name, n))
}

/// Make a rename or a new file in the log's directory durable (best effort).
pub(super) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        let _ = d.sync_all();
    }
}
