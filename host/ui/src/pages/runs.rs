//! The runs page: newest first, filtered by queue, job and status, paged, with the tenant's
//! counts per status.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
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
}

/// `tenant`'s runs by status, from the store's counters (no run is read).
async fn counts(state: &UiState, tenant: &str) -> BTreeMap<RunStatus, u64> {
    let store = state.engine.store();
    let mut by_status = BTreeMap::new();
    let Ok(census) = store.census().await else {
        return by_status;
    };
    for (t, queue) in census.runs.keys() {
        if t != tenant {
            continue;
        }
        if let Ok(q) = store.queue_census(tenant, queue).await {
            for (status, n) in q.by_status {
                *by_status.entry(status).or_insert(0) += n;
            }
        }
    }
    by_status
}

pub(crate) async fn list(
    State(state): State<UiState>,
    signed: Signed,
    Query(filters): Query<Filters>,
) -> Response {
    let session = &signed.session;
    let status = match filters.status.as_str() {
        "" => None,
        s => s.parse::<RunStatus>().ok(),
    };
    let non_empty = |s: &str| (!s.is_empty() && s.len() <= 128).then(|| s.to_owned());
    let filter = RunFilter {
        queue: non_empty(&filters.queue),
        job: non_empty(&filters.job),
        status,
        newest_first: true,
        ..RunFilter::default()
    };
    let after = non_empty(&filters.after);
    let page_of_runs = match state
        .engine
        .list_runs(&session.tenant, &filter, after.as_deref(), PAGE)
        .await
    {
        Ok(p) => p,
        Err(e) => return super::error(Some(session), &e),
    };
    let counts = counts(&state, &session.tenant).await;
    let next = page_of_runs.next.map(|next| {
        format!(
            "/ui/runs?queue={}&job={}&status={}&after={next}",
            encode(&filters.queue),
            encode(&filters.job),
            encode(&filters.status)
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
            button type="submit" { "Filter" }
        }
        @if page_of_runs.runs.is_empty() {
            p.empty { "No runs match." }
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
    page(
        StatusCode::OK,
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
