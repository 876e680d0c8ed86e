//! Bad input and damaged files, seen from outside.
//!
//! The table of bad inputs is the complete list of what `install` (and
//! `render`) must refuse: domains, certificates and keys, profiles, config
//! files, `STACKINSTALL_<SECTION>__<KEY>` variables, flags that do not go
//! together, unknown step names, a missing domain or certificate, a run
//! without root, ports that are taken. Each one exits 2, says what is wrong
//! in its error message, and leaves the world's root exactly as it was: no
//! state, no lock, no credentials, no log (the inputs are checked before the
//! run takes its lock or opens its log).
//!
//! The damaged-file cases cut, empty, scramble and re-version a real state
//! file and a real credentials file: `install` stops naming the file and
//! the way out, the file is kept byte for byte, no password is made in its
//! place, and `status` and `uninstall` either stop the same way or get on
//! without touching it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::support::{DOMAIN, World, report, stderr, stdout};
use stackinstall::certificate;
use stackinstall::secret::PASSWORD_LENGTH;
use time::{Duration, OffsetDateTime};

const STATE: &str = "/var/lib/stackinstall/state.toml";
const CREDENTIALS: &str = "/etc/stackinstall/credentials.toml";
const LOCK: &str = "/var/lib/stackinstall/lock";

/// The uid and gid of `nobody`: the run that is not root.
const NOBODY: u32 = 65534;

/// One bad input: how it is given, and what the refusal must say.
struct BadInput {
    name: &'static str,
    /// The arguments after `stackinstall`.
    args: Vec<String>,
    /// Variables set for this row only.
    env: Vec<(&'static str, String)>,
    /// Variables of the world's environment this row takes away.
    unset: Vec<&'static str>,
    /// Runs as `nobody` instead of root.
    by_nobody: bool,
    /// Whether `--plan` must refuse it the same way (not for what only a
    /// real run needs, like root).
    plan_too: bool,
    /// What the error message must say: it names the problem.
    expected: String,
}

impl BadInput {
    fn new(name: &'static str, args: Vec<String>, expected: impl Into<String>) -> Self {
        let plan_too = args.first().is_some_and(|command| command == "install");
        Self {
            name,
            args,
            env: Vec::new(),
            unset: Vec::new(),
            by_nobody: false,
            plan_too,
            expected: expected.into(),
        }
    }

    fn env(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.env.push((key, value.into()));
        self
    }

    fn unset(mut self, key: &'static str) -> Self {
        self.unset.push(key);
        self
    }

    fn by_nobody(mut self) -> Self {
        self.by_nobody = true;
        self.plan_too = false;
        self
    }

    /// The binary with this row's arguments and environment, plus `extra`.
    fn command(&self, world: &World, extra: &[&str]) -> assert_cmd::Command {
        let mut command = world.std_command();
        command.args(&self.args).args(extra);
        for key in &self.unset {
            command.env_remove(key);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if self.by_nobody {
            command.uid(NOBODY).gid(NOBODY);
        }
        let mut command = assert_cmd::Command::from_std(command);
        command.timeout(std::time::Duration::from_secs(120));
        command
    }
}

/// `args` as owned strings.
fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

/// `install --domain DOMAIN --self-signed` and `extra`.
fn install(extra: &[&str]) -> Vec<String> {
    strings(&["install", "--domain", DOMAIN, "--self-signed"])
        .into_iter()
        .chain(strings(extra))
        .collect()
}

/// `install --domain NAME --self-signed`, the name given as `--domain=NAME`
/// so that one starting with `-` is still a value.
fn install_for(domain: &str) -> Vec<String> {
    vec![
        "install".into(),
        format!("--domain={domain}"),
        "--self-signed".into(),
    ]
}

/// `install` for DOMAIN with this certificate and key file.
fn install_with(certificate: &Path, key: &Path) -> Vec<String> {
    vec![
        "install".into(),
        "--domain".into(),
        DOMAIN.into(),
        "--ssl-cert".into(),
        certificate.display().to_string(),
        "--ssl-key".into(),
        key.display().to_string(),
    ]
}

/// Files the rows read, kept outside the world's root.
struct Fixtures {
    dir: PathBuf,
}

impl Fixtures {
    fn new(world: &World) -> Self {
        let dir = world.dir.path().join("inputs");
        fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    /// Writes `contents` as `name`; returns its path.
    fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, contents).unwrap();
        path
    }

    /// Writes a certificate and its key; returns their paths.
    fn pair(&self, name: &str, (certificate, key): (String, String)) -> (PathBuf, PathBuf) {
        (
            self.file(&format!("{name}.crt"), certificate),
            self.file(&format!("{name}.key"), key),
        )
    }

    /// Writes a config file; returns `install(..)` with `--config PATH`.
    fn config(&self, name: &str, contents: impl AsRef<[u8]>) -> Vec<String> {
        let path = self.file(name, contents);
        install(&["--config", path.to_str().unwrap()])
    }

    /// Writes a profile file; returns `install(..)` with `--profile PATH`.
    fn profile(&self, name: &str, contents: &str) -> Vec<String> {
        let path = self.file(name, contents);
        install(&["--profile", path.to_str().unwrap()])
    }
}

/// A certificate for `names` with no subject alternative name at all when
/// `names` is empty (the common name alone covers nothing).
fn certificate_for(names: &[&str], common_name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let certificate = params.self_signed(&key).unwrap();
    (certificate.pem(), key.serialize_pem())
}

/// The built-in profile's text with `edit` applied.
fn builtin_profile(edit: impl Fn(&str) -> String) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/stackbill-poc.toml");
    edit(&fs::read_to_string(path).unwrap())
}

/// Every bad input the tool must refuse; `taken` is a port the test holds.
fn bad_inputs(fixtures: &Fixtures, taken: u16) -> Vec<BadInput> {
    let now = OffsetDateTime::now_utc();
    let good = fixtures.pair("good", certificate::self_signed_for_a_year(DOMAIN));
    let (_, other_key) = fixtures.pair("other", certificate::self_signed_for_a_year(DOMAIN));
    let domain_file = fixtures
        .file(
            "domain.toml",
            "[install]\ndomain = \"demo example.com\"\nself_signed = true\n",
        )
        .display()
        .to_string();
    let other_domain = fixtures.pair(
        "other-domain",
        certificate::self_signed_for_a_year("other.example.com"),
    );
    let expired = fixtures.pair(
        "expired",
        certificate::self_signed(DOMAIN, now - Duration::days(400), now - Duration::days(310)),
    );
    let not_yet = fixtures.pair(
        "not-yet",
        certificate::self_signed(DOMAIN, now + Duration::days(10), now + Duration::days(400)),
    );
    let no_names = fixtures.pair("no-names", certificate_for(&[], DOMAIN));
    let wildcard = fixtures.pair("wildcard", certificate_for(&["*.example.com"], "wildcard"));
    let not_pem = fixtures.file("not-pem.crt", "this is not a certificate\n");
    let empty = fixtures.file("empty.crt", "");
    let garbled = fixtures.file(
        "garbled.crt",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    );
    let leaf_last = fixtures.file(
        "leaf-last.crt",
        fs::read_to_string(&other_domain.0).unwrap() + &fs::read_to_string(&good.0).unwrap(),
    );
    let missing = fixtures.dir.join("missing.pem");
    let long_label = format!("{}.example.com", "a".repeat(64));
    let long_name = format!("{}.example.com", vec!["a".repeat(60); 4].join("."));
    assert!(long_name.len() > 253 && long_name.split('.').all(|l| l.len() <= 63));
    let port = taken.to_string();
    let in_use =
        |step: &str| format!("port {taken}, needed by the `{step}` step, is already in use");
    let missing_namespace = builtin_profile(|text| text.replace("namespace = \"sb-apps\"\n", ""));
    let unknown_profile_key =
        builtin_profile(|text| text.replace("[nfs]\n", "[nfs]\nexport = 1\n"));
    let good_cert = good.0.display().to_string();
    let good_key = good.1.display().to_string();

    vec![
        // The domain.
        BadInput::new(
            "no domain",
            strings(&["install", "--self-signed"]),
            "no domain given",
        )
        .unset("STACKINSTALL_DOMAIN"),
        BadInput::new("empty domain", install_for(""), "no domain given"),
        BadInput::new(
            "domain with a space",
            install_for("demo example.com"),
            "--domain `demo example.com` is not a valid DNS name: `demo example` may only hold letters, digits and `-`",
        ),
        BadInput::new(
            "domain with an underscore",
            install_for("demo_1.example.com"),
            "`demo_1` may only hold letters, digits and `-`",
        ),
        BadInput::new(
            "domain with a leading hyphen",
            install_for("-demo.example.com"),
            "`-demo` may not start or end with `-`",
        ),
        BadInput::new(
            "domain with a label ending in a hyphen",
            install_for("demo-.example.com"),
            "`demo-` may not start or end with `-`",
        ),
        BadInput::new(
            "domain with a label over 63 characters",
            install_for(&long_label),
            "is 64 characters long; a label may have at most 63",
        ),
        BadInput::new(
            "domain over 253 characters",
            install_for(&long_name),
            "it is longer than 253 characters",
        ),
        BadInput::new(
            "IP address for a domain",
            install_for("192.0.2.10"),
            "it looks like an IP address; give a DNS name",
        ),
        // `demo.example.com.` is the absolute form of a DNS name, but neither
        // a certificate's name nor Istio's host takes the dot.
        BadInput::new(
            "domain with a trailing dot",
            install_for("demo.example.com."),
            "it ends with a dot",
        ),
        BadInput::new(
            "domain with an empty label",
            install_for("demo..example.com"),
            "it has an empty label",
        ),
        BadInput::new(
            "single-label domain",
            install_for("localhost"),
            "it needs at least two labels",
        ),
        BadInput::new(
            "wildcard domain",
            install_for("*.example.com"),
            "`*` may only hold letters, digits and `-`",
        ),
        BadInput::new(
            "non-ASCII domain",
            install_for("bücher.example.com"),
            "`bücher` may only hold letters, digits and `-`",
        ),
        BadInput::new(
            "bad domain in the config file",
            strings(&["install", "--config", &domain_file]),
            format!(
                "`install.domain` in config file `{domain_file}` `demo example.com` is not a valid DNS name: `demo example` may only hold"
            ),
        ),
        BadInput::new(
            "bad domain in a variable, under a good --domain",
            install(&[]),
            "`install.domain` in environment variable `STACKINSTALL_INSTALL__DOMAIN` `demo_1.example.com` is not a valid DNS name: `demo_1` may only hold",
        )
        .env("STACKINSTALL_INSTALL__DOMAIN", "demo_1.example.com"),
        BadInput::new(
            "bad domain for doctor",
            strings(&["doctor", "--domain", "demo..example.com"]),
            "--domain `demo..example.com` is not a valid DNS name: it has an empty label",
        ),
        BadInput::new(
            "bad domain for render",
            strings(&[
                "render",
                "--domain",
                "demo_1.example.com",
                "--out",
                fixtures.dir.join("rendered").to_str().unwrap(),
            ]),
            "`demo_1` may only hold letters, digits and `-`",
        ),
        // The certificate and key.
        BadInput::new(
            "no certificate and no --self-signed",
            strings(&["install", "--domain", DOMAIN]),
            "no certificate given",
        ),
        BadInput::new(
            "--ssl-cert without --ssl-key",
            strings(&["install", "--domain", DOMAIN, "--ssl-cert", &good_cert]),
            "the following required arguments were not provided:\n  --ssl-key <FILE>",
        ),
        BadInput::new(
            "--ssl-key without --ssl-cert",
            strings(&["install", "--domain", DOMAIN, "--ssl-key", &good_key]),
            "the following required arguments were not provided:\n  --ssl-cert <FILE>",
        ),
        BadInput::new(
            "--ssl-cert and --self-signed",
            install(&["--ssl-cert", &good_cert, "--ssl-key", &good_key]),
            "the argument '--self-signed' cannot be used with",
        ),
        BadInput::new(
            "--self-signed over a certificate in the config file",
            fixtures.config(
                "pair.toml",
                format!("[install]\nssl_cert = {good_cert:?}\nssl_key = {good_key:?}\n"),
            ),
            "both a certificate (--ssl-cert, --ssl-key) and --self-signed are set",
        ),
        BadInput::new(
            "certificate without a key in the config file",
            fixtures
                .config(
                    "cert-only.toml",
                    format!("[install]\nssl_cert = {good_cert:?}\n"),
                )
                .into_iter()
                .filter(|arg| arg != "--self-signed")
                .collect(),
            "--ssl-cert is set but --ssl-key is not",
        ),
        BadInput::new(
            "certificate file missing",
            install_with(&missing, &good.1),
            format!("--ssl-cert `{}` cannot be read", missing.display()),
        ),
        BadInput::new(
            "key file missing",
            install_with(&good.0, &missing),
            format!("--ssl-key `{}` cannot be read", missing.display()),
        ),
        BadInput::new(
            "certificate path is a directory",
            install_with(&fixtures.dir, &good.1),
            format!("--ssl-cert `{}` cannot be read", fixtures.dir.display()),
        ),
        BadInput::new(
            "certificate not PEM",
            install_with(&not_pem, &good.1),
            "the certificate is not PEM",
        ),
        BadInput::new(
            "certificate file empty",
            install_with(&empty, &good.1),
            "the certificate is not PEM",
        ),
        BadInput::new(
            "certificate PEM block not base64",
            install_with(&garbled, &good.1),
            "the certificate is not PEM",
        ),
        BadInput::new(
            "certificate file holds the key",
            install_with(&good.1, &good.1),
            "the certificate is not PEM",
        ),
        BadInput::new(
            "key file holds the certificate",
            install_with(&good.0, &good.0),
            "the key is not a PEM private key",
        ),
        BadInput::new(
            "key of another certificate",
            install_with(&good.0, &other_key),
            "the key does not belong to the certificate",
        ),
        BadInput::new(
            "chain with the leaf not first",
            install_with(&leaf_last, &good.1),
            "the key does not belong to the certificate",
        ),
        BadInput::new(
            "certificate for another domain",
            install_with(&other_domain.0, &other_domain.1),
            "does not cover `demo.example.com`; it is for: other.example.com",
        ),
        BadInput::new(
            "certificate with a common name only",
            install_with(&no_names.0, &no_names.1),
            "has no subjectAltName, only the Common Name `demo.example.com`: modern clients ignore the CN",
        ),
        BadInput::new(
            "wildcard one level above the domain",
            strings(&[
                "install",
                "--domain",
                "a.demo.example.com",
                "--ssl-cert",
                wildcard.0.to_str().unwrap(),
                "--ssl-key",
                wildcard.1.to_str().unwrap(),
            ]),
            "does not cover `a.demo.example.com`; it is for: *.example.com",
        ),
        BadInput::new(
            "expired certificate",
            install_with(&expired.0, &expired.1),
            "the certificate expired on",
        ),
        BadInput::new(
            "certificate not valid yet",
            install_with(&not_yet.0, &not_yet.1),
            "the certificate is not valid before",
        ),
        // Profiles.
        BadInput::new(
            "unknown profile",
            install(&["--profile", "stackbill-prod"]),
            "unknown profile `stackbill-prod`; the built-in profiles are: stackbill-poc",
        ),
        BadInput::new(
            "unknown profile from the environment",
            install(&[]),
            "unknown profile `stackbill-prod`",
        )
        .env("STACKINSTALL_PROFILE", "stackbill-prod"),
        BadInput::new(
            "profile file missing",
            install(&[
                "--profile",
                fixtures.dir.join("missing.toml").to_str().unwrap(),
            ]),
            format!(
                "cannot read profile file `{}`",
                fixtures.dir.join("missing.toml").display()
            ),
        ),
        BadInput::new(
            "profile file without a required value",
            fixtures.profile("profile-no-namespace.toml", &missing_namespace),
            "the value `cluster.namespace` is missing: profile file",
        ),
        BadInput::new(
            "profile file with an unknown key",
            fixtures.profile("profile-unknown-key.toml", &unknown_profile_key),
            "unknown field `export`",
        ),
        // Config files.
        BadInput::new(
            "config file missing",
            install(&[
                "--config",
                fixtures.dir.join("absent.toml").to_str().unwrap(),
            ]),
            format!(
                "cannot read config file `{}`",
                fixtures.dir.join("absent.toml").display()
            ),
        ),
        BadInput::new(
            "config file without end (/dev/zero)",
            install(&["--config", "/dev/zero"]),
            "/dev/zero`: larger than 16 MiB",
        ),
        BadInput::new(
            "certificate file without end (/dev/zero)",
            install_with(Path::new("/dev/zero"), &good.1),
            "--ssl-cert `/dev/zero` cannot be read",
        ),
        BadInput::new(
            "config file not TOML",
            fixtures.config("not-toml.toml", "[wait\ntimeout_seconds = = 3\n"),
            "not-toml.toml` is not valid",
        ),
        BadInput::new(
            "config file not UTF-8",
            fixtures.config("binary.toml", b"[wait]\xff\xfe\x00timeout_seconds = 3\n"),
            "binary.toml`: stream did not contain valid UTF-8",
        ),
        BadInput::new(
            "config file with an unknown key",
            fixtures.config("unknown-key.toml", "[wait]\ntimeout_secs = 900\n"),
            "unknown field `timeout_secs`",
        ),
        BadInput::new(
            "config file with the storage pin where it used to be",
            fixtures.config("old-pin.toml", "[storage]\nsha256 = \"00\"\n"),
            "moved to `[downloads.pins.\"nfs-subdir-external-provisioner/VERSION/",
        ),
        BadInput::new(
            "config file with an unknown section",
            fixtures.config("unknown-section.toml", "[postgres]\nport = 5432\n"),
            "unknown field `postgres`",
        ),
        BadInput::new(
            "config file with a wrong type",
            fixtures.config("wrong-type.toml", "[wait]\ntimeout_seconds = \"soon\"\n"),
            "wrong-type.toml` is not valid",
        ),
        BadInput::new(
            "config file with a port out of range",
            fixtures.config("big-port.toml", "[mysql]\nport = 70000\n"),
            "big-port.toml` is not valid",
        ),
        BadInput::new(
            "config file with a wrong type in [install]",
            fixtures.config("install-type.toml", "[install]\nskip_db = \"yes\"\n"),
            "install-type.toml` is not valid",
        ),
        BadInput::new(
            "config file that empties a required value",
            fixtures.config("empty-value.toml", "[cluster]\nnamespace = \"\"\n"),
            "the value `cluster.namespace` is missing: config file",
        ),
        // The environment.
        BadInput::new(
            "variable with a wrong type",
            install(&[]),
            "environment variable `STACKINSTALL_WAIT__TIMEOUT_SECONDS` is not valid",
        )
        .env("STACKINSTALL_WAIT__TIMEOUT_SECONDS", "soon"),
        BadInput::new(
            "variable with a port out of range",
            install(&[]),
            "environment variable `STACKINSTALL_RABBITMQ__PORT` is not valid",
        )
        .env("STACKINSTALL_RABBITMQ__PORT", "-1"),
        BadInput::new(
            "variable with an unknown key",
            install(&[]),
            "environment variable `STACKINSTALL_WAIT__TIMEOUT_SECS` is not valid",
        )
        .env("STACKINSTALL_WAIT__TIMEOUT_SECS", "900"),
        BadInput::new(
            "variable with an unknown section",
            install(&[]),
            "environment variable `STACKINSTALL_POSTGRES__PORT` is not valid",
        )
        .env("STACKINSTALL_POSTGRES__PORT", "5432"),
        // Flags and steps.
        BadInput::new(
            "unknown flag",
            strings(&["install", "--domian", DOMAIN, "--self-signed"]),
            "unexpected argument '--domian'",
        ),
        BadInput::new(
            "unknown output format",
            install(&["--output", "yaml"]),
            "invalid value 'yaml' for '--output <OUTPUT>'",
        ),
        BadInput::new(
            "--only with --from",
            install(&["--only", "credentials", "--from", "summary"]),
            "the argument '--only <STEP>' cannot be used with '--from <STEP>'",
        )
        .unset("STACKINSTALL_ONLY"),
        BadInput::new(
            "unknown step for --only",
            install(&["--only", "kubernetes"]),
            "unknown step `kubernetes`; the steps are: preflight",
        )
        .unset("STACKINSTALL_ONLY"),
        BadInput::new(
            "unknown step in STACKINSTALL_ONLY",
            install(&[]),
            "unknown step `mysqld`",
        )
        .env("STACKINSTALL_ONLY", "credentials,mysqld"),
        BadInput::new(
            "unknown step for --redo",
            install(&["--redo", "database"]),
            "unknown step `database`",
        ),
        BadInput::new(
            "unknown step for --from",
            install(&["--from", "istiod"]),
            "unknown step `istiod`",
        )
        .unset("STACKINSTALL_ONLY"),
        // The host.
        BadInput::new(
            "not root",
            install(&[]),
            "stackinstall install must run as root",
        )
        .by_nobody(),
        BadInput::new(
            "port of the Kubernetes API taken",
            install(&[]),
            in_use("k3s"),
        )
        .env("STACKINSTALL_CLUSTER__API_PORT", &port),
        BadInput::new("HTTPS node port taken", install(&[]), in_use("istio"))
            .env("STACKINSTALL_ISTIO__HTTPS_NODE_PORT", &port),
        BadInput::new("MySQL port taken", install(&[]), in_use("mysql"))
            .env("STACKINSTALL_MYSQL__PORT", &port),
        BadInput::new("MongoDB port taken", install(&[]), in_use("mongodb"))
            .env("STACKINSTALL_MONGODB__PORT", &port),
        BadInput::new(
            "RabbitMQ management port taken",
            install(&[]),
            in_use("rabbitmq"),
        )
        .env("STACKINSTALL_RABBITMQ__MANAGEMENT_PORT", &port),
        BadInput::new("NFS port taken", install(&[]), in_use("nfs"))
            .env("STACKINSTALL_NFS__PORT", &port),
    ]
}

/// Runs `input` (and its plan); `Err` says how it was not a clean refusal.
fn refuse(
    world: &World,
    input: &BadInput,
    before: &BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    let runs: &[&[&str]] = if input.plan_too {
        &[&[], &["--plan"]]
    } else {
        &[&[]]
    };
    for extra in runs {
        let assert = input.command(world, extra).assert();
        let code = assert.get_output().status.code();
        let message = stderr(&assert);
        let run = if extra.is_empty() { "run" } else { "plan" };
        if code != Some(2) {
            return Err(format!("{run}: exit {code:?}, not 2:\n{message}"));
        }
        if !message.starts_with("error:") || message.contains("panicked") {
            return Err(format!("{run}: not one clean error:\n{message}"));
        }
        if !message.contains(&input.expected) {
            return Err(format!(
                "{run}: the message does not say `{}`:\n{message}",
                input.expected
            ));
        }
        let after = world.files(true);
        if &after != before {
            restore(world, before);
            return Err(format!(
                "{run}: changed the root: {:?}",
                changed(before, &after)
            ));
        }
    }
    Ok(())
}

/// Puts the root back as `snapshot` had it, so that one row that was not
/// refused does not spoil the rows after it.
fn restore(world: &World, snapshot: &BTreeMap<String, Vec<u8>>) {
    fs::remove_dir_all(&world.root).unwrap();
    fs::create_dir_all(world.path("/root")).unwrap();
    for (path, bytes) in snapshot {
        let path = world.path(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
}

/// The paths that differ between two snapshots of the root.
fn changed(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let paths: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    paths
        .into_iter()
        .filter(|path| before.get(*path) != after.get(*path))
        .cloned()
        .collect()
}

#[test]
fn every_bad_input_is_refused_with_its_name_and_changes_nothing() {
    assert!(
        stackinstall::host::system::is_root(),
        "these tests run as root, like the rest of the suite (tests/run-all.sh)"
    );
    let world = World::engine();
    // The run that is not root must reach the root's files to get as far
    // as asking who it is.
    fs::set_permissions(world.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken = listener.local_addr().unwrap().port();
    let fixtures = Fixtures::new(&world);
    let inputs = bad_inputs(&fixtures, taken);

    world.install(&["--plan"]).success();
    // Accepted, not bad: upper case is folded (DNS names are case-blind).
    let folded = world
        .command()
        .args(["install", "--domain", "Demo.EXAMPLE.com", "--self-signed"])
        .args(["--plan", "--output", "json"])
        .assert()
        .success();
    assert!(stdout(&folded).contains("\"domain\": \"demo.example.com\""));

    let before = world.files(true);
    assert!(
        !before.keys().any(|path| path.starts_with("/var/")),
        "a plan writes nothing: {before:?}"
    );
    let mut failures = Vec::new();
    for input in &inputs {
        if let Err(why) = refuse(&world, input, &before) {
            failures.push(format!("{}: {why}", input.name));
        }
    }
    assert!(
        !fixtures.dir.join("rendered").exists(),
        "a refused render writes nothing"
    );
    let rejected = inputs.len() - failures.len();
    report(&format!(
        "bad inputs: {} tried, {rejected} rejected cleanly",
        inputs.len()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(inputs.len() >= 30, "the table has {} rows", inputs.len());
    let names: BTreeSet<&str> = inputs.iter().map(|input| input.name).collect();
    assert_eq!(names.len(), inputs.len(), "every row has its own name");

    // The same world takes the good input: the refusals were the inputs'.
    drop(listener);
    let good = (fixtures.dir.join("good.crt"), fixtures.dir.join("good.key"));
    world
        .command()
        .args(install_with(&good.0, &good.1))
        .assert()
        .success();
}

/// How a file is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Cut in the middle of a line, as a write that stopped half way.
    Truncated,
    Empty,
    /// Bytes that are not UTF-8.
    BinaryGarbage,
    /// Text that is not TOML.
    TextGarbage,
    /// A format this version does not read.
    WrongVersion,
}

impl Damage {
    const ALL: [Damage; 5] = [
        Damage::Truncated,
        Damage::Empty,
        Damage::BinaryGarbage,
        Damage::TextGarbage,
        Damage::WrongVersion,
    ];

    /// `valid` damaged this way.
    fn apply(self, valid: &[u8]) -> Vec<u8> {
        match self {
            Damage::Truncated => {
                let mut cut = valid.len() / 2;
                while valid[cut - 1] == b'\n' || valid[cut] == b'\n' {
                    cut += 1;
                }
                valid[..cut].to_vec()
            }
            Damage::Empty => Vec::new(),
            Damage::BinaryGarbage => vec![0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0x00, 0x93, 0xc3],
            Damage::TextGarbage => b"The quick brown fox = jumps [over the lazy dog\n".to_vec(),
            Damage::WrongVersion => {
                let text = String::from_utf8(valid.to_vec()).unwrap();
                let line = (text.lines())
                    .find(|line| line.starts_with("version = "))
                    .unwrap();
                text.replacen(line, "version = 99", 1).into_bytes()
            }
        }
    }

    /// What the message says about the file.
    fn described(self) -> &'static str {
        match self {
            Damage::WrongVersion => "has format version 99; this stackinstall reads version",
            _ => "is damaged",
        }
    }
}

/// Every run of `PASSWORD_LENGTH` letters and digits in the root's files:
/// what a generated password looks like.
fn password_like(files: &BTreeMap<String, Vec<u8>>) -> BTreeSet<String> {
    files
        .values()
        .flat_map(|bytes| {
            String::from_utf8_lossy(bytes)
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|word| word.len() == PASSWORD_LENGTH)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One damaged file in a world that was installed for real.
struct DamagedCase {
    file: &'static str,
    damage: Damage,
    world: World,
    damaged: Vec<u8>,
}

impl DamagedCase {
    fn new(file: &'static str, damage: Damage) -> Self {
        let world = World::engine();
        world.install(&[]).success();
        let valid = fs::read(world.path(file)).unwrap();
        assert!(valid.starts_with(b"# ") && valid.len() > 100, "{file}");
        let damaged = damage.apply(&valid);
        assert_ne!(damaged, valid);
        fs::write(world.path(file), &damaged).unwrap();
        Self {
            file,
            damage,
            world,
            damaged,
        }
    }

    fn name(&self) -> String {
        format!("{} {:?}", self.file, self.damage)
    }

    /// The message names the file, what is wrong with it and the way out.
    fn check_message(&self, command: &str, message: &str) -> Result<(), String> {
        let hint = match self.file {
            STATE => format!(
                "move the file aside (`mv {0} {0}.bad`)",
                self.world.path(STATE).display()
            ),
            _ => "it is never replaced: restore it from a backup".to_string(),
        };
        for expected in [self.file, self.damage.described(), hint.as_str()] {
            if !message.contains(expected) {
                return Err(format!(
                    "{command}: the message does not say `{expected}`:\n{message}"
                ));
            }
        }
        if message.contains("panicked") {
            return Err(format!("{command}: panicked:\n{message}"));
        }
        Ok(())
    }

    /// Runs `stackinstall ARGS`; checks the exit code and that the damaged
    /// file is as it was. Returns stdout and stderr.
    fn run(&self, args: &[String], code: i32) -> Result<(String, String), String> {
        let assert = self.world.command().args(args).assert();
        let output = (stdout(&assert), stderr(&assert));
        let found = assert.get_output().status.code();
        if found != Some(code) {
            return Err(format!(
                "{args:?}: exit {found:?}, not {code}:\n{}",
                output.1
            ));
        }
        if fs::read(self.world.path(self.file)).ok().as_ref() != Some(&self.damaged) {
            return Err(format!("{args:?}: the damaged file was changed"));
        }
        Ok(output)
    }

    /// `install`, `status` and `uninstall --yes` on the damaged file.
    fn check(&self) -> Result<(), String> {
        match self.file {
            STATE => self.check_state(),
            _ => self.check_credentials(),
        }
    }

    /// The state is read before anything else: every command stops at
    /// once, before the lock and the log, and changes nothing. Exit 1: the
    /// input was fine, the tool's own file is not.
    fn check_state(&self) -> Result<(), String> {
        let before = self.world.files(true);
        for (command, args) in [
            ("install", install(&[])),
            ("install --plan", install(&["--plan"])),
            ("status", strings(&["status"])),
            ("uninstall --yes", strings(&["uninstall", "--yes"])),
        ] {
            let (_, message) = self.run(&args, 1)?;
            self.check_message(command, &message)?;
            let after = self.world.files(true);
            if after != before {
                return Err(format!("{command}: changed {:?}", changed(&before, &after)));
            }
        }
        Ok(())
    }

    /// `status` shows the damage as the step's health, `credentials`
    /// stops the same way as the install, and the default `uninstall`
    /// needs no password: it goes ahead (its log, the checkpoints it
    /// removes) and leaves the file alone. Then the credentials
    /// step stops the install (exit 1, a step failed): the run has its log
    /// and records the failed step in the state, and nothing else changes:
    /// no credentials file anywhere else, no new password in any file.
    fn check_credentials(&self) -> Result<(), String> {
        let before = self.world.files(true);
        // Done, not healthy (shown, not counted): exit 0.
        let (report, _) = self.run(&strings(&["status", "--output", "json"]), 0)?;
        let report: serde_json::Value = serde_json::from_str(&report).map_err(|e| e.to_string())?;
        let step = report["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|step| step["id"] == "credentials"))
            .cloned()
            .unwrap_or_default();
        let health = step["health"].as_str().unwrap_or_default();
        if !health.contains(self.file) || !health.contains(self.damage.described()) {
            return Err(format!("status: the credentials step is {step}"));
        }
        let (_, message) = self.run(&strings(&["credentials"]), 1)?;
        self.check_message("credentials", &message)?;
        self.run(&strings(&["uninstall", "--yes"]), 0)?;
        let after = self.world.files(true);
        let unexpected: Vec<String> = changed(&before, &after)
            .into_iter()
            .filter(|path| {
                path != STATE
                    && path != LOCK
                    && !path.starts_with("/var/log/stackinstall/uninstall-")
            })
            .collect();
        if !unexpected.is_empty() {
            return Err(format!(
                "status, credentials, uninstall: changed {unexpected:?}"
            ));
        }

        let before = after;
        let (_, message) = self.run(&install(&[]), 1)?;
        self.check_message("install", &message)?;
        let after = self.world.files(true);
        let expected_changes = |path: &String| {
            path == STATE || path == LOCK || path.starts_with("/var/log/stackinstall/install-")
        };
        let unexpected: Vec<String> = changed(&before, &after)
            .into_iter()
            .filter(|path| !expected_changes(path))
            .collect();
        if !unexpected.is_empty() {
            return Err(format!("install: changed {unexpected:?}"));
        }
        let new_passwords = password_like(&after)
            .difference(&password_like(&before))
            .count();
        if new_passwords > 0 {
            return Err(format!("install: {new_passwords} new password-like values"));
        }
        let state: toml::Table =
            toml::from_str(&String::from_utf8(after[STATE].clone()).unwrap()).unwrap();
        if state["steps"]["credentials"]["status"].as_str() != Some("failed") {
            return Err(format!(
                "install: the state says {}",
                state["steps"]["credentials"]
            ));
        }
        Ok(())
    }
}

#[test]
fn damaged_state_and_credentials_files_stop_the_run_and_are_kept() {
    let mut cases = 0;
    let mut failures = Vec::new();
    for file in [STATE, CREDENTIALS] {
        for damage in Damage::ALL {
            cases += 1;
            let case = DamagedCase::new(file, damage);
            if let Err(why) = case.check() {
                failures.push(format!("{}: {why}", case.name()));
            }
        }
    }
    let handled = cases - failures.len();
    report(&format!("damaged files: {cases} cases, {handled} handled"));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(cases, 10);
}

/// One configuration value that breaks a rule of `src/config/validate.rs`.
struct BadValue {
    rule: &'static str,
    key: &'static str,
    value: String,
    /// `Some(variable)`: set by that variable; `None`: by a config file.
    variable: Option<&'static str>,
    /// The config file's text when `variable` is `None`.
    file: &'static str,
    /// The start of the rule's wording in the refusal.
    says: &'static str,
}

fn by_variable(
    rule: &'static str,
    key: &'static str,
    variable: &'static str,
    value: &str,
    says: &'static str,
) -> BadValue {
    BadValue {
        rule,
        key,
        value: value.into(),
        variable: Some(variable),
        file: "",
        says,
    }
}

fn by_file(
    rule: &'static str,
    key: &'static str,
    value: &str,
    file: &'static str,
    says: &'static str,
) -> BadValue {
    BadValue {
        rule,
        key,
        value: value.into(),
        variable: None,
        file,
        says,
    }
}

/// Every rule of the configuration's values, each fed a value that breaks it.
fn bad_values() -> Vec<BadValue> {
    const LABEL: &str = "must be an RFC 1123 label";
    const SUBDOMAIN: &str = "must be an RFC 1123 subdomain";
    const ARGUMENT: &str = "must not start with `-`";
    const ABSOLUTE: &str = "must be an absolute path";
    const SQL: &str = "must be letters, digits and `_` only";
    const HTTPS: &str = "must be an https:// URL";
    const CONTROL: &str = "must not hold a newline";
    vec![
        by_variable(
            "namespace: upper case",
            "cluster.namespace",
            "STACKINSTALL_CLUSTER__NAMESPACE",
            "Sb_Apps",
            LABEL,
        ),
        by_variable(
            "namespace: leading -",
            "cluster.namespace",
            "STACKINSTALL_CLUSTER__NAMESPACE",
            "-n",
            LABEL,
        ),
        by_variable(
            "namespace: newline",
            "cluster.namespace",
            "STACKINSTALL_CLUSTER__NAMESPACE",
            "sb-apps\nkind: ClusterRole",
            CONTROL,
        ),
        by_variable(
            "release: too long",
            "chart.release",
            "STACKINSTALL_CHART__RELEASE",
            &"a".repeat(54),
            "must be a Helm release name",
        ),
        by_variable(
            "gateway: not a name",
            "istio.gateway",
            "STACKINSTALL_ISTIO__GATEWAY",
            "gw;rm",
            SUBDOMAIN,
        ),
        by_variable(
            "virtual service: trailing dot",
            "istio.virtual_service",
            "STACKINSTALL_ISTIO__VIRTUAL_SERVICE",
            "vs.",
            SUBDOMAIN,
        ),
        by_variable(
            "TLS secret: space",
            "istio.tls_secret",
            "STACKINSTALL_ISTIO__TLS_SECRET",
            "tls secret",
            SUBDOMAIN,
        ),
        by_variable(
            "pull secret: slash",
            "registry.secret",
            "STACKINSTALL_REGISTRY__SECRET",
            "aws/cred",
            SUBDOMAIN,
        ),
        by_variable(
            "storage class: upper case",
            "nfs.storage_class",
            "STACKINSTALL_NFS__STORAGE_CLASS",
            "NFS_Client",
            SUBDOMAIN,
        ),
        by_file(
            "route prefix: no /",
            "routes.prefix",
            "admin",
            "[[routes]]\nprefix = \"admin\"\nservice = \"sb-admin\"\nport = 80\n",
            "must be a URL path starting with `/`",
        ),
        by_file(
            "route prefix: quote",
            "routes.prefix",
            "/admin\"",
            "[[routes]]\nprefix = '/admin\"'\nservice = \"sb-admin\"\nport = 80\n",
            "must be a URL path starting with `/`",
        ),
        by_file(
            "home route: no /",
            "istio.home",
            "portal",
            "[istio]\nhome = \"portal\"\n",
            "must be a URL path starting with `/`",
        ),
        by_file(
            "route service: not a label",
            "routes.service",
            "SB_UI",
            "[[routes]]\nprefix = \"/portal\"\nservice = \"SB_UI\"\nport = 80\n",
            LABEL,
        ),
        by_file(
            "route port: 0",
            "routes.port",
            "0",
            "[[routes]]\nprefix = \"/portal\"\nservice = \"sb-ui\"\nport = 0\n",
            "must be a port from 1 to 65535",
        ),
        by_variable(
            "node port: 0",
            "istio.http_node_port",
            "STACKINSTALL_ISTIO__HTTP_NODE_PORT",
            "0",
            "must be a port from 1 to 65535",
        ),
        by_variable(
            "MySQL port: 0",
            "mysql.port",
            "STACKINSTALL_MYSQL__PORT",
            "0",
            "must be a port from 1 to 65535",
        ),
        by_variable(
            "RabbitMQ port: 0",
            "rabbitmq.port",
            "STACKINSTALL_RABBITMQ__PORT",
            "0",
            "must be a port from 1 to 65535",
        ),
        by_variable(
            "MySQL user: dash",
            "mysql.username",
            "STACKINSTALL_MYSQL__USERNAME",
            "stack-bill",
            SQL,
        ),
        by_file(
            "MySQL database: SQL",
            "mysql.databases",
            "x; DROP DATABASE y",
            "[mysql]\ndatabases = [\"stackbill\", \"x; DROP DATABASE y\"]\n",
            SQL,
        ),
        by_variable(
            "RabbitMQ user: option",
            "rabbitmq.username",
            "STACKINSTALL_RABBITMQ__USERNAME",
            "--help",
            ARGUMENT,
        ),
        by_variable(
            "RabbitMQ vhost: space",
            "rabbitmq.vhost",
            "STACKINSTALL_RABBITMQ__VHOST",
            "/ x",
            ARGUMENT,
        ),
        by_file(
            "RabbitMQ tag: option",
            "rabbitmq.tags",
            "-x",
            "[rabbitmq]\ntags = [\"administrator\", \"-x\"]\n",
            ARGUMENT,
        ),
        by_variable(
            "MongoDB user: space",
            "mongodb.username",
            "STACKINSTALL_MONGODB__USERNAME",
            "stack bill",
            ARGUMENT,
        ),
        by_variable(
            "chart reference: option",
            "chart.reference",
            "STACKINSTALL_CHART__REFERENCE",
            "--post-renderer=/tmp/x",
            ARGUMENT,
        ),
        by_variable(
            "chart version: extra argument",
            "chart.version",
            "STACKINSTALL_CHART__VERSION",
            "1.0 --set x=y",
            "must be a version",
        ),
        by_variable(
            "K3s version: shell",
            "versions.k3s",
            "STACKINSTALL_VERSIONS__K3S",
            "v1.29.0;id",
            "must be a version",
        ),
        by_variable(
            "Istio profile: newline",
            "istio.profile",
            "STACKINSTALL_ISTIO__PROFILE",
            "demo\n  hub: evil",
            CONTROL,
        ),
        by_variable(
            "export options: space",
            "nfs.export_options",
            "STACKINSTALL_NFS__EXPORT_OPTIONS",
            "rw *(rw)",
            "must be NFS export options",
        ),
        by_variable(
            "export options: a second client",
            "nfs.export_options",
            "STACKINSTALL_NFS__EXPORT_OPTIONS",
            "rw)*(rw",
            "must be NFS export options",
        ),
        by_variable(
            "NFS path: relative",
            "nfs.path",
            "STACKINSTALL_NFS__PATH",
            "data/stackbill",
            ABSOLUTE,
        ),
        by_variable(
            "NFS path: ..",
            "nfs.path",
            "STACKINSTALL_NFS__PATH",
            "/data/../etc",
            ABSOLUTE,
        ),
        by_variable(
            "key file: space",
            "mongodb.key_file",
            "STACKINSTALL_MONGODB__KEY_FILE",
            "/var/lib/mongodb/key file",
            ABSOLUTE,
        ),
        by_variable(
            "pod network: no prefix length",
            "cluster.pod_cidr",
            "STACKINSTALL_CLUSTER__POD_CIDR",
            "10.42.0.0",
            "must be an IPv4 or IPv6 network",
        ),
        by_variable(
            "host address: a name",
            "cluster.host_ip",
            "STACKINSTALL_CLUSTER__HOST_IP",
            "not-an-ip",
            "must be empty or an IP address",
        ),
        by_variable(
            "bind addresses: space",
            "mongodb.bind_ip",
            "STACKINSTALL_MONGODB__BIND_IP",
            "0.0.0.0, 10.0.0.1",
            "must be IP addresses or host names",
        ),
        by_variable(
            "K3s download: http",
            "downloads.k3s",
            "STACKINSTALL_DOWNLOADS__K3S",
            "http://releases.example.com/{version}",
            HTTPS,
        ),
        by_file(
            "Helm download: ftp",
            "downloads.helm",
            "ftp://get.helm.sh",
            "[downloads]\nhelm = \"ftp://get.helm.sh\"\n",
            HTTPS,
        ),
        by_file(
            "pin: not a SHA-256",
            "downloads.pins.\"k3s/v1.29.0+k3s1/k3s\".sha256",
            "abc",
            "[downloads.pins.\"k3s/v1.29.0+k3s1/k3s\"]\nsha256 = \"abc\"\nsource = \"nowhere\"\n",
            "must be a SHA-256",
        ),
        by_variable(
            "MongoDB key: a misspelt placeholder",
            "downloads.mongodb_key",
            "STACKINSTALL_DOWNLOADS__MONGODB_KEY",
            "https://www.mongodb.org/static/pgp/server-{verison}.asc",
            "must be an https:// URL or a file:/// path, with `{version}` where the series goes",
        ),
        by_variable(
            "MongoDB key: one URL for every series",
            "downloads.mongodb_key",
            "STACKINSTALL_DOWNLOADS__MONGODB_KEY",
            "https://www.mongodb.org/static/pgp/server.asc",
            "must be an https:// URL or a file:/// path, with `{version}` where the series goes",
        ),
        by_file(
            "signing key: not a fingerprint",
            "mongodb.signing_keys.\"7.0\".fingerprint",
            "1234",
            "[mongodb.signing_keys.\"7.0\"]\nfingerprint = \"1234\"\nsource = \"nowhere\"\n",
            "must be an OpenPGP fingerprint",
        ),
        // Values that reached a program's arguments unchecked before every
        // key had its rule (issue 21 item 4): each would inject there.
        by_variable(
            "storage release: a flag on root's helm",
            "storage.release",
            "STACKINSTALL_STORAGE__RELEASE",
            "--post-renderer=/tmp/x",
            "must be a Helm release name",
        ),
        by_variable(
            "storage namespace: a flag",
            "storage.namespace",
            "STACKINSTALL_STORAGE__NAMESPACE",
            "--kubeconfig=/tmp/x",
            LABEL,
        ),
        by_variable(
            "storage version: an extra argument",
            "storage.version",
            "STACKINSTALL_STORAGE__VERSION",
            "4.0.18 --insecure-skip-tls-verify",
            "must be a version",
        ),
        by_variable(
            "storage chart: http",
            "storage.chart_url",
            "STACKINSTALL_STORAGE__CHART_URL",
            "http://charts.example.com/x-{version}.tgz",
            HTTPS,
        ),
        by_variable(
            "NFS path: a comma adds --set values",
            "nfs.path",
            "STACKINSTALL_NFS__PATH",
            "/data/x,storageClass.name=evil",
            ABSOLUTE,
        ),
        by_variable(
            "MySQL package: an apt option",
            "mysql.package",
            "STACKINSTALL_MYSQL__PACKAGE",
            "--allow-unauthenticated",
            "must be a Debian package name",
        ),
        by_variable(
            "MySQL service: a systemctl option",
            "mysql.service",
            "STACKINSTALL_MYSQL__SERVICE",
            "--global",
            "must be a systemd unit name",
        ),
        by_variable(
            "MySQL login host: user info",
            "mysql.host",
            "STACKINSTALL_MYSQL__HOST",
            "root@evil.example.com",
            "must be an IP address or a host name",
        ),
        by_variable(
            "RabbitMQ login host: a URL",
            "rabbitmq.host",
            "STACKINSTALL_RABBITMQ__HOST",
            "evil.example.com/%2f",
            "must be an IP address or a host name",
        ),
        by_file(
            "MongoDB role: not a name",
            "mongodb.roles.db",
            "admin\"}",
            "[mongodb]\nroles = [{ role = \"root\", db = 'admin\"}' }]\n",
            "must be letters, digits, `_` and `-` only",
        ),
        by_variable(
            "registry: a quote in the kubelet's YAML",
            "registry.server",
            "STACKINSTALL_REGISTRY__SERVER",
            "ecr.example.com\"\n",
            CONTROL,
        ),
        by_variable(
            "registry: not a host",
            "registry.server",
            "STACKINSTALL_REGISTRY__SERVER",
            "ecr.example.com/x\"",
            "must be a registry host",
        ),
        by_variable(
            "registry region: an option",
            "registry.region",
            "STACKINSTALL_REGISTRY__REGION",
            "--endpoint",
            "must be an AWS region",
        ),
        by_variable(
            "ECR endpoint: a file",
            "registry.endpoint_url",
            "STACKINSTALL_REGISTRY__ENDPOINT_URL",
            "file:///etc/shadow",
            "must be an http:// or https:// URL",
        ),
        by_variable(
            "AWS profile: a section of its own",
            "install.aws_profile",
            "STACKINSTALL_INSTALL__AWS_PROFILE",
            "default]",
            "must be an AWS profile name",
        ),
        by_file(
            "MySQL setting: a name that is two",
            "mysql.settings.\"bind-address = 0.0.0.0 #\"",
            "bind-address = 0.0.0.0 #",
            "[mysql.settings]\n\"bind-address = 0.0.0.0 #\" = 1\n",
            "must be a [mysqld] setting name",
        ),
        by_file(
            "MySQL setting: a table",
            "mysql.settings.init",
            "{\"file\":\"/tmp/x\"}",
            "[mysql.settings.init]\nfile = \"/tmp/x\"\n",
            "must be text, a whole number or true/false",
        ),
        by_variable(
            "Istio profile: not a profile name",
            "istio.profile",
            "STACKINSTALL_ISTIO__PROFILE",
            "{demo}",
            LABEL,
        ),
        by_variable(
            "public HTTPS port: 0",
            "istio.public_https_port",
            "STACKINSTALL_ISTIO__PUBLIC_HTTPS_PORT",
            "0",
            "must be a port from 1 to 65535",
        ),
        by_file(
            "backup schedule: not a calendar event",
            "backup.schedule",
            "every night",
            "[backup]\nkey_file = \"/etc/stackinstall/backup.key\"\nschedule = \"every night\"\n",
            "must be a systemd calendar event",
        ),
        by_file(
            "backup schedule: a second line for the timer",
            "backup.schedule",
            "daily\nExecStartPre=/bin/sh",
            "[backup]\nkey_file = \"/etc/stackinstall/backup.key\"\nschedule = \"daily\\nExecStartPre=/bin/sh\"\n",
            CONTROL,
        ),
        by_file(
            "backup schedule: nobody to type a passphrase",
            "backup.schedule",
            "daily",
            "[backup]\nschedule = \"daily\"\n",
            "needs `backup.key_file`",
        ),
        by_variable(
            "backups kept: none",
            "backup.keep",
            "STACKINSTALL_BACKUP__KEEP",
            "0",
            "must be from 1 to 1000",
        ),
    ]
}

#[test]
fn every_configuration_rule_refuses_a_bad_value_naming_source_key_and_rule() {
    let world = World::engine();
    let fixtures = Fixtures::new(&world);
    let values = bad_values();
    let inputs: Vec<BadInput> = values
        .iter()
        .enumerate()
        .map(|(index, bad)| {
            let (args, source) = match bad.variable {
                Some(variable) => (install(&[]), format!("environment variable `{variable}`")),
                None => {
                    let path = fixtures.dir.join(format!("rule-{index}.toml"));
                    (
                        fixtures.config(&format!("rule-{index}.toml"), bad.file),
                        format!("config file `{}`", path.display()),
                    )
                }
            };
            let value = format!("{:?}", bad.value);
            let expected = format!(
                "`{}` = {value} from {source} is refused: it {}",
                bad.key, bad.says
            );
            let input = BadInput::new(bad.rule, args, expected);
            match bad.variable {
                Some(variable) => input.env(variable, bad.value.clone()),
                None => input,
            }
        })
        .collect();
    let before = world.files(true);
    let mut failures = Vec::new();
    for input in &inputs {
        if let Err(why) = refuse(&world, input, &before) {
            failures.push(format!("{}: {why}", input.name));
        }
    }
    let rules: BTreeSet<&str> = values.iter().map(|bad| bad.says).collect();
    report(&format!(
        "bad configuration values: {} tried against {} rules, {} refused (exit 2, naming the file or variable, the key and the rule)",
        inputs.len(),
        rules.len(),
        inputs.len() - failures.len()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ------------------------------------------- fuzz corpora replayed (21, 9) --

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzzing;

/// Every file of every fuzz target's corpus (`fuzz/corpus/TARGET/`, crash
/// inputs included once fixed) through that target's parser, as the fuzzer
/// feeds it: none may panic. No fuzzing here; `README.md` says how to fuzz.
#[test]
fn every_fuzz_corpus_file_goes_through_its_parser_without_a_panic() {
    // In a process of its own: the parsers register every password they
    // read (one-letter ones among them) in the process-wide list that
    // redaction masks, which would garble what other tests of this binary
    // see in-process (`steps.rs`).
    const CHILD: &str = "STACKINSTALL_TEST_FUZZ_REPLAY_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let name = concat!(
            module_path!(),
            "::every_fuzz_corpus_file_goes_through_its_parser_without_a_panic"
        )
        .trim_start_matches("it::");
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in text
            .lines()
            .filter(|line| line.contains("fuzz corpora replayed"))
        {
            println!("{line}");
        }
        return;
    }
    type Parser = fn(&[u8]);
    let targets: [(&str, Parser); 9] = [
        ("config", fuzzing::config),
        ("certificate", fuzzing::certificate),
        ("state", fuzzing::state),
        ("credentials", fuzzing::credentials),
        ("legacy_passwords", fuzzing::legacy_passwords),
        ("pgp", fuzzing::pgp),
        ("exports", fuzzing::exports),
        ("kubectl_json", fuzzing::kubectl_json),
        ("provider_request", fuzzing::provider_request),
    ];
    let corpora = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = Vec::new();
    for (target, parse) in targets {
        let mut files: Vec<_> = std::fs::read_dir(corpora.join(target))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| parse(&data));
            assert!(
                outcome.is_ok(),
                "{} panicked {target}'s parser",
                file.display()
            );
        }
        replayed.push(format!("{target} {}", files.len()));
    }
    crate::support::output::report(&format!(
        "fuzz corpora replayed without a panic: {}",
        replayed.join(", ")
    ));
}
