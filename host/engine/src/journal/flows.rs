//! The journal's flow steps: waiting for an event and starting child runs. Both are durable
//! awaits like a sleep — recorded as a step, answered from the record on replay, and
//! otherwise suspending the run with what it waits for on its record, where the storage
//! backend finds it to wake the run (see `stepwise_store::RunWrite`).

use serde_json::Value;

use super::Journal;
use crate::Engine;
use stepwise_core::attempt::{
    ChildRequest, GuestError, HostFault, StepInterrupt, Suspend, WakeCondition,
};
use stepwise_core::clock::Millis;
use stepwise_core::flow::{
    self, MAX_CHILD_DEPTH, MAX_CHILDREN_PER_STEP, MatchedEvent, RunWait, StepWait,
};
use stepwise_core::model::{
    ErrorInfo, EventKind, FailureKind, RunRecord, RunStatus, StepKind, StepStatus,
};
use stepwise_core::policy::MAX_DELAY_MS;
use stepwise_store::Delivery;

/// What flow steps need of the run and the engine.
pub(crate) struct FlowContext {
    pub(crate) engine: Engine,
    pub(crate) tenant: String,
    pub(crate) queue: String,
    pub(crate) module: String,
    /// The run's creation: the earliest arrival its waits match.
    pub(crate) created_at: Millis,
    /// How deep the run is among child runs (0: not a child).
    pub(crate) depth: u32,
}

fn fault(f: HostFault) -> StepInterrupt {
    StepInterrupt::Fault(f)
}

impl Journal {
    /// Lets the journal's steps wait for events and start children of `run` through `engine`.
    pub fn with_flows(&mut self, engine: Engine, run: &RunRecord) {
        self.flow = Some(FlowContext {
            engine,
            tenant: run.tenant.clone(),
            queue: run.queue.clone(),
            module: run.module.clone(),
            created_at: run.created_at,
            depth: run.parent.as_ref().map_or(0, |p| p.depth),
        });
    }

    /// The failure of the children step that failed this attempt, as recorded (with the
    /// child's own kind), when the guest ended the attempt with the error it was handed for
    /// that step; a guest that chose its own error keeps it.
    pub fn children_failure(&self, returned: &GuestError) -> Option<GuestError> {
        let step = self.steps.get(self.failed_step.as_deref()?)?;
        let error = step.error.as_ref()?;
        (step.kind == StepKind::Child && error.message == returned.message).then(|| GuestError {
            kind: error.kind,
            message: error.message.clone(),
            retry_after_ms: error.retry_after_ms,
        })
    }

    /// Lets steps that start children see the attempt's cancel: a child started after its
    /// parent was cancelled is cancelled at once (the canceller may have listed the parent's
    /// children before it existed).
    pub fn watch_cancel(&mut self, cancel: stepwise_core::attempt::CancelFlag) {
        self.cancel = Some(cancel);
    }

    /// What the run waits for, once the attempt suspended on an event or children.
    pub fn take_wait(&mut self) -> Option<RunWait> {
        self.wait.take()
    }

    fn flow_context(&self, name: &str) -> Result<&FlowContext, StepInterrupt> {
        self.flow.as_ref().ok_or_else(|| {
            fault(HostFault::Protocol(format!(
                "step '{name}': events and child runs are not available here"
            )))
        })
    }

    /// Makes everything recorded so far durable, as a step completion does.
    async fn persist(&mut self, name: &str) -> Result<(), StepInterrupt> {
        self.commit_now(name).await.map_err(fault)
    }

    fn storage(name: &str, e: impl std::fmt::Display) -> StepInterrupt {
        fault(HostFault::Storage {
            step: name.to_owned(),
            message: e.to_string(),
        })
    }

    /// `flows.wait-for-event`: the payload of the event the wait took, `None` once it timed
    /// out; until one of them, the run suspends. See [`stepwise_core::flow`] for which
    /// events a wait matches.
    pub async fn wait_event(
        &mut self,
        name: &str,
        event: &str,
        correlation_key: Option<&str>,
        timeout_ms: u64,
    ) -> Result<Option<String>, StepInterrupt> {
        self.await_guard(name, StepKind::Event)?;
        let (tenant, since) = {
            let flow = self.flow_context(name)?;
            (flow.tenant.clone(), flow.created_at)
        };
        let now = self.clock.now();
        if !self.steps.contains_key(name) {
            flow::check_event_name(event)
                .and_then(|()| correlation_key.map_or(Ok(()), flow::check_correlation_key))
                .map_err(|e| fault(Self::protocol(format!("wait_for_event('{name}'): {e}"))))?;
            if timeout_ms > MAX_DELAY_MS {
                return Err(fault(HostFault::Limit(format!(
                    "wait_for_event('{name}') of {timeout_ms} ms is longer than the longest \
                     delay, {MAX_DELAY_MS} ms (365 days)"
                ))));
            }
        }
        let until = now.saturating_add(timeout_ms);
        let step = self
            .record(name, StepKind::Event, Some(WakeCondition::Event { until }))
            .map_err(fault)?;
        if step.wait.is_none() {
            step.wait = Some(StepWait::Event {
                name: event.to_owned(),
                correlation_key: correlation_key.map(str::to_owned),
                until,
                matched: None,
            });
        }
        let Some(StepWait::Event {
            name: event,
            correlation_key: key,
            until,
            matched,
        }) = step.wait.clone()
        else {
            return Err(fault(HostFault::Protocol(format!(
                "event step '{name}' has no recorded wait"
            ))));
        };
        if step.status == StepStatus::Completed {
            let output = step.output.clone().unwrap_or(Value::Null);
            return Ok(matched.map(|_| output.to_string()));
        }
        // Events taken by this run's other waits on the same name and key.
        let taken: Vec<u64> = self
            .steps
            .values()
            .filter_map(|s| match &s.wait {
                Some(StepWait::Event {
                    name: n,
                    correlation_key: k,
                    matched: Some(m),
                    ..
                }) if *n == event && *k == key => Some(m.seq),
                _ => None,
            })
            .collect();
        let (found, seen) = self
            .store
            .match_event(&tenant, &event, key.as_deref(), since, until, &taken)
            .await
            .map_err(|e| Self::storage(name, e))?;
        let described = describe_wait(&event, key.as_deref());
        if let Some(found) = found {
            let text = found.payload.to_string();
            let bytes = text.len() as u64;
            if self.journal_bytes.saturating_add(bytes) > self.limits.max_journal_bytes {
                return Err(fault(HostFault::Limit(format!(
                    "the event step '{name}' took ({bytes} bytes) would take the run's step \
                     outputs past the {}-byte limit",
                    self.limits.max_journal_bytes
                ))));
            }
            self.journal_bytes += bytes;
            let step = self.steps.get_mut(name).expect("recorded above");
            step.status = StepStatus::Completed;
            step.output = Some(found.payload);
            step.output_bytes = bytes;
            step.completed_at = Some(now);
            if let Some(StepWait::Event { matched, .. }) = &mut step.wait {
                *matched = Some(MatchedEvent {
                    id: found.id.clone(),
                    seq: found.seq,
                    received_at: found.received_at,
                });
            }
            self.steps_completed += 1;
            self.dirty.insert(name.to_owned());
            self.deliveries.push(Delivery {
                tenant,
                seq: found.seq,
                step: name.to_owned(),
            });
            self.event(
                EventKind::EventReceived,
                Some(name),
                format!(
                    "{described}: event '{}' received {}",
                    found.id,
                    stepwise_core::time_fmt::rfc3339(found.received_at)
                ),
            );
            self.persist(name).await?;
            return Ok(Some(text));
        }
        if until <= now {
            let step = self.steps.get_mut(name).expect("recorded above");
            step.status = StepStatus::Completed;
            step.output = Some(Value::Null);
            step.completed_at = Some(now);
            self.steps_completed += 1;
            self.dirty.insert(name.to_owned());
            self.event(
                EventKind::WaitTimedOut,
                Some(name),
                format!("{described}: no event by the deadline"),
            );
            self.persist(name).await?;
            return Ok(None);
        }
        self.dirty.insert(name.to_owned());
        self.event(
            EventKind::Waiting,
            Some(name),
            format!(
                "{described} until {}",
                stepwise_core::time_fmt::rfc3339(until)
            ),
        );
        self.wait = Some(RunWait::Event {
            step: name.to_owned(),
            name: event,
            correlation_key: key,
            until,
            seen,
        });
        Err(StepInterrupt::Suspend(Suspend {
            wake: WakeCondition::Event { until },
        }))
    }

    /// `flows.invoke` (`join`) and `flows.spawn`: starts the step's children once, then
    /// answers their run ids (`spawn`), or their outputs once every one ended (`invoke`;
    /// until then the run suspends). A child that did not complete is the step's failure.
    pub async fn children(
        &mut self,
        name: &str,
        requests: Vec<ChildRequest>,
        join: bool,
    ) -> Result<Result<Vec<String>, GuestError>, StepInterrupt> {
        self.await_guard(name, StepKind::Child)?;
        self.flow_context(name)?;
        let now = self.clock.now();
        let step = self
            .record(name, StepKind::Child, Some(WakeCondition::Children))
            .map_err(fault)?;
        if step.status == StepStatus::Completed {
            let output = step.output.clone().unwrap_or(Value::Null);
            return Ok(Ok(replayed(&output, join)));
        }
        let recorded = match &step.wait {
            Some(StepWait::Children { runs, .. }) if runs.len() == requests.len() => {
                Some(runs.clone())
            }
            _ => None,
        };
        if step.status == StepStatus::Failed {
            // Another attempt of the step: its children are the same runs.
            step.attempts = step.attempts.saturating_add(1);
            step.status = StepStatus::Waiting;
            step.error = None;
        }
        self.dirty.insert(name.to_owned());
        let runs = match recorded {
            Some(runs) => runs,
            None => match self.start(name, requests).await? {
                Ok(runs) => runs,
                Err(error) => return Ok(Err(self.fail_children_step(name, error))),
            },
        };
        let step = self.steps.get_mut(name).expect("recorded above");
        let fresh = step.wait.is_none();
        step.wait = Some(StepWait::Children {
            runs: runs.clone(),
            join,
        });
        if fresh {
            let shown: Vec<&str> = runs.iter().take(5).map(String::as_str).collect();
            let more = runs.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            self.event(
                EventKind::ChildrenStarted,
                Some(name),
                format!("{} child run(s): {}{tail}", runs.len(), shown.join(", ")),
            );
        }
        if !join {
            let output = Value::Array(runs.iter().cloned().map(Value::String).collect());
            self.complete_children_step(name, output, now)?;
            self.persist(name).await?;
            return Ok(Ok(runs));
        }
        // The children are recorded before anything waits for them.
        self.persist(name).await?;
        // Read one at a time, their outputs counted against the run's journal budget as
        // they come, so a join never holds more than that budget of outputs.
        let mut outputs = Vec::with_capacity(runs.len());
        let mut failure: Option<GuestError> = None;
        let mut bytes = 0u64;
        for id in &runs {
            let child = self
                .store
                .run(id)
                .await
                .map_err(|e| Self::storage(name, e))?;
            let Some(child) = child else {
                let error = GuestError {
                    kind: FailureKind::NonRetryable,
                    message: format!("child run {id} no longer exists"),
                    retry_after_ms: None,
                };
                return Ok(Err(self.fail_children_step(name, error)));
            };
            if !child.status.is_final() {
                self.event(
                    EventKind::Waiting,
                    Some(name),
                    format!("for {} child run(s), not all ended yet", runs.len()),
                );
                self.wait = Some(RunWait::Children {
                    step: name.to_owned(),
                    runs,
                });
                return Err(StepInterrupt::Suspend(Suspend {
                    wake: WakeCondition::Children,
                }));
            }
            if failure.is_some() {
                continue;
            }
            if child.status != RunStatus::Completed {
                failure = Some(child_failure(&child));
                outputs.clear();
                continue;
            }
            let output = child.output.unwrap_or(Value::Null);
            bytes = bytes.saturating_add(output.to_string().len() as u64);
            if self.journal_bytes.saturating_add(bytes) > self.limits.max_journal_bytes {
                return Err(fault(HostFault::Limit(format!(
                    "the outputs of step '{name}''s children would take the run's step \
                     outputs past the {}-byte limit",
                    self.limits.max_journal_bytes
                ))));
            }
            outputs.push(output);
        }
        if let Some(error) = failure {
            let error = self.fail_children_step(name, error);
            self.event(EventKind::ChildrenEnded, Some(name), "not all completed");
            return Ok(Err(error));
        }
        let texts = outputs.iter().map(Value::to_string).collect();
        self.event(
            EventKind::ChildrenEnded,
            Some(name),
            format!("{} child run(s) completed", outputs.len()),
        );
        self.complete_children_step(name, Value::Array(outputs), now)?;
        self.persist(name).await?;
        Ok(Ok(texts))
    }

    /// Starts the step's children (each at most once, whatever happens to this attempt).
    /// `Ok(Err(_))`: a child could not be started, the step's failure.
    async fn start(
        &mut self,
        name: &str,
        requests: Vec<ChildRequest>,
    ) -> Result<Result<Vec<String>, GuestError>, StepInterrupt> {
        let flow = self.flow_context(name)?;
        if requests.is_empty() || requests.len() > MAX_CHILDREN_PER_STEP {
            return Err(fault(HostFault::Limit(format!(
                "step '{name}' asks for {} child runs: a step starts 1 to \
                 {MAX_CHILDREN_PER_STEP}",
                requests.len()
            ))));
        }
        if flow.depth >= MAX_CHILD_DEPTH {
            return Err(fault(HostFault::Limit(format!(
                "step '{name}' would start runs {} levels deep: child runs nest at most \
                 {MAX_CHILD_DEPTH} levels",
                flow.depth + 1
            ))));
        }
        let engine = flow.engine.clone();
        let parent = crate::enqueue::ChildOf {
            tenant: flow.tenant.clone(),
            queue: flow.queue.clone(),
            run: self.run_id.clone(),
            step: name.to_owned(),
            module: flow.module.clone(),
            depth: flow.depth + 1,
        };
        let mut runs = Vec::with_capacity(requests.len());
        for (index, request) in requests.into_iter().enumerate() {
            match engine.start_child(&parent, index, request).await {
                Ok(id) => {
                    // Checked after the child exists: a cancel that raised the flag later
                    // lists the parent's children after this one was stored.
                    if self.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                        let why = format!("its parent run {} was cancelled", parent.run);
                        match engine
                            .cancel_for(&parent.tenant, &id, "the host", Some(&why))
                            .await
                        {
                            Ok(_) | Err(crate::EngineError::NotCancellable { .. }) => {}
                            Err(e) => return Err(Self::storage(name, e)),
                        }
                        return Err(StepInterrupt::Cancelled);
                    }
                    runs.push(id);
                }
                Err(crate::EngineError::Store(e)) => return Err(Self::storage(name, e)),
                Err(e) => {
                    let kind = match &e {
                        crate::EngineError::QuotaExceeded { .. } => FailureKind::Retryable,
                        _ => FailureKind::NonRetryable,
                    };
                    return Ok(Err(GuestError {
                        kind,
                        message: format!("child {index} of step '{name}' was not started: {e}"),
                        retry_after_ms: None,
                    }));
                }
            }
        }
        Ok(Ok(runs))
    }

    fn complete_children_step(
        &mut self,
        name: &str,
        output: Value,
        now: Millis,
    ) -> Result<(), StepInterrupt> {
        let bytes = output.to_string().len() as u64;
        if self.journal_bytes.saturating_add(bytes) > self.limits.max_journal_bytes {
            return Err(fault(HostFault::Limit(format!(
                "the results of step '{name}' ({bytes} bytes) would take the run's step \
                 outputs past the {}-byte limit",
                self.limits.max_journal_bytes
            ))));
        }
        self.journal_bytes += bytes;
        let step = self.steps.get_mut(name).expect("recorded before");
        step.status = StepStatus::Completed;
        step.output = Some(output);
        step.output_bytes = bytes;
        step.completed_at = Some(now);
        self.steps_completed += 1;
        self.dirty.insert(name.to_owned());
        Ok(())
    }

    /// Records `error` as the step's failure (the guest gets it back) and returns it.
    fn fail_children_step(&mut self, name: &str, error: GuestError) -> GuestError {
        let error = self.bounded_error(&error);
        if let Some(step) = self.steps.get_mut(name) {
            step.status = StepStatus::Failed;
            step.error = Some(ErrorInfo {
                kind: error.kind,
                message: error.message.clone(),
                step: Some(name.to_owned()),
                retry_after_ms: error.retry_after_ms,
            });
        }
        self.dirty.insert(name.to_owned());
        self.failed_step = Some(name.to_owned());
        self.event(
            EventKind::StepFailed,
            Some(name),
            format!("{}: {}", error.kind.as_str(), error.message),
        );
        error
    }
}

/// A recorded children step's answer: run ids (`spawn`) or outputs as JSON (`invoke`).
fn replayed(output: &Value, join: bool) -> Vec<String> {
    let items = output.as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .map(|v| match (join, v) {
            (false, Value::String(id)) => id.clone(),
            _ => v.to_string(),
        })
        .collect()
}

/// How an ended child that did not complete fails its parent's step: with its own kind.
fn child_failure(child: &RunRecord) -> GuestError {
    match (&child.status, &child.error) {
        (RunStatus::Cancelled, _) => GuestError {
            kind: FailureKind::NonRetryable,
            message: format!("child run {} ({}) was cancelled", child.id, child.job),
            retry_after_ms: None,
        },
        (_, Some(e)) => GuestError {
            kind: e.kind,
            message: format!(
                "child run {} ({}) failed: {}",
                child.id, child.job, e.message
            ),
            retry_after_ms: e.retry_after_ms,
        },
        _ => GuestError {
            kind: FailureKind::NonRetryable,
            message: format!("child run {} ({}) failed", child.id, child.job),
            retry_after_ms: None,
        },
    }
}

/// "for event 'name' with key 'k'", as the timeline says it.
fn describe_wait(event: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!(
            "for event '{event}' with key '{}'",
            stepwise_core::text::prefix(k, 64)
        ),
        None => format!("for event '{event}' (no key)"),
    }
}
