//! Flows between runs: waiting for an event ([`Ctx::wait_for_event`]) and starting child runs
//! ([`Ctx::invoke`], [`Ctx::invoke_all`], [`Ctx::spawn`], [`Ctx::spawn_all`]).
//!
//! Each is a named step of the run: its result is recorded once, and every later attempt gets
//! the recorded result back without waiting or starting anything again. Until the result
//! exists (no event yet, children still running) the host ends the attempt — no instance is
//! held — and runs the job again when it does; completed steps replay, so the job continues
//! right after the call.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Ctx;
use crate::error::{JobError, duration_to_ms};

/// How a child run is started: the options of an enqueue. Every field is optional.
///
/// ```no_run
/// # use stepwise_sdk::prelude::*;
/// let options = ChildOptions::default()
///     .queue("emails")
///     .max_attempts(3)
///     .delay(Duration::from_secs(10));
/// # let _ = options;
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChildOptions {
    pub(crate) queue: Option<String>,
    pub(crate) priority: i32,
    pub(crate) delay_ms: Option<u64>,
    pub(crate) max_attempts: Option<u32>,
    /// (initial ms, max ms, multiplier, jitter).
    pub(crate) backoff: Option<(u64, u64, f64, f64)>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) fuel: Option<u64>,
    pub(crate) memory_bytes: Option<u64>,
}

impl ChildOptions {
    /// The child's queue (default: the parent's).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Its priority among the tenant's runs due at the same time.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Start no earlier than this long after the step started it.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay_ms = Some(duration_to_ms(delay));
        self
    }

    /// Attempts per step of the child, counting the first.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Exponential backoff between the child's attempts: `initial` after the first failure,
    /// growing by `multiplier` up to `max`, with up to `jitter` (0.0–1.0) of each delay
    /// randomised.
    pub fn backoff(
        mut self,
        initial: Duration,
        max: Duration,
        multiplier: f64,
        jitter: f64,
    ) -> Self {
        self.backoff = Some((
            duration_to_ms(initial),
            duration_to_ms(max),
            multiplier,
            jitter,
        ));
        self
    }

    /// Wall-clock limit of one attempt of the child.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(duration_to_ms(timeout));
        self
    }

    /// Fuel one attempt of the child may burn.
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = Some(fuel);
        self
    }

    /// Linear memory one attempt of the child may use, in bytes.
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = Some(bytes);
        self
    }
}

/// A child run to start: a job of the same tenant with its payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    pub(crate) job: String,
    pub(crate) payload: String,
    pub(crate) options: ChildOptions,
}

impl Child {
    /// A run of `job` with `payload`, serialized to JSON now.
    pub fn new(job: impl Into<String>, payload: &impl Serialize) -> Result<Self, JobError> {
        let job = job.into();
        let payload = serde_json::to_string(payload).map_err(|e| {
            JobError::non_retryable(format!(
                "the payload of child '{job}' cannot be serialized: {e}"
            ))
        })?;
        Ok(Self {
            job,
            payload,
            options: ChildOptions::default(),
        })
    }

    /// With these options.
    pub fn with_options(mut self, options: ChildOptions) -> Self {
        self.options = options;
        self
    }
}

fn decode<T: DeserializeOwned>(step: &str, what: &str, json: &str) -> Result<T, JobError> {
    serde_json::from_str(json).map_err(|e| {
        JobError::non_retryable(format!(
            "{what} of step '{step}' does not deserialize into the expected type: {e}"
        ))
    })
}

impl Ctx {
    /// Waits, as the step `name`, for an event named `event` with exactly `correlation_key`
    /// (`None`: only events sent without a key), for at most `timeout`. Returns the event's
    /// payload, or `None` once the wait timed out.
    ///
    /// The wait matches the earliest event received at or after this run was created (not
    /// taken by an earlier wait of this run): an event sent before the handler reached the
    /// wait is not missed. Every run waiting on the key gets the event.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// #[derive(Deserialize)]
    /// struct Paid { amount: u64 }
    ///
    /// #[job]
    /// fn checkout(ctx: &mut Ctx, order: String) -> Result<String, JobError> {
    ///     let paid: Option<Paid> =
    ///         ctx.wait_for_event("await-payment", "payment.succeeded", Some(&order),
    ///                            Duration::from_secs(3600))?;
    ///     match paid {
    ///         Some(p) => Ok(format!("paid {}", p.amount)),
    ///         None => Err(JobError::non_retryable("no payment within the hour")),
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn wait_for_event<T: DeserializeOwned>(
        &self,
        name: impl AsRef<str>,
        event: &str,
        correlation_key: Option<&str>,
        timeout: Duration,
    ) -> Result<Option<T>, JobError> {
        let name = self.next_name(name.as_ref(), "wait")?;
        match self
            .host
            .wait_for_event(&name, event, correlation_key, duration_to_ms(timeout))
        {
            Some(json) => decode(&name, "the event's payload", &json).map(Some),
            None => Ok(None),
        }
    }

    /// Starts a run of `job` with `payload` as the step `name` and waits until it ends: its
    /// output, or its failure (with the child's kind; the message names the child run). The
    /// child is started once, whatever happens to this run's attempts.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// let receipt: String =
    ///     ctx.invoke("charge", "charge-card", &serde_json::json!({"cents": 500}),
    ///                ChildOptions::default())?;
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn invoke<T: DeserializeOwned>(
        &self,
        name: impl AsRef<str>,
        job: &str,
        payload: &impl Serialize,
        options: ChildOptions,
    ) -> Result<T, JobError> {
        let child = Child::new(job, payload)?.with_options(options);
        let mut all = self.invoke_all(name, vec![child])?;
        all.pop()
            .ok_or_else(|| JobError::non_retryable("the host answered no child output"))
    }

    /// Starts every child as the step `name` (fan-out) and waits until all of them ended
    /// (join): their outputs in order, or the failure of the first that did not complete.
    ///
    /// ```no_run
    /// # use stepwise_sdk::prelude::*;
    /// # #[job] fn j(ctx: &mut Ctx, _in: ()) -> Result<(), JobError> {
    /// let children = (0..10)
    ///     .map(|i| Child::new("resize", &i))
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// let sizes: Vec<u64> = ctx.invoke_all("resize-all", children)?;
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn invoke_all<T: DeserializeOwned>(
        &self,
        name: impl AsRef<str>,
        children: Vec<Child>,
    ) -> Result<Vec<T>, JobError> {
        let name = self.next_name(name.as_ref(), "invoke")?;
        let outputs = self.host.invoke(&name, children)?;
        outputs
            .iter()
            .map(|json| decode(&name, "a child's output", json))
            .collect()
    }

    /// Starts a run of `job` with `payload` as the step `name` without waiting for it;
    /// returns its run id.
    pub fn spawn(
        &self,
        name: impl AsRef<str>,
        job: &str,
        payload: &impl Serialize,
        options: ChildOptions,
    ) -> Result<String, JobError> {
        let child = Child::new(job, payload)?.with_options(options);
        let mut ids = self.spawn_all(name, vec![child])?;
        ids.pop()
            .ok_or_else(|| JobError::non_retryable("the host answered no child run id"))
    }

    /// Starts every child as the step `name` without waiting; returns their run ids in order.
    pub fn spawn_all(
        &self,
        name: impl AsRef<str>,
        children: Vec<Child>,
    ) -> Result<Vec<String>, JobError> {
        let name = self.next_name(name.as_ref(), "spawn")?;
        self.host.spawn(&name, children)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::host::{Host, Level, StepState};

    /// A host answering flow calls from fixed replies, recording what it was asked.
    #[derive(Clone, Default)]
    struct Replies {
        asked: Rc<RefCell<Vec<String>>>,
        event: Option<String>,
        outputs: Vec<String>,
    }

    impl Host for Replies {
        fn begin(&self, _: &str) -> StepState {
            StepState::Run(1)
        }
        fn succeed(&self, _: &str, _: &str) {}
        fn fail(&self, _: &str, _: &JobError) {}
        fn sleep(&self, _: &str, _: u64) {}
        fn log(&self, _: Level, _: &str) {}
        fn wait_for_event(
            &self,
            name: &str,
            event: &str,
            key: Option<&str>,
            ms: u64,
        ) -> Option<String> {
            self.asked
                .borrow_mut()
                .push(format!("wait {name} {event} {key:?} {ms}"));
            self.event.clone()
        }
        fn invoke(&self, name: &str, children: Vec<Child>) -> Result<Vec<String>, JobError> {
            let jobs: Vec<String> = children
                .iter()
                .map(|c| format!("{}:{}:{:?}", c.job, c.payload, c.options.queue))
                .collect();
            self.asked
                .borrow_mut()
                .push(format!("invoke {name} {}", jobs.join(",")));
            Ok(self.outputs.clone())
        }
    }

    fn ctx(host: &Replies) -> Ctx {
        Ctx::new("run-1".into(), "job".into(), 1, Box::new(host.clone()))
    }

    #[test]
    fn a_wait_decodes_the_events_payload_or_answers_none() {
        let host = Replies {
            event: Some("{\"cents\":5}".into()),
            ..Replies::default()
        };
        let c = ctx(&host);
        let got: Option<serde_json::Value> = c
            .wait_for_event("w", "paid", Some("k"), Duration::from_millis(1500))
            .unwrap();
        assert_eq!(got, Some(serde_json::json!({"cents": 5})));
        // The same base name again gets the stable suffix.
        let wrong: Result<Option<u64>, _> =
            c.wait_for_event("w", "paid", None, Duration::from_secs(1));
        assert!(wrong.unwrap_err().message().contains("w#2"));
        assert_eq!(
            host.asked.borrow().as_slice(),
            ["wait w paid Some(\"k\") 1500", "wait w#2 paid None 1000"]
        );
        let none = Replies::default();
        let got: Option<u64> = ctx(&none)
            .wait_for_event("w", "paid", None, Duration::ZERO)
            .unwrap();
        assert_eq!(got, None);
    }

    #[test]
    fn invoke_sends_every_child_and_decodes_their_outputs_in_order() {
        let host = Replies {
            outputs: vec!["1".into(), "4".into()],
            ..Replies::default()
        };
        let c = ctx(&host);
        let children = vec![
            Child::new("double", &1).unwrap(),
            Child::new("double", &2)
                .unwrap()
                .with_options(ChildOptions::default().queue("fast")),
        ];
        let got: Vec<u32> = c.invoke_all("fan", children).unwrap();
        assert_eq!(got, [1, 4]);
        assert_eq!(
            host.asked.borrow().as_slice(),
            ["invoke fan double:1:None,double:2:Some(\"fast\")"]
        );
    }

    #[test]
    fn a_flow_inside_a_step_is_refused_before_the_host_hears_of_it() {
        let host = Replies::default();
        let c = ctx(&host);
        let err = c
            .step("outer", || -> Result<(), JobError> {
                c.wait_for_event::<u32>("w", "e", None, Duration::ZERO)?;
                Ok(())
            })
            .unwrap_err();
        assert!(err.message().contains("cannot nest"), "{}", err.message());
        assert!(host.asked.borrow().is_empty());
    }
}
