//! Support bundles: a `.tar.gz` written atomically (mode 0600), and the
//! listing of a directory's files to put in it.

use std::io::{self, Write};
use std::path::Path;

use super::fs::{Directory, FileError, write_atomic};

/// The regular files directly in `dir` with their text (or why it could
/// not be read), sorted by name; none when it is missing. The directory
/// is held by handle (checked as every directory the tool uses is) and
/// each file opened without following a link: a link swapped in after
/// the listing is not read through.
pub fn read_files_in(dir: &Path) -> Result<Vec<(String, String)>, FileError> {
    super::fs::pause_point("bundle-logs");
    let directory = match Directory::open(dir) {
        Ok(directory) => directory,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(FileError::new("read the directory", dir)(error)),
    };
    let names = directory.names().map_err(FileError::new("list", dir))?;
    let mut files = Vec::new();
    for name in names {
        let read = directory.open_file(&name).and_then(|file| {
            if !file.metadata()?.is_file() {
                return Ok(None);
            }
            super::fs::read_open_file(file).map(Some)
        });
        let text = match read {
            Ok(None) => continue,
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => format!("(not read: {error})\n"),
        };
        files.push((name.to_string_lossy().into_owned(), text));
    }
    Ok(files)
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
