//! [`Ctx`]: durable steps, durable sleeps and logging for one attempt of a run.
//!
//! A step is "live or replay": the first time it completes, its output is recorded by the host
//! before the job goes on; on every later attempt the recorded output is returned and the
//! closure is not run. Outputs travel as JSON, so a step's value must round-trip through serde.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{JobError, duration_to_ms};
use crate::host::{Host, Level, StepState};

/// The handle a job uses to talk to the host during one attempt: steps, sleeps, logs, and
/// facts about the attempt.
///
/// Every job function receives one:
///
/// ```no_run
/// use stepwise_sdk::prelude::*;
///
/// #[job]
/// fn greet(ctx: &mut Ctx, name: String) -> Result<String, JobError> {
///     ctx.log_info(format!("greeting {name} in run {}", ctx.run_id()));
///     ctx.step("compose", || Ok(format!("Hello, {name}!")))
/// }
/// # fn main() {}
/// ```
///
/// All methods take `&self`, so a step's closure can log through the same `Ctx`. Steps cannot
/// nest: starting a step or a sleep inside a step's closure fails with a non-retryable error.
pub struct Ctx {
    run_id: String,
    job: String,
    attempt: u32,
    names: RefCell<StepNames>,
    /// The step whose closure is running, to refuse nesting before the host sees it.
    open_step: RefCell<Option<String>>,
    pub(crate) host: Box<dyn Host>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("run_id", &self.run_id)
            .field("job", &self.job)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    pub(crate) fn new(run_id: String, job: String, attempt: u32, host: Box<dyn Host>) -> Self {
        Self {
            run_id,
            job,
            attempt,
            names: RefCell::default(),
            open_step: RefCell::default(),
            host,
        }
    }

    /// The run's unique id; the same on every attempt, so it makes a good idempotency key
    /// for calls to other services.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// let key = format!("{}:charge", ctx.run_id());
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The name of the job being run, as declared by `#[job]`.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// #[job]
    /// fn weekly_digest(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    ///     assert_eq!(ctx.job(), "weekly-digest");
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    pub fn job(&self) -> &str {
        &self.job
    }

    /// This attempt's number within the run, from 1. Every invocation counts, including the
    /// resumption after a durable sleep.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// if ctx.attempt() > 1 {
    ///     ctx.log_info("resuming");
    /// }
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Runs `f` as the durable step `name`, or returns its recorded output if it already
    /// completed in an earlier attempt.
    ///
    /// - If the host has an output for `name`, it is deserialized and returned; `f` does not
    ///   run.
    /// - Otherwise `f` runs. On `Ok(value)` the value is serialized and recorded (durably,
    ///   before this returns) and returned; the value returned is the one read back from its
    ///   JSON, so the first attempt sees exactly what a replay will see. On `Err(e)` the
    ///   failure is recorded and `Err(e)` is returned: propagate it with `?` so the attempt
    ///   ends, and the host retries the step according to `e`'s kind and the job's policy.
    ///
    /// A name used more than once in one attempt gets a suffix: the second `"send"` is
    /// `"send#2"`, the third `"send#3"`. That keeps loops deterministic, as long as the loop
    /// runs the same steps in the same order on every attempt. Names must be non-empty and
    /// must not contain `#`.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # fn charge_card(id: &str) -> Result<String, JobError> { Ok(format!("ch_{id}")) }
    /// #[job]
    /// fn charge(ctx: &mut Ctx, payment_id: String) -> Result<String, JobError> {
    ///     // Runs once per run, however many attempts the job takes.
    ///     let charge_id: String = ctx.step("charge", || charge_card(&payment_id))?;
    ///     Ok(charge_id)
    /// }
    /// # fn main() {}
    /// ```
    pub fn step<T, F>(&self, name: impl AsRef<str>, f: F) -> Result<T, JobError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Result<T, JobError>,
    {
        self.step_attempt(name, |_| f())
    }

    /// Like [`step`](Ctx::step), but the closure receives the step's attempt number (from 1),
    /// for example to log it or to give up differently on late attempts.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// #[job(max_attempts = 5)]
    /// fn provision(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    ///     ctx.step_attempt("provision", |attempt| {
    ///         ctx.log_info(format!("provisioning, attempt {attempt}"));
    ///         Ok(())
    ///     })
    /// }
    /// # fn main() {}
    /// ```
    pub fn step_attempt<T, F>(&self, name: impl AsRef<str>, f: F) -> Result<T, JobError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(u32) -> Result<T, JobError>,
    {
        let name = self.next_name(name.as_ref(), "step")?;
        match self.host.begin(&name) {
            StepState::Completed(json) => serde_json::from_str(&json).map_err(|e| {
                JobError::non_retryable(format!(
                    "the recorded output of step '{name}' does not fit its type: {e}"
                ))
            }),
            StepState::Run(attempt) => {
                *self.open_step.borrow_mut() = Some(name.clone());
                let outcome = f(attempt).and_then(|value| round_trip(&name, &value));
                *self.open_step.borrow_mut() = None;
                match outcome {
                    Ok((value, json)) => {
                        self.host.succeed(&name, &json);
                        Ok(value)
                    }
                    Err(error) => {
                        self.host.fail(&name, &error);
                        Err(error)
                    }
                }
            }
        }
    }

    /// The value of the tenant's secret `name`, if the tenant stored it as readable
    /// (`stepwise secrets set NAME --readable`). For HTTP credentials prefer a secret bound
    /// to hosts, written `{{secret:NAME}}` in a request header: the guest never sees it. The
    /// host masks the value wherever it would appear in the run's logs, outputs and errors.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// let signing_key = ctx.secret("WEBHOOK_SIGNING_KEY")?;
    /// # let _ = signing_key;
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn secret(&self, name: &str) -> Result<String, JobError> {
        self.host.secret(name).map_err(JobError::non_retryable)
    }

    /// A key for an `Idempotency-Key` header: the same on every attempt of the step in
    /// progress (in this run), different for every other step and run. Only inside a step:
    /// outside one there is nothing for the key to stay the same across.
    ///
    /// For a new key per attempt (a dunning call that must charge again), combine it with the
    /// attempt number that [`step_attempt`](Ctx::step_attempt) passes to its closure.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// ctx.step("charge", || {
    ///     let key = ctx.idempotency_key()?; // e.g. "run_0193….charge"
    ///     # let _ = key;
    ///     Ok(())
    /// })
    /// # }
    /// # fn main() {}
    /// ```
    pub fn idempotency_key(&self) -> Result<String, JobError> {
        let open = self.open_step.borrow();
        let step = open.as_deref().ok_or_else(|| {
            JobError::non_retryable("idempotency_key() is only available inside a step")
        })?;
        Ok(idempotency_key(&self.run_id, step))
    }

    /// A durable timer: returns once `duration` has passed since the run first reached the
    /// sleep named `name`.
    ///
    /// Until then the host ends the attempt (no instance is kept waiting) and runs the job
    /// again when the time has come; completed steps replay from the record, so the job
    /// continues right after the sleep. Sleep names share the namespace and the suffix rule
    /// of step names. The host counts whole milliseconds; `duration` is rounded up.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// ctx.sleep("cool-off", Duration::from_secs(30))?;
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn sleep(&self, name: impl AsRef<str>, duration: Duration) -> Result<(), JobError> {
        let name = self.next_name(name.as_ref(), "sleep")?;
        self.host.sleep(&name, duration_to_ms(duration));
        Ok(())
    }

    /// Appends a line at *trace* level to the run's log.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// ctx.log_trace("entering the loop");
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn log_trace(&self, message: impl AsRef<str>) {
        self.host.log(Level::Trace, message.as_ref());
    }

    /// Appends a line at *debug* level to the run's log.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// ctx.log_debug(format!("{} items", 3));
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn log_debug(&self, message: impl AsRef<str>) {
        self.host.log(Level::Debug, message.as_ref());
    }

    /// Appends a line at *info* level to the run's log: normal progress.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// ctx.log_info("receipt sent");
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn log_info(&self, message: impl AsRef<str>) {
        self.host.log(Level::Info, message.as_ref());
    }

    /// Appends a line at *warn* level to the run's log: something unexpected that the job
    /// recovered from.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// ctx.log_warn("no avatar; using the default");
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn log_warn(&self, message: impl AsRef<str>) {
        self.host.log(Level::Warn, message.as_ref());
    }

    /// Appends a line at *error* level to the run's log.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// ctx.log_error("the mail server refused the message");
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn log_error(&self, message: impl AsRef<str>) {
        self.host.log(Level::Error, message.as_ref());
    }

    /// The journal name for the next use of `base`, refusing what the host would reject
    /// later and less clearly.
    pub(crate) fn next_name(&self, base: &str, what: &str) -> Result<String, JobError> {
        if let Some(open) = self.open_step.borrow().as_deref() {
            return Err(JobError::non_retryable(format!(
                "{what} '{base}' started inside step '{open}': steps and sleeps cannot nest"
            )));
        }
        self.names
            .borrow_mut()
            .next(base)
            .map_err(|reason| JobError::non_retryable(format!("invalid {what} name: {reason}")))
    }
}

/// Serializes a step's value and reads it back, so that a value whose JSON does not
/// deserialize into its own type fails on the first attempt instead of on every replay.
fn round_trip<T>(name: &str, value: &T) -> Result<(T, String), JobError>
where
    T: Serialize + DeserializeOwned,
{
    let json = serde_json::to_string(value).map_err(|e| {
        JobError::non_retryable(format!(
            "the output of step '{name}' cannot be serialized: {e}"
        ))
    })?;
    let value = serde_json::from_str(&json).map_err(|e| {
        JobError::non_retryable(format!(
            "the output of step '{name}' does not deserialize from its own JSON: {e}"
        ))
    })?;
    Ok((value, json))
}

/// Step names seen so far in this attempt.
///
/// The count restarts with every attempt (every attempt gets a fresh `Ctx`), so the n-th use of
/// a name maps to the same journal entry on every attempt of a deterministic job.
#[derive(Debug, Default)]
pub(crate) struct StepNames {
    seen: HashMap<String, u32>,
}

impl StepNames {
    /// `base` the first time, then `base#2`, `base#3`, ...
    pub(crate) fn next(&mut self, base: &str) -> Result<String, String> {
        if base.is_empty() {
            return Err("a name cannot be empty".to_owned());
        }
        if base.contains('#') {
            return Err(format!(
                "'{base}' contains '#', which marks repeated names (\"name#2\")"
            ));
        }
        let count = self.seen.entry(base.to_owned()).or_insert(0);
        *count += 1;
        Ok(match *count {
            1 => base.to_owned(),
            n => format!("{base}#{n}"),
        })
    }
}

/// `{run}.{step}` for short plain step names; long or unusual ones are replaced by the first
/// 16 bytes of their sha256, so a key stays under 100 bytes (providers cap them at 255).
fn idempotency_key(run_id: &str, step: &str) -> String {
    let plain = step.len() <= 48
        && step
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'#'));
    if plain {
        return format!("{run_id}.{step}");
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(step.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{run_id}.{hex}")
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use super::*;
    use crate::error::ErrorKind;

    /// A journal in memory, behaving like the host's.
    #[derive(Default)]
    struct Journal {
        completed: HashMap<String, String>,
        attempts: HashMap<String, u32>,
        calls: Vec<String>,
        logs: Vec<(Level, String)>,
    }

    #[derive(Clone, Default)]
    struct FakeHost(Rc<RefCell<Journal>>);

    impl Host for FakeHost {
        fn begin(&self, name: &str) -> StepState {
            let mut j = self.0.borrow_mut();
            j.calls.push(format!("begin {name}"));
            if let Some(out) = j.completed.get(name) {
                return StepState::Completed(out.clone());
            }
            let attempt = j.attempts.entry(name.to_owned()).or_insert(0);
            *attempt += 1;
            StepState::Run(*attempt)
        }
        fn succeed(&self, name: &str, output: &str) {
            let mut j = self.0.borrow_mut();
            j.calls.push(format!("succeed {name} {output}"));
            j.completed.insert(name.to_owned(), output.to_owned());
        }
        fn fail(&self, name: &str, error: &JobError) {
            let mut j = self.0.borrow_mut();
            j.calls.push(format!("fail {name} {}", error.message()));
        }
        fn sleep(&self, name: &str, duration_ms: u64) {
            let mut j = self.0.borrow_mut();
            j.calls.push(format!("sleep {name} {duration_ms}"));
        }
        fn log(&self, level: Level, message: &str) {
            let mut j = self.0.borrow_mut();
            j.logs.push((level, message.to_owned()));
        }
    }

    fn ctx(host: &FakeHost, attempt: u32) -> Ctx {
        Ctx::new(
            "run-1".into(),
            "job".into(),
            attempt,
            Box::new(host.clone()),
        )
    }

    fn calls(host: &FakeHost) -> Vec<String> {
        std::mem::take(&mut host.0.borrow_mut().calls)
    }

    #[test]
    fn repeated_names_get_a_stable_suffix() {
        let mut names = StepNames::default();
        let got: Vec<_> = ["x", "y", "x", "x", "y"]
            .iter()
            .map(|n| names.next(n).unwrap())
            .collect();
        assert_eq!(got, ["x", "y", "x#2", "x#3", "y#2"]);

        // A new attempt starts counting again, so it reaches the same names.
        let mut again = StepNames::default();
        assert_eq!(again.next("x").unwrap(), "x");
    }

    #[test]
    fn names_with_the_suffix_marker_or_empty_are_refused() {
        let mut names = StepNames::default();
        assert!(names.next("x#2").unwrap_err().contains("'#'"));
        assert!(names.next("").unwrap_err().contains("empty"));
    }

    #[test]
    fn a_completed_step_is_replayed_without_running() {
        let host = FakeHost::default();
        let first = ctx(&host, 1);
        let value: u32 = first.step("a", || Ok(7)).unwrap();
        assert_eq!(value, 7);
        assert_eq!(calls(&host), ["begin a", "succeed a 7"]);

        let second = ctx(&host, 2);
        let replayed: u32 = second
            .step("a", || -> Result<u32, JobError> {
                panic!("must not run again")
            })
            .unwrap();
        assert_eq!(replayed, 7);
        assert_eq!(calls(&host), ["begin a"]);
    }

    #[test]
    fn a_failed_step_is_recorded_and_returned() {
        let host = FakeHost::default();
        let c = ctx(&host, 1);
        let err = c
            .step_attempt("a", |attempt| -> Result<(), JobError> {
                Err(JobError::retryable(format!("down on attempt {attempt}")))
            })
            .unwrap_err();
        assert_eq!(err.message(), "down on attempt 1");
        assert_eq!(calls(&host), ["begin a", "fail a down on attempt 1"]);

        let c = ctx(&host, 2);
        let attempt: u32 = c.step_attempt("a", Ok).unwrap();
        assert_eq!(attempt, 2);
    }

    #[test]
    fn a_recorded_output_of_the_wrong_type_is_a_permanent_error() {
        let host = FakeHost::default();
        host.0
            .borrow_mut()
            .completed
            .insert("a".into(), "\"text\"".into());
        let err = ctx(&host, 2).step("a", || Ok(1_u32)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonRetryable);
        assert!(err.message().contains("step 'a'"), "{err}");
    }

    #[test]
    fn an_output_that_cannot_be_serialized_fails_the_step_permanently() {
        let host = FakeHost::default();
        let bad: HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let err = ctx(&host, 1).step("a", || Ok(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonRetryable);
        assert!(err.message().contains("cannot be serialized"), "{err}");
        assert_eq!(calls(&host).len(), 2, "begin then fail");
    }

    #[test]
    fn steps_and_sleeps_share_names_and_suffixes() {
        let host = FakeHost::default();
        let c = ctx(&host, 1);
        c.step("x", || Ok(())).unwrap();
        c.sleep("x", Duration::from_millis(5)).unwrap();
        c.sleep("nap", Duration::from_micros(1)).unwrap();
        assert_eq!(
            calls(&host),
            ["begin x", "succeed x null", "sleep x#2 5", "sleep nap 1"]
        );
    }

    #[test]
    fn nesting_is_refused_and_logging_inside_a_step_works() {
        let host = FakeHost::default();
        let c = ctx(&host, 1);
        let err = c
            .step("outer", || {
                c.log_info("inside");
                c.step("inner", || Ok(()))
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonRetryable);
        assert!(err.message().contains("inside step 'outer'"), "{err}");
        assert_eq!(host.0.borrow().logs, [(Level::Info, "inside".to_owned())]);
        // The nesting error ended the outer step, so the next step is free to start.
        c.step("next", || Ok(())).unwrap();
    }

    #[test]
    fn idempotency_keys_are_stable_per_step_and_bounded() {
        assert_eq!(idempotency_key("run_1", "charge"), "run_1.charge");
        assert_eq!(idempotency_key("run_1", "send#2"), "run_1.send#2");
        let long = "x".repeat(300);
        let k = idempotency_key("run_1", &long);
        assert_eq!(k, idempotency_key("run_1", &long));
        assert_eq!(k.len(), "run_1.".len() + 32);
        assert_ne!(
            idempotency_key("run_1", "a b"),
            idempotency_key("run_2", "a b")
        );
    }
}
