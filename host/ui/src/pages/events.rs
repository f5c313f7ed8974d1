//! The events page: the tenant's events newest first, filtered by name (and correlation key),
//! paged, each with its payload and the waiting runs it resumed.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use stepwise_engine::EventFilter;

use super::{json, time};
use crate::pages::runs::encode;
use crate::{Signed, UiState, page};

/// Events per page.
const PAGE: usize = 50;

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    name: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    before: String,
}

pub(crate) async fn list(
    State(state): State<UiState>,
    signed: Signed,
    Query(filters): Query<Filters>,
) -> Response {
    let session = &signed.session;
    let non_empty = |s: &str| (!s.is_empty() && s.len() <= 256).then(|| s.to_owned());
    let name = non_empty(&filters.name);
    // A correlation key narrows one name's events (as in the API); alone it is ignored.
    let filter = EventFilter {
        correlation_key: name.as_ref().and_then(|_| non_empty(&filters.key)),
        name,
    };
    let before = filters.before.parse::<u64>().ok();
    let mut events = match state
        .engine
        .list_events(&session.tenant, &filter, before, PAGE + 1)
        .await
    {
        Ok(e) => e,
        Err(e) => return super::error(Some(session), &e),
    };
    let more = events.len() > PAGE;
    events.truncate(PAGE);
    let next = more.then(|| {
        events.last().map(|e| {
            format!(
                "/ui/events?name={}&key={}&before={}",
                encode(&filters.name),
                encode(&filters.key),
                e.event.seq
            )
        })
    });
    let body = html! {
        h1 { "Events" }
        form.filters method="get" action="/ui/events" {
            label { "Name " input name="name" value=(filters.name) size="16"; }
            label { "Correlation key " input name="key" value=(filters.key) size="16"; }
            button type="submit" { "Filter" }
        }
        @if events.is_empty() { p.empty { "No events match." } } @else {
            div.scroll { table.events {
                thead { tr { th { "#" } th { "Name" } th { "Correlation key" } th { "Id" } th { "Received" } th { "Payload" } th { "Resumed" } } }
                tbody { @for e in &events {
                    tr {
                        td.num { (e.event.seq) }
                        td { (e.event.name) }
                        td { @if let Some(k) = &e.event.correlation_key { (k) } @else { "—" } }
                        td.mono { (e.event.id) }
                        td { (time(e.event.received_at)) }
                        td { (json(&e.event.payload)) }
                        td {
                            @if e.resumed.is_empty() { span.empty { "none yet" } }
                            ul.plain { @for (run, step) in &e.resumed {
                                li { a.mono href={ "/ui/runs/" (run) } { (run) } " · " (step) }
                            } }
                        }
                    }
                } }
            } }
        }
        @if let Some(Some(next)) = &next { p { a.next href=(next) { "Older events →" } } }
    };
    page(StatusCode::OK, super::layout("Events", Some(session), body))
}
