//! # stepwise-core
//!
//! Stepwise's domain, shared by every other crate: the run records and their views
//! ([`model`]), retry and resource policies ([`policy`]), injected time and randomness
//! ([`clock`]), what a module's jobs are ([`job`]), a tenant's egress settings ([`egress`])
//! and stored secrets ([`secret`]). Nothing here runs guests or touches storage.

pub use stepwise_names as names;

pub mod attempt;
pub mod clock;
pub mod egress;
pub mod flow;
pub mod histogram;
pub mod job;
pub mod keyed;
pub mod model;
pub mod picker;
pub mod policy;
pub mod rate;
pub mod schedule;
pub mod secret;
pub mod text;
pub mod time_fmt;

pub use clock::{Clock, Jitter, ManualClock, Millis, NoJitter, SeededJitter, SystemClock};
pub use job::JobSpec;
pub use model::{FailureKind, RunRecord, RunStatus, RunView, StepRecord, StepStatus};
pub use policy::{Backoff, Caps, Policy, PolicyOverrides};
