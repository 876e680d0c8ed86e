//! Downloads of release files over HTTPS only, each checked against the
//! SHA-256 pinned for its version in the profile (`[downloads.pins]`), or,
//! for a file with no pin, against the sum its origin publishes next to it
//! (which the plan and the run say loudly); and installs of the binaries in
//! them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;

use super::command::{Command, CommandError, INTERRUPTED};
use super::fs::{self, FileError};

/// Where release files are kept while they are checked and installed
/// (only root reads it).
pub const DOWNLOADS: &str = "/var/lib/stackinstall/downloads";

/// A download that failed or did not match its pin or published sum.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("cannot download `{url}`: {reason}")]
    Transfer { url: String, reason: String },
    #[error("refusing to download `{url}`: only https:// URLs are fetched")]
    NotHttps { url: String },
    #[error("`{sums_url}` lists no SHA-256 sum for `{file}`")]
    NoSum { sums_url: String, file: String },
    #[error(
        "`{file}` (from `{url}`) does not match its {against}: expected {expected}, got {actual}; nothing was installed"
    )]
    Mismatch {
        file: String,
        url: String,
        against: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// A SHA-256 pinned in the profile for one file of one version, with where
/// the value was published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pin {
    /// The file's SHA-256, 64 hex digits.
    pub sha256: String,
    /// Where the value comes from (a repository and file that publish it).
    pub source: String,
}

/// One file of a release: where it is, what it is checked against, and (for
/// an archive) which member is the binary.
#[derive(Debug, Clone)]
pub struct ReleaseBinary {
    /// The key of its pin: `component/version/file`.
    pub key: String,
    /// The file to download (the binary itself, an archive holding it, or
    /// a script).
    pub url: String,
    /// The file listing the origin's SHA-256 sum of `url`'s file, when the
    /// origin publishes one.
    pub sums_url: Option<String>,
    /// For a `.tar.gz`: the member path of the binary inside it.
    pub member: Option<String>,
    /// The profile's pin of this file, if it has one.
    pub pin: Option<Pin>,
}

impl ReleaseBinary {
    /// The file name at the end of the URL (what the sums file names).
    pub fn file_name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }

    /// What the file is checked against, for the plan and the run.
    pub fn check(&self) -> String {
        match (&self.pin, &self.sums_url) {
            (Some(pin), _) => format!(
                "checked against pinned SHA-256 {} from {}",
                pin.sha256, pin.source
            ),
            (None, Some(sums)) => format!(
                "WARNING: not pinned, checked against its origin's own sum alone (`{sums}`); pin `{}` in [downloads.pins]",
                self.key
            ),
            (None, None) => format!(
                "WARNING: not pinned and its origin publishes no sum, so checked against nothing; pin `{}` in [downloads.pins]",
                self.key
            ),
        }
    }
}

/// `url` with `{version}` replaced by `version` (`+` as `%2B`).
pub fn url_for(template: &str, version: &str) -> String {
    template.replace("{version}", &version.replace('+', "%2B"))
}

/// Whether `url` may be fetched: https, or (debug builds only, for the
/// tests' release server) http to 127.0.0.1.
pub fn allowed_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => true,
        "http" => cfg!(debug_assertions) && parsed.host_str() == Some("127.0.0.1"),
        _ => false,
    }
}

/// A server's answer with the time it says it is (its `Date`).
pub struct DatedAnswer {
    pub body: Vec<u8>,
    pub date: Option<time::OffsetDateTime>,
}

/// `GET url` of a K3s server that this host does not trust yet: its
/// certificate is not checked here, the caller compares what it sent with
/// the hash it was given (what K3s's own agent does with `/cacerts`).
pub fn fetch_with_date(url: &str, timeout: Duration) -> Result<DatedAnswer, String> {
    if !allowed_url(url) {
        return Err(format!("`{url}` is not an https:// address"));
    }
    let client = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(timeout)
        .build()
        .map_err(|error| error.to_string())?;
    let response = client.get(url).send().map_err(|error| error.to_string())?;
    if !response.status().is_success() {
        return Err(format!("`{url}` answered {}", response.status()));
    }
    let date = (response.headers().get(reqwest::header::DATE))
        .and_then(|value| value.to_str().ok())
        .and_then(|text| {
            let format = time::macros::format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            );
            time::PrimitiveDateTime::parse(text, format).ok()
        })
        .map(time::PrimitiveDateTime::assume_utc);
    let body = response
        .bytes()
        .map_err(|error| error.to_string())?
        .to_vec();
    Ok(DatedAnswer { body, date })
}

/// How a download is going: bytes so far and the total when known.
pub type Progress<'a> = &'a dyn Fn(u64, Option<u64>);

/// The bytes at `url`, within `timeout`.
pub fn fetch(url: &str, timeout: Duration) -> Result<Vec<u8>, DownloadError> {
    fetch_with_progress(url, timeout, &|_, _| {})
}

/// What the transfer thread reports.
enum Transfer {
    Progress(u64, Option<u64>),
    Done(Result<Vec<u8>, DownloadError>),
}

/// The bytes at `url`, within `timeout`, reporting progress as they come.
/// The transfer runs on a thread of its own so that Ctrl-C ends the wait at
/// once (the thread is left to the process's exit).
pub fn fetch_with_progress(
    url: &str,
    timeout: Duration,
    progress: Progress,
) -> Result<Vec<u8>, DownloadError> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let owned = url.to_string();
    std::thread::spawn(move || {
        let report = sender.clone();
        let result = fetch_blocking(&owned, timeout, &|done, total| {
            let _ = report.send(Transfer::Progress(done, total));
        });
        let _ = sender.send(Transfer::Done(result));
    });
    loop {
        match receiver.recv_timeout(Duration::from_millis(50)) {
            Ok(Transfer::Progress(done, total)) => progress(done, total),
            Ok(Transfer::Done(result)) => return result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if INTERRUPTED.load(Ordering::SeqCst) {
                    return Err(DownloadError::Command(CommandError::Interrupted {
                        command: format!("download {url}"),
                    }));
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(DownloadError::Transfer {
                    url: url.to_string(),
                    reason: "the transfer ended without an answer".into(),
                });
            }
        }
    }
}

fn fetch_blocking(
    url: &str,
    timeout: Duration,
    progress: Progress,
) -> Result<Vec<u8>, DownloadError> {
    let transfer = |reason: String| DownloadError::Transfer {
        url: url.to_string(),
        reason,
    };
    if !allowed_url(url) {
        return Err(DownloadError::NotHttps { url: url.into() });
    }
    tracing::info!(target: "download", "get {url}");
    // A redirect may not leave https (GitHub's releases redirect to its
    // object store, over https).
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else if allowed_url(attempt.url().as_str()) {
            attempt.follow()
        } else {
            attempt.error("a redirect to a URL that is not https")
        }
    });
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(30))
        .redirect(redirects)
        .user_agent(concat!("stackinstall/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| transfer(root_cause(&error)))?;
    let mut response = client
        .get(url)
        .send()
        .map_err(|error| transfer(root_cause(&error)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(transfer(format!(
            "HTTP status: the server answered {status}"
        )));
    }
    let total = response.content_length();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0).min(1 << 30) as usize);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = response
            .read(&mut chunk)
            .map_err(|error| transfer(format!("connection lost while reading: {error}")))?;
        if read == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..read]);
        progress(bytes.len() as u64, total);
    }
    tracing::info!(target: "download", "got {} bytes from {url}", bytes.len());
    Ok(bytes)
}

/// What stopped a transfer, by its root cause (name resolution, the
/// connection, TLS, a timeout) and in the words of the innermost error:
/// reqwest's own message (`error sending request for url (...)`) names
/// none of them.
pub fn root_cause(error: &reqwest::Error) -> String {
    let mut chain: Vec<String> = Vec::new();
    let mut tls = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        tls |= current.downcast_ref::<rustls::Error>().is_some();
        // An io::Error's source skips the error it wraps (a TLS error, say).
        if let Some(inner) = (current.downcast_ref::<std::io::Error>()).and_then(|io| io.get_ref())
        {
            tls |= inner.downcast_ref::<rustls::Error>().is_some();
            chain.push(inner.to_string());
        }
        chain.push(current.to_string());
        source = current.source();
    }
    let innermost = chain.last().cloned().unwrap_or_default();
    let said = |words: &str| (chain.iter()).any(|text| text.to_lowercase().contains(words));
    let kind = if error.is_timeout() {
        "timed out"
    } else if tls
        || [
            "tls",
            "handshake",
            "certificate",
            "received corrupt message",
            "alert received",
        ]
        .iter()
        .any(|words| said(words))
    {
        "TLS failed"
    } else if said("dns error") || said("failed to lookup address") {
        "name resolution failed"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_redirect() {
        "redirect refused"
    } else {
        "transfer failed"
    };
    format!("{kind}: {innermost}")
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

/// Downloads `release`'s file and checks it against its pin, else against
/// the sum its origin publishes (a file with neither is returned as it is:
/// [`ReleaseBinary::check`] says so in the plan and the run).
pub fn fetch_checked(
    release: &ReleaseBinary,
    timeout: Duration,
    progress: Progress,
) -> Result<Vec<u8>, DownloadError> {
    let (expected, against) =
        match (&release.pin, &release.sums_url) {
            (Some(pin), _) => (
                pin.sha256.to_ascii_lowercase(),
                format!("pinned SHA-256 (from {})", pin.source),
            ),
            (None, Some(sums_url)) => {
                let sums = fetch(sums_url, timeout)?;
                let sum = sum_for(&String::from_utf8_lossy(&sums), release.file_name())
                    .ok_or_else(|| DownloadError::NoSum {
                        sums_url: sums_url.clone(),
                        file: release.file_name().to_string(),
                    })?;
                (sum, format!("published SHA-256 sum (`{sums_url}`)"))
            }
            (None, None) => return fetch_with_progress(&release.url, timeout, progress),
        };
    let bytes = fetch_with_progress(&release.url, timeout, progress)?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != expected {
        return Err(DownloadError::Mismatch {
            file: release.file_name().to_string(),
            url: release.url.clone(),
            against,
            expected,
            actual,
        });
    }
    Ok(bytes)
}

/// The pin key of the Helm chart `name` at `version`:
/// `NAME/VERSION/NAME-VERSION.tgz`, the file `helm pull` makes.
pub fn chart_key(name: &str, version: &str) -> String {
    format!("{name}/{version}/{name}-{version}.tgz")
}

/// Downloads `release`, checks it, and installs its binary at `target`
/// (mode 0755), unpacking archives in `work_dir` (left empty afterwards).
pub fn install_binary(
    release: &ReleaseBinary,
    target: &Path,
    work_dir: &Path,
    timeout: Duration,
    progress: Progress,
) -> Result<(), DownloadError> {
    let bytes = fetch_checked(release, timeout, progress)?;
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
    fn only_https_is_fetched() {
        let error = fetch("http://example.invalid/k3s", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(error, DownloadError::NotHttps { .. }), "{error}");
        assert!(error.to_string().contains("only https:// URLs"), "{error}");
        assert!(!allowed_url("ftp://example.com/x") && allowed_url("https://get.helm.sh/x"));
        assert!(!allowed_url("http://127.0.0.1.example.com/x"));
        assert!(!allowed_url("http://127.0.0.1:80@example.com/x"));
    }

    #[test]
    fn version_in_url_is_escaped() {
        assert_eq!(
            url_for("https://x/download/{version}", "v1.29.0+k3s1"),
            "https://x/download/v1.29.0%2Bk3s1"
        );
    }
}
