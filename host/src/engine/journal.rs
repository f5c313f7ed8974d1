//! The step journal of one attempt: answers the guest's step calls from the run's recorded
//! steps, makes each completion durable before the guest continues, and buffers everything
//! else (failures, timers, logs, timeline) for the commit that ends the attempt.
//!
//! This is "live or replay": a step whose record is completed is replayed (its output returned,
//! nothing run); any other step runs live and its attempt is counted.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::clock::{Clock, Millis};
use crate::model::{
    ErrorInfo, EventKind, LogLevel, LogLine, LogSource, StepKind, StepRecord, StepStatus,
    TimelineEntry,
};
use crate::runtime::GuestError;
use crate::runtime::bindings::StepState;
use crate::store::{Batch, Sequences, Store, StoreError};

/// The attempt ends here because the run is waiting on a durable timer. Raised as a trap the
/// host owns; the guest never observes it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("run suspended until {wake_at}")]
pub struct Suspend {
    /// When the timer fires.
    pub wake_at: Millis,
}

/// A problem on the host's side of a step call, or a guest breaking the step protocol. Ends the
/// attempt as a trap.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostFault {
    /// The guest called the step functions out of order.
    #[error("step protocol violation: {0}")]
    Protocol(String),
    /// A step output was too large to record.
    #[error("output of step '{step}' is {bytes} bytes, over the {limit}-byte limit")]
    OutputTooLarge {
        /// The step.
        step: String,
        /// Its output's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A step output was not JSON.
    #[error("output of step '{step}' is not valid JSON: {message}")]
    InvalidOutput {
        /// The step.
        step: String,
        /// The parser's complaint.
        message: String,
    },
    /// Recording the step failed; the attempt cannot continue safely.
    #[error("could not record step '{step}': {source}")]
    Storage {
        /// The step.
        step: String,
        /// The storage failure.
        source: StoreError,
    },
}

/// Limits on what one attempt may write.
#[derive(Debug, Clone, Copy)]
pub struct JournalLimits {
    /// Largest step output, in bytes.
    pub max_output_bytes: usize,
    /// Log bytes one attempt may write; the rest is counted and dropped.
    pub max_log_bytes: usize,
    /// Longest single log line; longer lines are cut.
    pub max_log_line: usize,
}

impl Default for JournalLimits {
    /// 1 MiB outputs, 256 KiB of logs per attempt, 4 KiB lines.
    fn default() -> Self {
        Self {
            max_output_bytes: 1 << 20,
            max_log_bytes: 256 << 10,
            max_log_line: 4 << 10,
        }
    }
}

/// One attempt's view of a run's steps.
pub struct Journal {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    run_id: String,
    attempt: u32,
    limits: JournalLimits,
    steps: HashMap<String, StepRecord>,
    dirty: BTreeSet<String>,
    current: Option<String>,
    failed_step: Option<String>,
    seq: Sequences,
    timeline: Vec<(u32, TimelineEntry)>,
    logs: Vec<(u32, LogLine)>,
    log_bytes: usize,
    logs_dropped: u64,
}

impl Journal {
    /// Loads `run_id`'s recorded steps for attempt number `attempt`.
    pub fn load(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        run_id: &str,
        attempt: u32,
        limits: JournalLimits,
    ) -> Result<Self, StoreError> {
        let steps = store
            .steps(run_id)?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let seq = store.sequences(run_id)?;
        Ok(Self {
            store,
            clock,
            run_id: run_id.to_owned(),
            attempt,
            limits,
            steps,
            dirty: BTreeSet::new(),
            current: None,
            failed_step: None,
            seq,
            timeline: Vec::new(),
            logs: Vec::new(),
            log_bytes: 0,
            logs_dropped: 0,
        })
    }

    /// The step that began and has not reported back (the one a trap interrupted).
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// The step that reported a failure in this attempt.
    pub fn failed_step(&self) -> Option<&str> {
        self.failed_step.as_deref()
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
        };
        self.timeline.push((self.seq.timeline, entry));
        self.seq.timeline += 1;
    }

    /// Appends a log line, within the attempt's log budget.
    pub fn log(&mut self, level: LogLevel, source: LogSource, mut message: String) {
        if self.log_bytes + message.len() > self.limits.max_log_bytes {
            self.logs_dropped += 1;
            return;
        }
        if message.len() > self.limits.max_log_line {
            let mut cut = self.limits.max_log_line;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [truncated]");
        }
        self.log_bytes += message.len();
        let line = LogLine {
            at: self.clock.now(),
            attempt: self.attempt,
            source,
            level,
            message,
        };
        self.logs.push((self.seq.logs, line));
        self.seq.logs += 1;
    }

    fn protocol(msg: String) -> HostFault {
        HostFault::Protocol(msg)
    }

    /// `steps.begin`: replay a completed step, or count a new attempt of it.
    pub fn begin(&mut self, name: &str) -> Result<StepState, HostFault> {
        if let Some(open) = &self.current {
            return Err(Self::protocol(format!(
                "step '{name}' began while step '{open}' was still running"
            )));
        }
        let now = self.clock.now();
        let step = self
            .steps
            .entry(name.to_owned())
            .or_insert_with(|| StepRecord {
                name: name.to_owned(),
                kind: StepKind::Step,
                status: StepStatus::Running,
                attempts: 0,
                budget_base: 0,
                output: None,
                error: None,
                wake_at: None,
                started_at: now,
                completed_at: None,
            });
        if step.kind != StepKind::Step {
            return Err(Self::protocol(format!(
                "'{name}' is a sleep in this run's journal, not a step"
            )));
        }
        if step.status == StepStatus::Completed {
            let output = step.output.as_ref().unwrap_or(&Value::Null);
            return Ok(StepState::Completed(output.to_string()));
        }
        step.attempts += 1;
        step.status = StepStatus::Running;
        let attempt = step.attempts;
        self.dirty.insert(name.to_owned());
        self.current = Some(name.to_owned());
        Ok(StepState::Run(attempt))
    }

    fn take_current(&mut self, name: &str, call: &str) -> Result<(), HostFault> {
        match self.current.as_deref() {
            Some(open) if open == name => {
                self.current = None;
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
        if output.len() > self.limits.max_output_bytes {
            return Err(HostFault::OutputTooLarge {
                step: name.to_owned(),
                bytes: output.len(),
                limit: self.limits.max_output_bytes,
            });
        }
        let value: Value = serde_json::from_str(&output).map_err(|e| HostFault::InvalidOutput {
            step: name.to_owned(),
            message: e.to_string(),
        })?;
        let now = self.clock.now();
        let step = self.steps.get_mut(name).expect("begun step exists");
        step.status = StepStatus::Completed;
        step.output = Some(value);
        step.completed_at = Some(now);
        let attempts = step.attempts;
        self.event(
            EventKind::StepCompleted,
            Some(name),
            format!("after {attempts} attempt(s)"),
        );
        let mut batch = Batch::new();
        self.drain_into(&mut batch);
        self.store
            .commit(batch)
            .await
            .map_err(|source| HostFault::Storage {
                step: name.to_owned(),
                source,
            })
    }

    /// `steps.fail`: record this attempt's failure of the step.
    pub fn fail(&mut self, name: &str, error: &GuestError) -> Result<(), HostFault> {
        self.take_current(name, "fail")?;
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
    pub fn sleep(&mut self, name: &str, duration_ms: u64) -> wasmtime::Result<()> {
        if let Some(open) = &self.current {
            return Err(wasmtime::Error::new(Self::protocol(format!(
                "sleep('{name}') inside step '{open}'"
            ))));
        }
        let now = self.clock.now();
        let step = self
            .steps
            .entry(name.to_owned())
            .or_insert_with(|| StepRecord {
                name: name.to_owned(),
                kind: StepKind::Sleep,
                status: StepStatus::Sleeping,
                attempts: 1,
                budget_base: 0,
                output: None,
                error: None,
                wake_at: Some(now.saturating_add(duration_ms)),
                started_at: now,
                completed_at: None,
            });
        if step.kind != StepKind::Sleep {
            return Err(wasmtime::Error::new(Self::protocol(format!(
                "'{name}' is a step in this run's journal, not a sleep"
            ))));
        }
        if step.status == StepStatus::Completed {
            return Ok(());
        }
        let wake_at = step.wake_at.unwrap_or(now);
        self.dirty.insert(name.to_owned());
        if wake_at <= now {
            step.status = StepStatus::Completed;
            step.completed_at = Some(now);
            return Ok(());
        }
        self.event(
            EventKind::Sleeping,
            Some(name),
            format!("until {}", crate::time_fmt::rfc3339(wake_at)),
        );
        Err(wasmtime::Error::new(Suspend { wake_at }))
    }

    /// Moves everything not yet committed into `batch`.
    pub fn drain_into(&mut self, batch: &mut Batch) {
        for name in std::mem::take(&mut self.dirty) {
            if let Some(step) = self.steps.get(&name) {
                batch.put_step(&self.run_id, step);
            }
        }
        if self.logs_dropped > 0 {
            let dropped = std::mem::take(&mut self.logs_dropped);
            let line = LogLine {
                at: self.clock.now(),
                attempt: self.attempt,
                source: LogSource::Guest,
                level: LogLevel::Warn,
                message: format!("[{dropped} log lines dropped: attempt log budget exceeded]"),
            };
            self.logs.push((self.seq.logs, line));
            self.seq.logs += 1;
        }
        for (seq, entry) in self.timeline.drain(..) {
            batch.put_timeline(&self.run_id, seq, &entry);
        }
        for (seq, line) in self.logs.drain(..) {
            batch.put_log(&self.run_id, seq, &line);
        }
    }
}
