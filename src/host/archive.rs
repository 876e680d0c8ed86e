//! Support bundles: a `.tar.gz` written atomically (mode 0600), and the
//! listing of a directory's files to put in it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::fs::{FileError, write_atomic};

/// The regular files directly in `dir`, sorted; none when it is missing.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files
}

/// `entries` (name inside the archive, contents) as a gzip-compressed tar.
pub fn tar_gz(entries: &[(String, Vec<u8>)]) -> io::Result<Vec<u8>> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    for (name, contents) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(now);
        header.set_cksum();
        builder.append_data(&mut header, name, contents.as_slice())?;
    }
    let mut encoder = builder.into_inner()?;
    encoder.flush()?;
    encoder.finish()
}

/// Writes `entries` as a `.tar.gz` at `path` (mode 0600, atomically).
pub fn write_tar_gz(path: &Path, entries: &[(String, Vec<u8>)]) -> Result<u64, FileError> {
    let bytes = tar_gz(entries).map_err(|source| FileError {
        action: "compress",
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes, 0o600)?;
    Ok(bytes.len() as u64)
}
