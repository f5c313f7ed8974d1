//! The dashboard's pages: one module per page, sharing the layout and the small pieces every
//! page uses (a time, a status badge, a form that posts an action with the CSRF token).

pub(crate) mod assets;
pub(crate) mod auth;
pub(crate) mod events;
pub(crate) mod modules;
pub(crate) mod queues;
pub(crate) mod run;
pub(crate) mod runs;
pub(crate) mod settings;

use axum::http::StatusCode;
use axum::response::Response;
use maud::{DOCTYPE, Markup, html};
use serde::Serialize;
use stepwise_core::clock::Millis;
use stepwise_engine::EngineError;

use crate::session::Session;

/// A page: the head, the navigation for a signed-in tenant, and `body`.
pub(crate) fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    live_layout(title, session, None, body)
}

/// [`layout`] for a page the script redraws whenever the stream at `live` says something
/// changed.
pub(crate) fn live_layout(
    title: &str,
    session: Option<&Session>,
    live: Option<&str>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Stepwise" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/runs" { "Stepwise" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            a href="/ui/runs" { "Runs" }
                            a href="/ui/queues" { "Queues" }
                            a href="/ui/modules" { "Modules" }
                            a href="/ui/events" { "Events" }
                            a href="/ui/schedules" { "Schedules" }
                            a href="/ui/egress" { "Egress" }
                        }
                        span.tenant { "tenant " strong { (s.tenant) } }
                        form.inline method="post" action="/ui/sign-out" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" data-live=[live] { (body) }
            }
        }
    }
}

/// A listing page's status: `400` when its filters were refused (the page says why).
pub(crate) fn listing_status(refused: &Option<String>) -> StatusCode {
    if refused.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

/// A form that posts `action` with the session's CSRF token; with `confirm`, the browser
/// asks first (the script reads `data-confirm`).
pub(crate) fn action(
    session: &Session,
    action: &str,
    label: &str,
    confirm: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" { (label) }
        }
    }
}

/// A time as RFC 3339 (UTC).
pub(crate) fn time(at: Millis) -> Markup {
    html! { time datetime=(stepwise_core::time_fmt::rfc3339(at)) { (stepwise_core::time_fmt::rfc3339(at)) } }
}

/// The serde name of a unit enum value (`completed`, `retryable`, `warn`).
pub(crate) fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A status badge.
pub(crate) fn badge(status: &str) -> Markup {
    html! { span class={ "badge " (status) } { (status) } }
}

/// A JSON value, pretty-printed as text.
pub(crate) fn json(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre.json { (text) } }
}

/// The page for an engine error: not found, refused, or failed.
pub(crate) fn error(session: Option<&Session>, e: &EngineError) -> Response {
    let status = match e {
        EngineError::UnknownRun(_)
        | EngineError::UnknownModule(_)
        | EngineError::UnknownSchedule(_) => StatusCode::NOT_FOUND,
        EngineError::NotFailed { .. }
        | EngineError::NotCancellable { .. }
        | EngineError::InvalidName { .. }
        | EngineError::Policy(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "dashboard request failed");
    }
    let title = if status == StatusCode::NOT_FOUND {
        "Not found"
    } else {
        "Refused"
    };
    crate::page(
        status,
        layout(
            title,
            session,
            html! {
                h1 { (title) }
                p.error { (e.to_string()) }
                p { a href="/ui/runs" { "Back to the runs" } }
            },
        ),
    )
}

/// The page for a form post refused before anything was done.
pub(crate) fn forbidden(session: Option<&Session>, why: &str) -> Response {
    crate::page(
        StatusCode::FORBIDDEN,
        layout(
            "Refused",
            session,
            html! { h1 { "Refused" } p.error { (why) } },
        ),
    )
}

/// The fields every action form posts.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

/// An action post: refused as [`refusal`] says, else `call` (an engine future, so nothing
/// of it runs before the checks pass) and a redirect to `to` of its result, or the error
/// page.
pub(crate) async fn act<T>(
    signed: &crate::Signed,
    headers: &axum::http::HeaderMap,
    form: &ActionForm,
    call: impl std::future::Future<Output = Result<T, EngineError>>,
    to: impl FnOnce(T) -> String,
) -> Response {
    if let Some(refused) = refusal(signed, headers, form) {
        return refused;
    }
    match call.await {
        Ok(done) => {
            axum::response::IntoResponse::into_response(axum::response::Redirect::to(&to(done)))
        }
        Err(e) => error(Some(&signed.session), &e),
    }
}

/// Why an action post is refused, if it is: it came from another site, or without the
/// session's CSRF token.
pub(crate) fn refusal(
    signed: &crate::Signed,
    headers: &axum::http::HeaderMap,
    form: &ActionForm,
) -> Option<Response> {
    if !crate::same_origin(headers) {
        return Some(forbidden(
            Some(&signed.session),
            "this form was posted from another site",
        ));
    }
    if !crate::session::same(&form.csrf, &signed.session.csrf) {
        return Some(forbidden(
            Some(&signed.session),
            "the form's CSRF token is missing or stale: reload the page and try again",
        ));
    }
    None
}
