//! What the operator sees while a run goes: one line per step with its
//! elapsed time (a live spinner on a terminal, plain lines otherwise), notes,
//! warnings, and downloads (bytes, rate and time left on a terminal; a line
//! at the start and one at the end otherwise). Progress goes to stderr;
//! results (plans, JSON) to stdout.

use std::cell::{Cell, RefCell};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::secret::redact;

/// How a step's line ends: the words after its label (README, "What a
/// run prints") and the mark before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It ran and changed the host.
    Done,
    /// It had been done before and changed the host again.
    Updated,
    /// It ran and found nothing to change.
    AlreadyInPlace,
    /// A step that runs every time found nothing to change.
    Ok,
    /// Its checkpoint was done and its result verified.
    AlreadyDone,
    /// An uninstall removed its work and its checkpoint.
    Removed,
    /// It failed.
    Failed,
    /// Ctrl-C or a signal stopped it.
    Interrupted,
}

impl Ending {
    /// The words the line ends with.
    pub fn words(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Updated => "updated",
            Self::AlreadyInPlace => "already in place",
            Self::Ok => "ok",
            Self::AlreadyDone => "already done",
            Self::Removed => "removed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    /// `✓` for work done or found done, `✗` for a failure or an interruption.
    fn mark(self) -> &'static str {
        match self {
            Self::Failed | Self::Interrupted => "✗",
            _ => "✓",
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spinners and colour on a terminal.
    Live,
    /// Plain lines: not a terminal, `NO_COLOR`, or `--output json`.
    Plain,
}

/// The operator's view of the run.
pub struct Ui {
    mode: Mode,
    json: bool,
    quiet: Cell<bool>,
    /// The live lines of every running step (one each, on a terminal).
    lines: MultiProgress,
    current: RefCell<Option<ProgressBar>>,
    /// The id of the step running in this view: plain lines carry it, so
    /// the output of steps running side by side can be told apart.
    step: RefCell<Option<String>>,
}

impl Ui {
    /// Picks live or plain output from the terminal and the environment.
    pub fn detect(json: bool) -> Self {
        let plain = json
            || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
            || !std::io::stderr().is_terminal();
        Self::new(if plain { Mode::Plain } else { Mode::Live }, json)
    }

    /// A view with the given mode; `json` keeps stdout for the JSON result.
    pub fn new(mode: Mode, json: bool) -> Self {
        Self {
            mode,
            json,
            quiet: Cell::new(false),
            lines: MultiProgress::new(),
            current: RefCell::new(None),
            step: RefCell::new(None),
        }
    }

    /// The view of a step running beside others: its own live line among
    /// the run's.
    pub fn fork(&self) -> Self {
        Self {
            mode: self.mode,
            json: self.json,
            quiet: Cell::new(self.quiet.get()),
            lines: self.lines.clone(),
            current: RefCell::new(None),
            step: RefCell::new(None),
        }
    }

    /// `text` under the running step's id in plain output (`      mysql:
    /// note: ...`), each of its lines; as it is on a terminal, where the
    /// step's live line stands for it, or outside a step.
    fn lane(&self, text: &str) -> String {
        let prefix = match (&*self.step.borrow(), self.mode) {
            (Some(id), Mode::Plain) => format!("      {id}: "),
            _ => "      ".to_string(),
        };
        let lines: Vec<String> = text
            .split('\n')
            .map(|line| format!("{prefix}{line}"))
            .collect();
        lines.join("\n")
    }

    /// Prints `line` on standard error above the live lines.
    fn show(&self, line: &str) {
        match self.mode {
            Mode::Live => self.lines.suspend(|| crate::errln!("{line}")),
            Mode::Plain => crate::errln!("{line}"),
        }
    }

    /// The table of a finished run: each step's result and time.
    pub fn table(&self, rows: &[(&str, &str, f64)]) {
        let mut text = String::from("\nstep         result            seconds");
        for (id, result, seconds) in rows {
            text.push_str(&format!("\n{id:<12} {result:<16} {seconds:>8.1}"));
        }
        self.show(&text);
    }

    /// Whether output is live (a terminal).
    pub fn is_live(&self) -> bool {
        self.mode == Mode::Live
    }

    /// Announces a step; the returned handle ends its line.
    pub fn start_step(&self, position: usize, total: usize, id: &str, title: &str) -> StepLine {
        let label = format!("[{position:>2}/{total}] {id:<12} {title}");
        if self.mode == Mode::Live {
            let bar = self.lines.add(ProgressBar::new_spinner());
            bar.set_style(step_style());
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            *self.current.borrow_mut() = Some(bar);
        } else {
            self.show(&format!("{label} ..."));
        }
        *self.step.borrow_mut() = Some(id.to_string());
        tracing::info!("step {id}: started");
        StepLine {
            label,
            id: id.to_string(),
            started: Instant::now(),
        }
    }

    /// One line for every step left out for the same `reason`.
    pub fn skipped(&self, reason: &str, ids: &[&str]) {
        let count = match ids.len() {
            1 => "1 step".to_string(),
            n => format!("{n} steps"),
        };
        self.end_line(&format!(
            "- skipped ({reason}): {} [{count}]",
            ids.join(", ")
        ));
        tracing::info!("skipped ({reason}): {}", ids.join(", "));
    }

    /// Updates the live status of the running step (e.g. `3/10 pods ready`).
    pub fn status(&self, text: &str) {
        let text = redact(text);
        tracing::info!("status: {text}");
        match &*self.current.borrow() {
            Some(bar) => bar.set_message(text),
            None => crate::errln!("{}", self.lane(&text)),
        }
    }

    /// Shows the download of `file`: the step's line becomes a byte count
    /// with rate and time left on a terminal; plain output gets a line as it
    /// starts and one when it ends.
    pub fn download(&self, file: &str) -> Download<'_> {
        tracing::info!("download {file}: started");
        match &*self.current.borrow() {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner:.cyan} downloading {msg}: {bytes} of {total_bytes} at {binary_bytes_per_sec}, {eta} left",
                    )
                    .expect("valid template"),
                );
                bar.set_message(file.to_string());
            }
            None => crate::errln!("{}", self.lane(&format!("downloading {file} ..."))),
        }
        Download {
            ui: self,
            file: file.to_string(),
            started: Instant::now(),
            bytes: Cell::new(0),
        }
    }

    /// A note for the operator.
    pub fn note(&self, text: &str) {
        self.print(&self.lane(&format!("note: {}", redact(text))));
        tracing::info!("note: {}", redact(text));
    }

    /// A warning for the operator.
    pub fn warn(&self, text: &str) {
        self.print(&self.lane(&format!("warning: {}", redact(text))));
        tracing::warn!("{}", redact(text));
    }

    /// A message for the operator: stdout, or stderr when stdout carries JSON.
    pub fn message(&self, text: &str) {
        let text = redact(text);
        tracing::info!("message: {text}");
        let print = || {
            if self.json {
                crate::errln!("{text}");
            } else {
                crate::outln!("{text}");
            }
        };
        match self.mode {
            Mode::Live => self.lines.suspend(print),
            Mode::Plain => print(),
        }
    }

    /// Silences notes and warnings (while checking inputs ahead of a run).
    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.set(quiet);
    }

    fn print(&self, line: &str) {
        if self.quiet.get() {
            return;
        }
        self.show(line);
    }

    fn end_line(&self, line: &str) {
        if let Some(bar) = self.current.borrow_mut().take() {
            bar.finish_and_clear();
            self.lines.remove(&bar);
        }
        self.step.borrow_mut().take();
        self.show(line);
    }
}

/// One download in progress (see [`Ui::download`]).
pub struct Download<'a> {
    ui: &'a Ui,
    file: String,
    started: Instant,
    bytes: Cell<u64>,
}

impl Download<'_> {
    /// `done` bytes so far, of `total` when the server said.
    pub fn update(&self, done: u64, total: Option<u64>) {
        self.bytes.set(done);
        if let Some(bar) = &*self.ui.current.borrow() {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(done);
        }
    }

    /// Ends the download: the step's line is a spinner again, and the size,
    /// time and rate are noted.
    pub fn finish(self) {
        let seconds = self.started.elapsed().as_secs_f64();
        let megabytes = self.bytes.get() as f64 / (1024.0 * 1024.0);
        let line = format!(
            "downloaded {}: {megabytes:.1} MiB in {seconds:.1}s ({:.1} MiB/s)",
            self.file,
            megabytes / seconds.max(0.001)
        );
        tracing::info!("{line}");
        if let Some(bar) = &*self.ui.current.borrow() {
            bar.set_style(step_style());
            bar.set_message(String::new());
        }
        self.ui.print(&self.ui.lane(&line));
    }
}

/// The live line of a running step.
fn step_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix} {wide_msg:.dim} {elapsed:>4}")
        .expect("valid template")
}

/// The line of one running step.
pub struct StepLine {
    label: String,
    id: String,
    started: Instant,
}

impl StepLine {
    /// Ends the line with how the step ended.
    pub fn finish(self, ui: &Ui, ending: Ending) -> Duration {
        let elapsed = self.started.elapsed();
        let (mark, outcome) = (ending.mark(), ending.words());
        ui.end_line(&format!(
            "{mark} {}: {outcome} ({:.1}s)",
            self.label,
            elapsed.as_secs_f64()
        ));
        tracing::info!(
            "step {}: {outcome} in {:.1}s",
            self.id,
            elapsed.as_secs_f64()
        );
        elapsed
    }
}

/// The lines of a step list (a plan, the question before an install): its
/// number, id, title and state, the titles in one column.
pub fn step_table<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a str, String)>,
    number_width: usize,
) -> String {
    let rows: Vec<_> = rows.into_iter().collect();
    let width = rows
        .iter()
        .map(|(_, title, _)| title.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (index, (id, title, state)) in rows.iter().enumerate() {
        let number = index + 1;
        text.push_str(&format!(
            "{number:>number_width$}. {id:<12} {title:<width$}  {state}\n"
        ));
    }
    text
}

/// The lines a plan shows under a step: each action's kind and detail.
pub fn action_lines<'a>(actions: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    (actions.into_iter())
        .map(|(kind, detail)| format!("      {kind:<10} {detail}\n"))
        .collect()
}

/// `at` as a date and how far it is from `now`, for a person:
/// `2021-01-01 00:00:00 UTC, 2164 days ago`, `2026-12-06 16:20:00 UTC, in
/// 11h40m` (never `OffsetDateTime`'s `2021-01-01 0:00:00.0 +00:00:00`).
pub fn moment(at: time::OffsetDateTime, now: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let shown = format!(
        "{} {:02}:{:02}:{:02} UTC",
        at.date(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let distance = (at - now).abs();
    let span = match distance.whole_days() {
        days if days >= 2 => format!("{days} days"),
        _ => format!(
            "{}h{:02}m",
            distance.whole_hours(),
            distance.whole_minutes() % 60
        ),
    };
    match at < now {
        true => format!("{shown}, {span} ago"),
        false => format!("{shown}, in {span}"),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    #[test]
    fn moments_read_as_dates() {
        let now = datetime!(2026-12-06 04:20:00 UTC);
        assert_eq!(
            super::moment(datetime!(2021-01-01 00:00:00 UTC), now),
            "2021-01-01 00:00:00 UTC, 2165 days ago"
        );
        assert_eq!(
            super::moment(datetime!(2026-12-06 16:00:00 UTC), now),
            "2026-12-06 16:00:00 UTC, in 11h40m"
        );
    }
}
