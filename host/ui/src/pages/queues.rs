//! The queues page (depth, running, dead letters, limits, the last hour's throughput) and a
//! queue's dead letters, with retry one, retry all and purge.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::{ActionForm, act, action, layout, time};
use crate::{Signed, UiState, page};

pub(crate) async fn list(State(state): State<UiState>, signed: Signed) -> Response {
    let session = &signed.session;
    let tenant = &session.tenant;
    let queues = match state.engine.queue_counts(tenant, None).await {
        Ok(q) => q,
        Err(e) => return super::error(Some(session), &e),
    };
    let body = html! {
        h1 { "Queues" }
        @if queues.is_empty() { p.empty { "No queues yet." } } @else {
            div.scroll { table.queues {
                thead { tr { th { "Queue" } th { "Runs" } th { "Waiting or running" } th { "Running now" } th { "Dead letters" } th { "Concurrency" } th { "Rate limit" } th { "Throughput, last hour" } } }
                tbody { @for q in &queues {
                    tr {
                        td { a href={ "/ui/runs?queue=" (super::runs::encode(&q.queue)) } { (q.queue) } }
                        td.num { (q.runs) }
                        td.num { (q.depth) }
                        td.num { (q.running) }
                        td.num { a href={ "/ui/queues/" (super::runs::encode(&q.queue)) "/dead-letters" } { (q.dead_letters) } }
                        td { @match q.settings.concurrency { Some(n) => { (n) }, None => { "—" } } }
                        td { @match q.settings.rate_limit { Some(r) => { (r.describe()) }, None => { "—" } } }
                        td { (crate::chart::throughput(&q.queue, &state.engine.throughput(tenant, &q.queue))) }
                    }
                } }
            } }
            p.note { "Throughput counts the runs this server finished since it started." }
        }
    };
    let live = crate::live::counts_fingerprint(&state.engine, tenant)
        .await
        .map(|since| format!("/ui/live?since={since}"));
    page(
        StatusCode::OK,
        super::live_layout("Queues", Some(session), live.as_deref(), body),
    )
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Paging {
    #[serde(default)]
    after: String,
}

pub(crate) async fn dead_letters(
    State(state): State<UiState>,
    signed: Signed,
    Path(queue): Path<String>,
    Query(paging): Query<Paging>,
) -> Response {
    let session = &signed.session;
    let after = (!paging.after.is_empty()).then_some(paging.after.as_str());
    let runs = match state
        .engine
        .dead_letters(&session.tenant, &queue, after, 100)
        .await
    {
        Ok(p) => p,
        Err(e) => return super::error(Some(session), &e),
    };
    let base = format!("/ui/queues/{}/dead-letters", super::runs::encode(&queue));
    let body = html! {
        h1 { "Dead letters of " (queue) }
        @if runs.runs.is_empty() { p.empty { "No dead letters." } } @else {
            div.actions {
                (action(session, &format!("{base}/retry"), "Retry all", Some("Retry every dead-lettered run of this queue?")))
                (action(session, &format!("{base}/purge"), "Purge all", Some("Delete every dead-lettered run of this queue, with its history? This cannot be undone.")))
            }
            div.scroll { table.runs {
                thead { tr { th { "Run" } th { "Job" } th { "Error" } th { "Failed" } th {} } }
                tbody { @for r in &runs.runs {
                    tr {
                        td { a.mono href={ "/ui/runs/" (r.id) } { (r.id) } }
                        td { (r.job) }
                        td { @if let Some(e) = &r.error { (super::name(&e.kind)) ": " (e.message) } }
                        td { @if let Some(at) = r.finished_at { (time(at)) } }
                        td { (action(session, &format!("/ui/runs/{}/retry", r.id), "Retry", Some("Retry this run?"))) }
                    }
                } }
            } }
            @if let Some(next) = &runs.next { p { a.next href={ (base) "?after=" (next) } { "More →" } } }
        }
    };
    page(StatusCode::OK, layout("Dead letters", Some(session), body))
}

pub(crate) async fn retry_all(
    State(state): State<UiState>,
    signed: Signed,
    Path(queue): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let call = state
        .engine
        .retry_dead_letters(&signed.session.tenant, &queue);
    let to = |_| format!("/ui/runs?queue={}", super::runs::encode(&queue));
    act(&signed, &headers, &form, call, to).await
}

pub(crate) async fn purge(
    State(state): State<UiState>,
    signed: Signed,
    Path(queue): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let call = state
        .engine
        .purge_dead_letters(&signed.session.tenant, &queue);
    let to = |_| format!("/ui/queues/{}/dead-letters", super::runs::encode(&queue));
    act(&signed, &headers, &form, call, to).await
}
