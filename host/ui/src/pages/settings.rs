//! The tenant's settings as the dashboard shows them: egress rules and secret names with
//! their bindings (never a value), and schedules with their next fires, paused and resumed
//! with a confirmed POST.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use stepwise_engine::SchedulePatch;

use super::{ActionForm, act, action, layout, time};
use crate::{Signed, UiState, page};

pub(crate) async fn egress(State(state): State<UiState>, signed: Signed) -> Response {
    let session = &signed.session;
    let egress = match state.engine.egress_settings(&session.tenant).await {
        Ok(e) => e,
        Err(e) => return super::error(Some(session), &e),
    };
    let secrets = match state.engine.list_secrets(&session.tenant).await {
        Ok(s) => s,
        Err(e) => return super::error(Some(session), &e),
    };
    let body = html! {
        h1 { "Egress and secrets" }
        h2 { "Egress rules" }
        @if egress.rules.is_empty() {
            p.empty { "No rules: every outbound request is refused." }
        } @else {
            div.scroll { table.rules {
                thead { tr { th { "Pattern" } th { "Methods" } } }
                tbody { @for r in &egress.rules {
                    tr { td.mono { (r.pattern) } td { @if r.methods.is_empty() { "any" } @else { (r.methods.join(", ")) } } }
                } }
            } }
        }
        h2 { "Secrets" }
        p { "Names and bindings only: a value is never shown again once set." }
        @if secrets.is_empty() { p.empty { "No secrets." } } @else {
            div.scroll { table.secrets {
                thead { tr { th { "Name" } th { "Hosts" } th { "Readable by the handler" } th { "Updated" } } }
                tbody { @for s in &secrets {
                    tr {
                        td.mono { (s.name) }
                        td { (s.hosts.iter().map(|h| h.pattern.as_str()).collect::<Vec<_>>().join(", ")) }
                        td { @if s.readable { "yes" } @else { "no" } }
                        td { (time(s.updated_at)) }
                    }
                } }
            } }
        }
    };
    page(
        StatusCode::OK,
        layout("Egress and secrets", Some(session), body),
    )
}

pub(crate) async fn schedules(State(state): State<UiState>, signed: Signed) -> Response {
    let session = &signed.session;
    let mut schedules = match state.engine.schedules(&session.tenant).await {
        Ok(s) => s,
        Err(e) => return super::error(Some(session), &e),
    };
    schedules.sort_by(|a, b| a.name.cmp(&b.name));
    let body = html! {
        h1 { "Schedules" }
        @if schedules.is_empty() { p.empty { "No schedules." } } @else {
            div.scroll { table.schedules {
                thead { tr { th { "Name" } th { "Cron" } th { "Zone" } th { "Job" } th { "Queue" } th { "Next fires" } th { "Fired" } th { "Skipped" } th {} } }
                tbody { @for s in &schedules {
                    @let base = format!("/ui/schedules/{}", super::runs::encode(&s.name));
                    tr {
                        td.mono { (s.name) }
                        td.mono { (s.spec.cron) }
                        td { (s.spec.timezone) }
                        td { (s.spec.job) }
                        td { (s.spec.queue) }
                        td {
                            @if s.spec.paused { "paused" } @else {
                                @for at in state.engine.upcoming_fires(s, 3) { (time(at)) br; }
                            }
                        }
                        td.num { (s.fired) }
                        td.num { (s.skipped) }
                        td {
                            @if s.spec.paused {
                                (action(session, &format!("{base}/resume"), "Resume", None))
                            } @else {
                                (action(session, &format!("{base}/pause"), "Pause", Some("Pause this schedule?")))
                            }
                        }
                    }
                } }
            } }
        }
    };
    page(StatusCode::OK, layout("Schedules", Some(session), body))
}

/// Pauses (`true`) or resumes schedule `name`, by a checked post.
async fn set_paused(
    state: UiState,
    signed: Signed,
    name: String,
    headers: HeaderMap,
    form: ActionForm,
    paused: bool,
) -> Response {
    let patch = SchedulePatch {
        paused: Some(paused),
        ..SchedulePatch::default()
    };
    let call = state
        .engine
        .update_schedule(&signed.session.tenant, &name, patch);
    act(&signed, &headers, &form, call, |_| {
        "/ui/schedules".to_owned()
    })
    .await
}

pub(crate) async fn pause(
    State(state): State<UiState>,
    signed: Signed,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    set_paused(state, signed, name, headers, form, true).await
}

pub(crate) async fn resume(
    State(state): State<UiState>,
    signed: Signed,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    set_paused(state, signed, name, headers, form, false).await
}
