//! A queue's throughput over the last hour, drawn as a small SVG bar chart on the server: one
//! bar per minute, completed runs below and failed or cancelled ones stacked above in the
//! failure colour, each with a `<title>` (shown on hover) giving the minute and its counts.

use maud::{Markup, html};
use stepwise_core::time_fmt;
use stepwise_engine::{LastHour, MINUTES};

/// The drawing's size in its own units (it scales with the page).
const WIDTH: f64 = 240.0;
const HEIGHT: f64 = 36.0;
const BAR: f64 = WIDTH / MINUTES as f64;

/// The chart of `hour`, with a caption for screen readers and the hour's totals as text.
pub(crate) fn throughput(queue: &str, hour: &LastHour) -> Markup {
    let (completed, failed) = hour.totals();
    let busiest = hour
        .minutes
        .iter()
        .map(|m| u64::from(m.completed) + u64::from(m.failed))
        .max()
        .unwrap_or(0);
    let peak = busiest.max(1) as f64;
    let label = format!(
        "{queue}: {completed} completed and {failed} failed in the last hour, busiest minute {busiest}"
    );
    html! {
        figure.throughput {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(label) preserveAspectRatio="none" {
                line.base x1="0" y1=(HEIGHT - 0.5) x2=(WIDTH) y2=(HEIGHT - 0.5) {}
                @for (i, m) in hour.minutes.iter().enumerate() {
                    @let total = u64::from(m.completed) + u64::from(m.failed);
                    @if total > 0 {
                        @let x = i as f64 * BAR;
                        @let at = hour.first_minute + i as u64 * 60_000;
                        @let ok_h = f64::from(m.completed) / peak * (HEIGHT - 2.0);
                        @let bad_h = f64::from(m.failed) / peak * (HEIGHT - 2.0);
                        g.minute {
                            title { (time_fmt::rfc3339(at)[..16]) "Z: " (m.completed) " completed, " (m.failed) " failed" }
                            @if m.completed > 0 {
                                rect.ok x=(fmt(x + 0.5)) y=(fmt(HEIGHT - 1.0 - ok_h)) width=(fmt(BAR - 1.0)) height=(fmt(ok_h.max(1.0))) {}
                            }
                            @if m.failed > 0 {
                                rect.failed x=(fmt(x + 0.5)) y=(fmt(HEIGHT - 1.0 - ok_h - bad_h)) width=(fmt(BAR - 1.0)) height=(fmt(bad_h.max(1.0))) {}
                            }
                        }
                    }
                }
            }
            figcaption { (completed) " completed · " (failed) " failed · last hour" }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use stepwise_engine::{LastHour, MINUTES, Minute};

    #[test]
    fn draws_one_bar_group_per_busy_minute_and_escapes_the_queue() {
        let mut minutes = [Minute::default(); MINUTES];
        minutes[0] = Minute {
            completed: 4,
            failed: 0,
        };
        minutes[59] = Minute {
            completed: 1,
            failed: 3,
        };
        let hour = LastHour {
            first_minute: 0,
            minutes,
        };
        let svg = super::throughput("<q>", &hour).into_string();
        assert_eq!(svg.matches("<g class=\"minute\">").count(), 2);
        assert_eq!(svg.matches("<rect class=\"ok\"").count(), 2);
        assert_eq!(svg.matches("<rect class=\"failed\"").count(), 1);
        assert!(
            svg.contains("1970-01-01T00:59Z: 1 completed, 3 failed"),
            "{svg}"
        );
        assert!(svg.contains("5 completed · 3 failed"), "{svg}");
        assert!(svg.contains("&lt;q&gt;") && !svg.contains("<q>"), "{svg}");
        // The busiest minute fills the height.
        assert!(svg.contains("y=\"1.0\""), "{svg}");
    }

    #[test]
    fn an_idle_hour_draws_only_the_base_line() {
        let hour = LastHour {
            first_minute: 0,
            minutes: [Minute::default(); MINUTES],
        };
        let svg = super::throughput("q", &hour).into_string();
        assert!(!svg.contains("<rect"), "{svg}");
        assert!(svg.contains("0 completed · 0 failed"), "{svg}");
        assert!(svg.contains("busiest minute 0"), "{svg}");
    }
}
