//! Downloads of pinned release files, each checked against the SHA-256 sum
//! its project publishes next to it, and installs of the binaries in them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::command::{Command, CommandError};
use super::fs::{self, FileError};

/// A download that failed or did not match its published sum.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("cannot download `{url}`: {reason}")]
    Transfer { url: String, reason: String },
    #[error("`{sums_url}` lists no SHA-256 sum for `{file}`")]
    NoSum { sums_url: String, file: String },
    #[error("`{url}` does not match its published SHA-256 sum: expected {expected}, got {actual}")]
    Mismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// One binary of a release: where it is, where its sums are, and (for an
/// archive) which member is the binary.
#[derive(Debug, Clone)]
pub struct ReleaseBinary {
    /// The file to download (the binary itself, or an archive holding it).
    pub url: String,
    /// The file listing the SHA-256 sum of `url`'s file.
    pub sums_url: String,
    /// For a `.tar.gz`: the member path of the binary inside it.
    pub member: Option<String>,
}

impl ReleaseBinary {
    /// The file name at the end of the URL (what the sums file names).
    pub fn file_name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }
}

/// `url` with `{version}` replaced by `version` (`+` as `%2B`).
pub fn url_for(template: &str, version: &str) -> String {
    template.replace("{version}", &version.replace('+', "%2B"))
}

/// The bytes at `url`, within `timeout`.
pub fn fetch(url: &str, timeout: Duration) -> Result<Vec<u8>, DownloadError> {
    let transfer = |reason: String| DownloadError::Transfer {
        url: url.to_string(),
        reason,
    };
    tracing::info!(target: "download", "get {url}");
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("stackinstall/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| transfer(error.to_string()))?;
    let response = client
        .get(url)
        .send()
        .map_err(|error| transfer(error.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(transfer(format!("the server answered {status}")));
    }
    let bytes = response
        .bytes()
        .map_err(|error| transfer(error.to_string()))?;
    Ok(bytes.to_vec())
}

/// The sum of `file` in a sums file (`<hex>  <name>` lines, or one bare hex).
pub fn sum_for(sums: &str, file: &str) -> Option<String> {
    let lines: Vec<&str> = sums
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    for line in &lines {
        let mut fields = line.split_whitespace();
        let (Some(sum), Some(name)) = (fields.next(), fields.next()) else {
            continue;
        };
        if name.trim_start_matches('*') == file {
            return Some(sum.to_ascii_lowercase());
        }
    }
    match lines.as_slice() {
        [only] if only.split_whitespace().count() == 1 => Some(only.trim().to_ascii_lowercase()),
        _ => None,
    }
}

/// Downloads `release`'s file and checks it against its published sum.
pub fn fetch_checked(release: &ReleaseBinary, timeout: Duration) -> Result<Vec<u8>, DownloadError> {
    let sums = fetch(&release.sums_url, timeout)?;
    let expected =
        sum_for(&String::from_utf8_lossy(&sums), release.file_name()).ok_or_else(|| {
            DownloadError::NoSum {
                sums_url: release.sums_url.clone(),
                file: release.file_name().to_string(),
            }
        })?;
    let bytes = fetch(&release.url, timeout)?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != expected {
        return Err(DownloadError::Mismatch {
            url: release.url.clone(),
            expected,
            actual,
        });
    }
    Ok(bytes)
}

/// Downloads `release`, checks it, and installs its binary at `target`
/// (mode 0755), unpacking archives in `work_dir` (left empty afterwards).
pub fn install_binary(
    release: &ReleaseBinary,
    target: &Path,
    work_dir: &Path,
    timeout: Duration,
) -> Result<(), DownloadError> {
    let bytes = fetch_checked(release, timeout)?;
    let binary = match &release.member {
        None => bytes,
        Some(member) => unpack_member(&bytes, release.file_name(), member, work_dir)?,
    };
    fs::ensure_file(target, &binary, 0o755)?;
    Ok(())
}

/// The bytes of `member` in the `.tar.gz` `archive`, unpacked with `tar`.
fn unpack_member(
    archive: &[u8],
    name: &str,
    member: &str,
    work_dir: &Path,
) -> Result<Vec<u8>, DownloadError> {
    fs::ensure_dir(work_dir, 0o700)?;
    let archive_path = work_dir.join(name);
    fs::write_atomic(&archive_path, archive, 0o600)?;
    let depth = member.matches('/').count();
    let base_name = member.rsplit('/').next().unwrap_or(member);
    let unpacked: PathBuf = work_dir.join(base_name);
    let result = Command::new("tar")
        .arg("-xzf")
        .arg(archive_path.display().to_string())
        .arg("-C")
        .arg(work_dir.display().to_string())
        .arg(format!("--strip-components={depth}"))
        .arg(member)
        .timeout(Duration::from_secs(120))
        .run()
        .map_err(DownloadError::from)
        .and_then(|_| fs::read_bytes(&unpacked).map_err(DownloadError::from));
    fs::remove_file(&archive_path)?;
    fs::remove_file(&unpacked)?;
    result
}

/// The release architecture name of this machine (`amd64`, `arm64`).
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_found_by_file_name_or_alone() {
        let sums = "aaaa  k3s-airgap-images-amd64.tar\nBBBB  k3s\n";
        assert_eq!(sum_for(sums, "k3s").as_deref(), Some("bbbb"));
        assert_eq!(sum_for("cccc\n", "helm.tar.gz").as_deref(), Some("cccc"));
        assert_eq!(sum_for(sums, "helm"), None);
    }

    #[test]
    fn version_in_url_is_escaped() {
        assert_eq!(
            url_for("https://x/download/{version}", "v1.29.0+k3s1"),
            "https://x/download/v1.29.0%2Bk3s1"
        );
    }
}
