//! # stepwise-ui
//!
//! The web dashboard `stepwise serve` serves at `/ui`: runs, a run's steps, logs and visual
//! timeline, queues with their dead letters and throughput, modules, events, schedules,
//! egress rules and secret names — for the signed-in tenant only,
//! through the same engine calls the API makes.
//!
//! **Why this stack.** Pages are rendered on the server with [`maud`], whose templates are
//! Rust checked at compile time and which escapes every interpolated value unless it is
//! marked as markup: a log line `<script>` from a handler can only ever be text. The few
//! things a browser must do itself (confirming a destructive form) are one small hand-written
//! script, served from the binary like the stylesheet, so there is no Node and no build step,
//! and the Content-Security-Policy can forbid inline script and every other origin.
//!
//! Every page is a GET; every action (retry, cancel, purge, sign-out) is a POST carrying the
//! session's CSRF token, refused without it, and refused when its `Origin` is another site.
//!
//! **Live pages.** A page whose `main` names a stream (`data-live`) is redrawn by the script
//! when the stream says something changed: the run page follows the API's run stream
//! (`/ui/runs/{id}/live`), the runs and queues pages a stream of the tenant's counters
//! (`/ui/live`). Both are served by the server crate beside the API's streams, authenticated
//! with this crate's sessions ([`UiState::tenant_of`]). The browser's `EventSource`
//! reconnects by itself after a drop, and the script redraws on each reconnect, so nothing
//! missed stays missed.

mod chart;
pub mod live;
mod pages;
pub mod session;
mod timeline;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use stepwise_engine::Engine;

pub use session::Sessions;

/// What the dashboard's handlers share.
#[derive(Clone)]
pub struct UiState {
    engine: Engine,
    sessions: Arc<Sessions>,
    /// The dashboard is served over HTTPS only: `Secure`, `__Host-` session cookies.
    https_only: bool,
}

impl UiState {
    /// The tenant of the live session whose cookie `headers` carry, if any (for the live
    /// streams the server serves beside the dashboard).
    pub fn tenant_of(&self, headers: &axum::http::HeaderMap) -> Option<(String, String)> {
        let id = headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| session::cookie(h, session::cookie_name(self.https_only)))?;
        self.sessions.get(id).map(|s| (s.tenant, id.to_owned()))
    }

    /// Whether session `id` is still signed in (a live stream ends when it is not).
    pub fn is_signed_in(&self, id: &str) -> bool {
        self.sessions.get(id).is_some()
    }

    /// The dashboard over `engine`; `https_only` when it is only ever served over HTTPS.
    pub fn new(engine: Engine, https_only: bool) -> Self {
        Self {
            engine,
            sessions: Arc::new(Sessions::default()),
            https_only,
        }
    }
}

/// The dashboard's routes, to be mounted at the root of the server (they all start with
/// `/ui`, and `/` redirects there).
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/assets/app.css", get(pages::assets::css))
        .route("/ui/assets/app.js", get(pages::assets::js))
        .route(
            "/ui/sign-in",
            get(pages::auth::sign_in_page).post(pages::auth::sign_in),
        )
        .route("/ui/sign-out", post(pages::auth::sign_out))
        .route("/ui/runs", get(pages::runs::list))
        .route("/ui/runs/{id}", get(pages::run::detail))
        .route("/ui/runs/{id}/retry", post(pages::run::retry))
        .route("/ui/runs/{id}/cancel", post(pages::run::cancel))
        .route("/ui/queues", get(pages::queues::list))
        .route(
            "/ui/queues/{queue}/dead-letters",
            get(pages::queues::dead_letters),
        )
        .route(
            "/ui/queues/{queue}/dead-letters/retry",
            post(pages::queues::retry_all),
        )
        .route(
            "/ui/queues/{queue}/dead-letters/purge",
            post(pages::queues::purge),
        )
        .route("/ui/modules", get(pages::modules::list))
        .route("/ui/events", get(pages::events::list))
        .route("/ui/egress", get(pages::settings::egress))
        .route("/ui/schedules", get(pages::settings::schedules))
        .route("/ui/schedules/{name}/pause", post(pages::settings::pause))
        .route("/ui/schedules/{name}/resume", post(pages::settings::resume))
        .layer(axum::middleware::from_fn(security_headers))
        // Forms post a token or a CSRF token: nothing larger.
        .layer(axum::extract::DefaultBodyLimit::max(16 << 10))
        .with_state(state)
}

/// Headers every dashboard answer carries: no script, style or connection to any other
/// origin and no inline script; no framing; no sniffing; a referrer only to this origin (with
/// none, browsers post `Origin: null`, which the same-origin check refuses).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// A request from a signed-in tenant; a request without a live session is sent to sign in.
pub(crate) struct Signed {
    pub(crate) session: session::Session,
    /// The session id, for signing out.
    pub(crate) id: String,
}

impl FromRequestParts<UiState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, Response> {
        let id = parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| session::cookie(h, session::cookie_name(state.https_only)))
            .map(str::to_owned);
        match id.and_then(|id| state.sessions.get(&id).map(|s| (id, s))) {
            Some((id, session)) => Ok(Signed { session, id }),
            None => Err(Redirect::to("/ui/sign-in").into_response()),
        }
    }
}

/// Refuses a form post whose `Origin` is another site (browsers send it with every POST), or
/// that the browser itself marks as cross-site.
pub(crate) fn same_origin(parts_headers: &axum::http::HeaderMap) -> bool {
    if parts_headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return false;
    }
    let Some(origin) = parts_headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = parts_headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host)
}

/// A page answering with `status` and `body`.
pub(crate) fn page(status: StatusCode, body: maud::Markup) -> Response {
    (status, body).into_response()
}
