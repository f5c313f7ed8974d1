//! # stepwise-api
//!
//! The HTTP API's wire types, defined once: `stepwise serve` answers with them, the CLI and
//! the tests read them, and the OpenAPI document (`GET /v1/openapi.json`, committed as
//! `docs/openapi.json`) is generated from them. Stored records (`stepwise_core::model`) are
//! separate types: a view is built from a record ([`Run::from_record`]), so the store can
//! change its format without changing the API.
//!
//! - [`names`]: tenant, queue and job names, validated on the way in.
//! - [`run`]: the run views (a run, its steps, the full view, pages of a run's lists).
//! - [`requests`]: what clients send.
//! - [`responses`]: what the other routes answer.
//! - [`schedules`]: cron schedules (`/v1/schedules`).
//! - [`flows`]: events sent to waiting runs (`POST /v1/events`).
//! - [`events`]: the server-sent events of `GET /v1/runs/{id}/events`.
//! - [`error`]: the error body and its stable codes.

pub mod error;
pub mod events;
pub mod flows;
pub mod names;
pub mod requests;
pub mod responses;
pub mod run;
pub mod schedules;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use flows::{Event, EventPage, EventSent, Resumed, SendEvent};
pub use names::{JobName, QueueName, TenantName};
pub use requests::{
    CancelMatching, CancelRun, CreateTenant, DebounceSpec, Enqueue, PutQueue, PutSecret,
    RateLimitSpec,
};
pub use run::{Held, Run, RunState, RunView, Step};
pub use schedules::{CreateSchedule, Schedule, ScheduleDeleted, ScheduleList, UpdateSchedule};
