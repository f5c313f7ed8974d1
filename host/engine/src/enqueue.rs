//! Creating runs — validated, routed to the module that serves the job, and idempotent — and
//! listing them.
//!
//! Idempotency is scoped to (tenant, queue, key). A request is validated whole before its key
//! is looked at, so a repeated key never lets a bad request through. Its fingerprint covers
//! everything that changes what the run does: the job, the payload (as canonical JSON: key
//! order and formatting do not count), the policy overrides and the priority; start times
//! (`delay`, `run_at`) are not compared, since a repeated request computes its delay anew.
//! A repeat with the same fingerprint returns the existing run; another request under the
//! key is a conflict naming what differs. The key is taken inside the writer's transaction,
//! so any number of concurrent enqueues with one key create exactly one run.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Engine, EngineError};
use stepwise_core::clock::Millis;
use stepwise_core::flow::ParentLink;
use stepwise_core::keyed::{Debounce, MAX_KEY_BYTES, OnDuplicate, RunKey};
use stepwise_core::model::{EventKind, LOCAL_TENANT, RunRecord, RunStatus, TimelineEntry};
use stepwise_core::policy::{MAX_DELAY_MS, PolicyError, PolicyOverrides};
use stepwise_core::time_fmt;
pub use stepwise_store::RunFilter;
use stepwise_store::{Created, IdempotencyClaim, JournalWrites, KeyExpiry, NewRunWrite};

/// A request to create a run.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The tenant creating it.
    pub tenant: String,
    /// The queue it belongs to.
    pub queue: String,
    /// The job to run.
    pub job: String,
    /// The payload, as JSON text.
    pub payload: String,
    /// A specific module (sha256); when absent, the tenant's newest module offering `job`.
    pub module: Option<String>,
    /// Policy overrides for this run.
    pub overrides: PolicyOverrides,
    /// Earliest start; now when absent.
    pub run_at: Option<Millis>,
    /// Earliest start as a delay after creation (ignored when `run_at` is given).
    pub delay_ms: Option<u64>,
    /// Among runs due at the same time, higher priorities start first.
    pub priority: i32,
    /// Makes the enqueue idempotent within (tenant, queue).
    pub idempotency_key: Option<String>,
    /// Makes the run the one pending run of its (queue, job, key): see [`Keyed`].
    pub keyed: Option<Keyed>,
    /// The lane of the queue's rate limit the run counts against.
    pub rate_key: Option<String>,
    /// Who asked, for the run's first timeline entry (a schedule's fire), when not the
    /// tenant's own request.
    pub origin: Option<String>,
}

/// A keyed enqueue: a pending run of the same (queue, job, key) is kept, refused or replaced
/// instead of a second run being created; debounce replaces it and pushes its start back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    /// The key (1–256 bytes).
    pub key: String,
    /// What happens to a pending run holding the key (debounce always replaces).
    pub on_duplicate: OnDuplicate,
    /// Debounce timing: the run starts once the period passed without another enqueue.
    pub debounce: Option<Debounce>,
}

impl NewRun {
    /// A run of `job` with `payload` on the local tenant's `default` queue, everything else
    /// defaulted.
    pub fn local(module: &str, job: &str, payload: impl Into<String>) -> Self {
        Self {
            tenant: LOCAL_TENANT.to_owned(),
            queue: "default".to_owned(),
            job: job.to_owned(),
            payload: payload.into(),
            module: Some(module.to_owned()),
            overrides: PolicyOverrides::default(),
            run_at: None,
            delay_ms: None,
            priority: 0,
            idempotency_key: None,
            keyed: None,
            rate_key: None,
            origin: None,
        }
    }
}

/// The result of an enqueue.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The run: new, or the existing one for a repeated idempotency key or a pending key.
    pub run: RunRecord,
    /// Whether an existing run was returned instead of creating one.
    pub deduplicated: bool,
    /// What the enqueue did.
    pub outcome: EnqueueOutcome,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A new run was created.
    Created,
    /// The run holding the idempotency key was returned.
    Deduplicated,
    /// The pending run holding the key was returned unchanged (`on_duplicate: keep`).
    Kept,
    /// The pending run holding the key took the new payload and start (`replace`).
    Replaced,
    /// The pending run holding the debounce key took the new payload; its start moved.
    Debounced,
}

impl EnqueueOutcome {
    /// The name the API and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Deduplicated => "deduplicated",
            Self::Kept => "kept",
            Self::Replaced => "replaced",
            Self::Debounced => "debounced",
        }
    }
}

/// How long an enqueue waits before asking again about a key holder that is starting.
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// How many times it asks (10 s in all) before giving up with a storage error.
const MAX_BUSY_TRIES: u32 = 2_000;

/// Checks a key-like option (`key`, `rate_key`): 1 to [`MAX_KEY_BYTES`] bytes with no
/// control characters (which no store's key columns need to hold, and PostgreSQL's text
/// refuses a NUL).
fn check_key(field: &'static str, key: &str) -> Result<(), EngineError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(PolicyError {
            field,
            problem: format!("must be 1-{MAX_KEY_BYTES} bytes, got {}", key.len()),
        }
        .into());
    }
    if key.chars().any(char::is_control) {
        return Err(PolicyError {
            field,
            problem: "has a control character".to_owned(),
        }
        .into());
    }
    Ok(())
}

/// Checks a keyed enqueue against the request's other options, returning the run's start
/// when debounce decides it.
fn check_keyed(req: &NewRun, now: Millis) -> Result<Option<Millis>, EngineError> {
    let Some(keyed) = &req.keyed else {
        return Ok(None);
    };
    let field = if keyed.debounce.is_some() {
        "debounce"
    } else {
        "key"
    };
    check_key(field, &keyed.key)?;
    let refuse = |problem: &str| -> EngineError {
        PolicyError {
            field,
            problem: problem.to_owned(),
        }
        .into()
    };
    if req.idempotency_key.is_some() {
        return Err(refuse(
            "cannot be combined with idempotency_key: a keyed enqueue is already safe to repeat",
        ));
    }
    let Some(debounce) = keyed.debounce else {
        return Ok(None);
    };
    if req.run_at.is_some() || req.delay_ms.is_some() {
        return Err(refuse(
            "cannot be combined with delay or run_at: the debounce period sets the start",
        ));
    }
    if debounce.period_ms == 0 || debounce.period_ms > MAX_DELAY_MS {
        return Err(refuse("period must be 1 ms to 365 days"));
    }
    if let Some(max) = debounce.max_wait_ms
        && (max < debounce.period_ms || max > MAX_DELAY_MS)
    {
        return Err(refuse(
            "max_wait must be at least the period and at most 365 days",
        ));
    }
    Ok(Some(debounce.due_at(now, now)))
}

/// One page of runs.
#[derive(Debug, Clone, Default)]
pub struct RunPage {
    /// The runs, oldest first.
    pub runs: Vec<RunRecord>,
    /// Pass as `after` to get the next page; absent on the last page. A filtered listing
    /// reads at most [`stepwise_store::MAX_LIST_SCAN`] runs per page, so a page may hold
    /// fewer runs than asked (even none) and still have a next one.
    pub next: Option<String>,
}

/// Largest payload or output shown whole in a list of runs; larger ones are summarized.
pub const LIST_VALUE_BYTES: usize = 16 << 10;

/// `run` as a list shows it: a payload or output over [`LIST_VALUE_BYTES`] of JSON becomes
/// `{"truncated_bytes": N}` (the run view has the whole value), so a page of runs stays small
/// however large its runs' values are.
pub(crate) fn summarize(mut run: RunRecord) -> RunRecord {
    for value in [Some(&mut run.payload), run.output.as_mut()]
        .into_iter()
        .flatten()
    {
        let bytes = serde_json::to_vec(value).map_or(0, |v| v.len());
        if bytes > LIST_VALUE_BYTES {
            *value = serde_json::json!({ "truncated_bytes": bytes });
        }
    }
    run
}

/// When a run asked to start at `run_at` or after `delay_ms` may first start, refusing
/// anything more than [`MAX_DELAY_MS`] ahead.
fn start_time(
    now: Millis,
    run_at: Option<Millis>,
    delay_ms: Option<u64>,
) -> Result<Millis, EngineError> {
    let latest = now.saturating_add(MAX_DELAY_MS);
    match (run_at, delay_ms) {
        (Some(at), _) if at > latest => Err(PolicyError {
            field: "run_at",
            problem: format!(
                "must be at most 365 days ahead ({}), got {}",
                time_fmt::rfc3339(latest),
                time_fmt::rfc3339(at)
            ),
        }
        .into()),
        (Some(at), _) => Ok(at),
        (None, Some(ms)) if ms > MAX_DELAY_MS => Err(PolicyError {
            field: "delay",
            problem: format!("must be at most {MAX_DELAY_MS} ms (365 days), got {ms} ms"),
        }
        .into()),
        (None, delay) => Ok(now.saturating_add(delay.unwrap_or(0))),
    }
}

/// A new time-ordered run id.
fn new_run_id() -> String {
    format!("run_{}", uuid::Uuid::now_v7().simple())
}

/// sha256 (hex) of the canonical JSON of `value`.
pub(crate) fn payload_hash(value: &Value) -> String {
    // serde_json's map is a BTreeMap (no `preserve_order`), so `to_string` sorts keys.
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// What an idempotent request is compared on.
struct Fingerprint<'a> {
    job: &'a str,
    payload: &'a Value,
    overrides: &'a PolicyOverrides,
    priority: i32,
}

impl Fingerprint<'_> {
    /// sha256 (hex) of the canonical JSON of every part: what the key's record keeps.
    fn hash(&self) -> String {
        let canonical = serde_json::json!({
            "job": self.job,
            "payload": self.payload,
            "overrides": self.overrides,
            "priority": self.priority,
        });
        payload_hash(&canonical)
    }

    /// The parts in which the request that created `run` differs from this one.
    fn differs_from(&self, run: &RunRecord) -> Vec<&'static str> {
        let (mine, theirs) = (self.overrides, &run.overrides);
        [
            ("job", self.job != run.job),
            ("payload", *self.payload != run.payload),
            ("max_attempts", mine.max_attempts != theirs.max_attempts),
            ("backoff", mine.backoff != theirs.backoff),
            ("timeout_ms", mine.timeout_ms != theirs.timeout_ms),
            ("fuel", mine.fuel != theirs.fuel),
            ("memory_bytes", mine.memory_bytes != theirs.memory_bytes),
            ("priority", self.priority != run.priority),
        ]
        .into_iter()
        .filter_map(|(part, differs)| differs.then_some(part))
        .collect()
    }
}

/// Checks `name` against the rule of `kind` (one rule per kind, shared with the API's name
/// types and the SDK's macro).
pub fn check_name(kind: stepwise_core::names::Kind, name: &str) -> Result<(), EngineError> {
    stepwise_core::names::check(kind, name).map_err(|error| EngineError::InvalidName {
        name: stepwise_core::text::prefix(name, 200).to_owned(),
        error,
    })
}

/// A payload as sent (JSON text): at most `limit` bytes, integers within 64 bits, valid JSON.
pub(crate) fn parse_payload(text: &str, limit: usize) -> Result<Value, EngineError> {
    if text.len() > limit {
        return Err(EngineError::PayloadTooLarge {
            size: text.len(),
            limit,
        });
    }
    stepwise_core::text::check_integers(text).map_err(EngineError::InvalidPayload)?;
    serde_json::from_str(text).map_err(|e| EngineError::InvalidPayload(e.to_string()))
}

/// The parent of a child run being started.
pub(crate) struct ChildOf {
    pub(crate) tenant: String,
    pub(crate) queue: String,
    pub(crate) run: String,
    pub(crate) step: String,
    /// The parent's module: it serves a child whose job no deployed module routes (local
    /// runs).
    pub(crate) module: String,
    /// The child's depth.
    pub(crate) depth: u32,
}

/// Queue names appear in URLs and tables: keep them plain.
pub fn check_queue_name(name: &str) -> Result<(), EngineError> {
    check_name(stepwise_core::names::Kind::Queue, name)
}

impl Engine {
    /// Creates a run (or returns the run already holding its idempotency key). Nothing is
    /// stored unless every check passes.
    pub async fn enqueue(&self, req: NewRun) -> Result<Enqueued, EngineError> {
        self.enqueue_as(req, None).await
    }

    /// Starts child `index` of `parent`'s step: a run created under an idempotency key
    /// derived from the parent run, the step and the index, so a retried or restarted
    /// attempt finds the child it started before instead of starting another. Returns the
    /// child's id.
    pub(crate) async fn start_child(
        &self,
        parent: &ChildOf,
        index: usize,
        child: stepwise_core::attempt::ChildRequest,
    ) -> Result<String, EngineError> {
        let mut digest = Sha256::new();
        for part in [parent.run.as_bytes(), parent.step.as_bytes()] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        digest.update((index as u64).to_le_bytes());
        let key = format!("~child:{}", hex::encode(&digest.finalize()[..16]));
        let module = match self
            .inner
            .store
            .job_route(&parent.tenant, &child.job)
            .await?
        {
            Some(hash) => hash,
            None => parent.module.clone(),
        };
        let req = NewRun {
            tenant: parent.tenant.clone(),
            queue: child.queue.unwrap_or_else(|| parent.queue.clone()),
            job: child.job,
            payload: child.payload,
            module: Some(module),
            overrides: child.overrides,
            run_at: None,
            delay_ms: child.delay_ms,
            priority: child.priority,
            idempotency_key: Some(key),
            keyed: None,
            rate_key: None,
            origin: None,
        };
        let link = ParentLink {
            run: parent.run.clone(),
            step: parent.step.clone(),
            depth: parent.depth,
        };
        Ok(self.enqueue_as(req, Some(link)).await?.run.id)
    }

    async fn enqueue_as(
        &self,
        req: NewRun,
        parent: Option<ParentLink>,
    ) -> Result<Enqueued, EngineError> {
        let inner = &self.inner;
        check_queue_name(&req.queue)?;
        let payload = parse_payload(&req.payload, inner.config.max_payload_bytes)?;
        let now = inner.clock.now();
        if let Some(key) = &req.idempotency_key
            && (key.is_empty() || key.len() > 256 || key.chars().any(char::is_control))
        {
            return Err(EngineError::InvalidIdempotencyKey);
        }
        let module_hash = match &req.module {
            Some(hash) => hash.clone(),
            None => match inner.store.job_route(&req.tenant, &req.job).await? {
                Some(hash) => hash,
                None => return Err(self.unknown_job(&req.tenant, &req.job).await),
            },
        };
        let spec = self.job_spec(&req.tenant, &module_hash, &req.job).await?;
        req.overrides.validate(self.caps())?;
        if let Some(key) = &req.rate_key {
            check_key("rate_key", key)?;
        }
        let debounced_start = check_keyed(&req, now)?;
        let ready_at = match debounced_start {
            Some(at) => at,
            None => start_time(now, req.run_at, req.delay_ms)?,
        };
        let fingerprint = Fingerprint {
            job: &req.job,
            payload: &payload,
            overrides: &req.overrides,
            priority: req.priority,
        };
        let hash = fingerprint.hash();
        if let Some(key) = &req.idempotency_key
            // Fast path for the common repeat; the guard below settles races.
            && let Some(held) = inner
                .store
                .idempotency(&req.tenant, &req.queue, key)
                .await?
            && !held.expired(now)
        {
            return self
                .resolve_taken(key, &held.run, held.payload_hash == hash, &fingerprint)
                .await;
        }
        let usage = inner.store.tenant_usage(&req.tenant).await?;
        let limits = &inner.config.tenants;
        for (what, limit, used) in [
            (
                "waiting runs",
                limits.max_waiting_runs_of(&req.tenant),
                usage.waiting_runs,
            ),
            (
                "stored bytes",
                limits.max_stored_bytes_of(&req.tenant),
                usage.stored_bytes,
            ),
        ] {
            if used >= limit {
                return Err(EngineError::QuotaExceeded {
                    tenant: req.tenant.clone(),
                    what,
                    limit,
                    used,
                });
            }
        }
        let job_policy = self
            .caps()
            .clamp(spec.policy.over(inner.config.default_policy));
        let policy = req.overrides.over(job_policy);
        let run = RunRecord {
            version: 0,
            id: new_run_id(),
            tenant: req.tenant,
            job: req.job,
            queue: req.queue,
            module: module_hash,
            payload,
            policy,
            overrides: req.overrides,
            priority: req.priority,
            idempotency_key: req.idempotency_key,
            status: RunStatus::Queued,
            attempts: 0,
            body_failures: 0,
            body_budget_base: 0,
            ready_at: Some(ready_at),
            output: None,
            error: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
            parent,
            wait: None,
            key: req.keyed.as_ref().map(|k| RunKey {
                key: k.key.clone(),
                on_duplicate: if k.debounce.is_some() {
                    OnDuplicate::Replace
                } else {
                    k.on_duplicate
                },
                debounce: k.debounce,
                first_at: now,
                replaced: 0,
            }),
            rate_key: req.rate_key,
        };
        let mut detail = match (&run.parent, &req.origin) {
            (Some(p), _) => format!(
                "job '{}' on queue '{}', started by step '{}' of run {}",
                run.job, run.queue, p.step, p.run
            ),
            (None, Some(origin)) => format!("job '{}' on queue '{}', {origin}", run.job, run.queue),
            (None, None) => format!("job '{}' on queue '{}'", run.job, run.queue),
        };
        if let Some(key) = &run.key {
            let what = if key.debounce.is_some() {
                "debounce key"
            } else {
                "key"
            };
            detail.push_str(&format!(
                ", {what} '{}'",
                stepwise_core::text::prefix(&key.key, 64)
            ));
        }
        let created = TimelineEntry {
            at: now,
            kind: EventKind::Created,
            attempt: None,
            step: None,
            detail,
            http: None,
        };
        let new = NewRunWrite {
            journal: JournalWrites {
                tenant: Some(run.tenant.clone()),
                timeline: vec![created],
                ..JournalWrites::default()
            },
            idempotency: run.idempotency_key.as_ref().map(|key| IdempotencyClaim {
                key: key.clone(),
                payload_hash: hash,
                now,
            }),
            run: run.clone(),
        };
        let mut busy_tries = 0u32;
        let mut run = run;
        let created = loop {
            match inner.store.create_run(new.clone()).await {
                // Between a claim and its start, for moments: ask again.
                Ok(Created::HolderBusy { run: holder }) if busy_tries < MAX_BUSY_TRIES => {
                    busy_tries += 1;
                    tracing::debug!(run = %holder, "key holder is starting; asking again");
                    tokio::time::sleep(BUSY_PAUSE).await;
                }
                Ok(created) => break created,
                Err(e) => {
                    // A replacement that failed put its run back in the ready set: let the
                    // scheduler see it.
                    inner.wake.notify_one();
                    return Err(e.into());
                }
            }
        };
        match created {
            Created::HolderBusy { run: holder } => {
                return Err(EngineError::Store(stepwise_store::StoreError::Io(format!(
                    "run {holder} holding the key stayed claimed for 10 s without starting"
                ))));
            }
            Created::Created => run.version = 1,
            Created::PendingHeld { run: holder } => {
                return self.resolve_pending(&run, holder).await;
            }
            Created::Replaced { run: replaced } => {
                let outcome = if replaced.key.as_ref().is_some_and(|k| k.debounce.is_some()) {
                    EnqueueOutcome::Debounced
                } else {
                    EnqueueOutcome::Replaced
                };
                inner.metrics.record_keyed_enqueue(outcome.as_str());
                tracing::info!(run = %replaced.id, outcome = outcome.as_str(), "pending run replaced");
                inner.wake.notify_one();
                return Ok(Enqueued {
                    run: *replaced,
                    deduplicated: true,
                    outcome,
                });
            }
            Created::KeyTaken {
                run: holder,
                same_payload,
            } => {
                let key = run.idempotency_key.as_deref().unwrap_or_default();
                let fingerprint = Fingerprint {
                    job: &run.job,
                    payload: &run.payload,
                    overrides: &run.overrides,
                    priority: run.priority,
                };
                return self
                    .resolve_taken(key, &holder, same_payload, &fingerprint)
                    .await;
            }
        }
        tracing::info!(run = %run.id, tenant = %run.tenant, job = %run.job, "run created");
        if run.key.is_some() {
            inner
                .metrics
                .record_keyed_enqueue(EnqueueOutcome::Created.as_str());
        }
        inner.wake.notify_one();
        Ok(Enqueued {
            run,
            deduplicated: false,
            outcome: EnqueueOutcome::Created,
        })
    }

    /// The answer to a keyed request whose key a pending run holds: that run (`keep`), or
    /// a conflict naming it (`reject`).
    async fn resolve_pending(
        &self,
        request: &RunRecord,
        holder: String,
    ) -> Result<Enqueued, EngineError> {
        let key = request
            .key
            .as_ref()
            .map(|k| k.key.clone())
            .unwrap_or_default();
        if request
            .key
            .as_ref()
            .is_some_and(|k| k.on_duplicate == OnDuplicate::Reject)
        {
            self.inner.metrics.record_keyed_enqueue("rejected");
            return Err(EngineError::PendingRunExists { key, run: holder });
        }
        self.inner
            .metrics
            .record_keyed_enqueue(EnqueueOutcome::Kept.as_str());
        let run = self
            .inner
            .store
            .run(&holder)
            .await?
            .ok_or(EngineError::UnknownRun(holder))?;
        Ok(Enqueued {
            run,
            deduplicated: true,
            outcome: EnqueueOutcome::Kept,
        })
    }

    /// The answer to a request whose key is held by `holder`: that run when the request is
    /// the same (by fingerprint, else compared part by part, for keys taken before the
    /// fingerprint covered more than the payload), else a conflict naming what differs.
    async fn resolve_taken(
        &self,
        key: &str,
        holder: &str,
        same_fingerprint: bool,
        request: &Fingerprint<'_>,
    ) -> Result<Enqueued, EngineError> {
        let run = self
            .inner
            .store
            .run(holder)
            .await?
            .ok_or_else(|| EngineError::UnknownRun(holder.to_owned()))?;
        if !same_fingerprint {
            let differs = request.differs_from(&run);
            if !differs.is_empty() {
                return Err(EngineError::IdempotencyConflict {
                    key: key.to_owned(),
                    run: holder.to_owned(),
                    differs,
                });
            }
        }
        Ok(Enqueued {
            run,
            deduplicated: true,
            outcome: EnqueueOutcome::Deduplicated,
        })
    }

    /// What module `hash` says of `job`: from the loaded module when it is loaded, else from
    /// the tenant's record of its deployment, so an enqueue never waits for a compilation
    /// (after a restart every module is loaded again, on first use).
    async fn job_spec(
        &self,
        tenant: &str,
        hash: &str,
        job: &str,
    ) -> Result<stepwise_core::JobSpec, EngineError> {
        let unknown = |available: Vec<String>| EngineError::UnknownJob {
            job: job.to_owned(),
            available,
        };
        if let Some(loaded) = self.inner.runtime.cached(hash) {
            return loaded
                .job(job)
                .cloned()
                .ok_or_else(|| unknown(loaded.job_names()));
        }
        let recorded = self
            .inner
            .store
            .tenant_modules(tenant)
            .await?
            .into_iter()
            .find(|m| m.hash == hash);
        match recorded {
            Some(module) => match module.jobs.iter().find(|j| j.name == job) {
                Some(spec) => Ok(spec.clone()),
                None => Err(unknown(module.jobs.into_iter().map(|j| j.name).collect())),
            },
            None => {
                let handler = self.handler(hash).await?;
                handler.job(job).ok_or_else(|| unknown(handler.job_names()))
            }
        }
    }

    pub(crate) async fn unknown_job(&self, tenant: &str, job: &str) -> EngineError {
        let mut available: Vec<String> = self
            .inner
            .store
            .tenant_modules(tenant)
            .await
            .unwrap_or_default()
            .into_iter()
            .flat_map(|m| m.jobs.into_iter().map(|j| j.name))
            .collect();
        available.sort();
        available.dedup();
        EngineError::UnknownJob {
            job: job.to_owned(),
            available,
        }
    }

    /// A run, if it exists and belongs to `tenant` (another tenant's run is "not found").
    pub async fn tenant_run(&self, tenant: &str, id: &str) -> Result<RunRecord, EngineError> {
        match self.inner.store.tenant_run(tenant, id).await? {
            Some(run) => Ok(run),
            None => Err(EngineError::UnknownRun(id.to_owned())),
        }
    }

    /// A page of `tenant`'s runs matching `filter`, oldest first, after the run id `after`
    /// (the backend filters), with large values summarized (see [`LIST_VALUE_BYTES`]).
    pub async fn list_runs(
        &self,
        tenant: &str,
        filter: &RunFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RunPage, EngineError> {
        let limit = limit.clamp(1, 1_000);
        let page = self
            .inner
            .store
            .list_runs(tenant, filter, after, limit)
            .await?;
        Ok(RunPage {
            runs: page.runs.into_iter().map(summarize).collect(),
            next: page.next,
        })
    }

    /// Forgets idempotency keys whose retention has passed; returns how many.
    pub async fn sweep_idempotency(&self) -> Result<usize, EngineError> {
        let now = self.inner.clock.now();
        let expired = self.inner.store.expired_idempotency(now, 10_000).await?;
        if expired.is_empty() {
            return Ok(0);
        }
        self.inner.store.remove_idempotency(&expired).await?;
        Ok(expired.len())
    }

    /// What happens to `run`'s idempotency key when the run is written as it is now: kept
    /// for the retention after a final state, held while the run can still change.
    pub(crate) fn key_expiry(&self, run: &RunRecord) -> KeyExpiry {
        match run.finished_at {
            Some(at) if run.status.is_final() => {
                KeyExpiry::Until(at.saturating_add(self.inner.config.idempotency_retention_ms))
            }
            _ => KeyExpiry::Held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_hash_ignores_key_order_and_whitespace() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": [1, 2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":[1,2],"b":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"a":[2,1],"b":1}"#).unwrap();
        assert_eq!(payload_hash(&a), payload_hash(&b));
        assert_ne!(payload_hash(&a), payload_hash(&c));
    }

    #[test]
    fn keys_are_bounded_and_free_of_control_characters() {
        assert!(check_key("key", "user-42 reminder").is_ok());
        assert!(check_key("key", "").is_err());
        assert!(check_key("key", &"k".repeat(MAX_KEY_BYTES + 1)).is_err());
        let err = check_key("rate_key", "a\0b").unwrap_err().to_string();
        assert!(
            err.contains("rate_key") && err.contains("control character"),
            "{err}"
        );
    }

    #[test]
    fn queue_names_are_plain() {
        assert!(check_queue_name("emails.v2-high_prio").is_ok());
        assert!(check_queue_name("").is_err());
        assert!(check_queue_name("a/b").is_err());
        assert!(check_queue_name(&"q".repeat(129)).is_err());
    }
}
