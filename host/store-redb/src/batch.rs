//! Mutations: a [`Batch`] is applied atomically by the group-commit writer. Callers serialize
//! records here, on their own threads, so the writer thread only copies bytes.

use serde::Serialize;

use stepwise_core::clock::Millis;
use stepwise_core::flow::{EventRecord, ParentLink, RunWait};
use stepwise_core::model::{LogLine, RunRecord, RunStatus, StepRecord, TimelineEntry};
use stepwise_store::{IdempotencyRecord, ModuleRecord, Placement, QueueSettings, TenantRecord};

/// One mutation.
#[derive(Debug, Clone)]
pub(super) enum Op {
    PutRun {
        id: String,
        json: Vec<u8>,
        /// (tenant, queue, status before, status now), for the counters.
        counts: (String, String, Option<RunStatus>, RunStatus),
        /// The record's version and due time, for the writer's cache of run heads.
        version: u64,
        ready_at: Option<Millis>,
        /// The run and step that started it: listed as the parent's child, counted among
        /// the step's children not yet ended.
        parent: Option<(String, String)>,
    },
    /// A run written over the stored version `expected` (checked before the batch applies);
    /// the stored record tells the old status (for the counters) and ready key.
    WriteRun {
        id: String,
        expected: u64,
        json: Vec<u8>,
        tenant: String,
        queue: String,
        status: RunStatus,
        ready: Option<(Millis, Placement)>,
        /// What the writer keeps from the record's flow: its waiter entry, and which waits
        /// this write satisfies.
        flow: Box<RunFlow>,
    },
    /// Stores an event (numbered by the writer) unless its id is taken (checked before the
    /// batch applies), and wakes its waiters.
    PutEvent {
        tenant: String,
        event: EventRecord,
    },
    /// Records that a wait of `run` took event `seq`.
    PutDelivery {
        tenant: String,
        seq: u64,
        run: String,
        step: String,
    },
    /// A schedule, created (`expected` `None`: none of that name may exist) or written over
    /// version `expected` (checked before the batch applies).
    PutSchedule {
        tenant: String,
        name: String,
        json: Vec<u8>,
        expected: Option<u64>,
    },
    RemoveSchedule {
        tenant: String,
        name: String,
    },
    /// Forgets an event and its deliveries.
    RemoveEvent {
        tenant: String,
        seq: u64,
    },
    PutTenantRun {
        tenant: String,
        run: String,
    },
    /// Appended after the run's last entry; the writer numbers it.
    AppendTimeline {
        run: String,
        json: Vec<u8>,
    },
    /// Appended after the run's last line; the writer numbers it.
    AppendLog {
        run: String,
        json: Vec<u8>,
    },
    PutStep {
        run: String,
        ordinal: u32,
        json: Vec<u8>,
    },
    SetReady {
        run: String,
        old: Option<Millis>,
        new: Option<(Millis, Placement)>,
    },
    PutDeadLetter {
        tenant: String,
        queue: String,
        run: String,
        at: Millis,
    },
    RemoveDeadLetter {
        tenant: String,
        queue: String,
        run: String,
    },
    PutModule {
        hash: String,
        bytes: Vec<u8>,
    },
    PutTenant {
        name: String,
        json: Vec<u8>,
    },
    PutToken {
        token_hash: String,
        tenant: String,
    },
    PutTenantModule {
        tenant: String,
        hash: String,
        json: Vec<u8>,
    },
    PutJobRoute {
        tenant: String,
        job: String,
        hash: String,
    },
    PutQueue {
        tenant: String,
        queue: String,
        json: Vec<u8>,
    },
    PutEgress {
        tenant: String,
        json: Vec<u8>,
    },
    PutSecret {
        tenant: String,
        name: String,
        json: Vec<u8>,
    },
    RemoveSecret {
        tenant: String,
        name: String,
    },
    PutIdempotency {
        tenant: String,
        queue: String,
        key: String,
        json: Vec<u8>,
    },
    RemoveIdempotency {
        tenant: String,
        queue: String,
        key: String,
    },
    /// Deletes a dead-lettered run and everything stored about it: its record, steps,
    /// timeline, logs, its tenant listing and dead-letter entry, and the idempotency key it
    /// holds. Checked in the transaction: a run no longer dead-lettered (retried meanwhile)
    /// is left alone.
    DeleteDeadLetter {
        id: String,
        tenant: String,
        queue: String,
        key: Option<String>,
    },
}

/// The flow fields of a written run record the writer acts on.
#[derive(Debug, Clone)]
pub(super) struct RunFlow {
    pub wait: Option<RunWait>,
    pub parent: Option<ParentLink>,
    /// The write's time (the record's `updated_at`): when a satisfied wait is due.
    pub at: Millis,
}

/// A condition checked inside the writer's transaction before a batch is applied: the batch
/// creates a run under an idempotency key, unless the key is already taken. Checking there — not
/// before sending — is what makes 100 concurrent enqueues with one key create exactly one run.
#[derive(Debug, Clone)]
pub struct IdempotencyGuard {
    /// Tenant of the key.
    pub tenant: String,
    /// Queue of the key.
    pub queue: String,
    /// The key.
    pub key: String,
    /// The record to store when the key is free (or held by an expired record).
    pub record: IdempotencyRecord,
    /// The time the check is made at, to tell expired records apart.
    pub now: Millis,
}

/// What happened to a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// Every mutation was applied.
    Applied,
    /// A run changed since the batch's writer read it; nothing was applied.
    Conflict {
        /// The run.
        run: String,
        /// The version the write expected.
        expected: u64,
        /// The stored version (`None`: not stored).
        found: Option<u64>,
    },
    /// The batch's idempotency key was taken; nothing was applied.
    KeyTaken {
        /// The run holding the key.
        run: String,
        /// Whether that run was created with the same payload (canonical JSON hash).
        same_payload: bool,
    },
    /// Every mutation was applied, and the event the batch stores woke `woken` waiting runs.
    EventStored {
        /// Waiting runs made due.
        woken: u64,
    },
    /// The batch's event id was taken by the event numbered `seq`; nothing was applied.
    EventTaken {
        /// The stored event's number.
        seq: u64,
    },
    /// The batch's keyed run found a pending run holding its key, kept or refused by its
    /// `on_duplicate`; nothing was applied.
    PendingHeld {
        /// The pending run.
        run: String,
    },
    /// The batch's keyed run replaced the pending run holding its key: that run's new
    /// state was written instead of the batch.
    Replaced(Box<RunRecord>),
    /// The pending run holding the batch's key is claimed by an attempt that has not
    /// recorded its start yet; nothing was applied (ask again: it starts, or is handed back,
    /// within moments).
    HolderBusy {
        /// The run.
        run: String,
    },
}

/// Mutations that must be applied together: all of them or none.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(super) ops: Vec<Op>,
    pub(super) guard: Option<IdempotencyGuard>,
    /// The new run of a keyed enqueue, created only if no pending run holds its key (see
    /// [`stepwise_store::Created`]).
    pub(super) keyed: Option<Box<RunRecord>>,
    /// Bytes of records the batch overwrites, taken off what it charges (a replacement
    /// charges only what it adds).
    pub(super) refund: u64,
    /// The tenant whose stored-bytes counter the batch's records are added to.
    pub(super) charge: Option<String>,
}

impl Op {
    /// Bytes of record this mutation stores (keys and removals count nothing).
    pub(super) fn stored_bytes(&self) -> u64 {
        let n = match self {
            Self::PutRun { json, .. }
            | Self::WriteRun { json, .. }
            | Self::AppendTimeline { json, .. }
            | Self::AppendLog { json, .. }
            | Self::PutStep { json, .. }
            | Self::PutTenant { json, .. }
            | Self::PutTenantModule { json, .. }
            | Self::PutQueue { json, .. }
            | Self::PutEgress { json, .. }
            | Self::PutSecret { json, .. }
            | Self::PutIdempotency { json, .. } => json.len(),
            Self::PutModule { bytes, .. } => bytes.len(),
            Self::PutEvent { event, .. } => event_bytes(event),
            _ => 0,
        };
        n as u64
    }
}

/// Bytes an event takes as stored, charged to its tenant's stored bytes.
pub(super) fn event_bytes(event: &EventRecord) -> usize {
    to_json(event).len()
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialize")
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of mutations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Adds what this batch stores to `tenant`'s stored-bytes counter (its quota).
    pub fn charge_to(&mut self, tenant: &str) -> &mut Self {
        self.charge = Some(tenant.to_owned());
        self
    }

    /// Applies the batch only if `guard`'s key is free.
    pub fn guard(&mut self, guard: IdempotencyGuard) -> &mut Self {
        self.guard = Some(guard);
        self
    }

    /// Applies the batch, which creates `run`, only if no pending run holds `run`'s key;
    /// otherwise that run is kept or replaced, by the key's `on_duplicate`.
    pub fn keyed(&mut self, run: &RunRecord) -> &mut Self {
        self.keyed = Some(Box::new(run.clone()));
        self
    }

    /// Writes a run record whose stored status was `prev` (`None` for a new run), so the
    /// store's counters move from `prev` to the run's status.
    pub fn put_run(&mut self, run: &RunRecord, prev: Option<RunStatus>) -> &mut Self {
        self.ops.push(Op::PutRun {
            id: run.id.clone(),
            json: to_json(run),
            counts: (run.tenant.clone(), run.queue.clone(), prev, run.status),
            version: run.version,
            ready_at: run.ready_at,
            parent: run.parent.as_ref().map(|p| (p.run.clone(), p.step.clone())),
        });
        self
    }

    /// Writes `run` (carrying its new version) over stored version `expected`; its ready
    /// entry follows its `ready_at`.
    pub fn write_run(&mut self, run: &RunRecord, expected: u64) -> &mut Self {
        self.ops.push(Op::WriteRun {
            id: run.id.clone(),
            expected,
            json: to_json(run),
            tenant: run.tenant.clone(),
            queue: run.queue.clone(),
            status: run.status,
            ready: run.ready_at.map(|at| (at, Placement::of(run))),
            flow: Box::new(RunFlow {
                wait: run.wait.clone(),
                parent: run.parent.clone(),
                at: run.updated_at,
            }),
        });
        self
    }

    /// Appends a timeline entry, numbered by the writer.
    pub fn append_timeline(&mut self, run: &str, entry: &TimelineEntry) -> &mut Self {
        self.ops.push(Op::AppendTimeline {
            run: run.to_owned(),
            json: to_json(entry),
        });
        self
    }

    /// Appends a log line, numbered by the writer.
    pub fn append_log(&mut self, run: &str, line: &LogLine) -> &mut Self {
        self.ops.push(Op::AppendLog {
            run: run.to_owned(),
            json: to_json(line),
        });
        self
    }

    /// Writes what a journal recorded for `run`: its steps, timeline entries and log lines,
    /// charged to the journal's tenant.
    pub fn journal(&mut self, run: &str, writes: &stepwise_store::JournalWrites) -> &mut Self {
        if let Some(tenant) = &writes.tenant {
            self.charge_to(tenant);
        }
        for step in &writes.steps {
            self.put_step(run, step);
        }
        for entry in &writes.timeline {
            self.append_timeline(run, entry);
        }
        for line in &writes.logs {
            self.append_log(run, line);
        }
        for d in &writes.deliveries {
            self.ops.push(Op::PutDelivery {
                tenant: d.tenant.clone(),
                seq: d.seq,
                run: run.to_owned(),
                step: d.step.clone(),
            });
        }
        self
    }

    /// Stores `event` of `tenant` (its `seq` is assigned by the writer) unless its id is
    /// taken, and wakes the runs waiting for it.
    pub fn put_event(&mut self, tenant: &str, event: EventRecord) -> &mut Self {
        self.charge_to(tenant);
        self.ops.push(Op::PutEvent {
            tenant: tenant.to_owned(),
            event,
        });
        self
    }

    /// Stores `schedule` of `tenant` (carrying its new version) over `expected`.
    pub fn put_schedule(
        &mut self,
        tenant: &str,
        schedule: &stepwise_core::schedule::ScheduleRecord,
        expected: Option<u64>,
    ) -> &mut Self {
        self.ops.push(Op::PutSchedule {
            tenant: tenant.to_owned(),
            name: schedule.name.clone(),
            json: to_json(schedule),
            expected,
        });
        self
    }

    /// Removes a schedule.
    pub fn remove_schedule(&mut self, tenant: &str, name: &str) -> &mut Self {
        self.ops.push(Op::RemoveSchedule {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        });
        self
    }

    /// Whether the batch stores an event.
    pub(super) fn stores_event(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, Op::PutEvent { .. }))
    }

    /// Forgets event `seq` of `tenant`.
    pub fn remove_event(&mut self, tenant: &str, seq: u64) -> &mut Self {
        self.ops.push(Op::RemoveEvent {
            tenant: tenant.to_owned(),
            seq,
        });
        self
    }

    /// Lists a new run under its tenant.
    pub fn put_tenant_run(&mut self, tenant: &str, run: &str) -> &mut Self {
        self.ops.push(Op::PutTenantRun {
            tenant: tenant.to_owned(),
            run: run.to_owned(),
        });
        self
    }

    /// Writes a step's journal entry, at its ordinal.
    pub fn put_step(&mut self, run: &str, step: &StepRecord) -> &mut Self {
        self.ops.push(Op::PutStep {
            run: run.to_owned(),
            ordinal: step.ordinal,
            json: to_json(step),
        });
        self
    }

    /// Moves `run` in the ready index from `old` to `new` (either may be absent).
    pub fn set_ready(
        &mut self,
        run: &RunRecord,
        old: Option<Millis>,
        new: Option<Millis>,
    ) -> &mut Self {
        if old != new {
            let new = new.map(|at| (at, Placement::of(run)));
            self.move_ready(&run.id, old, new);
        }
        self
    }

    /// Moves the run `id` in the ready index from `old` to `new`, placed as given.
    pub fn move_ready(
        &mut self,
        id: &str,
        old: Option<Millis>,
        new: Option<(Millis, Placement)>,
    ) -> &mut Self {
        self.ops.push(Op::SetReady {
            run: id.to_owned(),
            old,
            new,
        });
        self
    }

    /// Lists a run in its queue's dead letters.
    pub fn put_dead_letter(&mut self, run: &RunRecord, at: Millis) -> &mut Self {
        self.ops.push(Op::PutDeadLetter {
            tenant: run.tenant.clone(),
            queue: run.queue.clone(),
            run: run.id.clone(),
            at,
        });
        self
    }

    /// Removes a run from its queue's dead letters.
    pub fn remove_dead_letter(&mut self, run: &RunRecord) -> &mut Self {
        self.remove_dead_letter_of(&run.tenant, &run.queue, &run.id)
    }

    /// Removes the run `id` from the dead letters of `tenant`'s `queue`.
    pub fn remove_dead_letter_of(&mut self, tenant: &str, queue: &str, id: &str) -> &mut Self {
        self.ops.push(Op::RemoveDeadLetter {
            tenant: tenant.to_owned(),
            queue: queue.to_owned(),
            run: id.to_owned(),
        });
        self
    }

    /// Stores a component's bytes under their sha256.
    pub fn put_module(&mut self, hash: &str, bytes: &[u8]) -> &mut Self {
        self.ops.push(Op::PutModule {
            hash: hash.to_owned(),
            bytes: bytes.to_vec(),
        });
        self
    }

    /// Writes a tenant.
    pub fn put_tenant(&mut self, tenant: &TenantRecord) -> &mut Self {
        self.ops.push(Op::PutTenant {
            name: tenant.name.clone(),
            json: to_json(tenant),
        });
        self
    }

    /// Registers an API token (by its hash) for a tenant.
    pub fn put_token(&mut self, token_hash: &str, tenant: &str) -> &mut Self {
        self.ops.push(Op::PutToken {
            token_hash: token_hash.to_owned(),
            tenant: tenant.to_owned(),
        });
        self
    }

    /// Records a tenant's deployment of a module and routes its jobs to it.
    pub fn put_tenant_module(&mut self, tenant: &str, module: &ModuleRecord) -> &mut Self {
        self.ops.push(Op::PutTenantModule {
            tenant: tenant.to_owned(),
            hash: module.hash.clone(),
            json: to_json(module),
        });
        for job in &module.jobs {
            self.ops.push(Op::PutJobRoute {
                tenant: tenant.to_owned(),
                job: job.name.clone(),
                hash: module.hash.clone(),
            });
        }
        self
    }

    /// Writes a queue's settings.
    pub fn put_queue(&mut self, tenant: &str, queue: &str, settings: &QueueSettings) -> &mut Self {
        self.ops.push(Op::PutQueue {
            tenant: tenant.to_owned(),
            queue: queue.to_owned(),
            json: to_json(settings),
        });
        self
    }

    /// Writes a tenant's egress rules and limits.
    pub fn put_egress(
        &mut self,
        tenant: &str,
        settings: &stepwise_core::egress::TenantEgress,
    ) -> &mut Self {
        self.ops.push(Op::PutEgress {
            tenant: tenant.to_owned(),
            json: to_json(settings),
        });
        self
    }

    /// Writes a tenant's secret (its value sealed).
    pub fn put_secret(
        &mut self,
        tenant: &str,
        record: &stepwise_core::secret::SecretRecord,
    ) -> &mut Self {
        self.ops.push(Op::PutSecret {
            tenant: tenant.to_owned(),
            name: record.name.clone(),
            json: to_json(record),
        });
        self
    }

    /// Removes a tenant's secret.
    pub fn remove_secret(&mut self, tenant: &str, name: &str) -> &mut Self {
        self.ops.push(Op::RemoveSecret {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        });
        self
    }

    /// Writes an idempotency record (e.g. to set its expiry once its run has ended).
    pub fn put_idempotency(
        &mut self,
        tenant: &str,
        queue: &str,
        key: &str,
        record: &IdempotencyRecord,
    ) -> &mut Self {
        self.ops.push(Op::PutIdempotency {
            tenant: tenant.to_owned(),
            queue: queue.to_owned(),
            key: key.to_owned(),
            json: to_json(record),
        });
        self
    }

    /// Deletes the dead-lettered `run` and everything stored about it, uncharging its
    /// tenant; nothing happens if it is no longer a dead letter when the batch applies.
    pub fn delete_dead_letter(&mut self, run: &RunRecord) -> &mut Self {
        self.ops.push(Op::DeleteDeadLetter {
            id: run.id.clone(),
            tenant: run.tenant.clone(),
            queue: run.queue.clone(),
            key: run.idempotency_key.clone(),
        });
        self
    }

    /// Forgets an idempotency key.
    pub fn remove_idempotency(&mut self, tenant: &str, queue: &str, key: &str) -> &mut Self {
        self.ops.push(Op::RemoveIdempotency {
            tenant: tenant.to_owned(),
            queue: queue.to_owned(),
            key: key.to_owned(),
        });
        self
    }
}
