//! Credentials: loads `/etc/stackinstall/credentials.toml`, or generates the
//! passwords that are missing (importing those of the bash installer's
//! `~/stackbill-credentials.txt`), and writes the file atomically, mode
//! 0600, before any step uses a password.
//!
//! Done when the file holds a password for every service and reads back
//! intact. A damaged or unreadable file stops the install: it is never
//! replaced. Uninstall removes it only with `--delete-db`, and only when no
//! user it keeps logs in with one of its passwords (the state records which
//! passwords were generated and which given); it never removes the bash
//! installer's file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::context::{Context, Origin};
use crate::credentials::CredentialsFile;
use crate::host;
use crate::secret::Secret;
use crate::state::{Fact, Fingerprint, Object, Server};

/// The credentials step.
pub struct CredentialsStep;

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    preflight: Some(check_existing_passwords),
    needs: &[StepId::Preflight],
    removal: crate::context::Removal::Databases,
    ..StepInfo::new(
        StepId::Credentials,
        "Load or generate the service passwords",
    )
};

impl Step for CredentialsStep {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        for (service, username) in context.config.service_usernames() {
            fingerprint.add(&service, username);
        }
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let file = context.credentials_file();
        let existing = file.load()?;
        let wanted = context.config.service_usernames();
        let missing: Vec<&String> = wanted
            .keys()
            .filter(|service| {
                existing
                    .as_ref()
                    .is_none_or(|c| c.account(service).is_none())
            })
            .collect();
        if missing.is_empty() {
            return Ok(given_before(context, wanted.keys())
                .into_iter()
                .map(Action::record)
                .collect());
        }
        if existing.is_some() {
            refuse_lost_passwords(context, &missing)?;
        }
        let legacy = file.load_legacy()?;
        let imported = context.shown(file.legacy_path());
        let passwords = (missing.iter())
            .map(|service| match legacy.contains_key(*service) {
                true => ((*service).clone(), Some(imported.clone())),
                false => ((*service).clone(), None),
            })
            .collect();
        let present = wanted.keys().filter(|service| !missing.contains(service));
        let write = WritePasswords {
            shown: context.shown(file.path()),
            given: given_before(context, present),
            passwords,
        };
        Ok(Action::change(write).into_iter().collect())
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        let file = context.credentials_file();
        let loaded = file.load()?.ok_or_else(|| {
            StepError::failed(
                format!(
                    "the credentials file `{}` is missing",
                    context.shown(file.path()).display()
                ),
                "run `stackinstall install` again to write it",
            )
        })?;
        if let Some(service) = context
            .config
            .service_usernames()
            .keys()
            .find(|s| loaded.account(s).is_none())
        {
            return Err(StepError::failed(
                format!("the credentials file has no password for `{service}`"),
                "run `stackinstall install` again to add it",
            ));
        }
        if host::fs::mode_of(file.path()) != Some(0o600) {
            return Err(StepError::failed(
                format!(
                    "the credentials file `{}` is not mode 0600",
                    context.shown(file.path()).display()
                ),
                format!("run `chmod 600 {}`", context.shown(file.path()).display()),
            ));
        }
        Ok(())
    }

    /// Removes the credentials file, unless a database user the uninstall
    /// keeps still logs in with one of its passwords: one its step found
    /// there, one an older state does not attribute, or one of a server
    /// the install never set up (`--skip-db`) whose password was given
    /// rather than generated. The bash installer's file is never removed:
    /// the passwords in it are that installer's, not ours to take back.
    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let file = context.credentials_file();
        let mut actions = Vec::new();
        if file.legacy_path().exists() {
            actions.push(Action::check(format!(
                "`{}`: the bash installer's passwords, never removed by stackinstall",
                context.shown(file.legacy_path()).display()
            )));
        }
        if !file.path().exists() {
            return Ok(actions);
        }
        let users_kept = users_kept(context);
        if !users_kept.is_empty() {
            actions.push(Action::check(format!(
                "`{}`: it holds the passwords of kept users ({})",
                context.shown(file.path()).display(),
                users_kept.join(", ")
            )));
            return Ok(actions);
        }
        actions.extend(Action::change(RemoveWhenUnneeded {
            path: file.path().to_path_buf(),
            shown: context.shown(file.path()),
        }));
        Ok(actions)
    }
}

/// The facts of passwords about to be written: generated ones made by the
/// install, imported ones given.
fn origins(passwords: &[(String, Option<PathBuf>)]) -> Vec<Fact> {
    (passwords.iter())
        .filter_map(|(service, source)| {
            let server = StepId::parse(service).and_then(Server::of)?;
            let origin = match source {
                Some(_) => Origin::Found,
                None => Origin::Created,
            };
            Some(Fact::Origin(Object::Password(server), origin))
        })
        .collect()
}

/// The facts of `services`' passwords found in the credentials file on the
/// step's first run (given with `credentials set`); none once the step was
/// done (a file an older stackinstall wrote: not attributed).
fn given_before<'a>(context: &Context, services: impl Iterator<Item = &'a String>) -> Vec<Fact> {
    if context.was_done(StepId::Credentials) {
        return Vec::new();
    }
    (services.filter_map(|service| StepId::parse(service).and_then(Server::of)))
        .map(Object::Password)
        .filter(|object| context.origin(object).is_none())
        .map(|object| Fact::Origin(object, Origin::Found))
        .collect()
}

/// Writes the passwords that are missing, generated or imported from the
/// bash installer's file, and keeps them for the steps after it.
struct WritePasswords {
    /// The credentials file, as the operator knows it.
    shown: PathBuf,
    /// Each service that has no password yet, with the bash installer's
    /// file when its password comes from there.
    passwords: Vec<(String, Option<PathBuf>)>,
    /// The facts of the passwords in the file already, given before the
    /// first install (`credentials set`).
    given: Vec<Fact>,
}

impl Change for WritePasswords {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        let described: Vec<String> = (self.passwords.iter())
            .map(|(service, source)| match source {
                Some(legacy) => format!("{service} (imported from {})", legacy.display()),
                None => format!("{service} (generated)"),
            })
            .collect();
        vec![format!(
            "write {} (mode 0600) with passwords for {}",
            self.shown.display(),
            described.join(", ")
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let file = context.credentials_file().clone();
        let legacy: BTreeMap<String, Secret> = file.load_legacy()?;
        let wanted = context.config.service_usernames();
        let (credentials, added) = CredentialsFile::complete(file.load()?, &wanted, &legacy);
        // Who made each password is written down before the file, so that
        // a run killed in between still knows which ones were given.
        for fact in self.given.iter().chain(&origins(&self.passwords)) {
            context.record(fact)?;
        }
        if added {
            file.save(&credentials)?;
        }
        context.set_credentials(credentials);
        Ok(added)
    }
}

/// Removes a file of passwords once no step whose undo logs in with one of
/// them is left (one that failed keeps it, named).
struct RemoveWhenUnneeded {
    path: PathBuf,
    shown: PathBuf,
}

impl Change for RemoveWhenUnneeded {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        vec![format!("remove {}", self.shown.display())]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let waiting: Vec<StepId> = (StepId::ALL.into_iter())
            .filter(|id| id.info().undo_logs_in && context.state.steps.contains_key(id))
            .collect();
        if waiting.is_empty() {
            return Ok(host::fs::remove_file(&self.path)?);
        }
        Err(StepError::failed(
            format!(
                "kept: `{}`, since the removal of {} still needs its passwords",
                context.shown(context.credentials_file().path()).display(),
                waiting
                    .iter()
                    .map(|id| id.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "fix what the errors above say, then run the same uninstall again: the file goes once those steps are removed",
        ))
    }
}

/// With `--skip-db` the databases exist already, so every password must
/// come from the credentials file or the bash installer's: one made up now
/// would not be the one they use. Checked by preflight, before anything
/// changes.
fn check_existing_passwords(context: &Context) -> Result<Option<Action>, StepError> {
    if !context.config.install.skip_db {
        return Ok(None);
    }
    let file = context.credentials_file();
    let known = |service: &str| -> Result<bool, StepError> {
        let in_file = file.load()?.is_some_and(|c| c.account(service).is_some());
        Ok(in_file || file.load_legacy()?.contains_key(service))
    };
    let mut missing = Vec::new();
    for service in context.config.service_usernames().keys() {
        if !known(service)? {
            missing.push(service.clone());
        }
    }
    let Some(first) = missing.first() else {
        return Ok(Some(Action::check(
            "--skip-db: every service password is in the credentials file",
        )));
    };
    Err(StepError::input(
        format!(
            "--skip-db: the databases exist already, but there is no password for {} in `{}` (nor in the bash installer's `{}`): a new one would not be the one they use",
            missing
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
            context.shown(file.path()).display(),
            context.shown(file.legacy_path()).display(),
        ),
        format!(
            "put each existing password in with `stackinstall credentials set {first}` (it reads the password from standard input, or --from-file FILE with mode 0600), then run again; without --skip-db the install sets the databases up itself"
        ),
    ))
}

/// The services whose user an uninstall keeps: recorded as found, or, on
/// a step done by a stackinstall that recorded no origin, not recorded; or
/// whose step never ran here and whose password was not generated by the
/// install (`--skip-db` over databases set up by others).
fn users_kept(context: &Context) -> Vec<String> {
    let mut kept = Vec::new();
    for id in StepId::ALL {
        let Some(server) = Server::of(id).filter(|_| id.info().undo_logs_in) else {
            continue;
        };
        let facts = context.facts().server(server);
        let kept_user = match context.state.steps.contains_key(&id) {
            // Unattributed, or found there.
            true => facts.users.is_empty() || facts.users.values().any(|o| *o == Origin::Found),
            // Never set up here: a given password (or one an older state
            // does not attribute) is what a server set up by others uses.
            false => facts.password != Some(Origin::Created),
        };
        if kept_user {
            kept.push(id.name().to_string());
        }
    }
    kept
}

/// A file that lacks the password of a service whose step is done has lost
/// it (cut or edited): a new one would no longer be the one the server and
/// the application hold. Refused, unless `--redo` names that step, which
/// then sets the server to the new password.
fn refuse_lost_passwords(context: &Context, missing: &[&String]) -> Result<(), StepError> {
    let lost: Vec<&str> = missing
        .iter()
        .map(|service| service.as_str())
        .filter(|service| {
            StepId::parse(service)
                .is_some_and(|id| context.was_done(id) && !context.redo.contains(&id))
        })
        .collect();
    let Some(first) = lost.first() else {
        return Ok(());
    };
    Err(StepError::failed(
        format!(
            "the credentials file `{}` has no password for {}, whose step is done: it was lost from the file, and a new one would not be the one in use",
            context.shown(context.credentials_file().path()).display(),
            lost.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "put the entry back from a backup of the file; to give it a new password on purpose, run `stackinstall install --redo {first}`"
        ),
    ))
}
