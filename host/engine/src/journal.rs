//! The step journal of one attempt: answers the guest's step calls from the run's recorded
//! steps, makes each completion durable before the guest continues, and buffers everything
//! else (failures, timers, logs, timeline) for the commit that ends the attempt.
//!
//! This is "live or replay": a step whose record is completed is replayed (its output returned,
//! nothing run); any other step runs live and its attempt is counted.

mod flows;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

pub use stepwise_core::attempt::{
    GuestError, HostFault, StepInterrupt, StepState, Suspend, WakeCondition,
};
use stepwise_core::clock::Clock;
use stepwise_core::model::{
    ErrorInfo, EventKind, FailureKind, HttpCall, LogLevel, LogLine, LogSource, StepKind,
    StepRecord, StepStatus, TimelineEntry,
};
use stepwise_core::policy::MAX_DELAY_MS;
use stepwise_runtime::{Recording, StepHost};
use stepwise_store::{JournalWrites, Store, StoreError};

/// Limits on what one attempt, and one run's journal, may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalLimits {
    /// Largest step output and largest job output, in bytes.
    pub max_output_bytes: usize,
    /// Largest error message a guest may report, in bytes.
    pub max_error_bytes: usize,
    /// Log bytes one attempt may write; the rest is counted and dropped.
    pub max_log_bytes: usize,
    /// Log lines one attempt may write; the rest is counted and dropped.
    pub max_log_lines: usize,
    /// Longest single log line; longer lines are cut.
    pub max_log_line: usize,
    /// Steps and sleeps one run may record.
    pub max_steps: usize,
    /// Bytes of step outputs one run may record, all steps together.
    pub max_journal_bytes: u64,
    /// Longest step name, in bytes.
    pub max_step_name: usize,
}

impl Default for JournalLimits {
    /// 1 MiB outputs, 64 KiB error messages, 256 KiB and 10,000 lines of logs per attempt,
    /// 4 KiB lines, 10,000 steps and 64 MiB of step outputs per run, 256-byte step names.
    fn default() -> Self {
        Self {
            max_output_bytes: 1 << 20,
            max_error_bytes: 64 << 10,
            max_log_bytes: 256 << 10,
            max_log_lines: 10_000,
            max_log_line: 4 << 10,
            max_steps: 10_000,
            max_journal_bytes: 64 << 20,
            max_step_name: 256,
        }
    }
}

/// The step an attempt is executing now, shared between its journal and watchers.
#[derive(Debug, Clone, Default)]
pub struct LiveStep(Arc<std::sync::Mutex<Option<String>>>);

impl LiveStep {
    fn set(&self, step: Option<&str>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = step.map(str::to_owned);
    }

    /// The step executing now, if any.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One attempt's view of a run's steps.
pub struct Journal {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    run_id: String,
    /// The tenant whose stored-bytes counter this journal's commits add to.
    tenant: Option<String>,
    attempt: u32,
    limits: JournalLimits,
    steps: HashMap<String, StepRecord>,
    dirty: BTreeSet<String>,
    current: Option<String>,
    /// Where [`Journal::current`] is shown to watchers (`GET /v1/runs/{id}/events`).
    live: Option<LiveStep>,
    /// The durability of the attempt's start, which outbound requests wait for.
    gate: Option<stepwise_runtime::SendGate>,
    failed_step: Option<String>,
    timeline: Vec<TimelineEntry>,
    logs: Vec<LogLine>,
    log_bytes: usize,
    log_lines: usize,
    logs_dropped: u64,
    /// Bytes of step outputs recorded for the run, all attempts together.
    journal_bytes: u64,
    steps_completed: u32,
    /// When the last step completion of this attempt became durable.
    last_durable: Option<std::time::Instant>,
    /// Wall time between consecutive durable step completions, in microseconds: the guest's
    /// work between them plus one commit. Reported to the metrics after the attempt.
    step_gaps_micros: Vec<u64>,
    /// What event waits and child runs need of the run and the engine; `None`: the run
    /// cannot use them (a journal built without an engine).
    flow: Option<flows::FlowContext>,
    /// What the run waits for, once the attempt suspended on an event or children.
    wait: Option<stepwise_core::flow::RunWait>,
    /// Events this attempt's waits took, recorded on the events with the next commit.
    deliveries: Vec<stepwise_store::Delivery>,
    /// The attempt's cancel flag, which a step starting children checks after each child.
    cancel: Option<stepwise_core::attempt::CancelFlag>,
    /// The claim the attempt runs under: every write names it, and is refused once another
    /// host holds the run.
    lease: Option<stepwise_store::Lease>,
}

impl Journal {
    /// Loads `run_id`'s recorded steps for attempt number `attempt`.
    pub async fn load(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        run_id: &str,
        attempt: u32,
        limits: JournalLimits,
    ) -> Result<Self, StoreError> {
        let steps = store.load_journal(run_id).await?;
        let mut journal = Self::empty(store, clock, run_id, attempt, limits);
        journal.journal_bytes = steps.iter().map(|s| s.output_bytes).sum();
        journal.steps = steps.into_iter().map(|s| (s.name.clone(), s)).collect();
        Ok(journal)
    }

    /// A journal for a run with nothing recorded: no steps. Reads nothing.
    pub fn empty(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        run_id: &str,
        attempt: u32,
        limits: JournalLimits,
    ) -> Self {
        Self {
            store,
            clock,
            run_id: run_id.to_owned(),
            tenant: None,
            attempt,
            limits,
            steps: HashMap::new(),
            dirty: BTreeSet::new(),
            current: None,
            live: None,
            gate: None,
            failed_step: None,
            timeline: Vec::new(),
            logs: Vec::new(),
            log_bytes: 0,
            log_lines: 0,
            logs_dropped: 0,
            journal_bytes: 0,
            steps_completed: 0,
            last_durable: None,
            step_gaps_micros: Vec::new(),
            flow: None,
            wait: None,
            deliveries: Vec::new(),
            cancel: None,
            lease: None,
        }
    }

    /// Makes every later write of the journal name `lease`, the attempt's claim.
    pub fn under_lease(&mut self, lease: stepwise_store::Lease) {
        self.lease = Some(lease);
    }

    /// The clock the journal stamps its entries with.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Charges what this journal commits to `tenant`'s stored bytes.
    pub fn charge_to(&mut self, tenant: &str) {
        self.tenant = Some(tenant.to_owned());
    }

    /// The step that began and has not reported back (the one a trap interrupted).
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// The step that reported a failure in this attempt.
    pub fn failed_step(&self) -> Option<&str> {
        self.failed_step.as_deref()
    }

    /// Steps that completed (live, not replayed) in this attempt.
    pub fn steps_completed(&self) -> u32 {
        self.steps_completed
    }

    /// A step's record.
    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.get(name)
    }

    /// Records a failure of `name` that the guest did not report itself (a trap inside it).
    pub fn fail_current(&mut self, error: ErrorInfo) {
        if let Some(name) = self.current.take()
            && let Some(step) = self.steps.get_mut(&name)
        {
            step.status = StepStatus::Failed;
            step.error = Some(error);
            self.dirty.insert(name);
        }
    }

    /// Appends a timeline entry for this attempt.
    pub fn event(&mut self, kind: EventKind, step: Option<&str>, detail: impl Into<String>) {
        let entry = TimelineEntry {
            at: self.clock.now(),
            kind,
            attempt: Some(self.attempt),
            step: step.map(str::to_owned),
            detail: detail.into(),
            http: None,
        };
        self.timeline.push(entry);
    }

    /// Records an outbound HTTP call on the timeline, under the step in progress; a refused
    /// call is also logged, so the reason shows where a handler author looks first.
    pub fn record_http(&mut self, call: HttpCall, denied: bool) {
        let target = format!(
            "{} {}://{}:{}{}",
            call.method, call.scheme, call.host, call.port, call.path
        );
        let detail = match (&call.status, &call.error) {
            (_, Some(e)) if denied => format!("{target} refused: {e}"),
            (_, Some(e)) => format!("{target} failed after {} ms: {e}", call.duration_ms),
            (Some(s), None) => format!("{target} -> {s} in {} ms", call.duration_ms),
            (None, None) => target,
        };
        if denied {
            self.log(LogLevel::Warn, LogSource::Host, detail.clone());
        }
        let kind = if denied {
            EventKind::HttpDenied
        } else {
            EventKind::HttpRequest
        };
        let step = self.current.clone();
        self.event(kind, step.as_deref(), detail);
        if let Some(last) = self.timeline.last_mut() {
            last.http = Some(call);
        }
    }

    /// Appends a log line, within the attempt's log budget.
    pub fn log(&mut self, level: LogLevel, source: LogSource, mut message: String) {
        if message.len() > self.limits.max_log_line {
            let cut = prefix(&message, self.limits.max_log_line).len();
            message.truncate(cut);
            message.push_str(" [truncated]");
        }
        // The budget counts what is kept: a long line is cut first, then measured. Lines are
        // bounded too, so a flood of empty lines cannot grow memory either.
        if self.log_bytes.saturating_add(message.len()) > self.limits.max_log_bytes
            || self.log_lines >= self.limits.max_log_lines
        {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            return;
        }
        self.log_bytes += message.len();
        self.log_lines += 1;
        let line = LogLine {
            at: self.clock.now(),
            attempt: self.attempt,
            source,
            level,
            message,
        };
        self.logs.push(line);
    }

    fn protocol(msg: String) -> HostFault {
        HostFault::Protocol(msg)
    }

    /// Checks a name the guest gives a new step or sleep, and that the run has room for it.
    fn check_new_step(&self, name: &str) -> Result<(), HostFault> {
        if self.steps.contains_key(name) {
            return Ok(());
        }
        if name.is_empty() || name.len() > self.limits.max_step_name {
            return Err(Self::protocol(format!(
                "a step name must be 1 to {} bytes, got {} bytes",
                self.limits.max_step_name,
                name.len()
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Self::protocol(format!(
                "a step name must have no control characters, got '{}'",
                name.escape_default()
            )));
        }
        if self.steps.len() >= self.limits.max_steps {
            return Err(HostFault::Limit(format!(
                "the run already has {} steps, the most one run may record",
                self.limits.max_steps
            )));
        }
        Ok(())
    }

    /// A guest's error with its message bounded; an oversized one becomes a limit failure
    /// that keeps the message's beginning.
    pub fn bounded_error(&self, error: &GuestError) -> GuestError {
        let limit = self.limits.max_error_bytes;
        if error.message.len() <= limit {
            return error.clone();
        }
        GuestError {
            kind: FailureKind::LimitExceeded,
            message: format!(
                "error message is {} bytes, over the {limit}-byte limit; it began: {}",
                error.message.len(),
                prefix(&error.message, 1024)
            ),
            retry_after_ms: None,
        }
    }

    /// The largest job output accepted.
    pub fn max_output_bytes(&self) -> usize {
        self.limits.max_output_bytes
    }

    /// `steps.begin`: replay a completed step, or count a new attempt of it.
    pub fn begin(&mut self, name: &str) -> Result<StepState, HostFault> {
        if let Some(open) = &self.current {
            return Err(Self::protocol(format!(
                "step '{name}' began while step '{open}' was still running"
            )));
        }
        self.check_new_step(name)?;
        let step = self.record(name, StepKind::Step, None)?;
        if step.status == StepStatus::Completed {
            let output = step.output.as_ref().unwrap_or(&Value::Null);
            return Ok(StepState::Completed(output.to_string()));
        }
        step.attempts += 1;
        step.status = StepStatus::Running;
        let attempt = step.attempts;
        self.dirty.insert(name.to_owned());
        self.set_current(Some(name));
        Ok(StepState::Run(attempt))
    }

    /// Shows the step executing now to watchers through `live` from now on.
    pub fn show_current_in(&mut self, live: LiveStep) {
        live.set(self.current.as_deref());
        self.live = Some(live);
    }

    fn set_current(&mut self, step: Option<&str>) {
        self.current = step.map(str::to_owned);
        if let Some(live) = &self.live {
            live.set(step);
        }
    }

    fn take_current(&mut self, name: &str, call: &str) -> Result<(), HostFault> {
        match self.current.as_deref() {
            Some(open) if open == name => {
                self.set_current(None);
                Ok(())
            }
            Some(open) => Err(Self::protocol(format!(
                "{call}('{name}') while step '{open}' is the one running"
            ))),
            None => Err(Self::protocol(format!(
                "{call}('{name}') without begin('{name}')"
            ))),
        }
    }

    /// `steps.succeed`: record the output and make it durable before returning.
    pub async fn succeed(&mut self, name: &str, output: String) -> Result<(), HostFault> {
        self.take_current(name, "succeed")?;
        // Until its output is recorded the step stays open, so a refused output ends the
        // attempt inside the step: charged to the step's budget and record, not the body's.
        self.set_current(Some(name));
        if output.len() > self.limits.max_output_bytes {
            return Err(HostFault::OutputTooLarge {
                step: name.to_owned(),
                bytes: output.len(),
                limit: self.limits.max_output_bytes,
            });
        }
        let bytes = output.len() as u64;
        if self.journal_bytes.saturating_add(bytes) > self.limits.max_journal_bytes {
            return Err(HostFault::Limit(format!(
                "output of step '{name}' ({bytes} bytes) would take the run's step outputs past \
                 the {}-byte limit ({} bytes recorded)",
                self.limits.max_journal_bytes, self.journal_bytes
            )));
        }
        let value: Value = serde_json::from_str(&output).map_err(|e| HostFault::InvalidOutput {
            step: name.to_owned(),
            message: e.to_string(),
        })?;
        self.set_current(None);
        self.journal_bytes += bytes;
        let now = self.clock.now();
        let step = self.steps.get_mut(name).expect("begun step exists");
        step.status = StepStatus::Completed;
        step.output = Some(value);
        step.output_bytes = bytes;
        step.completed_at = Some(now);
        let attempts = step.attempts;
        self.steps_completed += 1;
        self.event(
            EventKind::StepCompleted,
            Some(name),
            format!("after {attempts} attempt(s)"),
        );
        self.commit_now(name).await?;
        let durable = std::time::Instant::now();
        if let Some(previous) = self.last_durable.replace(durable) {
            let gap = durable.duration_since(previous).as_micros();
            self.step_gaps_micros
                .push(u64::try_from(gap).unwrap_or(u64::MAX));
        }
        Ok(())
    }

    /// Makes everything recorded so far durable before returning (for step `name`'s sake).
    async fn commit_now(&mut self, name: &str) -> Result<(), HostFault> {
        let writes = self.take_writes();
        self.store
            .record_step(&self.run_id, writes)
            .await
            .map_err(|source| HostFault::Storage {
                step: name.to_owned(),
                message: source.to_string(),
            })
    }

    /// The checks every durable await makes before it records anything: no step is open,
    /// and the run has room for a step of this name.
    fn await_guard(&self, name: &str, kind: StepKind) -> Result<(), StepInterrupt> {
        if let Some(open) = &self.current {
            return Err(StepInterrupt::Fault(Self::protocol(format!(
                "{}('{name}') inside step '{open}'",
                kind.as_str()
            ))));
        }
        self.check_new_step(name).map_err(StepInterrupt::Fault)
    }

    /// Queues what was recorded so far (the attempt's start) for the store without waiting:
    /// every later write of the attempt is applied after it, and outbound requests wait for
    /// it (see [`StepHost::send_gate`]). Returns the future of its durability.
    pub fn submit(&mut self) -> stepwise_runtime::SendGate {
        use futures_util::FutureExt;
        let writes = self.take_writes();
        let durable = self.store.submit_step(&self.run_id, writes);
        let durable: std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> =
            Box::pin(async move { durable.await.map_err(|e| e.to_string()) });
        let gate = durable.shared();
        self.gate = Some(gate.clone());
        gate
    }

    /// Gaps between this attempt's consecutive durable step completions, in microseconds.
    pub fn step_gaps_micros(&self) -> &[u64] {
        &self.step_gaps_micros
    }

    /// `steps.fail`: record this attempt's failure of the step.
    pub fn fail(&mut self, name: &str, error: &GuestError) -> Result<(), HostFault> {
        self.take_current(name, "fail")?;
        let error = &self.bounded_error(error);
        let step = self.steps.get_mut(name).expect("begun step exists");
        step.status = StepStatus::Failed;
        step.error = Some(ErrorInfo {
            kind: error.kind,
            message: error.message.clone(),
            step: Some(name.to_owned()),
            retry_after_ms: error.retry_after_ms,
        });
        let detail = format!("{}: {}", error.kind.as_str(), error.message);
        self.failed_step = Some(name.to_owned());
        self.event(EventKind::StepFailed, Some(name), detail);
        Ok(())
    }

    /// `steps.sleep`: returns once the timer has fired, otherwise suspends the run.
    pub fn sleep(&mut self, name: &str, duration_ms: u64) -> Result<(), StepInterrupt> {
        if duration_ms > MAX_DELAY_MS && !self.steps.contains_key(name) {
            return Err(StepInterrupt::Fault(HostFault::Limit(format!(
                "sleep '{name}' of {duration_ms} ms is longer than the longest delay, \
                 {MAX_DELAY_MS} ms (365 days)"
            ))));
        }
        let at = self.clock.now().saturating_add(duration_ms);
        self.await_durable(name, StepKind::Sleep, WakeCondition::Timer { at })
    }

    /// The one primitive for durable awaits: the first call records step `name` of `kind`
    /// waiting on `first`; every call returns once the recorded condition holds, and
    /// otherwise suspends the run until it may (a replay reads the recorded condition, not a
    /// new one).
    fn await_durable(
        &mut self,
        name: &str,
        kind: StepKind,
        first: WakeCondition,
    ) -> Result<(), StepInterrupt> {
        self.await_guard(name, kind)?;
        let now = self.clock.now();
        let step = self
            .record(name, kind, Some(first))
            .map_err(StepInterrupt::Fault)?;
        if step.status == StepStatus::Completed {
            return Ok(());
        }
        let wake = WakeCondition::Timer {
            at: step.wake_at.unwrap_or(now),
        };
        if step.wake_at.is_none_or(|at| at <= now) {
            step.status = StepStatus::Completed;
            step.completed_at = Some(now);
        }
        let met = step.status == StepStatus::Completed;
        self.dirty.insert(name.to_owned());
        if met {
            return Ok(());
        }
        self.event(
            EventKind::Sleeping,
            Some(name),
            format!(
                "until {}",
                stepwise_core::time_fmt::rfc3339(step_wake(&wake))
            ),
        );
        Err(StepInterrupt::Suspend(Suspend { wake }))
    }

    /// The journal's record of step `name`, created as `kind` (waiting on `wake`, if it is
    /// an await) when the run has none; a record of another kind is a protocol violation.
    fn record(
        &mut self,
        name: &str,
        kind: StepKind,
        wake: Option<WakeCondition>,
    ) -> Result<&mut StepRecord, HostFault> {
        let now = self.clock.now();
        let ordinal = self.steps.len() as u32;
        let step = self
            .steps
            .entry(name.to_owned())
            .or_insert_with(|| StepRecord {
                name: name.to_owned(),
                ordinal,
                output_bytes: 0,
                kind,
                status: match kind {
                    StepKind::Sleep => StepStatus::Sleeping,
                    StepKind::Event | StepKind::Child => StepStatus::Waiting,
                    StepKind::Step => StepStatus::Running,
                },
                attempts: u32::from(wake.is_some()),
                budget_base: 0,
                output: None,
                error: None,
                wake_at: wake.and_then(|w| w.deadline()),
                wait: None,
                started_at: now,
                completed_at: None,
            });
        if step.kind != kind {
            return Err(HostFault::Protocol(format!(
                "'{name}' is a {} in this run's journal, not a {}",
                step.kind.as_str(),
                kind.as_str()
            )));
        }
        Ok(step)
    }

    /// Takes everything not yet committed, to write with the run.
    pub fn take_writes(&mut self) -> JournalWrites {
        let steps = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|name| self.steps.get(&name).cloned())
            .collect();
        if self.logs_dropped > 0 {
            let dropped = std::mem::take(&mut self.logs_dropped);
            let line = LogLine {
                at: self.clock.now(),
                attempt: self.attempt,
                source: LogSource::Guest,
                level: LogLevel::Warn,
                message: format!("[{dropped} log lines dropped: attempt log budget exceeded]"),
            };
            self.logs.push(line);
        }
        JournalWrites {
            tenant: self.tenant.clone(),
            steps,
            timeline: std::mem::take(&mut self.timeline),
            logs: std::mem::take(&mut self.logs),
            deliveries: std::mem::take(&mut self.deliveries),
            lease: self.lease.clone(),
        }
    }
}

pub(crate) use stepwise_core::text::prefix;

/// When a timer fires.
fn step_wake(wake: &WakeCondition) -> stepwise_core::clock::Millis {
    wake.deadline().unwrap_or(stepwise_core::clock::Millis::MAX)
}

impl StepHost for Journal {
    fn begin(&mut self, name: &str) -> Result<StepState, HostFault> {
        Journal::begin(self, name)
    }

    fn succeed<'a>(&'a mut self, name: &'a str, output: String) -> Recording<'a> {
        Box::pin(Journal::succeed(self, name, output))
    }

    fn fail(&mut self, name: &str, error: &GuestError) -> Result<(), HostFault> {
        Journal::fail(self, name, error)
    }

    fn sleep(&mut self, name: &str, duration_ms: u64) -> Result<(), StepInterrupt> {
        Journal::sleep(self, name, duration_ms)
    }

    fn wait_event<'a>(
        &'a mut self,
        name: &'a str,
        event: &'a str,
        correlation_key: Option<&'a str>,
        timeout_ms: u64,
    ) -> stepwise_runtime::Awaiting<'a, Option<String>> {
        Box::pin(Journal::wait_event(
            self,
            name,
            event,
            correlation_key,
            timeout_ms,
        ))
    }

    fn children<'a>(
        &'a mut self,
        name: &'a str,
        children: Vec<stepwise_core::attempt::ChildRequest>,
        join: bool,
    ) -> stepwise_runtime::Awaiting<'a, Result<Vec<String>, GuestError>> {
        Box::pin(Journal::children(self, name, children, join))
    }

    fn log(&mut self, level: LogLevel, source: LogSource, message: String) {
        Journal::log(self, level, source, message);
    }

    fn record_http(&mut self, call: HttpCall, denied: bool) {
        Journal::record_http(self, call, denied);
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Journal::clock(self)
    }

    fn send_gate(&self) -> Option<stepwise_runtime::SendGate> {
        self.gate.clone()
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

#[cfg(test)]
mod tests {
    //! The journal against a real store: replay after a durable completion, the step protocol,
    //! output and log limits, durable timers, and sequence numbers across attempts.

    use std::time::Duration;

    use serde_json::json;

    use super::*;

    const RUN: &str = "run_1";

    use crate::testing::Fixture;
    use stepwise_store_redb::Batch;
    use stepwise_store_redb::testing::T0;

    impl Fixture {
        /// A fresh journal for `attempt`, loaded from what the store holds now.
        async fn journal(&self, attempt: u32) -> Journal {
            self.journal_with(attempt, JournalLimits::default()).await
        }

        async fn journal_with(&self, attempt: u32, limits: JournalLimits) -> Journal {
            Journal::load(self.store.clone(), self.clock.clone(), RUN, attempt, limits)
                .await
                .unwrap()
        }

        /// Ends an attempt the way the engine does: everything left goes into one commit.
        async fn commit(&self, journal: &mut Journal) {
            let mut batch = Batch::new();
            batch.journal(RUN, &journal.take_writes());
            self.store.commit(batch).await.unwrap();
        }

        fn log_messages(&self) -> Vec<String> {
            let logs = self.store.logs(RUN).unwrap();
            logs.into_iter().map(|l| l.message).collect()
        }
    }

    /// `begin` for a step that must run live; returns its attempt number.
    fn begin_live(journal: &mut Journal, name: &str) -> u32 {
        match journal.begin(name).unwrap() {
            StepState::Run(attempt) => attempt,
            StepState::Completed(output) => {
                panic!("step '{name}' was replayed with {output}, expected a live run")
            }
        }
    }

    /// `begin` for a step that must be replayed; returns its recorded output.
    fn begin_replayed(journal: &mut Journal, name: &str) -> String {
        match journal.begin(name).unwrap() {
            StepState::Completed(output) => output,
            StepState::Run(attempt) => {
                panic!("step '{name}' ran live (attempt {attempt}), expected a replay")
            }
        }
    }

    fn retryable(message: &str) -> GuestError {
        GuestError {
            kind: FailureKind::Retryable,
            message: message.to_owned(),
            retry_after_ms: None,
        }
    }

    /// The message of a protocol violation, or a panic naming what came instead.
    fn protocol_message<T: std::fmt::Debug>(result: Result<T, HostFault>) -> String {
        match result {
            Err(HostFault::Protocol(message)) => message,
            other => panic!("expected a protocol violation, got {other:?}"),
        }
    }

    /// The same for what `sleep` raises.
    fn sleep_protocol_message(result: Result<(), StepInterrupt>) -> String {
        match result {
            Err(StepInterrupt::Fault(HostFault::Protocol(message))) => message,
            other => panic!("expected a protocol violation, got {other:?}"),
        }
    }

    fn suspended_until(result: Result<(), StepInterrupt>) -> stepwise_core::clock::Millis {
        match result {
            Err(StepInterrupt::Suspend(s)) => step_wake(&s.wake),
            other => panic!("expected a suspension, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_new_step_runs_live_and_counts_its_attempts() {
        let f = Fixture::new();
        let mut j = f.journal(1).await;
        assert_eq!(begin_live(&mut j, "charge"), 1);
        assert_eq!(j.current(), Some("charge"));
        let step = j.step("charge").unwrap();
        assert_eq!(
            (step.kind, step.status, step.attempts, step.started_at),
            (StepKind::Step, StepStatus::Running, 1, T0)
        );
        j.fail("charge", &retryable("declined")).unwrap();
        f.commit(&mut j).await;

        let mut j = f.journal(2).await;
        assert_eq!(begin_live(&mut j, "charge"), 2);
        j.fail("charge", &retryable("declined again")).unwrap();
        f.commit(&mut j).await;
        assert_eq!(f.stored_step(RUN, "charge").unwrap().attempts, 2);
    }

    #[tokio::test]
    async fn succeed_is_durable_before_it_returns_and_then_replays_the_exact_output() {
        let f = Fixture::new();
        let mut j = f.journal(1).await;
        assert_eq!(begin_live(&mut j, "charge"), 1);
        let output = r#"{"amount":42,"id":"ch_1"}"#;
        j.succeed("charge", output.to_owned()).await.unwrap();
        assert_eq!(j.current(), None);

        // No drain: `succeed` alone must have made the completion durable.
        let stored = f
            .stored_step(RUN, "charge")
            .expect("step committed by succeed");
        assert_eq!(stored.status, StepStatus::Completed);
        assert_eq!(stored.output, Some(json!({"amount": 42, "id": "ch_1"})));
        assert_eq!(stored.completed_at, Some(T0));

        let mut replay = f.journal(2).await;
        assert_eq!(begin_replayed(&mut replay, "charge"), output);
        assert_eq!(replay.current(), None, "a replayed step is not left open");
        // The next step can begin right away, and the replay did not count an attempt.
        assert_eq!(begin_live(&mut replay, "provision"), 1);
        assert_eq!(replay.step("charge").unwrap().attempts, 1);
        f.commit(&mut replay).await;
        assert_eq!(f.stored_step(RUN, "charge").unwrap().attempts, 1);
    }

    #[tokio::test]
    async fn fail_records_the_error_on_the_step() {
        let f = Fixture::new();
        let mut j = f.journal(1).await;
        begin_live(&mut j, "charge");
        assert_eq!(j.failed_step(), None);
        j.fail("charge", &retryable("card declined")).unwrap();
        assert_eq!(j.failed_step(), Some("charge"));
        assert_eq!(j.current(), None);
        let expected = ErrorInfo {
            kind: FailureKind::Retryable,
            message: "card declined".into(),
            step: Some("charge".into()),
            retry_after_ms: None,
        };
        let step = j.step("charge").unwrap();
        assert_eq!(step.status, StepStatus::Failed);
        assert_eq!(step.error.as_ref(), Some(&expected));

        f.commit(&mut j).await;
        let stored = f.stored_step(RUN, "charge").unwrap();
        assert_eq!(stored.status, StepStatus::Failed);
        assert_eq!(stored.error, Some(expected));
        let timeline = f.store.timeline(RUN).unwrap();
        let last = timeline.last().unwrap();
        assert_eq!(last.kind, EventKind::StepFailed);
        assert_eq!(last.step.as_deref(), Some("charge"));
        assert_eq!(last.attempt, Some(1));
        assert_eq!(last.detail, "retryable: card declined");
    }

    #[tokio::test]
    async fn a_step_name_with_a_control_character_is_a_protocol_violation() {
        let f = Fixture::new();
        let mut j = f.journal(1).await;
        for name in ["nul\0byte", "line\nbreak"] {
            let msg = protocol_message(j.begin(name));
            assert!(msg.contains("no control characters"), "{msg}");
            assert!(j.step(name).is_none());
        }
        begin_live(&mut j, "plain name, ünïcode too");
    }

    #[tokio::test]
    async fn step_calls_out_of_order_are_protocol_violations() {
        let f = Fixture::new();
        let mut j = f.journal(1).await;
        let msg = protocol_message(j.succeed("a", "1".into()).await);
        assert!(msg.contains("without begin('a')"), "{msg}");
        let msg = protocol_message(j.fail("a", &retryable("x")));
        assert!(msg.contains("without begin('a')"), "{msg}");
        assert!(j.step("a").is_none());

        begin_live(&mut j, "a");
        let msg = protocol_message(j.begin("b"));
        assert!(msg.contains("'b' began while step 'a'"), "{msg}");
        assert!(j.step("b").is_none(), "the refused step is not recorded");
        let msg = protocol_message(j.succeed("b", "1".into()).await);
        assert!(msg.contains("step 'a' is the one running"), "{msg}");
        let msg = sleep_protocol_message(j.sleep("nap", 10));
        assert!(msg.contains("inside step 'a'"), "{msg}");
        assert!(j.step("nap").is_none());

        // None of the violations closed the open step.
        assert_eq!(j.current(), Some("a"));
        j.succeed("a", "1".into()).await.unwrap();
        assert_eq!(
            f.stored_step(RUN, "a").unwrap().status,
            StepStatus::Completed
        );
    }

    #[tokio::test]
    async fn a_name_stays_a_step_or_a_sleep_across_attempts() {
        let f = Fixture::new();
        let mut j = f.journal(1).await;
        begin_live(&mut j, "a");
        j.succeed("a", "1".into()).await.unwrap();
        let msg = sleep_protocol_message(j.sleep("a", 0));
        assert!(msg.contains("'a' is a step"), "{msg}");
        j.sleep("t", 0).unwrap();
        let msg = protocol_message(j.begin("t"));
        assert!(msg.contains("'t' is a sleep"), "{msg}");
        f.commit(&mut j).await;

        // The kinds come back from the store.
        let mut j = f.journal(2).await;
        let msg = sleep_protocol_message(j.sleep("a", 0));
        assert!(msg.contains("'a' is a step"), "{msg}");
        let msg = protocol_message(j.begin("t"));
        assert!(msg.contains("'t' is a sleep"), "{msg}");
    }

    #[tokio::test]
    async fn an_output_over_the_limit_is_refused_and_not_recorded() {
        let f = Fixture::new();
        let limits = JournalLimits {
            max_output_bytes: 8,
            ..JournalLimits::default()
        };
        let mut j = f.journal_with(1, limits).await;
        begin_live(&mut j, "fits");
        j.succeed("fits", r#""123456""#.into()).await.unwrap();

        begin_live(&mut j, "big");
        match j.succeed("big", r#""1234567""#.into()).await {
            Err(HostFault::OutputTooLarge { step, bytes, limit }) => {
                assert_eq!((step.as_str(), bytes, limit), ("big", 9, 8));
            }
            other => panic!("expected OutputTooLarge, got {other:?}"),
        }
        assert_eq!(j.step("big").unwrap().status, StepStatus::Running);
        assert_eq!(j.step("big").unwrap().output, None);
        assert_eq!(j.current(), Some("big"), "the step is still the open one");
        assert!(f.stored_step(RUN, "big").is_none(), "nothing was committed");
        assert_eq!(begin_live(&mut f.journal_with(2, limits).await, "big"), 1);
    }

    #[tokio::test]
    async fn an_output_that_is_not_json_is_refused() {
        let f = Fixture::new();
        let mut j = f.journal(1).await;
        begin_live(&mut j, "s");
        match j.succeed("s", "{not json".into()).await {
            Err(HostFault::InvalidOutput { step, message }) => {
                assert_eq!(step, "s");
                assert!(!message.is_empty());
            }
            other => panic!("expected InvalidOutput, got {other:?}"),
        }
        assert_eq!(j.step("s").unwrap().status, StepStatus::Running);
        assert_eq!(j.current(), Some("s"));
        assert!(f.stored_step(RUN, "s").is_none());
    }

    #[tokio::test]
    async fn a_zero_sleep_completes_at_once() {
        let f = Fixture::new();
        let mut j = f.journal(1).await;
        j.sleep("t", 0).unwrap();
        let step = j.step("t").unwrap();
        assert_eq!(
            (step.kind, step.status, step.completed_at),
            (StepKind::Sleep, StepStatus::Completed, Some(T0))
        );
        f.commit(&mut j).await;
        assert_eq!(
            f.stored_step(RUN, "t").unwrap().status,
            StepStatus::Completed
        );
        assert!(
            f.store.timeline(RUN).unwrap().is_empty(),
            "no Sleeping event"
        );
    }

    #[tokio::test]
    async fn a_sleep_suspends_until_its_first_wake_time_then_returns() {
        let f = Fixture::new();
        let mut j = f.journal(1).await;
        assert_eq!(suspended_until(j.sleep("nap", 5_000)), T0 + 5_000);
        f.commit(&mut j).await;
        let stored = f.stored_step(RUN, "nap").unwrap();
        assert_eq!(stored.status, StepStatus::Sleeping);
        assert_eq!(stored.wake_at, Some(T0 + 5_000));
        let timeline = f.store.timeline(RUN).unwrap();
        assert_eq!(timeline.len(), 1);
        assert_eq!(timeline[0].kind, EventKind::Sleeping);
        assert_eq!(timeline[0].step.as_deref(), Some("nap"));

        // Reached again early: the wake time is the recorded one, not now + duration.
        f.clock.advance(Duration::from_millis(4_999));
        let mut j = f.journal(2).await;
        assert_eq!(suspended_until(j.sleep("nap", 5_000)), T0 + 5_000);
        f.commit(&mut j).await;

        f.clock.advance(Duration::from_millis(1));
        let mut j = f.journal(3).await;
        j.sleep("nap", 5_000).unwrap();
        assert_eq!(j.step("nap").unwrap().status, StepStatus::Completed);
        f.commit(&mut j).await;
        let stored = f.stored_step(RUN, "nap").unwrap();
        assert_eq!(stored.status, StepStatus::Completed);
        assert_eq!(stored.completed_at, Some(T0 + 5_000));
    }

    #[tokio::test]
    async fn the_log_budget_drops_lines_and_the_drain_says_how_many() {
        let f = Fixture::new();
        let limits = JournalLimits {
            max_log_bytes: 20,
            ..JournalLimits::default()
        };
        let mut j = f.journal_with(1, limits).await;
        j.log(LogLevel::Info, LogSource::Guest, "0123456789".into());
        j.log(LogLevel::Info, LogSource::Stdout, "abcdefghij".into());
        j.log(LogLevel::Info, LogSource::Guest, "x".into());
        j.log(LogLevel::Error, LogSource::Stderr, "yy".into());
        f.commit(&mut j).await;
        let logs = f.store.logs(RUN).unwrap();
        let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "0123456789",
                "abcdefghij",
                "[2 log lines dropped: attempt log budget exceeded]"
            ]
        );
        assert_eq!(logs[2].level, LogLevel::Warn);
        assert_eq!(logs[2].attempt, 1);

        // The budget is per attempt: still spent for this one, and the count starts over.
        j.log(LogLevel::Info, LogSource::Guest, "z".into());
        f.commit(&mut j).await;
        assert_eq!(
            f.log_messages().last().unwrap(),
            "[1 log lines dropped: attempt log budget exceeded]"
        );
        let mut next = f.journal_with(2, limits).await;
        next.log(LogLevel::Info, LogSource::Guest, "fresh".into());
        f.commit(&mut next).await;
        assert_eq!(f.log_messages().len(), 5);
        assert_eq!(f.log_messages().last().unwrap(), "fresh");
    }

    #[tokio::test]
    async fn long_lines_are_cut_on_a_char_boundary() {
        let f = Fixture::new();
        let limits = JournalLimits {
            max_log_line: 4,
            ..JournalLimits::default()
        };
        let mut j = f.journal_with(1, limits).await;
        j.log(LogLevel::Info, LogSource::Guest, "abcd".into());
        // '€' is three bytes: byte 4 falls inside the second one.
        j.log(LogLevel::Info, LogSource::Guest, "€€".into());
        j.log(LogLevel::Info, LogSource::Guest, "abc€def".into());
        f.commit(&mut j).await;
        assert_eq!(
            f.log_messages(),
            vec!["abcd", "€ [truncated]", "abc [truncated]"]
        );
    }

    #[tokio::test]
    async fn a_line_longer_than_the_budget_is_cut_to_fit_rather_than_dropped() {
        let f = Fixture::new();
        let limits = JournalLimits {
            max_log_bytes: 40,
            max_log_line: 10,
            ..JournalLimits::default()
        };
        let mut j = f.journal_with(1, limits).await;
        j.log(LogLevel::Info, LogSource::Guest, "x".repeat(100));
        // The cut line is 22 bytes; a second one would go past the 40-byte budget.
        j.log(LogLevel::Info, LogSource::Guest, "y".repeat(100));
        f.commit(&mut j).await;
        assert_eq!(
            f.log_messages(),
            vec![
                format!("{} [truncated]", "x".repeat(10)),
                "[1 log lines dropped: attempt log budget exceeded]".to_owned(),
            ]
        );
    }

    #[tokio::test]
    async fn sequence_numbers_continue_after_what_is_stored() {
        let f = Fixture::new();
        let mut created = Batch::new();
        created.append_timeline(
            RUN,
            &TimelineEntry {
                at: T0,
                kind: EventKind::Created,
                attempt: None,
                step: None,
                detail: String::new(),
                http: None,
            },
        );
        f.store.commit(created).await.unwrap();

        let mut j = f.journal(1).await;
        j.event(EventKind::AttemptStarted, None, "");
        j.log(LogLevel::Info, LogSource::Guest, "one".into());
        begin_live(&mut j, "a");
        // Commits the two entries above and StepCompleted, mid-attempt.
        j.succeed("a", "1".into()).await.unwrap();
        j.log(LogLevel::Info, LogSource::Guest, "two".into());
        begin_live(&mut j, "b");
        j.fail("b", &retryable("nope")).unwrap();
        f.commit(&mut j).await;

        let mut j = f.journal(2).await;
        j.event(EventKind::AttemptStarted, None, "");
        j.log(LogLevel::Info, LogSource::Guest, "three".into());
        f.commit(&mut j).await;

        let kinds: Vec<EventKind> = f
            .store
            .timeline(RUN)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::Created,
                EventKind::AttemptStarted,
                EventKind::StepCompleted,
                EventKind::StepFailed,
                EventKind::AttemptStarted,
            ]
        );
        assert_eq!(f.log_messages(), vec!["one", "two", "three"]);
        assert_eq!(
            f.store.sequences(RUN).unwrap(),
            stepwise_store_redb::Sequences {
                timeline: 5,
                logs: 3
            }
        );
    }
}
