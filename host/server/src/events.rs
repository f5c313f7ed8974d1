//! `GET /v1/runs/{id}/events`: a run followed as server-sent events (see
//! `stepwise_api::events` for what is sent). The stream polls the store: each poll reads the
//! run's record and at most one page of new timeline entries. What followers may hold is
//! bounded: [`MAX_FOLLOWERS_PER_TENANT`] streams per tenant and [`MAX_FOLLOWERS`] in all
//! (`429 quota_exceeded` past them), each for at most [`MAX_FOLLOW`] (the client resumes with
//! `Last-Event-ID`), and every stream ends when the server begins to shut down. The
//! dashboard's live streams are counted apart, under the same bounds, so a tenant's open
//! dashboard tabs never take the streams its API clients need, nor the reverse.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use stepwise_api::events::{ExecutingAttempt, RunProgress, TimelineEvent, names};
use stepwise_api::{ErrorBody, ErrorCode, ErrorDetail, Run, RunState};

use super::AppState;
use super::auth::Tenant;
use super::error::ApiError;
use super::routes::{Param, page_limit};

/// How often a follower looks for news.
pub const POLL: Duration = Duration::from_millis(200);

/// The longest one stream lasts.
pub const MAX_FOLLOW: Duration = Duration::from_secs(3600);

/// Timeline entries read per poll.
const PAGE: usize = 100;

/// Streams one tenant may hold open at once.
pub const MAX_FOLLOWERS_PER_TENANT: usize = 16;

/// Streams open at once, all tenants together.
pub const MAX_FOLLOWERS: usize = 256;

/// The streams of one kind open now, by tenant.
#[derive(Debug)]
pub struct Followers {
    open: std::sync::Mutex<HashMap<String, usize>>,
    /// What the streams are, for the refusal: "event streams", "dashboard live streams".
    kind: &'static str,
}

impl Followers {
    /// No stream of `kind` open yet.
    pub fn new(kind: &'static str) -> Self {
        Self {
            open: std::sync::Mutex::default(),
            kind,
        }
    }
}

/// One open stream's place, given back when the stream ends.
struct FollowerSlot {
    followers: std::sync::Arc<Followers>,
    tenant: String,
}

impl Followers {
    fn admit(self: &std::sync::Arc<Self>, tenant: &str) -> Result<FollowerSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        let mine = open.get(tenant).copied().unwrap_or(0);
        let (limit, used, what) = if mine >= MAX_FOLLOWERS_PER_TENANT {
            (
                MAX_FOLLOWERS_PER_TENANT,
                mine,
                format!("{} of a tenant", self.kind),
            )
        } else if total >= MAX_FOLLOWERS {
            (MAX_FOLLOWERS, total, self.kind.to_owned())
        } else {
            *open.entry(tenant.to_owned()).or_default() += 1;
            return Ok(FollowerSlot {
                followers: self.clone(),
                tenant: tenant.to_owned(),
            });
        };
        Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::QuotaExceeded,
            format!("{used} {what} are open, the most allowed; close one first"),
        )
        .with("quota", what)
        .with("limit", limit))
    }
}

impl Drop for FollowerSlot {
    fn drop(&mut self) {
        let mut open = self
            .followers
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// Follows a run until it ends: its state when it changes, each new timeline entry, and the
/// final run.
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs",
    security(("tenant" = [])),
    params(("id" = String, Path, description = "The run"),
        ("from" = Option<u32>, Query, description = "First timeline position to send (default 0; or `Last-Event-ID` + 1)")),
    responses(
        (status = 200, description = "Server-sent events, each a StreamEvent: `state` (RunProgress), `timeline` (TimelineEvent, its position as the event id), `end` (Run; then the stream closes), `gone` (ErrorBody: the run was purged)", content_type = "text/event-stream", body = stepwise_api::events::StreamEvent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, description = "Too many event streams open (16 per tenant, 256 in all)", body = ErrorBody)))]
pub async fn run_events(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    follow_run(state, tenant, id, &headers, &query, None).await
}

/// `GET /ui/runs/{id}/live`: [`run_events`] for a dashboard session (its cookie), which the
/// run page's script follows to redraw itself. It ends when the session ends.
pub async fn ui_run_events(
    State(state): State<AppState>,
    Param(id): Param,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (tenant, session) = ui_session(&state, &headers)?;
    follow_run(state, tenant, id, &headers, &query, Some(session)).await
}

/// The tenant and id of the dashboard session a request carries.
fn ui_session(state: &AppState, headers: &HeaderMap) -> Result<(String, String), ApiError> {
    state.ui.tenant_of(headers).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "no dashboard session: sign in at /ui/sign-in",
        )
    })
}

/// How often the runs page's stream looks at the tenant's counters.
const CHANGES_POLL: Duration = Duration::from_secs(1);

/// Keep-alives of the dashboard's streams: frequent, so a closed tab gives its stream slot
/// back within seconds.
const UI_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// `GET /ui/live?since=F`: one `changed` event once the dashboard session's tenant's counters
/// differ from fingerprint `F` (the page's, see `stepwise_ui::live`), then the stream ends
/// (the page redraws and opens a new one). Bounded like the run streams; ends with the
/// session.
pub async fn ui_runs_changed(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (tenant, session) = ui_session(&state, &headers)?;
    let since = query
        .get("since")
        .filter(|s| s.len() <= 64)
        .cloned()
        .unwrap_or_default();
    let slot = state.ui_followers.admit(&tenant)?;
    let started = Instant::now();
    let stream = futures_util::stream::unfold(Some((state, tenant, session, slot)), move |watch| {
        let since = since.clone();
        async move {
            let (state, tenant, session, slot) = watch?;
            loop {
                if started.elapsed() > MAX_FOLLOW
                    || state.is_shutting_down()
                    || !state.ui.is_signed_in(&session)
                {
                    return None;
                }
                // A store that cannot say now is asked again, not taken for a change.
                if let Some(now) =
                    stepwise_ui::live::counts_fingerprint(&state.engine, &tenant).await
                    && now != since
                {
                    let event = Event::default().event("changed").data(now);
                    return Some((Ok::<Event, Infallible>(event), None));
                }
                tokio::time::sleep(CHANGES_POLL).await;
                let _ = &slot;
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(UI_KEEP_ALIVE))
        .into_response())
}

/// Follows run `id` of `tenant` (see [`run_events`]); with a dashboard `session`, until it
/// ends.
async fn follow_run(
    state: AppState,
    tenant: String,
    id: String,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    session: Option<String>,
) -> Result<Response, ApiError> {
    page_limit(query, &["from"])?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map(|last| last.saturating_add(1));
    let asked = match query.get("from") {
        Some(f) => Some(f.parse::<u32>().map_err(|_| {
            ApiError::invalid_options(format!("from '{f}' must be a position (0 or more)"))
        })?),
        None => None,
    };
    // A reconnect carries the last id it saw: it resumes after it, never before `from`.
    let from = asked.unwrap_or(0).max(resume.unwrap_or(0));
    state.engine.tenant_run(&tenant, &id).await?;
    let followers = if session.is_some() {
        &state.ui_followers
    } else {
        &state.followers
    };
    let slot = followers.admit(&tenant)?;
    let keep_alive = if session.is_some() {
        KeepAlive::new().interval(UI_KEEP_ALIVE)
    } else {
        KeepAlive::default()
    };
    let follow = Follow {
        _slot: slot,
        session,
        state,
        id,
        next: from,
        last: None,
        pending: VecDeque::new(),
        done: false,
        started: Instant::now(),
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(event) = f.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(event), f));
            }
            if f.done || f.started.elapsed() > MAX_FOLLOW || f.state.is_shutting_down() {
                return None;
            }
            if let Some(session) = &f.session
                && !f.state.ui.is_signed_in(session)
            {
                return None;
            }
            if !f.poll().await {
                tokio::time::sleep(POLL).await;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

/// One follower's position.
struct Follow {
    _slot: FollowerSlot,
    /// The dashboard session it streams for, if any: the stream ends with it.
    session: Option<String>,
    state: AppState,
    id: String,
    /// The next timeline position to send.
    next: u32,
    /// The last state sent.
    last: Option<RunProgress>,
    pending: VecDeque<Event>,
    done: bool,
    started: Instant,
}

fn event<T: serde::Serialize>(name: &str, data: &T) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name).data("{}"))
}

impl Follow {
    /// Reads what changed; returns whether there was anything to send.
    async fn poll(&mut self) -> bool {
        let store = self.state.engine.store();
        let run = match store.run(&self.id).await {
            Ok(Some(run)) => run,
            Ok(None) => {
                let gone = ErrorBody {
                    error: ErrorDetail {
                        code: ErrorCode::NotFound,
                        message: format!("run '{}' no longer exists", self.id),
                        details: Default::default(),
                    },
                };
                self.pending.push_back(event(names::GONE, &gone));
                self.done = true;
                return true;
            }
            // A passing storage failure: try again at the next poll.
            Err(e) => {
                tracing::warn!(run = %self.id, error = %e, "following a run: read failed");
                return false;
            }
        };
        let mut news = false;
        let page = match store.timeline_page(&self.id, self.next, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(run = %self.id, error = %e, "following a run: read failed");
                return false;
            }
        };
        let whole = page.1.is_none();
        for entry in page.0 {
            let position = self.next;
            self.next = self.next.saturating_add(1);
            let sent = TimelineEvent { position, entry };
            self.pending
                .push_back(event(names::TIMELINE, &sent).id(position.to_string()));
            news = true;
        }
        let executing = self.state.engine.executing(&self.id);
        let running = !run.status.is_final()
            && (executing.is_some()
                || self
                    .state
                    .engine
                    .is_running(&self.id)
                    .await
                    .unwrap_or(false));
        let progress = RunProgress {
            status: RunState::of(run.status, running),
            attempts: run
                .attempts
                .max(executing.as_ref().map_or(0, |e| e.attempt)),
            executing: executing.map(|e| ExecutingAttempt {
                attempt: e.attempt,
                step: e.step,
            }),
        };
        if self.last.as_ref() != Some(&progress) {
            self.pending.push_back(event(names::STATE, &progress));
            self.last = Some(progress);
            news = true;
        }
        if run.status.is_final() && whole {
            self.pending
                .push_back(event(names::END, &Run::from_record(run, false)));
            self.done = true;
            news = true;
        }
        news
    }
}
