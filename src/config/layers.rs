//! The layers of the configuration: the profile, the `--config` file and
//! the `STACKINSTALL_<SECTION>__<KEY>` variables, each parsed and checked
//! against the schema on its own (so a refusal names the file or variable),
//! merged in that order over the built-in defaults; then the flags, applied
//! over them as typed values; then one check of the whole.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, DEFAULT_PROFILE, Domain, ENV_PREFIX, Install, PROFILES};

/// Where each layer comes from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--profile`: a built-in profile name or a file.
    pub profile: Option<String>,
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// The environment (only `STACKINSTALL_<SECTION>__<KEY>` entries are used).
    pub environment: Vec<(String, String)>,
    /// What the command line sets.
    pub flags: Flags,
}

/// What the command line sets (flags, and the variables clap reads for
/// them, like `STACKINSTALL_DOMAIN`), or an answer on the terminal: the
/// last layer, put over the others as typed values.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--domain` as typed: parsed with the layers' (a refusal names
    /// `--domain`); empty unsets it.
    pub domain: Option<String>,
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    /// `--self-signed`, `--skip-infra`, `--skip-db`: a switch that is not
    /// given leaves the layers' value.
    pub self_signed: bool,
    pub skip_infra: bool,
    pub skip_db: bool,
    pub aws_profile: Option<String>,
}

impl Flags {
    /// The flag that sets `key` (`install.domain`), if one does.
    pub fn setter(&self, key: &[&str]) -> Option<&'static str> {
        let ["install", field] = key else {
            return None;
        };
        let (flag, set) = match *field {
            "domain" => ("--domain", self.domain.is_some()),
            "ssl_cert" => ("--ssl-cert", self.ssl_cert.is_some()),
            "ssl_key" => ("--ssl-key", self.ssl_key.is_some()),
            "self_signed" => ("--self-signed", self.self_signed),
            "skip_infra" => ("--skip-infra", self.skip_infra),
            "skip_db" => ("--skip-db", self.skip_db),
            "aws_profile" => ("--aws-profile", self.aws_profile.is_some()),
            _ => return None,
        };
        set.then_some(flag)
    }

    /// Puts what the flags set over `install`.
    fn apply(&self, install: &mut Install) -> Result<(), ConfigError> {
        match self.domain.as_deref() {
            None => {}
            Some("") => install.domain = None,
            Some(text) => install.domain = Some(parse_domain("--domain", text)?),
        }
        for (flag, value) in [
            (&self.ssl_cert, &mut install.ssl_cert),
            (&self.ssl_key, &mut install.ssl_key),
        ] {
            if let Some(path) = flag {
                *value = (!path.as_os_str().is_empty()).then(|| path.clone());
            }
        }
        install.self_signed |= self.self_signed;
        install.skip_infra |= self.skip_infra;
        install.skip_db |= self.skip_db;
        if let Some(profile) = &self.aws_profile {
            install.aws_profile = (!profile.is_empty()).then(|| profile.clone());
        }
        Ok(())
    }
}

/// One layer: its name for messages (`config file `site.toml``) and what
/// it sets.
#[derive(Debug, Clone)]
struct Layer {
    name: String,
    table: toml::Table,
}

/// The profile, the config file and the environment, in that order, each
/// checked against the schema.
#[derive(Debug, Clone)]
pub struct Layers {
    layers: Vec<Layer>,
}

impl Layers {
    /// Reads and checks the layers `sources` names (not its flags).
    pub fn read(sources: &Sources) -> Result<Self, ConfigError> {
        let (name, text) = profile_text(sources.profile.as_deref())?;
        let mut layers = vec![Layer {
            table: check_layer(&name, &text)?,
            name,
        }];
        if let Some(path) = &sources.config_file {
            let name = format!("config file `{}`", path.display());
            let text = read_text(&name, path)?;
            let table = check_layer(&name, &text)?;
            layers.push(Layer { name, table });
        }
        for (variable, value) in &sources.environment {
            if let Some(table) = environment_layer(variable, value)? {
                let name = format!("environment variable `{variable}`");
                layers.push(Layer { name, table });
            }
        }
        Ok(Self { layers })
    }

    /// What the layers and `flags` say the install is for, before any
    /// other check: what the questions on a terminal look at.
    pub fn install(&self, flags: &Flags) -> Result<Install, ConfigError> {
        let mut install: Install = match self.merged().remove("install") {
            Some(section) => section.try_into().map_err(merged_invalid)?,
            None => Install::default(),
        };
        flags.apply(&mut install)?;
        Ok(install)
    }

    /// One configuration: the layers merged, `flags` over them, then every
    /// value checked once.
    pub fn into_config(self, flags: &Flags) -> Result<Config, ConfigError> {
        let mut config: Config = self.merged().try_into().map_err(merged_invalid)?;
        flags.apply(&mut config.install)?;
        config.check_complete(&|key: &[&str]| self.setter_of(flags, key))?;
        super::validate::check(&config, &|key: &[&str]| self.source_of(flags, key))?;
        super::validate::check_squash(&config, &|key: &[&str]| self.source_of(flags, key))?;
        super::validate::check_home(&config, &|key: &[&str]| self.source_of(flags, key))?;
        super::validate::check_schedule(&config, &|key: &[&str]| self.source_of(flags, key))?;
        config.routes_replaced_by = (self.last_setter(&["routes"]))
            .filter(|setter| **setter != self.layers[0].name)
            .cloned();
        Ok(config)
    }

    /// The defaults with every layer merged over them.
    fn merged(&self) -> toml::Table {
        let mut merged = toml::Table::try_from(Config::default()).expect("defaults serialize");
        for layer in &self.layers {
            merge(&mut merged, layer.table.clone());
        }
        merged
    }

    /// What set `key` last: a flag, else the last layer that sets it or
    /// the nearest table holding it, else the profile.
    fn source_of(&self, flags: &Flags, key: &[&str]) -> String {
        if let Some(flag) = flags.setter(key) {
            return flag.to_string();
        }
        (1..=key.len())
            .rev()
            .find_map(|length| self.last_setter(&key[..length]))
            .unwrap_or(&self.layers[0].name)
            .clone()
    }

    /// What set `key` itself last: a flag, a layer, else the profile.
    fn setter_of(&self, flags: &Flags, key: &[&str]) -> String {
        match flags.setter(key) {
            Some(flag) => flag.to_string(),
            None => self
                .last_setter(key)
                .unwrap_or(&self.layers[0].name)
                .clone(),
        }
    }

    /// The name of the last layer that sets `key`.
    fn last_setter(&self, key: &[&str]) -> Option<&String> {
        self.layers
            .iter()
            .rev()
            .find(|layer| sets(&layer.table, key))
            .map(|layer| &layer.name)
    }
}

fn merged_invalid(error: toml::de::Error) -> ConfigError {
    ConfigError::Invalid {
        source_name: "the merged configuration".into(),
        detail: error.message().to_string(),
    }
}

/// `text` as a [`Domain`], or the refusal naming `origin`.
fn parse_domain(origin: &str, text: &str) -> Result<Domain, ConfigError> {
    Domain::parse(text).map_err(|why| ConfigError::Domain {
        origin: origin.into(),
        value: text.into(),
        why,
    })
}

fn profile_text(profile: Option<&str>) -> Result<(String, String), ConfigError> {
    let name = profile.unwrap_or(DEFAULT_PROFILE);
    if let Some(file) = PROFILES.get_file(format!("{name}.toml")) {
        let text = file.contents_utf8().expect("built-in profiles are UTF-8");
        return Ok((format!("profile `{name}`"), text.to_string()));
    }
    let path = Path::new(name);
    if name.ends_with(".toml") || name.contains('/') || path.exists() {
        let source_name = format!("profile file `{}`", path.display());
        let text = read_text(&source_name, path)?;
        return Ok((source_name, text));
    }
    Err(ConfigError::UnknownProfile {
        name: name.into(),
        known: super::builtin_profiles().join(", "),
    })
}

fn read_text(source_name: &str, path: &Path) -> Result<String, ConfigError> {
    let unreadable = |error: std::io::Error| ConfigError::Unreadable {
        source_name: source_name.into(),
        error: error.to_string(),
    };
    let bytes = crate::host::fs::read_limited(path).map_err(unreadable)?;
    String::from_utf8(bytes).map_err(|_| {
        unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

/// Parses one layer and checks it against the schema on its own.
fn check_layer(source_name: &str, text: &str) -> Result<toml::Table, ConfigError> {
    let invalid = |error: toml::de::Error| ConfigError::Invalid {
        source_name: source_name.into(),
        detail: error.to_string().trim_end().to_string(),
    };
    let table: toml::Table = toml::from_str(text).map_err(invalid)?;
    let section = |name: &str| table.get(name).and_then(toml::Value::as_table);
    if section("storage").is_some_and(|storage| storage.contains_key("sha256")) {
        return Err(ConfigError::Invalid {
            source_name: source_name.into(),
            detail: "`[storage] sha256` is no longer read: the provisioner chart's pin moved to `[downloads.pins.\"nfs-subdir-external-provisioner/VERSION/nfs-subdir-external-provisioner-VERSION.tgz\"] sha256`, beside the other pins".into(),
        });
    }
    // Parsed here too (the schema check below would refuse it as well)
    // for a refusal that names the key and the layer.
    let domain = section("install").and_then(|install| install.get("domain"));
    if let Some(text) = domain
        .and_then(toml::Value::as_str)
        .filter(|t| !t.is_empty())
    {
        parse_domain(&format!("`install.domain` in {source_name}"), text)?;
    }
    toml::from_str::<Config>(text).map_err(invalid)?;
    Ok(table)
}

/// `STACKINSTALL_WAIT__TIMEOUT_SECONDS=900` as `{ wait = { timeout_seconds = 900 } }`.
fn environment_layer(variable: &str, value: &str) -> Result<Option<toml::Table>, ConfigError> {
    let Some(rest) = variable.strip_prefix(ENV_PREFIX) else {
        return Ok(None);
    };
    if !rest.contains("__") {
        return Ok(None);
    }
    let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let parsed = toml::from_str::<toml::Table>(&format!("value = {value}"))
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut layer = parsed;
    for key in keys.iter().rev() {
        layer = toml::Value::Table(toml::Table::from_iter([(key.clone(), layer)]));
    }
    let toml::Value::Table(table) = layer else {
        unreachable!("built from keys")
    };
    let source_name = format!("environment variable `{variable}`");
    let text = toml::to_string(&table).map_err(|e| ConfigError::Invalid {
        source_name: source_name.clone(),
        detail: e.to_string(),
    })?;
    check_layer(&source_name, &text).map(Some)
}

/// Whether `layer` sets `key` (`["cluster", "namespace"]`).
fn sets(layer: &toml::Table, key: &[&str]) -> bool {
    let Some((last, path)) = key.split_last() else {
        return false;
    };
    let mut table = layer;
    for part in path {
        match table.get(*part) {
            Some(toml::Value::Table(inner)) => table = inner,
            _ => return false,
        }
    }
    table.contains_key(*last)
}

/// Merges `layer` over `base`: tables key by key, anything else replaced.
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(layer_table)) => {
                merge(base_table, layer_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
