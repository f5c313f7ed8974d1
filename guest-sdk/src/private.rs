//! Support code for what `#[job]` and `export_jobs!` expand to. Not part of the API: its items
//! are public only because macro expansions in the author's crate must name them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::stepwise::jobs::types;
use crate::ctx::Ctx;
use crate::error::JobError;
use crate::host::{Host, WitHost};

/// SDK default for `backoff_initial_ms` when another backoff option is given.
pub const DEFAULT_BACKOFF_INITIAL_MS: u64 = 1_000;
/// SDK default for `backoff_max_ms` when another backoff option is given.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 3_600_000;
/// SDK default for `backoff_multiplier` when another backoff option is given.
pub const DEFAULT_BACKOFF_MULTIPLIER: f64 = 2.0;
/// SDK default for `backoff_jitter` when another backoff option is given.
pub const DEFAULT_BACKOFF_JITTER: f64 = 0.2;

/// One job, as registered by `#[job]`.
#[derive(Clone, Copy, Debug)]
pub struct JobDef {
    /// The job's name.
    pub name: &'static str,
    /// One line for humans.
    pub description: &'static str,
    /// The options given to `#[job]`.
    pub policy: Policy,
    /// The hosts it calls (`#[job(hosts = "...")]`), as egress patterns.
    pub hosts: &'static [&'static str],
    /// Parses the payload, runs the job function, encodes its output.
    pub run: fn(&mut Ctx, &str) -> Result<String, JobError>,
}

/// A job's policy as written in `#[job(...)]`: `None` where no option was given.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// `max_attempts`.
    pub max_attempts: Option<u32>,
    /// The `backoff_*` options, if any was given.
    pub backoff: Option<BackoffSpec>,
    /// `fuel`.
    pub fuel: Option<u64>,
    /// `timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// `memory_bytes`.
    pub memory_bytes: Option<u64>,
}

/// The `backoff_*` options as written; the SDK defaults fill the gaps.
#[derive(Clone, Copy, Debug)]
pub struct BackoffSpec {
    /// `backoff_initial_ms`.
    pub initial_ms: Option<u64>,
    /// `backoff_max_ms`.
    pub max_ms: Option<u64>,
    /// `backoff_multiplier`.
    pub multiplier: Option<f64>,
    /// `backoff_jitter`.
    pub jitter: Option<f64>,
}

impl Policy {
    fn to_wit(self) -> types::JobPolicy {
        types::JobPolicy {
            max_attempts: self.max_attempts,
            backoff: self.backoff.map(|b| types::Backoff {
                initial_ms: b.initial_ms.unwrap_or(DEFAULT_BACKOFF_INITIAL_MS),
                max_ms: b.max_ms.unwrap_or(DEFAULT_BACKOFF_MAX_MS),
                multiplier: b.multiplier.unwrap_or(DEFAULT_BACKOFF_MULTIPLIER),
                jitter: b.jitter.unwrap_or(DEFAULT_BACKOFF_JITTER),
            }),
            fuel: self.fuel,
            timeout_ms: self.timeout_ms,
            memory_bytes: self.memory_bytes,
        }
    }
}

/// What a job's input must be. A named trait, so a type that does not fit is reported as
/// such, at the input type in the job's signature.
#[diagnostic::on_unimplemented(
    message = "the job input `{Self}` cannot be parsed from the JSON payload",
    label = "this type must implement `serde::Deserialize` and own its data",
    note = "derive it: `#[derive(Deserialize)]` (in the prelude)"
)]
pub trait JobInput: DeserializeOwned {}

impl<T: DeserializeOwned> JobInput for T {}

/// What a job's output must be; see [`JobInput`].
#[diagnostic::on_unimplemented(
    message = "the job output `{Self}` cannot be written as JSON",
    label = "this type must implement `serde::Serialize`",
    note = "derive it: `#[derive(Serialize)]` (in the prelude)"
)]
pub trait JobOutput: Serialize {}

impl<T: Serialize> JobOutput for T {}

/// The first argument of a job function. A trait rather than a plain `&mut Ctx` parameter so
/// that a wrong type is reported at the author's signature, with the rule.
#[diagnostic::on_unimplemented(
    message = "the first argument of a job function must be `&mut Ctx`, not `{Self}`",
    label = "expected `&mut Ctx`"
)]
pub trait CtxArg<'a> {
    /// Passes the context on.
    fn from_ctx(ctx: &'a mut Ctx) -> Self;
}

impl<'a> CtxArg<'a> for &'a mut Ctx {
    fn from_ctx(ctx: &'a mut Ctx) -> Self {
        ctx
    }
}

/// What a job function returns; see [`CtxArg`] for why this is a trait.
#[diagnostic::on_unimplemented(
    message = "a job function must return `Result<Out, JobError>`, not `{Self}`",
    label = "expected `Result<Out, JobError>`"
)]
pub trait JobResult {
    /// The job's output as JSON, or its error.
    fn encode(self) -> Result<String, JobError>;
}

impl<T: JobOutput> JobResult for Result<T, JobError> {
    fn encode(self) -> Result<String, JobError> {
        encode_output(self)
    }
}

/// Parses a job's payload; a payload that does not fit the input type will never fit, so the
/// failure is permanent.
pub fn parse_input<T: JobInput>(job: &str, payload: &str) -> Result<T, JobError> {
    serde_json::from_str(payload)
        .map_err(|e| JobError::non_retryable(format!("invalid payload for job '{job}': {e}")))
}

/// Encodes a job's output as JSON.
pub fn encode_output<T: JobOutput>(output: Result<T, JobError>) -> Result<String, JobError> {
    let value = output?;
    serde_json::to_string(&value)
        .map_err(|e| JobError::non_retryable(format!("the job's output cannot be serialized: {e}")))
}

/// `egress-needs`: the hosts of every job that declared some.
pub fn egress_needs(jobs: &[JobDef]) -> Vec<(String, Vec<String>)> {
    jobs.iter()
        .filter(|j| !j.hosts.is_empty())
        .map(|j| {
            let hosts = j.hosts.iter().map(|h| (*h).to_owned()).collect();
            (j.name.to_owned(), hosts)
        })
        .collect()
}

/// `describe`, for the jobs given to `export_jobs!`.
pub fn describe(jobs: &[JobDef]) -> Vec<types::JobSpec> {
    jobs.iter()
        .map(|job| types::JobSpec {
            name: job.name.to_owned(),
            description: job.description.to_owned(),
            policy: job.policy.to_wit(),
        })
        .collect()
}

/// `run`, for the jobs given to `export_jobs!`.
pub fn run(
    jobs: &[JobDef],
    ctx: types::JobContext,
    payload: String,
) -> Result<String, types::JobError> {
    dispatch(jobs, ctx, &payload, Box::new(WitHost)).map_err(Into::into)
}

fn dispatch(
    jobs: &[JobDef],
    ctx: types::JobContext,
    payload: &str,
    host: Box<dyn Host>,
) -> Result<String, JobError> {
    let Some(job) = jobs.iter().find(|j| j.name == ctx.job) else {
        let known: Vec<_> = jobs.iter().map(|j| j.name).collect();
        return Err(JobError::non_retryable(format!(
            "unknown job '{}'; this component offers: {}",
            ctx.job,
            known.join(", ")
        )));
    };
    let mut ctx = Ctx::new(ctx.run_id, ctx.job, ctx.attempt, host);
    (job.run)(&mut ctx, payload)
}

/// Fails compilation (the call is in a `const`) when two exported jobs share a name, since
/// the host could only ever run one of them.
pub const fn assert_unique_names(jobs: &[JobDef]) {
    let mut i = 0;
    while i < jobs.len() {
        let mut j = i + 1;
        while j < jobs.len() {
            if str_eq(jobs[i].name, jobs[j].name) {
                panic!("export_jobs!: two exported jobs have the same name");
            }
            j += 1;
        }
        i += 1;
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::host::{Level, StepState};

    struct NoHost;

    impl Host for NoHost {
        fn begin(&self, _: &str) -> StepState {
            StepState::Run(1)
        }
        fn succeed(&self, _: &str, _: &str) {}
        fn fail(&self, _: &str, _: &JobError) {}
        fn sleep(&self, _: &str, _: u64) {}
        fn log(&self, _: Level, _: &str) {}
    }

    fn double(ctx: &mut Ctx, input: u32) -> Result<u32, JobError> {
        ctx.step("double", || Ok(input * 2))
    }

    const JOBS: &[JobDef] = &[
        JobDef {
            name: "double",
            description: "Doubles a number.",
            policy: Policy {
                max_attempts: Some(3),
                backoff: Some(BackoffSpec {
                    initial_ms: Some(200),
                    max_ms: None,
                    multiplier: None,
                    jitter: None,
                }),
                fuel: None,
                timeout_ms: None,
                memory_bytes: None,
            },
            hosts: &["api.example.com"],
            run: |ctx, payload| encode_output(double(ctx, parse_input("double", payload)?)),
        },
        JobDef {
            name: "noop",
            description: "",
            policy: Policy {
                max_attempts: None,
                backoff: None,
                fuel: None,
                timeout_ms: None,
                memory_bytes: None,
            },
            hosts: &[],
            run: |_, _| Ok("null".into()),
        },
    ];

    #[test]
    fn egress_needs_list_the_jobs_that_declared_hosts() {
        assert_eq!(
            egress_needs(JOBS),
            vec![("double".to_owned(), vec!["api.example.com".to_owned()])]
        );
    }

    fn call(job: &str, payload: &str) -> Result<String, JobError> {
        let ctx = types::JobContext {
            run_id: "r".into(),
            job: job.into(),
            attempt: 1,
        };
        dispatch(JOBS, ctx, payload, Box::new(NoHost))
    }

    #[test]
    fn dispatch_runs_the_named_job() {
        assert_eq!(call("double", "21").unwrap(), "42");
    }

    #[test]
    fn an_unknown_job_is_a_permanent_error_listing_the_known_ones() {
        let err = call("triple", "1").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonRetryable);
        assert_eq!(
            err.message(),
            "unknown job 'triple'; this component offers: double, noop"
        );
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_a_permanent_error() {
        let err = call("double", r#"{"n":1}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonRetryable);
        assert!(
            err.message()
                .starts_with("invalid payload for job 'double': invalid type: map"),
            "{err}"
        );
    }

    #[test]
    fn backoff_gaps_take_the_sdk_defaults_and_absent_options_stay_absent() {
        let specs = describe(JOBS);
        let backoff = specs[0].policy.backoff.as_ref().expect("backoff given");
        assert_eq!(backoff.initial_ms, 200);
        assert_eq!(backoff.max_ms, DEFAULT_BACKOFF_MAX_MS);
        assert_eq!(backoff.multiplier, DEFAULT_BACKOFF_MULTIPLIER);
        assert_eq!(backoff.jitter, DEFAULT_BACKOFF_JITTER);
        assert_eq!(specs[0].policy.max_attempts, Some(3));
        assert!(specs[1].policy.backoff.is_none());
        assert!(specs[1].policy.max_attempts.is_none());
    }

    #[test]
    fn duplicate_names_are_detected() {
        assert!(str_eq("a-b", "a-b"));
        assert!(!str_eq("a-b", "a-c"));
        assert_unique_names(JOBS);
    }
}
