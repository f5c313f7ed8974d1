//! One run: its state, payload, output or error, parent and children, steps, visual
//! timeline, timeline entries and logs, with retry (a failed run) and cancel (a run not
//! ended).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use stepwise_core::model::RunStatus;

use super::{ActionForm, act, action, badge, json, name, time};
use crate::{Signed, UiState, page};

/// Steps, timeline entries and log lines shown on the page (the API pages the rest).
const SHOWN: usize = 1_000;

pub(crate) async fn detail(
    State(state): State<UiState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let session = &signed.session;
    // Another tenant's run is "not found", exactly as through the API.
    if let Err(e) = state.engine.tenant_run(&session.tenant, &id).await {
        return super::error(Some(session), &e);
    }
    let view = match state.engine.view_page(&id, SHOWN).await {
        Ok(v) => v,
        Err(e) => return super::error(Some(session), &e),
    };
    let now = state.engine.now();
    let executing = state.engine.executing(&id).is_some();
    let r = &view.run;
    let shown_status = if executing {
        "running"
    } else {
        r.status.as_str()
    };
    let hold = state.engine.rate_hold(&id).filter(|_| !r.status.is_final());
    let body = html! {
        div.title {
            h1.mono { (r.id) }
            (badge(shown_status))
        }
        div.actions {
            @if r.status == RunStatus::Failed {
                (action(session, &format!("/ui/runs/{}/retry", r.id), "Retry", Some("Retry this run?")))
            }
            @if !r.status.is_final() {
                (action(session, &format!("/ui/runs/{}/cancel", r.id), "Cancel", Some("Cancel this run?")))
            }
        }
        dl.facts {
            dt { "Job" } dd { (r.job) }
            dt { "Queue" } dd { a href={ "/ui/runs?queue=" (super::runs::encode(&r.queue)) } { (r.queue) } }
            dt { "Attempts" } dd { (r.attempts) " of " (r.policy.max_attempts) " per step" }
            dt { "Created" } dd { (time(r.created_at)) }
            dt { "Updated" } dd { (time(r.updated_at)) }
            @if let Some(at) = r.ready_at { dt { "Next attempt" } dd { (time(at)) } }
            @if let Some(at) = r.finished_at { dt { "Finished" } dd { (time(at)) } }
            @if let Some(p) = &r.parent {
                dt { "Parent" } dd { a.mono href={ "/ui/runs/" (p.run) } { (p.run) } " (step " (p.step) ")" }
            }
            @if let Some(k) = &r.key {
                dt { "Key" } dd { (k.key) " (" (k.on_duplicate.as_str()) ", replaced " (k.replaced) " times)" }
            }
            @if let Some(h) = &hold {
                dt { "Held" } dd { (h.describe(&r.queue)) " until " (time(h.until)) }
            }
            @if view.dead_lettered { dt { "Dead letter" } dd { "listed in its queue's dead letters" } }
        }
        section {
            h2 { "Timeline" }
            (crate::timeline::svg(&view, now))
        }
        @if let Some(e) = &r.error {
            section.error-box {
                h2 { "Error" }
                p { strong { (name(&e.kind)) } @if let Some(step) = &e.step { " in step " code { (step) } } }
                pre { (e.message) }
            }
        }
        section { h2 { "Payload" } (json(&r.payload)) }
        @if let Some(output) = &r.output { section { h2 { "Output" } (json(output)) } }
        @if !view.children.is_empty() {
            section {
                h2 { "Children" }
                ul { @for c in &view.children { li { a.mono href={ "/ui/runs/" (c) } { (c) } } } }
            }
        }
        section {
            h2 { "Steps" }
            @if view.steps.is_empty() { p.empty { "No step yet." } } @else {
                div.scroll { table.steps {
                    thead { tr { th { "#" } th { "Step" } th { "Kind" } th { "Status" } th { "Attempts" } th { "Started" } th { "Completed" } th { "Error" } } }
                    tbody { @for s in &view.steps {
                        tr {
                            td.num { (s.ordinal) }
                            td.mono { (s.name) }
                            td { (name(&s.kind)) }
                            td { (badge(&name(&s.status))) }
                            td.num { (s.attempts) }
                            td { (time(s.started_at)) }
                            td { @if let Some(at) = s.completed_at { (time(at)) } }
                            td { @if let Some(e) = &s.error { (name(&e.kind)) ": " (e.message) } }
                        }
                    } }
                } }
            }
        }
        section {
            h2 { "Events" }
            div.scroll { table.events {
                thead { tr { th { "At" } th { "Kind" } th { "Attempt" } th { "Step" } th { "Detail" } } }
                tbody { @for e in &view.timeline {
                    tr {
                        td { (time(e.at)) }
                        td { (name(&e.kind)) }
                        td.num { @if let Some(a) = e.attempt { (a) } }
                        td.mono { @if let Some(s) = &e.step { (s) } }
                        td { (e.detail) }
                    }
                } }
            } }
        }
        section {
            h2 { "Logs" }
            @if view.logs.is_empty() { p.empty { "No log lines." } } @else {
                div.scroll { table.logs {
                    thead { tr { th { "At" } th { "Attempt" } th { "Source" } th { "Level" } th { "Message" } } }
                    tbody { @for l in &view.logs {
                        tr class={ "level-" (name(&l.level)) } {
                            td { (time(l.at)) }
                            td.num { (l.attempt) }
                            td { (name(&l.source)) }
                            td { (name(&l.level)) }
                            td.message { (l.message) }
                        }
                    } }
                } }
            }
        }
    };
    // A run that has ended changes no more: its page stops following it. The stream starts
    // after the entries the page shows, so opening it redraws the page once, not per entry.
    let shown = view
        .more
        .as_ref()
        .and_then(|m| m.timeline)
        .unwrap_or(u32::try_from(view.timeline.len()).unwrap_or(u32::MAX));
    let live = (!r.status.is_final()).then(|| format!("/ui/runs/{id}/live?from={shown}"));
    page(
        StatusCode::OK,
        super::live_layout(&format!("Run {id}"), Some(session), live.as_deref(), body),
    )
}

pub(crate) async fn retry(
    State(state): State<UiState>,
    signed: Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let call = state.engine.retry_for(&signed.session.tenant, &id);
    act(&signed, &headers, &form, call, |run| {
        format!("/ui/runs/{}", run.id)
    })
    .await
}

pub(crate) async fn cancel(
    State(state): State<UiState>,
    signed: Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let call = state
        .engine
        .cancel_with(&signed.session.tenant, &id, "the dashboard", None, true);
    act(&signed, &headers, &form, call, |run| {
        format!("/ui/runs/{}", run.id)
    })
    .await
}
