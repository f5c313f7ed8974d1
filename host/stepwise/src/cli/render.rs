//! Human-readable rendering of a run: a header, its steps and timeline as aligned tables, and
//! the tail of its log.

use std::fmt::Write;
use stepwise_core::flow::{RunWait, StepWait};

use crate::api::RunView;
use crate::model::{ErrorInfo, StepKind};
use crate::time_fmt;

/// Log lines shown in a summary; `--json` has them all.
const LOG_TAIL: usize = 20;

/// Longest cell before it is cut, so one huge output cannot wreck the table.
const MAX_CELL: usize = 60;

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_CELL {
        text.to_owned()
    } else {
        let head: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{head}…")
    }
}

/// Renders rows as a table with a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = String>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        let _ = writeln!(out, "  {}", parts.join("  ").trim_end());
    };
    line(&mut header.iter().map(|h| h.to_string()));
    for row in rows {
        line(&mut row.iter().cloned());
    }
    out
}

/// A failure in one line: its kind, the step it happened in and the message.
pub fn describe_error(e: &ErrorInfo) -> String {
    match &e.step {
        Some(step) => format!("{} in step '{step}': {}", e.kind.as_str(), e.message),
        None => format!("{}: {}", e.kind.as_str(), e.message),
    }
}

/// The readable summary of a run.
pub fn run(view: &RunView) -> String {
    let r = &view.run;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}  job {}  status {}  attempts {}{}",
        r.id,
        r.job,
        r.status.as_str(),
        r.attempts,
        if view.dead_lettered {
            "  (dead-lettered)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "payload: {}", cut(&r.payload.to_string()));
    if let Some(output) = &r.output {
        let _ = writeln!(out, "output:  {output}");
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "error:   {}", describe_error(e));
    }
    if let Some(p) = &r.parent {
        let _ = writeln!(out, "parent:  {} (step '{}')", p.run, p.step);
    }
    match &r.wait {
        Some(RunWait::Event {
            name,
            correlation_key,
            until,
            ..
        }) => {
            let key = correlation_key
                .as_deref()
                .map_or(String::new(), |k| format!(" with key '{k}'"));
            let _ = writeln!(
                out,
                "waiting: for event '{name}'{key} until {}",
                time_fmt::rfc3339(*until)
            );
        }
        Some(RunWait::Children { runs, .. }) => {
            let _ = writeln!(out, "waiting: for {} child run(s)", runs.len());
        }
        None => {}
    }
    if let Some(key) = &r.key {
        let kind = if key.debounce.is_some() {
            "debounce key"
        } else {
            "key"
        };
        let _ = writeln!(
            out,
            "{kind}: '{}' (on duplicate: {}; replaced {} times)",
            key.key,
            key.on_duplicate.as_str(),
            key.replaced
        );
    }
    if let Some(held) = &r.held {
        let _ = writeln!(
            out,
            "held:    {} (until {})",
            held.detail,
            time_fmt::rfc3339(held.until)
        );
    }
    if !view.children.is_empty() {
        let _ = writeln!(out, "children: {}", view.children.join(", "));
    }
    if !view.steps.is_empty() {
        let rows: Vec<Vec<String>> = view
            .steps
            .iter()
            .map(|s| {
                let result = match (&s.output, &s.error, s.kind) {
                    (Some(o), _, _) => cut(&o.to_string()),
                    (None, Some(e), _) => cut(&format!("{}: {}", e.kind.as_str(), e.message)),
                    (None, None, StepKind::Sleep | StepKind::Event) => s
                        .wake_at
                        .map(|w| format!("until {}", time_fmt::rfc3339(w)))
                        .unwrap_or_default(),
                    (None, None, StepKind::Child) => match &s.wait {
                        Some(StepWait::Children { runs, .. }) => {
                            format!("{} child run(s)", runs.len())
                        }
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                vec![
                    s.name.clone(),
                    format!("{:?}", s.kind).to_lowercase(),
                    format!("{:?}", s.status).to_lowercase(),
                    s.attempts.to_string(),
                    result,
                ]
            })
            .collect();
        let _ = writeln!(out, "\nsteps:");
        out.push_str(&table(
            &["STEP", "KIND", "STATUS", "ATTEMPTS", "OUTPUT / ERROR"],
            &rows,
        ));
    }
    let rows: Vec<Vec<String>> = view
        .timeline
        .iter()
        .map(|t| {
            vec![
                time_fmt::rfc3339(t.at),
                t.attempt.map(|a| a.to_string()).unwrap_or_default(),
                serde_json::to_value(t.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                t.step.clone().unwrap_or_default(),
                cut(&t.detail),
            ]
        })
        .collect();
    let _ = writeln!(out, "\ntimeline:");
    out.push_str(&table(&["AT", "ATTEMPT", "EVENT", "STEP", "DETAIL"], &rows));
    if !view.logs.is_empty() {
        let skip = view.logs.len().saturating_sub(LOG_TAIL);
        let _ = writeln!(
            out,
            "\nlogs{}:",
            if skip > 0 {
                format!(" (last {LOG_TAIL} of {})", view.logs.len())
            } else {
                String::new()
            }
        );
        for l in &view.logs[skip..] {
            let _ = writeln!(
                out,
                "  {} #{} {:?}/{:?} {}",
                time_fmt::rfc3339(l.at),
                l.attempt,
                l.source,
                l.level,
                l.message
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_with_their_step() {
        let e: ErrorInfo = serde_json::from_str(
            r#"{"kind": "timeout", "message": "ran past 30s", "step": "charge"}"#,
        )
        .unwrap();
        assert_eq!(describe_error(&e), "timeout in step 'charge': ran past 30s");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["y".into(), "z".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "  A          LONGER");
        assert_eq!(lines[1], "  wide cell  x");
        assert_eq!(lines[2], "  y          z");
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "x".repeat(200);
        assert_eq!(cut(&long).chars().count(), MAX_CELL);
    }
}
