//! Reading what the binary printed: its `--output json` results and plans,
//! and, where only the screen says it (a run killed half way, the lines of
//! steps side by side), its step lines.

use std::collections::BTreeMap;

use serde_json::Value;

/// Prints a test's figures so that they show when it passes too (the test
/// harness captures `eprintln!`, not writes to the stderr handle).
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The stdout of an assertion as text.
pub fn stdout(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

/// The stderr of an assertion as text.
pub fn stderr(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

/// The stdout of an assertion as JSON.
pub fn json(assert: &assert_cmd::assert::Assert) -> Value {
    let text = stdout(assert);
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("not JSON ({error}):\n{text}\n{}", stderr(assert)))
}

/// Each step's result in an `install --output json` report: `id ->
/// changed | unchanged | already-done | skipped`.
pub fn outcomes(assert: &assert_cmd::assert::Assert) -> BTreeMap<String, String> {
    let report = json(assert);
    (report["steps"].as_array().unwrap().iter())
        .map(|step| {
            (
                step["id"].as_str().unwrap().to_string(),
                step["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The actions of the steps `ids` in a `--plan --output json` report, one
/// line each: step id, kind, detail.
pub fn plan_lines(plan: &Value, ids: &[&str]) -> Vec<String> {
    (plan["steps"].as_array().unwrap().iter())
        .filter(|step| ids.iter().any(|id| step["id"] == *id))
        .flat_map(|step| {
            let id = step["id"].as_str().unwrap().to_string();
            let actions = step["actions"].as_array().unwrap().clone();
            actions.into_iter().map(move |action| {
                format!(
                    "{:<9} {:<9} {}",
                    id,
                    action["kind"].as_str().unwrap(),
                    action["detail"].as_str().unwrap()
                )
            })
        })
        .collect()
}

/// The error and its hints, without the progress lines and the log path.
pub fn error_report(stderr: &str) -> String {
    let start = stderr
        .find("error:")
        .unwrap_or_else(|| panic!("no error in: {stderr}"));
    let lines: Vec<&str> = stderr[start..]
        .lines()
        .filter(|l| !l.starts_with("hint: the full log"))
        .collect();
    lines.join("\n")
}

/// A step's own line in plain output.
#[derive(Debug, Clone, PartialEq)]
pub enum StepLine {
    /// `[ 7/18] mysql  MySQL server, databases and user ...`
    Started(String),
    /// `✓ [ 7/18] mysql  ...: done (0.1s)`: the id, the result in the
    /// words of `--output json` (`changed` for `done` and `updated`,
    /// `unchanged` for `already in place` and `ok`, `already-done`,
    /// `failed` for `failed` and `interrupted`; `None` for other words),
    /// and the step's seconds.
    Finished {
        id: String,
        result: Option<&'static str>,
        seconds: Option<f64>,
    },
}

/// The step line `line` is, if it is one.
pub fn step_line(line: &str) -> Option<StepLine> {
    let (finished, rest) = match line
        .strip_prefix("✓ [")
        .or_else(|| line.strip_prefix("✗ ["))
    {
        Some(rest) => (true, rest),
        None => (false, line.strip_prefix('[')?),
    };
    let (_, rest) = rest.split_once("] ")?;
    let id = rest.split_whitespace().next()?.to_string();
    if !finished {
        return Some(StepLine::Started(id));
    }
    let (head, time) = line.rsplit_once(" (")?;
    let seconds = time.strip_suffix("s)").and_then(|s| s.parse().ok());
    let result = match head.rsplit_once(": ")?.1 {
        "done" | "updated" => Some("changed"),
        "already in place" | "ok" => Some("unchanged"),
        "already done" => Some("already-done"),
        "failed" | "interrupted" => Some("failed"),
        _ => None,
    };
    Some(StepLine::Finished {
        id,
        result,
        seconds,
    })
}

/// The steps plain output shows started, in order.
pub fn started_steps(output: &str) -> Vec<String> {
    (output.lines().filter_map(step_line))
        .filter_map(|line| match line {
            StepLine::Started(id) => Some(id),
            StepLine::Finished { .. } => None,
        })
        .collect()
}

/// Each finished step's result in plain output (see `StepLine`).
pub fn finished_steps(output: &str) -> BTreeMap<String, String> {
    (output.lines().filter_map(step_line))
        .filter_map(|line| match line {
            StepLine::Finished {
                id,
                result: Some(result),
                ..
            } => Some((id, result.to_string())),
            _ => None,
        })
        .collect()
}

/// Each finished step's seconds in plain output, slowest first.
pub fn step_times(output: &str) -> Vec<(f64, String)> {
    let mut times: Vec<(f64, String)> = (output.lines().filter_map(step_line))
        .filter_map(|line| match line {
            StepLine::Finished {
                id,
                seconds: Some(seconds),
                ..
            } => Some((seconds, id)),
            _ => None,
        })
        .collect();
    times.sort_by(|a, b| b.0.total_cmp(&a.0));
    times
}

/// The entries of a `.tar.gz` (a support bundle): name and text.
pub fn bundle_entries(path: &std::path::Path) -> Vec<(String, String)> {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = archive.entries().unwrap();
    entries
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (name, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect()
}
