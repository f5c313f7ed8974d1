//! The events page: the tenant's events newest first, filtered by name (and correlation key),
//! paged, each with its payload and the waiting runs it resumed.

use axum::extract::{Query, State};
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

/// Longest name or correlation key a filter takes (the engine's own limit for both).
const MAX_FILTER: usize = 256;

/// The page's filters, or why they are refused (as the API refuses them).
fn parse(filters: &Filters) -> Result<(EventFilter, Option<u64>), String> {
    for (field, value) in [("name", &filters.name), ("correlation key", &filters.key)] {
        if value.len() > MAX_FILTER {
            return Err(format!("the {field} is longer than {MAX_FILTER} bytes"));
        }
    }
    if filters.name.is_empty() && !filters.key.is_empty() {
        return Err("a correlation key filters the events of one name: give the name too".into());
    }
    let before = match filters.before.as_str() {
        "" => None,
        b => Some(
            b.parse::<u64>()
                .map_err(|_| format!("before '{b}' must be an event's number"))?,
        ),
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok((
        EventFilter {
            name: some(&filters.name),
            correlation_key: some(&filters.key),
        },
        before,
    ))
}

pub(crate) async fn list(
    State(state): State<UiState>,
    signed: Signed,
    Query(filters): Query<Filters>,
) -> Response {
    let session = &signed.session;
    let (filter, before, invalid) = match parse(&filters) {
        Ok((filter, before)) => (filter, before, None),
        Err(why) => (EventFilter::default(), None, Some(why)),
    };
    let mut events = if invalid.is_some() {
        Vec::new()
    } else {
        match state
            .engine
            .list_events(&session.tenant, &filter, before, PAGE + 1)
            .await
        {
            Ok(e) => e,
            Err(e) => return super::error(Some(session), &e),
        }
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
        @if let Some(why) = &invalid { p.error role="alert" { (why) } }
        @if events.is_empty() && invalid.is_none() { p.empty { "No events match." } } @else if !events.is_empty() {
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
    let status = super::listing_status(&invalid);
    page(status, super::layout("Events", Some(session), body))
}

#[cfg(test)]
mod tests {
    use super::{Filters, parse};

    fn filters(name: &str, key: &str, before: &str) -> Filters {
        Filters {
            name: name.into(),
            key: key.into(),
            before: before.into(),
        }
    }

    #[test]
    fn bad_filters_are_refused_with_why() {
        let (f, before) = parse(&filters("a", "k", "7")).unwrap();
        assert_eq!(
            (f.name.as_deref(), f.correlation_key.as_deref()),
            (Some("a"), Some("k"))
        );
        assert_eq!(before, Some(7));
        assert!(
            parse(&filters("", "k", ""))
                .unwrap_err()
                .contains("give the name")
        );
        assert!(
            parse(&filters("a", "", "x"))
                .unwrap_err()
                .contains("before 'x'")
        );
        let long = "n".repeat(257);
        assert!(
            parse(&filters(&long, "", ""))
                .unwrap_err()
                .contains("name is longer")
        );
        let (f, before) = parse(&filters("", "", "")).unwrap();
        assert_eq!((f.name, f.correlation_key, before), (None, None, None));
    }
}
