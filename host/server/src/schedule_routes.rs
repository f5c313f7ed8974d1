//! The `/v1/schedules` routes: a tenant's cron schedules, created, listed, shown with their
//! next fire times and recent fires, changed (paused, resumed) and removed.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use stepwise_api::{
    CreateSchedule, ErrorBody, Schedule, ScheduleDeleted, ScheduleList, UpdateSchedule,
};
use stepwise_core::schedule::ScheduleRecord;
use stepwise_engine::SchedulePatch;

use super::AppState;
use super::auth::Tenant;
use super::error::ApiError;
use super::routes::{ApiResult, Param, ok, parse_exact, reject_new_work};

/// Fire times a schedule view lists.
const NEXT_FIRES: usize = 5;

fn view(state: &AppState, record: ScheduleRecord) -> Schedule {
    let next = state.engine.upcoming_fires(&record, NEXT_FIRES);
    Schedule::from_record(record, next)
}

/// Creates a cron schedule: each fire enqueues its job, once per fire time however the host
/// restarts.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules",
    security(("tenant" = [])),
    request_body = CreateSchedule,
    responses((status = 201, body = Schedule), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub(super) async fn create_schedule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    reject_new_work(&state)?;
    let request: CreateSchedule = parse_exact(body)?;
    let record = state
        .engine
        .create_schedule(&tenant, request.name.as_str(), request.spec())
        .await?;
    ok(StatusCode::CREATED, &view(&state, record))
}

/// The tenant's schedules, by name.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    security(("tenant" = [])),
    responses((status = 200, body = ScheduleList), (status = 401, body = ErrorBody)))]
pub(super) async fn list_schedules(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> ApiResult {
    let schedules = state
        .engine
        .schedules(&tenant)
        .await?
        .into_iter()
        .map(|r| view(&state, r))
        .collect();
    ok(StatusCode::OK, &ScheduleList { schedules })
}

/// A schedule, with its next 5 fire times and its recent fires.
#[utoipa::path(get, path = "/v1/schedules/{name}", tag = "schedules",
    security(("tenant" = [])),
    params(("name" = stepwise_api::QueueName, Path, description = "The schedule")),
    responses((status = 200, body = Schedule), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn get_schedule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(name): Param,
) -> ApiResult {
    let record = state.engine.schedule(&tenant, &name).await?;
    ok(StatusCode::OK, &view(&state, record))
}

/// Changes a schedule: pause, resume, or any of its fields.
#[utoipa::path(put, path = "/v1/schedules/{name}", tag = "schedules",
    security(("tenant" = [])),
    params(("name" = stepwise_api::QueueName, Path, description = "The schedule")),
    request_body = UpdateSchedule,
    responses((status = 200, body = Schedule), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub(super) async fn update_schedule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(name): Param,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: UpdateSchedule = parse_exact(body)?;
    if request == UpdateSchedule::default() {
        return Err(ApiError::invalid_options(
            "nothing to change: give at least one field",
        ));
    }
    let patch = SchedulePatch {
        cron: request.cron,
        timezone: request.timezone,
        job: request.job.map(stepwise_api::JobName::into_string),
        queue: request.queue.map(stepwise_api::QueueName::into_string),
        payload: request.payload.map(|p| p.to_string()),
        overrides: request.overrides,
        priority: request.priority,
        overlap: request.overlap,
        catch_up: request.catch_up,
        catch_up_limit: request.catch_up_limit,
        paused: request.paused,
    };
    let record = state.engine.update_schedule(&tenant, &name, patch).await?;
    ok(StatusCode::OK, &view(&state, record))
}

/// Removes a schedule; the runs it enqueued stay.
#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "schedules",
    security(("tenant" = [])),
    params(("name" = stepwise_api::QueueName, Path, description = "The schedule")),
    responses((status = 200, body = ScheduleDeleted), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn delete_schedule(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Param(name): Param,
) -> ApiResult {
    state.engine.delete_schedule(&tenant, &name).await?;
    ok(StatusCode::OK, &ScheduleDeleted { deleted: name })
}
