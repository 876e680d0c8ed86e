//! Command-line parsing shared by the fakes: a program's flags are named
//! up front, and anything else that looks like a flag is refused, as the
//! real programs (cobra, getopt) refuse it.

use std::collections::BTreeMap;

/// The flags one command accepts.
pub struct Spec<'a> {
    /// Flags that take a value (`-n NS`, `--namespace=NS`, `-nNS`), every
    /// spelling listed (`["-n", "--namespace"]` as two entries of one
    /// group: see `value`).
    pub values: &'a [&'a [&'a str]],
    /// Flags without a value (`--ignore-not-found`; `--wait=false` too).
    pub switches: &'a [&'a [&'a str]],
}

/// A parsed command line.
#[derive(Debug, Default)]
pub struct Parsed {
    pub positional: Vec<String>,
    values: BTreeMap<String, Vec<String>>,
    switches: BTreeMap<String, bool>,
}

/// Why a command line was refused: the flag, and whether it was a short one.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Unknown(String),
    Shorthand(char, String),
    MissingValue(String),
}

impl Parsed {
    /// The last value of the flag whose first spelling is `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name)?.last().map(String::as_str)
    }

    /// Every value of the flag whose first spelling is `name`, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        (self.values.get(name).into_iter().flatten())
            .map(String::as_str)
            .collect()
    }

    /// Whether the switch whose first spelling is `name` is on.
    pub fn switch(&self, name: &str) -> bool {
        self.switches.get(name).copied().unwrap_or(false)
    }
}

/// Parses `args` against `spec`; `--` ends the flags.
pub fn parse(args: &[String], spec: &Spec) -> Result<Parsed, Refused> {
    let group_of = |groups: &[&[&str]], flag: &str| -> Option<String> {
        (groups.iter())
            .find(|group| group.contains(&flag))
            .map(|group| group[0].to_string())
    };
    let mut parsed = Parsed::default();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            parsed.positional.extend(words.by_ref().cloned());
            break;
        }
        if !word.starts_with('-') || word == "-" {
            parsed.positional.push(word.clone());
            continue;
        }
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if word.starts_with("--") => (flag.to_string(), Some(value)),
            _ => (word.clone(), None),
        };
        if let Some(name) = group_of(spec.values, &flag) {
            let value = match inline {
                Some(value) => value.to_string(),
                None => words
                    .next()
                    .cloned()
                    .ok_or_else(|| Refused::MissingValue(flag.clone()))?,
            };
            parsed.values.entry(name).or_default().push(value);
        } else if let Some(name) = group_of(spec.switches, &flag) {
            parsed.switches.insert(name, inline != Some("false"));
        } else if !word.starts_with("--") && word.len() > 2 {
            // `-nNAMESPACE`: a short flag with its value attached.
            let short = &word[..2];
            match group_of(spec.values, short) {
                Some(name) => parsed
                    .values
                    .entry(name)
                    .or_default()
                    .push(word[2..].to_string()),
                None => {
                    let letter = word.chars().nth(1).unwrap_or('-');
                    return Err(Refused::Shorthand(letter, word.clone()));
                }
            }
        } else if word.starts_with("--") {
            return Err(Refused::Unknown(flag));
        } else {
            let letter = word.chars().nth(1).unwrap_or('-');
            return Err(Refused::Shorthand(letter, word.clone()));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    const SPEC: Spec = Spec {
        values: &[&["-n", "--namespace"], &["-o", "--output"]],
        switches: &[&["--ignore-not-found"], &["-A", "--all-namespaces"]],
    };

    #[test]
    fn values_switches_and_refusals() {
        let parsed = parse(
            &strings(&["get", "pods", "-nfoo", "--output=json", "-A"]),
            &SPEC,
        )
        .unwrap();
        assert_eq!(parsed.positional, ["get", "pods"]);
        assert_eq!(parsed.value("-n"), Some("foo"));
        assert_eq!(parsed.value("-o"), Some("json"));
        assert!(parsed.switch("-A"));
        assert_eq!(
            parse(&strings(&["--frobnicate"]), &SPEC).unwrap_err(),
            Refused::Unknown("--frobnicate".into())
        );
        assert_eq!(
            parse(&strings(&["-x"]), &SPEC).unwrap_err(),
            Refused::Shorthand('x', "-x".into())
        );
        assert_eq!(
            parse(&strings(&["-n"]), &SPEC).unwrap_err(),
            Refused::MissingValue("-n".into())
        );
    }
}
