//! Named points where a test may kill the run: debug builds only (rustup's
//! `tests/suite/cli_crash.rs` idea).
//!
//! The host reaches a point before and after each program it runs
//! (`run PROGRAM ARG ARG: before|after`) and at each phase of an atomic
//! write (`write FILE: torn|unrenamed|renamed`). A point's name starts
//! with the step that reached it (the `step` span's `id`; `-` outside a
//! step) and ends with its occurrence among the points of that name, so
//! that one name means the same moment in every run of the same install:
//! `mysql: run systemctl restart mariadb: after #1`.
//!
//! With `STACKINSTALL_TEST_KILL_TRACE=FILE` every point reached is appended
//! to FILE, one name a line; with `STACKINSTALL_TEST_KILL_AT=NAME` the
//! process sends itself SIGKILL at the point NAME. The crash tests list the
//! points from an uninterrupted run's trace, then kill a run at each. With
//! `STACKINSTALL_TEST_PANIC_AT=NAME` the thread that reaches NAME panics
//! (a bug, as the engine must survive one in a step).
//! Release builds read neither variable and reach no point.

/// Reaches the point `point` (its name without step and occurrence).
pub fn reached(point: impl FnOnce() -> String) {
    reached_then(point, || {});
}

/// Reaches the point `point`; `before_kill` runs first when the run is to
/// die here (an atomic write syncs what it wrote).
#[cfg(debug_assertions)]
pub fn reached_then(point: impl FnOnce() -> String, before_kill: impl FnOnce()) {
    use std::io::Write;
    let Some(settings) = settings() else {
        return;
    };
    let point = format!("{}: {}", current_step(), point());
    let name = {
        let mut seen = settings
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = seen.entry(point.clone()).or_insert(0);
        *count += 1;
        let name = format!("{point} #{count}");
        if let Some(trace) = &settings.trace {
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(trace)
                .and_then(|mut file| file.write_all(format!("{name}\n").as_bytes()));
        }
        name
    };
    if settings.panic_at.as_deref() == Some(name.as_str()) {
        panic!("STACKINSTALL_TEST_PANIC_AT={name}");
    }
    if settings.kill_at.as_deref() == Some(name.as_str()) {
        before_kill();
        // SAFETY: raising a signal in this process has no preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

#[cfg(not(debug_assertions))]
pub fn reached_then(_point: impl FnOnce() -> String, _before_kill: impl FnOnce()) {}

/// What the test asked for, read once; `None` when it asked for nothing.
#[cfg(debug_assertions)]
struct Settings {
    kill_at: Option<String>,
    panic_at: Option<String>,
    trace: Option<std::path::PathBuf>,
    seen: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

#[cfg(debug_assertions)]
fn settings() -> Option<&'static Settings> {
    static SETTINGS: std::sync::OnceLock<Option<Settings>> = std::sync::OnceLock::new();
    SETTINGS
        .get_or_init(|| {
            let kill_at = std::env::var("STACKINSTALL_TEST_KILL_AT").ok();
            let panic_at = std::env::var("STACKINSTALL_TEST_PANIC_AT").ok();
            let trace = std::env::var_os("STACKINSTALL_TEST_KILL_TRACE").map(Into::into);
            (kill_at.is_some() || panic_at.is_some() || trace.is_some()).then(|| Settings {
                kill_at,
                panic_at,
                trace,
                seen: Default::default(),
            })
        })
        .as_ref()
}

/// The point name of running `program` with `args`: the program and its
/// first two arguments, each absolute path by its file name (where the root
/// is differs between runs).
pub fn command_point(program: &str, args: &[String], moment: &str) -> String {
    let shown = |word: &str| {
        let word = match word.starts_with('/') {
            true => word
                .rsplit('/')
                .find(|part| !part.is_empty())
                .unwrap_or(word),
            false => word,
        };
        word.split_whitespace()
            .collect::<Vec<_>>()
            .join("_")
            .chars()
            .take(40)
            .collect::<String>()
    };
    let words: Vec<String> = std::iter::once(program)
        .chain(args.iter().map(String::as_str).take(2))
        .map(shown)
        .collect();
    format!("run {}: {moment}", words.join(" "))
}

/// The step whose span is current, `-` outside a step.
#[cfg(debug_assertions)]
fn current_step() -> String {
    use tracing_subscriber::registry::LookupSpan;
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let id = dispatch.current_span().id()?.clone();
        let span = registry.span(&id)?;
        span.scope().find_map(|span| {
            span.extensions()
                .get::<StepName>()
                .map(|name| name.0.clone())
        })
    })
    .unwrap_or_else(|| "-".into())
}

/// The `id` of a `step` span, kept with the span.
#[cfg(debug_assertions)]
struct StepName(String);

/// Keeps each `step` span's `id`, so that a point knows its step.
#[cfg(debug_assertions)]
pub struct StepNames;

#[cfg(debug_assertions)]
impl StepNames {
    /// The layer, seeing `step` spans only.
    pub fn layer<S>() -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer;
        StepNames.with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.is_span() && metadata.name() == "step"
        }))
    }
}

#[cfg(debug_assertions)]
impl<S> tracing_subscriber::Layer<S> for StepNames
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attributes: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Id(Option<String>);
        impl tracing::field::Visit for Id {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "id" {
                    self.0 = Some(value.to_string());
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "id" {
                    self.0 = Some(format!("{value:?}").trim_matches('"').to_string());
                }
            }
        }
        let mut found = Id(None);
        attributes.record(&mut found);
        if let (Some(name), Some(span)) = (found.0, context.span(id)) {
            span.extensions_mut().insert(StepName(name));
        }
    }
}

/// Test hook (debug builds only): with `STACKINSTALL_TEST_PAUSE_AT=NAME`,
/// the first time this process reaches the point `name` (a directory
/// named NAME opened and checked, before anything is written in it; or a
/// named point like `credentials-loaded`) it stops itself with SIGSTOP,
/// so that a test can act at that moment (swap the directory as another
/// user) and then let it go on with SIGCONT. Release builds read no such
/// variable.
#[cfg(debug_assertions)]
pub fn pause_point(name: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static PAUSED: AtomicBool = AtomicBool::new(false);
    if std::env::var("STACKINSTALL_TEST_PAUSE_AT").is_ok_and(|point| point == name)
        && !PAUSED.swap(true, Ordering::SeqCst)
    {
        // SAFETY: raising a signal in this process has no preconditions.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
}

/// Release builds have no pause points.
#[cfg(not(debug_assertions))]
pub fn pause_point(_name: &str) {}

#[cfg(test)]
mod tests {
    use super::command_point;

    #[test]
    fn a_command_point_names_the_program_and_two_arguments_paths_by_file_name() {
        let args = ["upgrade", "--install", "stackbill"].map(String::from);
        assert_eq!(
            command_point("helm", &args, "before"),
            "run helm upgrade --install: before"
        );
        let args = ["/tmp/.tmpAbc/root/var/lib/stackinstall/downloads/k3s-install.sh".into()];
        assert_eq!(
            command_point("sh", &args, "after"),
            "run sh k3s-install.sh: after"
        );
        let args = ["get", "gateway/stackbill-gateway"].map(String::from);
        assert_eq!(
            command_point("kubectl", &args, "before"),
            "run kubectl get gateway/stackbill-gateway: before"
        );
    }
}
