//! One function per parser: what each fuzz target (and the corpus replay
//! in `tests/inputs.rs`, which includes this file) feeds its input to.
//! Only pure parsing code is reached: no database, AWS or cluster client,
//! no program run; the configuration layers are read from a file this
//! process writes in the temporary directory. A parser may refuse an input
//! (an `Err`); it must never panic.

use std::collections::BTreeMap;

/// Splits `data` at the first NUL byte: two inputs in one.
fn halves(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|byte| *byte == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// The configuration layers: a `--config` TOML file, then
/// `STACKINSTALL_*` variables (`NAME=VALUE` lines after a NUL byte).
pub fn config(data: &[u8]) {
    let (file, variables) = halves(data);
    let path = std::env::temp_dir().join(format!(
        "stackinstall-fuzz-config-{}.toml",
        std::process::id()
    ));
    #[allow(clippy::disallowed_methods)]
    if std::fs::write(&path, file).is_err() {
        return;
    }
    let environment = String::from_utf8_lossy(variables)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let sources = stackinstall::config::Sources {
        profile: None,
        config_file: Some(path),
        environment,
        flags: stackinstall::config::Flags::default(),
    };
    if let Ok(config) = stackinstall::config::Config::load(&sources) {
        let _ = toml::to_string(&config);
    }
}

/// A PEM certificate chain and (after a NUL byte) its key.
pub fn certificate(data: &[u8]) {
    let (certificate, key) = halves(data);
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let _ = stackinstall::certificate::check_certificate(certificate, "demo.example.com", now);
    let _ = stackinstall::certificate::check_pair(certificate, key, "demo.example.com", now);
    if let Ok(text) = std::str::from_utf8(certificate) {
        let _ = stackinstall::config::Domain::parse(text);
    }
}

/// The state file.
pub fn state(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(state) = stackinstall::state::parse(text)
    {
        let _ = toml::to_string(&state);
    }
}

/// The credentials file, and the support bundle's redaction of its raw
/// text and of secret-named values.
pub fn credentials(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = stackinstall::credentials::parse(text);
    let _ = stackinstall::credentials::raw_secrets(text);
    let _ = stackinstall::secret::redact_by_name(text);
}

/// The bash installer's `stackbill-credentials.txt`.
pub fn legacy_passwords(data: &[u8]) {
    let _ = stackinstall::credentials::parse_legacy(&String::from_utf8_lossy(data));
}

/// An armoured OpenPGP public key (MongoDB's signing key).
pub fn pgp(data: &[u8]) {
    let _ = stackinstall::pgp::fingerprint(&String::from_utf8_lossy(data));
}

/// `/etc/exports` with (or without) stackinstall's marked block.
pub fn exports(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = std::path::Path::new("/etc/exports");
    let line = "/data/stackbill 10.42.0.0/16(rw,sync,no_subtree_check)";
    if let Ok(with) = stackinstall::steps::nfs::with_block(&text, line, path) {
        let without = stackinstall::steps::nfs::without_block(&with, path);
        assert!(without.is_ok(), "a block just written is read back");
    }
    let _ = stackinstall::steps::nfs::without_block(&text, path);
}

/// What `kubectl get -o json` prints, read by `doctor`'s cluster and mesh
/// checks and by the `wait` step.
pub fn kubectl_json(data: &[u8]) {
    let Ok(list) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = stackinstall::steps::wait::pod_states(&list);
    let _ = stackinstall::steps::wait::jobs::job_states(&list, &list, |_| String::new());
    let _ = stackinstall::steps::wait::claims::claim_states(&list, |_| Ok(true));
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let lists: BTreeMap<&'static str, Vec<serde_json::Value>> =
        stackinstall::doctor::snapshot::RESOURCES
            .iter()
            .map(|resource| (*resource, items.clone()))
            .collect();
    stackinstall::doctor::run_on_snapshot(lists);
}

/// The kubelet's `CredentialProviderRequest` on standard input.
pub fn provider_request(data: &[u8]) {
    if let Ok(request) = stackinstall::provider::parse_request(data) {
        let _ = stackinstall::provider::serves(
            "730335576030.dkr.ecr.ap-south-1.amazonaws.com",
            &request.image,
        );
    }
}
