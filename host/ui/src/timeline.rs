//! A run's visual timeline, drawn as SVG on the server: one lane for the attempts and one
//! per step, bars for execution, marks for failures (with their kind), and the gaps between
//! them for backoff, sleeps and waits. Each bar and mark has a `<title>`, which browsers
//! show on hover: what it is and its times.

use maud::{Markup, html};
use stepwise_core::clock::Millis;
use stepwise_core::model::{EventKind, RunView, StepKind, StepStatus, TimelineEntry};
use stepwise_core::time_fmt;

/// The drawing's width in its own units (it scales to the page).
const WIDTH: f64 = 1000.0;
/// Room for the lane labels.
const LABELS: f64 = 170.0;
const LANE: f64 = 24.0;
/// Lanes drawn at most; a run with more steps says how many were left out.
const MAX_LANES: usize = 60;

/// A bar or a mark on a lane.
struct Shape {
    from: Millis,
    to: Option<Millis>,
    class: &'static str,
    title: String,
}

struct Lane {
    label: String,
    shapes: Vec<Shape>,
}

/// Whether an entry ends attempt `n` (a cancel ends whatever attempt is open).
fn ends_attempt(e: &TimelineEntry, n: u32) -> Option<&'static str> {
    if e.kind == EventKind::Cancelled {
        return Some("cancelled");
    }
    if e.attempt != Some(n) {
        return None;
    }
    match e.kind {
        EventKind::Completed => Some("ok"),
        EventKind::AttemptFailed | EventKind::Failed => Some("failed"),
        EventKind::Sleeping | EventKind::Waiting => Some("suspended"),
        EventKind::HostFault => Some("failed"),
        EventKind::Cancelled => Some("cancelled"),
        _ => None,
    }
}

fn span(from: Millis, to: Millis) -> String {
    format!(
        "{} → {} ({})",
        time_fmt::rfc3339(from),
        time_fmt::rfc3339(to),
        time_fmt::duration(to.saturating_sub(from))
    )
}

fn lanes(view: &RunView, now: Millis) -> Vec<Lane> {
    let timeline = &view.timeline;
    let mut attempts = Lane {
        label: "attempts".to_owned(),
        shapes: Vec::new(),
    };
    for (i, e) in timeline.iter().enumerate() {
        if e.kind != EventKind::AttemptStarted {
            continue;
        }
        let n = e.attempt.unwrap_or(0);
        let end = timeline[i + 1..].iter().find_map(|later| {
            if later.kind == EventKind::AttemptStarted {
                return Some((later.at, "failed"));
            }
            ends_attempt(later, n).map(|class| (later.at, class))
        });
        // Open only while the run is: a final run's last attempt ended with it.
        let (to, class) = end.unwrap_or(match view.run.finished_at {
            Some(at) => (at, "failed"),
            None => (now, "running"),
        });
        attempts.shapes.push(Shape {
            from: e.at,
            to: Some(to.max(e.at)),
            class,
            title: format!("attempt {n} ({class}): {}", span(e.at, to.max(e.at))),
        });
    }
    for e in timeline {
        if e.kind == EventKind::RetryScheduled {
            attempts.shapes.push(Shape {
                from: e.at,
                to: None,
                class: "retry",
                title: format!(
                    "retry scheduled at {}: {}",
                    time_fmt::rfc3339(e.at),
                    e.detail
                ),
            });
        }
    }
    let mut out = vec![attempts];
    for step in view.steps.iter().take(MAX_LANES.saturating_sub(1)) {
        let mut lane = Lane {
            label: step.name.clone(),
            shapes: Vec::new(),
        };
        let last_failure = timeline
            .iter()
            .filter(|e| e.kind == EventKind::StepFailed && e.step.as_deref() == Some(&step.name))
            .map(|e| e.at)
            .max();
        // A step still open runs to now; one the run left unfinished, to its last failure.
        let open_end = match (view.run.status.is_final(), step.status) {
            (true, _) | (_, StepStatus::Failed) => last_failure
                .or(view.run.finished_at)
                .unwrap_or(step.started_at),
            _ => now,
        };
        let end = step
            .completed_at
            .or(step
                .wake_at
                .filter(|_| step.status != StepStatus::Completed))
            .unwrap_or(open_end)
            .max(step.started_at);
        // Sleeps and waits are time passing, not work: drawn as suspended, done or not.
        let class = match (step.kind, step.status) {
            (StepKind::Sleep | StepKind::Event | StepKind::Child, StepStatus::Failed) => "failed",
            (StepKind::Sleep | StepKind::Event | StepKind::Child, _) => "suspended",
            (_, StepStatus::Sleeping | StepStatus::Waiting) => "suspended",
            (_, StepStatus::Completed) => "ok",
            (_, StepStatus::Failed) => "failed",
            _ => "running",
        };
        lane.shapes.push(Shape {
            from: step.started_at,
            to: Some(end),
            class,
            title: format!(
                "step {} ({}, {}, {} attempt(s)): {}",
                step.name,
                crate::pages::name(&step.kind),
                crate::pages::name(&step.status),
                step.attempts,
                span(step.started_at, end)
            ),
        });
        for e in timeline {
            if e.kind == EventKind::StepFailed && e.step.as_deref() == Some(step.name.as_str()) {
                lane.shapes.push(Shape {
                    from: e.at,
                    to: None,
                    class: "failure",
                    title: format!("failed at {}: {}", time_fmt::rfc3339(e.at), e.detail),
                });
            }
        }
        out.push(lane);
    }
    out
}

/// The timeline of `view` as of `now`.
pub(crate) fn svg(view: &RunView, now: Millis) -> Markup {
    let lanes = lanes(view, now);
    let total_steps = view
        .more
        .as_ref()
        .and_then(|m| m.steps)
        .map_or(view.steps.len(), |n| n as usize);
    let hidden = total_steps.saturating_sub(lanes.len().saturating_sub(1));
    let start = view.run.created_at;
    // The axis ends where the run is now (or ended): a sleep's future wake-up is in its
    // title, not a reason to squeeze everything that happened into a corner.
    let horizon = view.run.finished_at.unwrap_or(now);
    let end = lanes
        .iter()
        .flat_map(|l| l.shapes.iter())
        .map(|s| s.to.unwrap_or(s.from).min(horizon.max(s.from)))
        .chain(view.run.finished_at)
        .chain(view.timeline.iter().map(|e| e.at))
        .max()
        .unwrap_or(start)
        .max(start.saturating_add(1));
    let clip = |t: Millis| t.min(end);
    let scale = (WIDTH - LABELS - 10.0) / (end - start) as f64;
    let x = |t: Millis| LABELS + (t.saturating_sub(start)) as f64 * scale;
    let height = LANE * lanes.len() as f64 + 24.0;
    html! {
        figure.timeline {
            svg viewBox={ "0 0 " (WIDTH) " " (height) } role="img"
                aria-label={ "Timeline of run " (view.run.id) } xmlns="http://www.w3.org/2000/svg" {
                @for (i, lane) in lanes.iter().enumerate() {
                    @let y = i as f64 * LANE;
                    text.label x="4" y=(y + 16.0) { (stepwise_core::text::prefix(&lane.label, 24)) }
                    line.lane x1=(LABELS) x2=(WIDTH - 10.0) y1=(y + LANE / 2.0) y2=(y + LANE / 2.0) {}
                    @for s in &lane.shapes {
                        @match s.to {
                            Some(to) => {
                                rect class={ "bar " (s.class) } x=(x(s.from))
                                    y=(y + 5.0) height=(LANE - 10.0)
                                    width=((x(clip(to)) - x(s.from)).max(2.0)) {
                                    title { (s.title) }
                                }
                            }
                            None => {
                                rect class={ "mark " (s.class) } x=(x(s.from) - 1.5) y=(y + 2.0)
                                    width="3" height=(LANE - 4.0) {
                                    title { (s.title) }
                                }
                            }
                        }
                    }
                }
                text.axis x=(LABELS) y=(height - 6.0) { (time_fmt::rfc3339(start)) }
                text.axis x=(WIDTH - 10.0) y=(height - 6.0) text-anchor="end" {
                    (time_fmt::duration(end - start)) " later"
                }
            }
            @if hidden > 0 {
                figcaption { (hidden) " more steps are not drawn." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(extra: serde_json::Value) -> RunView {
        let mut v = serde_json::json!({
            "id": "run_1", "job": "j", "queue": "q", "module": "m", "payload": {},
            "policy": stepwise_core::policy::Policy::default(), "status": "cancelled",
            "attempts": 1, "created_at": 0, "updated_at": 100, "finished_at": 100,
            "dead_lettered": false, "steps": [], "timeline": [], "logs": []
        });
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in extra {
                v.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_cancel_ends_the_attempt_it_interrupted() {
        let v = view(serde_json::json!({"timeline": [
            {"at": 10, "kind": "attempt_started", "attempt": 1},
            {"at": 60, "kind": "cancelled", "detail": "by the dashboard"}
        ]}));
        let lanes = lanes(&v, 1_000);
        let bar = &lanes[0].shapes[0];
        assert_eq!((bar.from, bar.to, bar.class), (10, Some(60), "cancelled"));
    }

    #[test]
    fn a_finished_sleep_is_drawn_as_time_passing_and_a_final_run_has_no_open_attempt() {
        let v = view(serde_json::json!({
            "status": "failed",
            "steps": [{"name": "nap", "ordinal": 0, "output_bytes": 0, "kind": "sleep",
                       "status": "completed", "attempts": 1, "started_at": 5,
                       "completed_at": 50}],
            "timeline": [{"at": 1, "kind": "attempt_started", "attempt": 1}]
        }));
        let lanes = lanes(&v, 1_000);
        assert_eq!(lanes[0].shapes[0].class, "failed");
        assert_eq!(
            lanes[0].shapes[0].to,
            Some(100),
            "ends with the run, not now"
        );
        assert_eq!(lanes[1].shapes[0].class, "suspended");
        let svg = svg(&v, 1_000).into_string();
        assert!(
            svg.contains("<title>step nap (sleep, completed, 1 attempt(s))"),
            "{svg}"
        );
    }

    #[test]
    fn text_from_a_handler_is_escaped_in_the_drawing() {
        let v = view(serde_json::json!({
            "steps": [{"name": "<script>x</script>", "ordinal": 0, "output_bytes": 0,
                       "kind": "step", "status": "failed", "attempts": 1, "started_at": 5}],
            "timeline": [{"at": 7, "kind": "step_failed", "step": "<script>x</script>",
                          "detail": "<img src=x onerror=y>"}]
        }));
        let svg = svg(&v, 1_000).into_string();
        assert!(!svg.contains("<script>") && !svg.contains("<img"), "{svg}");
        assert!(svg.contains("&lt;img src=x onerror=y&gt;"));
    }
}
