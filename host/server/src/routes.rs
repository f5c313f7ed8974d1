//! The HTTP routes (see docs/api.md): handlers parse and check their input, call the engine,
//! and shape the answer. [`ROUTES`] lists every route for the API reference test.

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
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Admin, Tenant};
use super::error::ApiError;
use stepwise_core::model::{RunRecord, RunStatus};
use stepwise_core::policy::{Backoff, PolicyOverrides};
use stepwise_engine::secrets::NewSecret;
use stepwise_engine::{NewRun, RunFilter, check_queue_name};
use stepwise_runtime::egress::{EgressLimits, TenantEgress};
use stepwise_store::{Listing, QueueSettings};

/// Every route, as (method, path): the API reference must list each.
pub const ROUTES: [(&str, &str); 22] = [
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("POST", "/v1/tenants"),
    ("POST", "/v1/modules"),
    ("GET", "/v1/modules"),
    ("POST", "/v1/queues/{queue}/jobs"),
    ("GET", "/v1/queues/{queue}"),
    ("PUT", "/v1/queues/{queue}"),
    ("GET", "/v1/queues/{queue}/dead-letters"),
    ("POST", "/v1/queues/{queue}/dead-letters/retry"),
    ("DELETE", "/v1/queues/{queue}/dead-letters"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/runs/{id}"),
    ("POST", "/v1/runs/{id}/retry"),
    ("GET", "/v1/runs/{id}/steps"),
    ("GET", "/v1/runs/{id}/timeline"),
    ("GET", "/v1/runs/{id}/logs"),
    ("GET", "/v1/egress"),
    ("PUT", "/v1/egress"),
    ("GET", "/v1/secrets"),
    ("PUT", "/v1/secrets/{name}"),
    ("DELETE", "/v1/secrets/{name}"),
];

type ApiResult = Result<Response, ApiError>;

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
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/tenants", post(create_tenant))
        .route(
            "/v1/modules",
            post(deploy)
                .get(list_modules)
                .layer(DefaultBodyLimit::max(module_limit)),
        )
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
        .route("/v1/runs/{id}/steps", get(run_steps))
        .route("/v1/runs/{id}/timeline", get(run_timeline))
        .route("/v1/runs/{id}/logs", get(run_logs))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state)
}

fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

/// Reads the one path parameter; a malformed one answers `code` in the JSON error shape.
async fn path_param(
    parts: &mut axum::http::request::Parts,
    code: &'static str,
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

/// The `{id}` path parameter.
pub struct Param(String);

/// The `{queue}` path parameter.
pub struct QueueName(String);

impl<S: Send + Sync> FromRequestParts<S> for Param {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        path_param(parts, "invalid_options").await.map(Self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueueName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        path_param(parts, "invalid_name").await.map(Self)
    }
}

/// A small JSON body, or 413 in the JSON error shape when over the default limit.
fn small_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        ApiError::new(
            e.status(),
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "invalid_json"
            },
            format!("request body: {}", e.body_text()),
        )
    })
}

/// A request body as `T`. Bodies are JSON objects: serde would otherwise read a struct from
/// an array by position (`["t"]` as a tenant), which no client means.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::invalid_json(
            "request body: must be a JSON object ({...})",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(format!("request body: {e}")))
}

fn reject_new_work(state: &AppState) -> Result<(), ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down and accepts no new work",
        ));
    }
    Ok(())
}

/// A run as the API shows it: `running` while an attempt executes.
async fn shown(state: &AppState, mut run: RunRecord) -> RunRecord {
    if !run.status.is_final() && state.engine.is_running(&run.id).await.unwrap_or(false) {
        run.status = RunStatus::Running;
    }
    run
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("API values serialize")
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(state): State<AppState>) -> ApiResult {
    let text = super::metrics::render(&state.engine)
        .await
        .map_err(|e| ApiError::from(stepwise_engine::EngineError::Store(e)))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantBody {
    name: String,
}

async fn create_tenant(
    State(state): State<AppState>,
    _: Admin,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: TenantBody = parse(&small_body(body)?)?;
    let created = state.engine.create_tenant(&body.name).await?;
    ok(
        StatusCode::CREATED,
        json!({"tenant": created.tenant.name, "token": created.token}),
    )
}

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
            "module_too_large",
            format!("the module is over the {limit}-byte limit"),
        )
    };
    let bytes = body.map_err(|_| too_large())?;
    if bytes.len() > limit {
        return Err(too_large());
    }
    let (_, record) = state.engine.deploy_for(&tenant, &bytes).await?;
    let mut answer = to_value(&record);
    let warnings = state.engine.egress_warnings(&tenant, &record.jobs);
    if let Value::Object(map) = &mut answer {
        map.insert("warnings".into(), json!(warnings));
    }
    ok(StatusCode::CREATED, answer)
}

async fn list_modules(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult {
    let modules = state.engine.modules_of(&tenant).await?;
    ok(StatusCode::OK, json!({ "modules": modules }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueBody {
    job: String,
    #[serde(default = "empty_object")]
    payload: Value,
    idempotency_key: Option<String>,
    max_attempts: Option<u32>,
    backoff: Option<Backoff>,
    timeout_ms: Option<u64>,
    fuel: Option<u64>,
    memory_bytes: Option<u64>,
    delay: Option<String>,
    run_at: Option<String>,
    #[serde(default)]
    priority: i32,
}

fn empty_object() -> Value {
    json!({})
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

/// `delay` or `run_at` (both together is an error).
fn start_time(delay: Option<&str>, run_at: Option<&str>) -> Result<Start, ApiError> {
    match (delay, run_at) {
        (Some(_), Some(_)) => Err(ApiError::invalid_options(
            "give either delay or run_at, not both",
        )),
        (Some(d), None) => {
            let d: Duration = humantime::parse_duration(d).map_err(|e| {
                ApiError::invalid_options(format!("delay '{d}' is not a duration like 30s: {e}"))
            })?;
            // Saturates, never wraps: the engine then refuses anything past the longest delay.
            Ok(Start::After(
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            ))
        }
        (None, Some(t)) => {
            let bad = |why: &str| {
                ApiError::invalid_options(format!(
                    "run_at '{t}' is not an RFC 3339 time like 2030-01-01T00:00:00Z: {why}"
                ))
            };
            // RFC 3339 lets applications take a space for the `T`; this API does not.
            if t.as_bytes()
                .get(10)
                .is_some_and(|b| !matches!(b, b'T' | b't'))
            {
                return Err(bad("the date and the time are separated by T"));
            }
            let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| bad(&e.to_string()))?;
            let ms = u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| bad("before 1970"))?;
            Ok(Start::At(ms))
        }
        (None, None) => Ok(Start::Now),
    }
}

async fn enqueue(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueueName(queue): QueueName,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    reject_new_work(&state)?;
    let body = body.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request is over the payload limit",
        )
    })?;
    // Checked on the body as sent: once parsed, such an integer is already a float.
    if let Ok(text) = std::str::from_utf8(&body) {
        stepwise_core::text::check_integers(text)
            .map_err(|e| ApiError::invalid_json(format!("request body: {e}")))?;
    }
    let req: EnqueueBody = parse(&body)?;
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
            job: req.job,
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
        json!({"run": run, "deduplicated": enqueued.deduplicated}),
    )
}

async fn queue_view(state: &AppState, tenant: &str, queue: &str) -> ApiResult {
    check_queue_name(queue)?;
    let store_err = |e| ApiError::from(stepwise_engine::EngineError::Store(e));
    let store = state.engine.store();
    let census = store.queue_census(tenant, queue).await.map_err(store_err)?;
    let key = (tenant.to_owned(), queue.to_owned());
    let settings = state.engine.queue_settings(tenant, queue);
    let running = store.occupancy().await.map_err(store_err)?.running_by_queue;
    ok(
        StatusCode::OK,
        json!({
            "queue": queue,
            "concurrency": settings.concurrency,
            "depth": census.depth.get(&key).copied().unwrap_or(0),
            "running": running.get(&key).copied().unwrap_or(0),
            "dead_letters": census.dead_letters.get(&key).copied().unwrap_or(0),
        }),
    )
}

async fn get_queue(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueueName(queue): QueueName,
) -> ApiResult {
    queue_view(&state, &tenant, &queue).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueBody {
    concurrency: Option<u32>,
}

async fn put_queue(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueueName(queue): QueueName,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: QueueBody = parse(&small_body(body)?)?;
    if body.concurrency == Some(0) {
        return Err(ApiError::invalid_options(
            "concurrency must be at least 1 (or null for no queue limit)",
        ));
    }
    let settings = QueueSettings {
        concurrency: body.concurrency,
    };
    state.engine.set_queue(&tenant, &queue, settings).await?;
    queue_view(&state, &tenant, &queue).await
}

async fn list_secrets(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult {
    let secrets = state.engine.list_secrets(&tenant).await?;
    ok(StatusCode::OK, json!({ "secrets": secrets }))
}

async fn put_secret(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(name): Param,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let secret: NewSecret = parse(&small_body(body)?)?;
    let info = state.engine.set_secret(&tenant, &name, secret).await?;
    ok(StatusCode::OK, json!(info))
}

async fn delete_secret(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(name): Param,
) -> ApiResult {
    state.engine.delete_secret(&tenant, &name).await?;
    ok(StatusCode::OK, json!({ "deleted": name }))
}

async fn get_egress(State(state): State<AppState>, Tenant(tenant): Tenant) -> ApiResult {
    egress_view(&state, state.engine.egress_settings(&tenant).await?)
}

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
    let effective = settings
        .limits
        .unwrap_or_default()
        .over(EgressLimits::default())
        .clamp(&caps);
    ok(
        StatusCode::OK,
        json!({
            "rules": settings.rules,
            "limits": settings.limits.unwrap_or_default(),
            "effective_limits": effective,
            "operator": {
                "allow_private": egress.config().allow_private,
                "caps": caps,
            },
        }),
    )
}

async fn list_dead_letters(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueueName(queue): QueueName,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    check_queue_name(&queue)?;
    let page = state
        .engine
        .dead_letters(
            &tenant,
            &queue,
            query.get("after").map(String::as_str),
            page_limit(&query, &["after", "limit"])?,
        )
        .await?;
    ok(
        StatusCode::OK,
        json!({ "runs": page.runs, "next": page.next }),
    )
}

async fn retry_dead_letters(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueueName(queue): QueueName,
) -> ApiResult {
    reject_new_work(&state)?;
    check_queue_name(&queue)?;
    let ids = state.engine.retry_dead_letters(&tenant, &queue).await?;
    ok(StatusCode::OK, json!({ "retried": ids }))
}

async fn purge_dead_letters(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    QueueName(queue): QueueName,
) -> ApiResult {
    check_queue_name(&queue)?;
    let purged = state.engine.purge_dead_letters(&tenant, &queue).await?;
    ok(StatusCode::OK, json!({ "purged": purged }))
}

async fn list_runs(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = page_limit(&query, &["queue", "job", "status", "limit", "after"])?;
    let status = match query.get("status") {
        Some(s) if s == "running" => None,
        Some(s) => Some(s.parse::<RunStatus>().map_err(ApiError::invalid_options)?),
        None => None,
    };
    let filter = RunFilter {
        queue: query.get("queue").cloned(),
        job: query.get("job").cloned(),
        status,
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
    let mut runs: Vec<RunRecord> = Vec::with_capacity(page.runs.len());
    for run in page.runs {
        runs.push(shown(&state, run).await);
    }
    if query.get("status").is_some_and(|s| s == "running") {
        runs.retain(|r| r.status == RunStatus::Running);
    }
    ok(StatusCode::OK, json!({"runs": runs, "next": page.next}))
}

/// Entries of each list a run view holds; the rest are paged (`GET /v1/runs/{id}/logs`, ...).
const VIEW_PAGE: usize = 1_000;

/// Refuses query parameters other than `allowed`; returns `limit` (1-1000, default 100).
fn page_limit(query: &HashMap<String, String>, allowed: &[&str]) -> Result<usize, ApiError> {
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

async fn get_run(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
) -> ApiResult {
    state.engine.tenant_run(&tenant, &id).await?;
    let mut view = state.engine.view_page(&id, VIEW_PAGE).await?;
    view.run = shown(&state, view.run).await;
    ok(StatusCode::OK, to_value(&view))
}

/// `GET /v1/runs/{id}/{steps|timeline|logs}?from=N&limit=M`: one page of a run's list.
async fn run_listing(
    state: &AppState,
    tenant: &str,
    id: &str,
    what: Listing,
    query: &HashMap<String, String>,
) -> ApiResult {
    let limit = page_limit(query, &["from", "limit"])?;
    let from = match query.get("from") {
        Some(f) => f.parse::<u32>().map_err(|_| {
            ApiError::invalid_options(format!("from '{f}' must be a position (0 or more)"))
        })?,
        None => 0,
    };
    state.engine.tenant_run(tenant, id).await?;
    let store = state.engine.store();
    let store_err = |e| ApiError::from(stepwise_engine::EngineError::Store(e));
    fn values<T: serde::Serialize>(page: (Vec<T>, Option<u32>)) -> (Vec<Value>, Option<u32>) {
        (page.0.iter().map(to_value).collect(), page.1)
    }
    let (items, next) = match what {
        Listing::Steps => values(store.steps_page(id, from, limit).await.map_err(store_err)?),
        Listing::Timeline => values(
            store
                .timeline_page(id, from, limit)
                .await
                .map_err(store_err)?,
        ),
        Listing::Logs => values(store.logs_page(id, from, limit).await.map_err(store_err)?),
    };
    ok(StatusCode::OK, json!({ "items": items, "next": next }))
}

async fn run_steps(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    run_listing(&state, &tenant, &id, Listing::Steps, &query).await
}

async fn run_timeline(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    run_listing(&state, &tenant, &id, Listing::Timeline, &query).await
}

async fn run_logs(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    run_listing(&state, &tenant, &id, Listing::Logs, &query).await
}

async fn retry_run(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(id): Param,
) -> ApiResult {
    reject_new_work(&state)?;
    let run = state.engine.retry_for(&tenant, &id).await?;
    ok(StatusCode::OK, to_value(&shown(&state, run).await))
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
        #[derive(Debug, Deserialize)]
        #[allow(dead_code, reason = "only deserialized")]
        struct Named {
            name: String,
        }
        assert!(parse::<Named>(br#" {"name": "t"}"#).is_ok());
        for body in [&br#"["t"]"#[..], b" [5]", b"\"t\"", b"5"] {
            let err = parse::<Named>(body).expect_err("not an object");
            assert_eq!(err.code(), "invalid_json");
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
            assert_eq!(err.code(), "invalid_options", "{bad}");
        }
    }
}
