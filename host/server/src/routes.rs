//! The HTTP routes (see docs/api.md): handlers parse and check their input, call the engine,
//! and answer with the wire types of `stepwise-api`. Each handler carries its OpenAPI
//! description (`#[utoipa::path]`), from which `GET /v1/openapi.json` is generated
//! ([`super::openapi`]); [`ROUTES`] lists every route for the API reference test.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stepwise_api::responses::{
    Deployed, EgressOperator, EgressView, Enqueued, Health, Module, ModuleList, Purged, QueueList,
    QueueView, Retried, SecretDeleted, SecretList, TenantCreated,
};
use stepwise_api::run::{LogPage, RunPage, StepPage, TimelinePage};
use stepwise_api::{
    CancelRun, CreateTenant, Enqueue, ErrorBody, ErrorCode, Event, EventPage, EventSent, PutQueue,
    PutSecret, Resumed, Run, RunState, RunView, SendEvent,
};
use stepwise_core::egress::TenantEgress;
use stepwise_core::keyed::{Debounce, OnDuplicate};
use stepwise_core::model::RunRecord;
use stepwise_core::names::Kind;
use stepwise_core::policy::PolicyOverrides;
use stepwise_core::rate::RateLimit;
use stepwise_core::secret::SecretInfo;
use stepwise_engine::secrets::NewSecret;
use stepwise_engine::{Keyed, NewRun, RunFilter};
use stepwise_runtime::egress::EgressLimits;
use stepwise_store::QueueSettings;

use super::AppState;
use super::auth::{Admin, MetricsReader, Tenant};
use super::error::ApiError;

/// Every route, as (method, path): the API reference and the OpenAPI document must list each.
pub const ROUTES: [(&str, &str); 35] = [
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/hosts"),
    ("POST", "/v1/tenants"),
    ("POST", "/v1/modules"),
    ("GET", "/v1/modules"),
    ("GET", "/v1/queues"),
    ("POST", "/v1/queues/{queue}/jobs"),
    ("GET", "/v1/queues/{queue}"),
    ("PUT", "/v1/queues/{queue}"),
    ("GET", "/v1/queues/{queue}/dead-letters"),
    ("POST", "/v1/queues/{queue}/dead-letters/retry"),
    ("DELETE", "/v1/queues/{queue}/dead-letters"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/runs/{id}"),
    ("POST", "/v1/runs/{id}/retry"),
    ("POST", "/v1/runs/{id}/cancel"),
    ("POST", "/v1/runs/cancel"),
    ("GET", "/v1/runs/{id}/steps"),
    ("GET", "/v1/runs/{id}/timeline"),
    ("GET", "/v1/runs/{id}/logs"),
    ("GET", "/v1/runs/{id}/events"),
    ("POST", "/v1/schedules"),
    ("GET", "/v1/schedules"),
    ("GET", "/v1/schedules/{name}"),
    ("PUT", "/v1/schedules/{name}"),
    ("DELETE", "/v1/schedules/{name}"),
    ("POST", "/v1/events"),
    ("GET", "/v1/events"),
    ("GET", "/v1/egress"),
    ("PUT", "/v1/egress"),
    ("GET", "/v1/secrets"),
    ("PUT", "/v1/secrets/{name}"),
    ("DELETE", "/v1/secrets/{name}"),
];

pub(super) type ApiResult = Result<Response, ApiError>;

/// The router with every route.
pub fn router(state: AppState) -> Router {
    let module_limit = state.max_module_bytes.saturating_add(1);
    // The payload limit is on the payload as stored; on the wire every character may be
    // escaped (`\u0061` is six bytes for one), so the raw body may be six times as large,
    // with room for the request's other fields.
    let enqueue_limit = state
        .engine
        .config()
        .max_payload_bytes
        .saturating_mul(6)
        .saturating_add(64 << 10);
    let event_limit = state
        .engine
        .config()
        .events
        .max_payload_bytes
        .saturating_mul(6)
        .saturating_add(16 << 10);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi_document))
        .route("/v1/tenants", post(create_tenant))
        .route("/v1/hosts", get(list_hosts))
        .route(
            "/v1/modules",
            post(deploy)
                .get(list_modules)
                .layer(DefaultBodyLimit::max(module_limit)),
        )
        .route("/v1/queues", get(list_queues))
        .route(
            "/v1/queues/{queue}/jobs",
            post(enqueue).layer(DefaultBodyLimit::max(enqueue_limit)),
        )
        .route("/v1/queues/{queue}", get(get_queue).put(put_queue))
        .route("/v1/egress", get(get_egress).put(put_egress))
        .route("/v1/secrets", get(list_secrets))
        .route(
            "/v1/secrets/{name}",
            axum::routing::put(put_secret).delete(delete_secret),
        )
        .route(
            "/v1/queues/{queue}/dead-letters",
            get(list_dead_letters).delete(purge_dead_letters),
        )
        .route(
            "/v1/queues/{queue}/dead-letters/retry",
            post(retry_dead_letters),
        )
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/retry", post(retry_run))
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route("/v1/runs/cancel", post(cancel_matching))
        .route("/v1/runs/{id}/steps", get(run_steps))
        .route("/v1/runs/{id}/timeline", get(run_timeline))
        .route("/v1/runs/{id}/logs", get(run_logs))
        .route("/v1/runs/{id}/events", get(super::events::run_events))
        .route(
            "/v1/schedules",
            post(super::schedule_routes::create_schedule)
                .get(super::schedule_routes::list_schedules),
        )
        .route(
            "/v1/schedules/{name}",
            get(super::schedule_routes::get_schedule)
                .put(super::schedule_routes::update_schedule)
                .delete(super::schedule_routes::delete_schedule),
        )
        .route(
            "/v1/events",
            post(send_event)
                .get(list_events)
                .layer(DefaultBodyLimit::max(event_limit)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            module_limit.max(enqueue_limit),
            declared_length,
        ))
        // The dashboard's live streams: the API's run stream, for a dashboard session.
        .route("/ui/runs/{id}/live", get(super::events::ui_run_events))
        .route("/ui/live", get(super::events::ui_runs_changed))
        .with_state(state.clone())
        // The dashboard, at /ui (and / redirects there).
        .merge(stepwise_ui::router(state.ui.clone()))
}

/// Refuses at once a request that declares a body larger than any route takes, rather than
/// reading up to the route's limit (or until the request timeout) first.
async fn declared_length(
    State(max): State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max as u64 => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            if request.uri().path() == "/v1/modules" {
                ErrorCode::ModuleTooLarge
            } else {
                ErrorCode::PayloadTooLarge
            },
            format!("the request declares a {n}-byte body; no route takes more than {max} bytes"),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

pub(super) fn ok<T: Serialize>(status: StatusCode, body: &T) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

/// Reads the one path parameter; a malformed one answers `code` in the JSON error shape.
async fn path_param(
    parts: &mut axum::http::request::Parts,
    code: ErrorCode,
) -> Result<String, ApiError> {
    match Path::<String>::from_request_parts(parts, &()).await {
        Ok(Path(value)) => Ok(value),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("malformed path parameter: {}", e.body_text()),
        )),
    }
}

/// The `{id}` or `{name}` path parameter.
pub struct Param(pub String);

/// The `{queue}` path parameter, checked against the queue-name rule.
pub struct QueuePath(String);

impl<S: Send + Sync> FromRequestParts<S> for Param {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        path_param(parts, ErrorCode::InvalidOptions).await.map(Self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueuePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let queue = path_param(parts, ErrorCode::InvalidName).await?;
        stepwise_engine::check_name(Kind::Queue, &queue)?;
        Ok(Self(queue))
    }
}

/// A small JSON body, or 413 in the JSON error shape when over the default limit.
fn small_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(body_error(ErrorCode::PayloadTooLarge))
}

/// The answer to a body that could not be read: 413 `too_large` when it was over its limit,
/// 400 when it was malformed (a broken chunked encoding, say), 408 when it stalled.
fn body_error(too_large: ErrorCode) -> impl Fn(BytesRejection) -> ApiError {
    move |e| {
        let status = e.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => too_large,
            StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
            _ => ErrorCode::InvalidJson,
        };
        let status = if code == ErrorCode::InvalidJson {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        ApiError::new(status, code, format!("request body: {}", e.body_text()))
    }
}

/// A request body as `T`. Bodies are JSON objects: serde would otherwise read a struct from
/// an array by position (`["t"]` as a tenant), which no client means.
/// A body carrying a payload, parsed: over its limit it is `payload_too_large`, and an
/// integer beyond 64 bits is refused (checked on the body as sent, since once parsed it is
/// already a float).
pub(super) fn parse_exact<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(body_error(ErrorCode::PayloadTooLarge))?;
    if let Ok(text) = std::str::from_utf8(&body) {
        stepwise_core::text::check_integers(text)
            .map_err(|e| ApiError::invalid_json(format!("request body: {e}")))?;
    }
    parse(&body)
}

pub(super) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::invalid_json(
            "request body: must be a JSON object ({...})",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let message = format!("request body: {e}");
        // A name that breaks its rule is the name's error, not the JSON's (the name types'
        // messages start "a tenant name", "a queue name", "a job name").
        let names = [Kind::Tenant, Kind::Queue, Kind::Job];
        if names
            .iter()
            .any(|k| e.to_string().starts_with(&format!("a {} name", k.noun())))
        {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidName, message)
        } else {
            ApiError::invalid_json(message)
        }
    })
}

pub(super) fn reject_new_work(state: &AppState) -> Result<(), ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "the server is shutting down and accepts no new work",
        ));
    }
    Ok(())
}

/// Whether an attempt of `run` is executing now (shown as `running`).
async fn executing(state: &AppState, run: &RunRecord) -> bool {
    !run.status.is_final() && state.engine.is_running(&run.id).await.unwrap_or(false)
}

/// A run as the API shows it.
async fn shown(state: &AppState, run: RunRecord) -> Run {
    let executing = executing(state, &run).await;
    let held = held(state, &run);
    Run::from_record(run, executing).held_by(held)
}

/// Why `run` waits though due, when its queue's rate limit holds it back.
fn held(state: &AppState, run: &RunRecord) -> Option<stepwise_api::Held> {
    if run.status.is_final() {
        return None;
    }
    let hold = state.engine.rate_hold(&run.id)?;
    Some(stepwise_api::Held {
        reason: "rate_limit".to_owned(),
        detail: hold.describe(&run.queue),
        since: hold.since,
        until: hold.until,
    })
}

fn store_error(e: stepwise_store::StoreError) -> ApiError {
    ApiError::from(stepwise_engine::EngineError::Store(e))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Answers `ok` while the server runs.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Prometheus metrics. Host-wide series for anyone; the series labelled by tenant or queue
/// only with the operator's metrics token (`metrics_token`).
#[utoipa::path(get, path = "/metrics", tag = "service",
    security((), ("metrics" = [])),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, body = ErrorBody)))]
async fn metrics(State(state): State<AppState>, reader: MetricsReader) -> ApiResult {
    let text = super::metrics::render(&state.engine, reader.per_tenant)
        .await
        .map_err(store_error)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
async fn openapi_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document(),
    )
        .into_response()
}

/// The hosts using the store now, with their claims (admin token).
#[utoipa::path(get, path = "/v1/hosts", tag = "hosts",
    security(("admin" = [])),
    responses(
        (status = 200, body = stepwise_api::responses::Hosts),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_hosts(State(state): State<AppState>, _: Admin) -> ApiResult {
    let store = state.engine.store();
    let hosts = store
        .hosts()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|h| stepwise_api::responses::Host {
            id: h.id,
            started_at: h.started_at,
            last_seen: h.last_seen,
            claims: h.claims,
            next_lease_expiry: h.next_expiry,
        })
        .collect();
    ok(
        StatusCode::OK,
        &stepwise_api::responses::Hosts {
            this_host: store.host_id().to_owned(),
            hosts,
        },
    )
}

/// Creates a tenant and its first token.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants",
    security(("admin" = [])),
    request_body = CreateTenant,
    responses(
        (status = 201, body = TenantCreated),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody)))]
async fn create_tenant(
    State(state): State<AppState>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: CreateTenant = parse(&small_body(body)?)?;
    let created = state.engine.create_tenant(body.name.as_str()).await?;
    ok(
        StatusCode::CREATED,
        &TenantCreated {
            tenant: created.tenant.name,
            token: created.token,
        },
    )
}

fn module_view(record: stepwise_store::ModuleRecord) -> Module {
    Module {
        hash: record.hash,
        size: record.size,
        jobs: record.jobs,
        deployed_at: record.deployed_at,
    }
}

/// Deploys a component (the raw `.wasm` bytes as the body).
#[utoipa::path(post, path = "/v1/modules", tag = "modules",
    security(("tenant" = [])),
    request_body(
        description = "A WebAssembly component built with the Stepwise SDK (its bytes; the content type is not checked)",
        content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream")),
    ),
    responses(
        (status = 201, body = Deployed),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn deploy(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    reject_new_work(&state)?;
    let limit = state.max_module_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::ModuleTooLarge,
            format!("the module is over the {limit}-byte limit"),
        )
    };
    let bytes = body.map_err(body_error(ErrorCode::ModuleTooLarge))?;
    if bytes.len() > limit {
        return Err(too_large());
    }
    let (_, record) = state.engine.deploy_for(&tenant, &bytes).await?;
    let warnings = state.engine.egress_warnings(&tenant, &record.jobs);
    ok(
        StatusCode::CREATED,
        &Deployed {
            module: module_view(record),
            warnings,
        },
    )
}

/// The tenant's modules.
#[utoipa::path(get, path = "/v1/modules", tag = "modules",
    security(("tenant" = [])),
    responses((status = 200, body = ModuleList), (status = 401, body = ErrorBody)))]
async fn list_modules(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult {
    let modules = state.engine.modules_of(&tenant).await?;
    ok(
        StatusCode::OK,
        &ModuleList {
            modules: modules.into_iter().map(module_view).collect(),
        },
    )
}

/// When the run may start.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    Now,
    /// This long after the engine creates the run (so it counts from `created_at`).
    After(u64),
    /// At this absolute time (ms).
    At(u64),
}

/// A duration option (`1s`, `5m`) in milliseconds, saturating; `field` names it in errors.
pub(crate) fn duration_ms(field: &str, text: &str) -> Result<u64, ApiError> {
    let d: Duration = humantime::parse_duration(text).map_err(|e| {
        ApiError::invalid_options(format!("{field} '{text}' is not a duration like 30s: {e}"))
    })?;
    Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A rate limit as sent, checked.
fn rate_limit(field: &str, spec: &stepwise_api::RateLimitSpec) -> Result<RateLimit, ApiError> {
    let limit = RateLimit {
        max: spec.max,
        per_ms: duration_ms(&format!("{field}.per"), &spec.per)?,
    };
    limit
        .validate()
        .map_err(|e| ApiError::invalid_options(format!("{field}: {e}")))?;
    Ok(limit)
}

/// The `key`, `on_duplicate` and `debounce` options of an enqueue.
fn keyed(req: &Enqueue) -> Result<Option<Keyed>, ApiError> {
    match (&req.key, &req.debounce) {
        (Some(_), Some(_)) => Err(ApiError::invalid_options(
            "give either key or debounce, not both (debounce has its own key)",
        )),
        (None, None) if req.on_duplicate.is_some() => {
            Err(ApiError::invalid_options("on_duplicate needs a key"))
        }
        (None, None) => Ok(None),
        (Some(key), None) => Ok(Some(Keyed {
            key: key.clone(),
            on_duplicate: req.on_duplicate.unwrap_or_default(),
            debounce: None,
        })),
        (None, Some(d)) => {
            if req.on_duplicate.is_some() {
                return Err(ApiError::invalid_options(
                    "on_duplicate does not apply to debounce, which always replaces",
                ));
            }
            Ok(Some(Keyed {
                key: d.key.clone(),
                on_duplicate: OnDuplicate::Replace,
                debounce: Some(Debounce {
                    period_ms: duration_ms("debounce.period", &d.period)?,
                    max_wait_ms: d
                        .max_wait
                        .as_deref()
                        .map(|w| duration_ms("debounce.max_wait", w))
                        .transpose()?,
                }),
            }))
        }
    }
}

/// `delay` or `run_at` (both together is an error).
fn start_time(delay: Option<&str>, run_at: Option<&str>) -> Result<Start, ApiError> {
    match (delay, run_at) {
        (Some(_), Some(_)) => Err(ApiError::invalid_options(
            "give either delay or run_at, not both",
        )),
        // Saturates, never wraps: the engine then refuses anything past the longest delay.
        (Some(d), None) => Ok(Start::After(duration_ms("delay", d)?)),
        (None, Some(t)) => {
            let ms = stepwise_core::time_fmt::parse_rfc3339(t).map_err(|why| {
                ApiError::invalid_options(format!(
                    "run_at '{t}' is not an RFC 3339 time like 2030-01-01T00:00:00Z: {why}"
                ))
            })?;
            Ok(Start::At(ms))
        }
        (None, None) => Ok(Start::Now),
    }
}

/// Creates a run of a job, or answers with an existing one: the run holding the idempotency
/// key, or the pending run holding the `key` or debounce key (kept, replaced or debounced).
#[utoipa::path(post, path = "/v1/queues/{queue}/jobs", tag = "runs",
    security(("tenant" = [])),
    params(("queue" = stepwise_api::QueueName, Path, description = "The queue")),
    request_body = Enqueue,
    responses(
        (status = 201, description = "A new run", body = Enqueued),
        (status = 200, description = "An existing run: the idempotency key's (`deduplicated`), or the pending run holding the key (`kept`, `replaced`, `debounced`)", body = Enqueued),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`, or `pending_run_exists` (a pending run holds the key and `on_duplicate` is `reject`)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 429, description = "`quota_exceeded`, or `rate_limited` (the tenant's enqueue rate)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "With `rate_limited`: seconds until an enqueue may be admitted"))),
        (status = 503, body = ErrorBody)))]
async fn enqueue(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueuePath(queue): QueuePath,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    reject_new_work(&state)?;
    let req: Enqueue = parse_exact(body)?;
    state.engine.admit_enqueue(&tenant)?;
    let keyed = keyed(&req)?;
    let (run_at, delay_ms) = match start_time(req.delay.as_deref(), req.run_at.as_deref())? {
        Start::Now => (None, None),
        Start::After(ms) => (None, Some(ms)),
        Start::At(at) => (Some(at), None),
    };
    let enqueued = state
        .engine
        .enqueue(NewRun {
            tenant,
            queue,
            job: req.job.into_string(),
            payload: req.payload.to_string(),
            module: None,
            overrides: PolicyOverrides {
                max_attempts: req.max_attempts,
                backoff: req.backoff,
                fuel: req.fuel,
                timeout_ms: req.timeout_ms,
                memory_bytes: req.memory_bytes,
            },
            run_at,
            delay_ms,
            priority: req.priority,
            idempotency_key: req.idempotency_key,
            keyed,
            rate_key: req.rate_key,
            origin: None,
        })
        .await?;
    let status = if enqueued.deduplicated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let run = shown(&state, enqueued.run).await;
    ok(
        status,
        &Enqueued {
            run,
            deduplicated: enqueued.deduplicated,
            outcome: enqueued.outcome.as_str().to_owned(),
        },
    )
}

/// Every queue of `tenant` with stored runs, dead letters or settings, by name, with its
/// counts (or just `only`).
async fn queue_views(
    state: &AppState,
    tenant: &str,
    only: Option<&str>,
) -> Result<Vec<QueueView>, ApiError> {
    Ok(state
        .engine
        .queue_counts(tenant, only)
        .await?
        .into_iter()
        .map(|q| QueueView {
            concurrency: q.settings.concurrency,
            rate_limit: q.settings.rate_limit,
            runs: q.runs,
            depth: q.depth,
            running: q.running,
            dead_letters: q.dead_letters,
            queue: q.queue,
        })
        .collect())
}

async fn queue_view(state: &AppState, tenant: &str, queue: &str) -> ApiResult {
    let mut views = queue_views(state, tenant, Some(queue)).await?;
    match views.pop() {
        Some(view) => ok(StatusCode::OK, &view),
        None => Err(ApiError::not_found(format!("no queue '{queue}'"))),
    }
}

/// The tenant's queues (those with stored runs, dead letters or settings).
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    security(("tenant" = [])),
    responses((status = 200, body = QueueList), (status = 401, body = ErrorBody)))]
async fn list_queues(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult {
    let queues = queue_views(&state, &tenant, None).await?;
    ok(StatusCode::OK, &QueueList { queues })
}

/// A queue's counts and settings.
#[utoipa::path(get, path = "/v1/queues/{queue}", tag = "queues",
    security(("tenant" = [])),
    params(("queue" = stepwise_api::QueueName, Path, description = "The queue")),
    responses((status = 200, body = QueueView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn get_queue(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueuePath(queue): QueuePath,
) -> ApiResult {
    queue_view(&state, &tenant, &queue).await
}

/// Sets a queue's concurrency limit.
#[utoipa::path(put, path = "/v1/queues/{queue}", tag = "queues",
    security(("tenant" = [])),
    params(("queue" = stepwise_api::QueueName, Path, description = "The queue")),
    request_body = PutQueue,
    responses((status = 200, body = QueueView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn put_queue(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueuePath(queue): QueuePath,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: PutQueue = parse(&small_body(body)?)?;
    if body.concurrency == Some(0) {
        return Err(ApiError::invalid_options(
            "concurrency must be at least 1 (or null for no queue limit)",
        ));
    }
    let settings = QueueSettings {
        concurrency: body.concurrency,
        rate_limit: body
            .rate_limit
            .as_ref()
            .map(|spec| rate_limit("rate_limit", spec))
            .transpose()?,
    };
    state.engine.set_queue(&tenant, &queue, settings).await?;
    queue_view(&state, &tenant, &queue).await
}

/// The tenant's secrets: names and bindings, never values.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    security(("tenant" = [])),
    responses((status = 200, body = SecretList), (status = 401, body = ErrorBody)))]
async fn list_secrets(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult {
    let secrets = state.engine.list_secrets(&tenant).await?;
    ok(StatusCode::OK, &SecretList { secrets })
}

/// Sets a secret (encrypted at rest).
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets",
    security(("tenant" = [])),
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_]{1,64}$", description = "1-64 ASCII letters, digits or '_'")),
    request_body = PutSecret,
    responses((status = 200, body = SecretInfo), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn put_secret(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(name): Param,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let secret: PutSecret = parse(&small_body(body)?)?;
    let secret = NewSecret {
        value: secret.value,
        hosts: secret.hosts,
        readable: secret.readable,
    };
    let info = state.engine.set_secret(&tenant, &name, secret).await?;
    ok(StatusCode::OK, &info)
}

/// Deletes a secret.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets",
    security(("tenant" = [])),
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_]{1,64}$", description = "The secret")),
    responses((status = 200, body = SecretDeleted), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_secret(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(name): Param,
) -> ApiResult {
    state.engine.delete_secret(&tenant, &name).await?;
    ok(StatusCode::OK, &SecretDeleted { deleted: name })
}

/// The tenant's egress rules and limits.
#[utoipa::path(get, path = "/v1/egress", tag = "egress",
    security(("tenant" = [])),
    responses((status = 200, body = EgressView), (status = 401, body = ErrorBody)))]
async fn get_egress(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult {
    egress_view(&state, state.engine.egress_settings(&tenant).await?)
}

/// Replaces the tenant's egress rules and limits.
#[utoipa::path(put, path = "/v1/egress", tag = "egress",
    security(("tenant" = [])),
    request_body = TenantEgress,
    responses((status = 200, body = EgressView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn put_egress(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let settings: TenantEgress = parse(&small_body(body)?)?;
    let stored = state.engine.set_egress(&tenant, settings).await?;
    egress_view(&state, stored)
}

/// A tenant's egress settings with the limits its attempts run with and the operator's
/// policy that no tenant setting widens.
fn egress_view(state: &AppState, settings: TenantEgress) -> ApiResult {
    let egress = state.engine.egress();
    let caps = egress.config().caps();
    let limits = settings.limits.unwrap_or_default();
    ok(
        StatusCode::OK,
        &EgressView {
            rules: settings.rules,
            limits,
            effective_limits: limits.over(EgressLimits::default()).clamp(&caps),
            operator: EgressOperator {
                allow_private: egress.config().allow_private,
                caps,
            },
        },
    )
}

/// A queue's dead letters, oldest first.
#[utoipa::path(get, path = "/v1/queues/{queue}/dead-letters", tag = "queues",
    security(("tenant" = [])),
    params(("queue" = stepwise_api::QueueName, Path, description = "The queue"),
        ("after" = Option<String>, Query, description = "Continue after this run id (a page's `next`)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Runs per page (default 100)")),
    responses((status = 200, body = RunPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_dead_letters(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueuePath(queue): QueuePath,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let page = state
        .engine
        .dead_letters(
            &tenant,
            &queue,
            query.get("after").map(String::as_str),
            page_limit(&query, &["after", "limit"])?,
        )
        .await?;
    let mut runs = Vec::with_capacity(page.runs.len());
    for run in page.runs {
        runs.push(shown(&state, run).await);
    }
    ok(
        StatusCode::OK,
        &RunPage {
            runs,
            next: page.next,
        },
    )
}

/// Retries every dead letter of a queue, reusing each run's completed steps.
#[utoipa::path(post, path = "/v1/queues/{queue}/dead-letters/retry", tag = "queues",
    security(("tenant" = [])),
    params(("queue" = stepwise_api::QueueName, Path, description = "The queue")),
    responses((status = 200, body = Retried), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn retry_dead_letters(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueuePath(queue): QueuePath,
) -> ApiResult {
    reject_new_work(&state)?;
    let retried = state.engine.retry_dead_letters(&tenant, &queue).await?;
    ok(StatusCode::OK, &Retried { retried })
}

/// Deletes every dead letter of a queue: the runs, their journals and logs, and their
/// idempotency keys (which may then be used again).
#[utoipa::path(delete, path = "/v1/queues/{queue}/dead-letters", tag = "queues",
    security(("tenant" = [])),
    params(("queue" = stepwise_api::QueueName, Path, description = "The queue")),
    responses((status = 200, body = Purged), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn purge_dead_letters(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueuePath(queue): QueuePath,
) -> ApiResult {
    let purged = state.engine.purge_dead_letters(&tenant, &queue).await?;
    ok(
        StatusCode::OK,
        &Purged {
            purged: purged as u64,
        },
    )
}

/// The tenant's runs, filtered and paged.
#[utoipa::path(get, path = "/v1/runs", tag = "runs",
    security(("tenant" = [])),
    params(("queue" = Option<stepwise_api::QueueName>, Query, description = "Only this queue"),
        ("job" = Option<stepwise_api::JobName>, Query, description = "Only this job"),
        ("status" = Option<RunState>, Query, description = "Only runs in this state"),
        ("parent" = Option<String>, Query, description = "Only the child runs this run started"),
        ("created_from" = Option<String>, Query, description = "Only runs created at or after this RFC 3339 time"),
        ("created_before" = Option<String>, Query, description = "Only runs created before this RFC 3339 time"),
        ("order" = Option<String>, Query, description = "`oldest` (default) or `newest` first"),
        ("after" = Option<String>, Query, description = "Continue after this run id (a page's `next`)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Runs per page (default 100)")),
    responses((status = 200, body = RunPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_runs(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = page_limit(
        &query,
        &[
            "queue",
            "job",
            "status",
            "parent",
            "created_from",
            "created_before",
            "order",
            "limit",
            "after",
        ],
    )?;
    let created = |name: &str| -> Result<Option<u64>, ApiError> {
        query
            .get(name)
            .map(|t| {
                stepwise_core::time_fmt::parse_rfc3339(t).map_err(|why| {
                    ApiError::invalid_options(format!(
                        "{name} '{t}' is not an RFC 3339 time like 2030-01-01T00:00:00Z: {why}"
                    ))
                })
            })
            .transpose()
    };
    let (created_from, created_before) = (created("created_from")?, created("created_before")?);
    let state_filter = match query.get("status") {
        Some(s) => Some(s.parse::<RunState>().map_err(ApiError::invalid_options)?),
        None => None,
    };
    let newest_first = match query.get("order").map(String::as_str) {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(ApiError::invalid_options(format!(
                "order '{other}' must be oldest or newest"
            )));
        }
    };
    if let Some(q) = query.get("queue") {
        stepwise_engine::check_name(Kind::Queue, q)?;
    }
    if let Some(j) = query.get("job") {
        stepwise_engine::check_name(Kind::Job, j)?;
    }
    let filter = RunFilter {
        queue: query.get("queue").cloned(),
        job: query.get("job").cloned(),
        status: state_filter.and_then(RunState::stored),
        parent: query.get("parent").cloned(),
        created_from,
        created_before,
        newest_first,
    };
    let page = state
        .engine
        .list_runs(
            &tenant,
            &filter,
            query.get("after").map(String::as_str),
            limit,
        )
        .await?;
    let mut runs = Vec::with_capacity(page.runs.len());
    for run in page.runs {
        runs.push(shown(&state, run).await);
    }
    if let Some(wanted) = state_filter {
        runs.retain(|r| r.status == wanted);
    }
    ok(
        StatusCode::OK,
        &RunPage {
            runs,
            next: page.next,
        },
    )
}

/// Entries of each list a run view holds; the rest are paged (`GET /v1/runs/{id}/logs`, ...).
const VIEW_PAGE: usize = 1_000;

/// Refuses query parameters other than `allowed`; returns `limit` (1-1000, default 100).
pub(super) fn page_limit(
    query: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<usize, ApiError> {
    for key in query.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(ApiError::invalid_options(format!(
                "unknown query parameter '{key}': use {}",
                allowed.join(", ")
            )));
        }
    }
    match query.get("limit") {
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1_000).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid_options(format!(
                "limit '{l}' must be a number from 1 to 1000"
            ))),
        },
        None => Ok(100),
    }
}

/// A run with its steps, timeline and logs (each list's first 1,000 entries).
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    security(("tenant" = [])),
    params(("id" = String, Path, description = "The run")),
    responses((status = 200, body = RunView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_run(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
) -> ApiResult {
    state.engine.tenant_run(&tenant, &id).await?;
    let view = state.engine.view_page(&id, VIEW_PAGE).await?;
    let executing = executing(&state, &view.run).await;
    let held = held(&state, &view.run);
    let mut view = RunView::from_record(view, executing);
    view.run = view.run.held_by(held);
    ok(StatusCode::OK, &view)
}

/// `?from=N&limit=M` of a run's list, after checking the run is the tenant's.
async fn list_window(
    state: &AppState,
    tenant: &str,
    id: &str,
    query: &HashMap<String, String>,
) -> Result<(u32, usize), ApiError> {
    let limit = page_limit(query, &["from", "limit"])?;
    let from = match query.get("from") {
        Some(f) => f.parse::<u32>().map_err(|_| {
            ApiError::invalid_options(format!("from '{f}' must be a position (0 or more)"))
        })?,
        None => 0,
    };
    state.engine.tenant_run(tenant, id).await?;
    Ok((from, limit))
}

/// A page of a run's steps.
#[utoipa::path(get, path = "/v1/runs/{id}/steps", tag = "runs",
    security(("tenant" = [])),
    params(("id" = String, Path, description = "The run"),
        ("from" = Option<u32>, Query, description = "First position (a page's `next`)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Entries per page (default 100)")),
    responses((status = 200, body = StepPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn run_steps(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let (from, limit) = list_window(&state, &tenant, &id, &query).await?;
    let (items, next) = state
        .engine
        .store()
        .steps_page(&id, from, limit)
        .await
        .map_err(store_error)?;
    let items = items.into_iter().map(Into::into).collect();
    ok(StatusCode::OK, &StepPage { items, next })
}

/// A page of a run's timeline.
#[utoipa::path(get, path = "/v1/runs/{id}/timeline", tag = "runs",
    security(("tenant" = [])),
    params(("id" = String, Path, description = "The run"),
        ("from" = Option<u32>, Query, description = "First position (a page's `next`)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Entries per page (default 100)")),
    responses((status = 200, body = TimelinePage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn run_timeline(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let (from, limit) = list_window(&state, &tenant, &id, &query).await?;
    let (items, next) = state
        .engine
        .store()
        .timeline_page(&id, from, limit)
        .await
        .map_err(store_error)?;
    ok(StatusCode::OK, &TimelinePage { items, next })
}

/// A page of a run's logs.
#[utoipa::path(get, path = "/v1/runs/{id}/logs", tag = "runs",
    security(("tenant" = [])),
    params(("id" = String, Path, description = "The run"),
        ("from" = Option<u32>, Query, description = "First position (a page's `next`)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Entries per page (default 100)")),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn run_logs(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let (from, limit) = list_window(&state, &tenant, &id, &query).await?;
    let (items, next) = state
        .engine
        .store()
        .logs_page(&id, from, limit)
        .await
        .map_err(store_error)?;
    ok(StatusCode::OK, &LogPage { items, next })
}

/// Cancels a run that has not ended: it becomes `cancelled` at once (final; not
/// dead-lettered); an attempt executing now is stopped at the guest's next host call or epoch
/// tick, and nothing it does afterwards is recorded.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs",
    security(("tenant" = [])),
    params(("id" = String, Path, description = "The run")),
    request_body(content = CancelRun, description = "Optional; `{}` or no body: no reason, children cancelled too"),
    responses((status = 200, body = Run), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn cancel_run(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = small_body(body)?;
    let request: CancelRun = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRun::default()
    } else {
        parse(&body)?
    };
    let who = format!("tenant '{tenant}'");
    let run = state
        .engine
        .cancel_with(
            &tenant,
            &id,
            &who,
            request.reason.as_deref(),
            request.children.unwrap_or(true),
        )
        .await?;
    ok(StatusCode::OK, &Run::from_record(run, false))
}

/// Cancels every run of the tenant not yet ended that matches the filters (at least one), up
/// to 1,000 per call.
#[utoipa::path(post, path = "/v1/runs/cancel", tag = "runs",
    security(("tenant" = [])),
    request_body = stepwise_api::CancelMatching,
    responses((status = 200, body = stepwise_api::responses::CancelledRuns),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody)))]
async fn cancel_matching(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: stepwise_api::CancelMatching = parse(&small_body(body)?)?;
    if request.queue.is_none() && request.job.is_none() && request.status.is_none() {
        return Err(ApiError::invalid_options(
            "give at least one of queue, job and status (to cancel one run: POST /v1/runs/{id}/cancel)",
        ));
    }
    if request.status.is_some_and(RunState::is_final) {
        return Err(ApiError::invalid_options(
            "only runs not yet ended can be cancelled",
        ));
    }
    let filter = RunFilter {
        queue: request.queue.map(stepwise_api::QueueName::into_string),
        job: request.job.map(stepwise_api::JobName::into_string),
        status: request.status.and_then(RunState::stored),
        ..RunFilter::default()
    };
    let who = format!("tenant '{tenant}'");
    let done = state
        .engine
        .cancel_matching(
            &tenant,
            &filter,
            request.status == Some(RunState::Running),
            &who,
            request.reason.as_deref(),
        )
        .await?;
    ok(
        StatusCode::OK,
        &stepwise_api::responses::CancelledRuns {
            cancelled: done.cancelled,
            more: done.more,
        },
    )
}

/// Retries a failed run, reusing its completed steps.
#[utoipa::path(post, path = "/v1/runs/{id}/retry", tag = "runs",
    security(("tenant" = [])),
    params(("id" = String, Path, description = "The run")),
    responses((status = 200, body = Run), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn retry_run(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
) -> ApiResult {
    reject_new_work(&state)?;
    let run = state.engine.retry_for(&tenant, &id).await?;
    ok(StatusCode::OK, &shown(&state, run).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_and_run_at_are_exclusive_and_parsed() {
        assert!(start_time(Some("1s"), Some("2026-01-01T00:00:00Z")).is_err());
        assert!(start_time(Some("soon"), None).is_err());
        assert_eq!(
            start_time(None, Some("2026-01-01T00:00:00Z")).unwrap(),
            Start::At(1_767_225_600_000)
        );
        assert_eq!(start_time(Some("30s"), None).unwrap(), Start::After(30_000));
        assert_eq!(start_time(None, None).unwrap(), Start::Now);
    }

    #[test]
    fn request_bodies_are_objects_only() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code, reason = "only deserialized")]
        struct Named {
            name: String,
        }
        assert!(parse::<Named>(br#" {"name": "t"}"#).is_ok());
        for body in [&br#"["t"]"#[..], b" [5]", b"\"t\"", b"5"] {
            let err = parse::<Named>(body).expect_err("not an object");
            assert_eq!(err.code(), ErrorCode::InvalidJson);
        }
    }

    #[test]
    fn a_huge_delay_saturates_instead_of_wrapping() {
        // 18,446,744,073,709,552 s is past u64::MAX milliseconds; `as u64` made it ~0.5 s.
        assert_eq!(
            start_time(Some("18446744073709552s"), None).unwrap(),
            Start::After(u64::MAX)
        );
    }

    #[test]
    fn run_at_is_rfc3339_exactly_with_offsets_normalized_to_utc() {
        const AT: u64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z
        for ok in [
            "2026-11-23T10:00:00Z",
            "2026-11-23t10:00:00z",
            "2026-11-23T11:00:00+01:00",
            "2026-11-23T05:00:00-05:00",
            "2026-11-23T10:00:00.000Z",
        ] {
            assert_eq!(start_time(None, Some(ok)).unwrap(), Start::At(AT), "{ok}");
        }
        for bad in [
            "2026-11-23T10:00:00Zjunk",
            "2026-11-23T10:00:00ZZ",
            "2026-11-23T10:00:00Z ",
            " 2026-11-23T10:00:00Z",
            "2026-11-23T10:00:00",
            "2026-11-23 10:00:00Z",
            "2026-11-23",
            "1969-12-31T23:59:59Z",
        ] {
            let err = start_time(None, Some(bad)).expect_err(bad);
            assert_eq!(err.code(), ErrorCode::InvalidOptions, "{bad}");
        }
    }
}

/// Sends an event to the tenant's runs: every run waiting on its name and correlation key
/// resumes, and a run that reaches such a wait later (within the retention) takes it then.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    security(("tenant" = [])),
    request_body = SendEvent,
    responses((status = 201, body = EventSent, description = "Stored"),
        (status = 200, body = EventSent, description = "A repeated id with the same body: the first event"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub(super) async fn send_event(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    reject_new_work(&state)?;
    let req: SendEvent = parse_exact(body)?;
    let sent = state
        .engine
        .send_event(
            &tenant,
            stepwise_engine::SendEvent {
                name: req.name,
                correlation_key: req.correlation_key,
                payload: req.payload.to_string(),
                id: req.id,
            },
        )
        .await?;
    let status = if sent.repeated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let resumed = resumed_of(sent.resumed);
    ok(
        status,
        &EventSent {
            event: Event::from_record(sent.event, resumed),
            woken: sent.woken,
            repeated: sent.repeated,
        },
    )
}

/// The waits that took an event, as the API shows them.
fn resumed_of(deliveries: Vec<(String, String)>) -> Vec<Resumed> {
    deliveries
        .into_iter()
        .map(|(run, step)| Resumed { run, step })
        .collect()
}

/// The tenant's events, newest first, with the waits that took each.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    security(("tenant" = [])),
    params(("name" = Option<String>, Query, description = "Only events with this name"),
        ("correlation_key" = Option<String>, Query, description = "Only events with this key (with `name`)"),
        ("before" = Option<u64>, Query, description = "Only events numbered below this (a page's `next`)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Events per page (default 100)")),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_events(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = page_limit(&query, &["name", "correlation_key", "before", "limit"])?;
    let before = match query.get("before") {
        Some(b) => Some(b.parse::<u64>().map_err(|_| {
            ApiError::invalid_options(format!("before '{b}' must be an event's seq"))
        })?),
        None => None,
    };
    if query.contains_key("correlation_key") && !query.contains_key("name") {
        return Err(ApiError::invalid_options(
            "correlation_key filters events of one name: give name too",
        ));
    }
    let filter = stepwise_store::EventFilter {
        name: query.get("name").cloned(),
        correlation_key: query.get("correlation_key").cloned(),
    };
    let listed = state
        .engine
        .list_events(&tenant, &filter, before, limit.saturating_add(1))
        .await?;
    let more = listed.len() > limit;
    let events: Vec<Event> = listed
        .into_iter()
        .take(limit)
        .map(|e| Event::from_record(e.event, resumed_of(e.resumed)))
        .collect();
    let next = if more {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    ok(StatusCode::OK, &EventPage { events, next })
}
