//! The runs page: newest first, filtered by queue, job, status and creation time, paged,
//! with the tenant's counts per status.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use stepwise_core::clock::Millis;
use stepwise_core::model::RunStatus;
use stepwise_engine::RunFilter;

use super::{badge, time};
use crate::{Signed, UiState, page};

/// Runs per page.
const PAGE: usize = 50;

const STATUSES: [RunStatus; 7] = [
    RunStatus::Queued,
    RunStatus::Retrying,
    RunStatus::Sleeping,
    RunStatus::Waiting,
    RunStatus::Completed,
    RunStatus::Failed,
    RunStatus::Cancelled,
];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    queue: String,
    #[serde(default)]
    job: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    after: String,
    /// Created at or after this time (UTC): what a `datetime-local` input sends, or RFC 3339.
    #[serde(default)]
    from: String,
    /// Created before this time (UTC).
    #[serde(default)]
    to: String,
}

/// A time filter's value as milliseconds since the epoch: empty is none; RFC 3339 is taken as
/// written; a `datetime-local` value (`2026-12-07T10:30`, seconds optional) is read as UTC,
/// the zone every time on the dashboard is shown in. The error names the field.
fn time_filter(field: &str, value: &str) -> Result<Option<Millis>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let local = value.len() <= 19 && !value.ends_with(['Z', 'z']);
    let text = match (local, value.len()) {
        (true, 16) => format!("{value}:00Z"),
        (true, _) => format!("{value}Z"),
        (false, _) => value.to_owned(),
    };
    stepwise_core::time_fmt::parse_rfc3339(&text)
        .map(Some)
        .map_err(|why| {
            format!("{field} '{value}' is not a time like 2026-12-07T10:30 (UTC): {why}")
        })
}

/// The `datetime-local` form of `at` (UTC, to the minute), for the presets.
fn local_minute(at: Millis) -> String {
    stepwise_core::time_fmt::rfc3339(at)[..16].to_owned()
}

/// The `datetime-local` form of `at` (UTC, to the second), for redisplay.
fn local_time(at: Millis) -> String {
    stepwise_core::time_fmt::rfc3339(at)[..19].to_owned()
}

/// Longest queue or job name a filter takes (the names' own limit).
const MAX_NAME: usize = 128;

/// The filters the page's query asks for, or why they are refused.
fn parse(filters: &Filters) -> Result<RunFilter, String> {
    let status = match filters.status.as_str() {
        "" => None,
        s => Some(
            s.parse::<RunStatus>()
                .map_err(|_| format!("status '{s}' is not a run status"))?,
        ),
    };
    let name = |field: &str, value: &str| -> Result<Option<String>, String> {
        if value.len() > MAX_NAME {
            return Err(format!("the {field} is longer than {MAX_NAME} bytes"));
        }
        Ok((!value.is_empty()).then(|| value.to_owned()))
    };
    Ok(RunFilter {
        queue: name("queue", &filters.queue)?,
        job: name("job", &filters.job)?,
        status,
        created_from: time_filter("from", &filters.from)?,
        created_before: time_filter("to", &filters.to)?,
        newest_first: true,
        ..RunFilter::default()
    })
}

/// `tenant`'s runs by status, from the store's counters (no run is read).
async fn counts(state: &UiState, tenant: &str) -> BTreeMap<RunStatus, u64> {
    state
        .engine
        .store()
        .tenant_census(tenant)
        .await
        .map(|c| c.by_status)
        .unwrap_or_default()
}

pub(crate) async fn list(
    State(state): State<UiState>,
    signed: Signed,
    Query(filters): Query<Filters>,
) -> Response {
    let session = &signed.session;
    let (filter, invalid) = match parse(&filters) {
        Ok(filter) => (filter, None),
        Err(why) => (RunFilter::default(), Some(why)),
    };
    let status = filter.status;
    // What the time fields show again: the parsed time in the form the browser's
    // datetime-local field takes (an RFC 3339 value with a zone would show empty).
    let shown_from = filter
        .created_from
        .map_or_else(|| filters.from.clone(), local_time);
    let shown_to = filter
        .created_before
        .map_or_else(|| filters.to.clone(), local_time);
    let non_empty = |s: &str| (!s.is_empty() && s.len() <= 128).then(|| s.to_owned());
    let after = non_empty(&filters.after);
    let page_of_runs = if invalid.is_some() {
        stepwise_engine::RunPage::default()
    } else {
        match state
            .engine
            .list_runs(&session.tenant, &filter, after.as_deref(), PAGE)
            .await
        {
            Ok(p) => p,
            Err(e) => return super::error(Some(session), &e),
        }
    };
    let counts = counts(&state, &session.tenant).await;
    let query = format!(
        "queue={}&job={}&status={}&from={}&to={}",
        encode(&filters.queue),
        encode(&filters.job),
        encode(&filters.status),
        encode(&filters.from),
        encode(&filters.to)
    );
    let next = page_of_runs
        .next
        .as_ref()
        .map(|next| format!("/ui/runs?{query}&after={next}"));
    let now = state.engine.now();
    let presets = [
        ("Last hour", 3_600_000u64),
        ("Last 24 h", 86_400_000),
        ("Last 7 days", 7 * 86_400_000),
    ]
    .map(|(label, span)| {
        (
            label,
            format!(
                "/ui/runs?queue={}&job={}&status={}&from={}",
                encode(&filters.queue),
                encode(&filters.job),
                encode(&filters.status),
                encode(&local_minute(now.saturating_sub(span)))
            ),
        )
    });
    let body = html! {
        h1 { "Runs" }
        ul.counts aria-label="Runs by status" {
            @for s in STATUSES {
                li {
                    a href={ "/ui/runs?status=" (s.as_str()) } {
                        (badge(s.as_str())) " " span.count { (counts.get(&s).copied().unwrap_or(0)) }
                    }
                }
            }
        }
        form.filters method="get" action="/ui/runs" {
            label { "Queue " input name="queue" value=(filters.queue) size="12"; }
            label { "Job " input name="job" value=(filters.job) size="12"; }
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for s in STATUSES {
                        option value=(s.as_str()) selected[status == Some(s)] { (s.as_str()) }
                    }
                }
            }
            label { "Created from (UTC) "
                input name="from" type="datetime-local" step="1" value=(shown_from);
            }
            label { "to (UTC) "
                input name="to" type="datetime-local" step="1" value=(shown_to);
            }
            button type="submit" { "Filter" }
        }
        p.presets {
            @for (label, href) in &presets { a href=(href) { (label) } " " }
            a href="/ui/runs" { "Clear filters" }
        }
        @if let Some(why) = &invalid { p.error role="alert" { (why) } }
        @if page_of_runs.runs.is_empty() && invalid.is_none() {
            p.empty {
                @if page_of_runs.next.is_some() { "No runs match among the 10,000 runs read for this page; older runs may." }
                @else { "No runs match." }
            }
        } @else {
            div.scroll {
                table.runs {
                    thead { tr { th { "Run" } th { "Job" } th { "Queue" } th { "Status" } th { "Attempts" } th { "Created" } th { "Updated" } } }
                    tbody {
                        @for r in &page_of_runs.runs {
                            tr {
                                td { a.mono href={ "/ui/runs/" (r.id) } { (r.id) } }
                                td { (r.job) }
                                td { (r.queue) }
                                td { (badge(r.status.as_str())) }
                                td.num { (r.attempts) }
                                td { (time(r.created_at)) }
                                td { (time(r.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p { a.next href=(next) { "Older runs →" } }
        }
    };
    let live = crate::live::counts_fingerprint(&state.engine, &session.tenant)
        .await
        .map(|since| format!("/ui/live?since={since}"));
    let status = super::listing_status(&invalid);
    page(
        status,
        super::live_layout("Runs", Some(session), live.as_deref(), body),
    )
}

/// Percent-encodes a query value.
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Filters, RunStatus, local_minute, local_time, parse, time_filter};

    #[test]
    fn time_filters_read_browser_and_rfc3339_times_as_utc() {
        assert_eq!(time_filter("from", ""), Ok(None));
        assert_eq!(time_filter("from", "1970-01-01T00:01"), Ok(Some(60_000)));
        assert_eq!(time_filter("from", "1970-01-01T00:01:02"), Ok(Some(62_000)));
        assert_eq!(
            time_filter("to", "1970-01-01T01:01:00+01:00"),
            Ok(Some(60_000))
        );
        let bad = time_filter("to", "tomorrow").unwrap_err();
        assert!(bad.starts_with("to 'tomorrow'"), "{bad}");
        assert_eq!(local_minute(62_000), "1970-01-01T00:01");
        assert_eq!(local_time(62_000), "1970-01-01T00:01:02");
    }

    #[test]
    fn bad_filters_are_refused_with_why() {
        let filters = |status: &str, queue: &str, from: &str| Filters {
            status: status.into(),
            queue: queue.into(),
            from: from.into(),
            ..Filters::default()
        };
        let f = parse(&filters("failed", "q", "1970-01-01T00:01")).unwrap();
        assert_eq!(f.status, Some(RunStatus::Failed));
        assert_eq!(f.queue.as_deref(), Some("q"));
        assert_eq!(f.created_from, Some(60_000));
        assert!(
            parse(&filters("lost", "", ""))
                .unwrap_err()
                .contains("status 'lost'")
        );
        let long = "q".repeat(129);
        assert!(
            parse(&filters("", &long, ""))
                .unwrap_err()
                .contains("queue is longer")
        );
        assert!(
            parse(&filters("", "", "noon"))
                .unwrap_err()
                .contains("from 'noon'")
        );
    }
}
