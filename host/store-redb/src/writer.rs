//! The group-commit writer: one thread owns every write transaction.
//!
//! Callers from any number of concurrent runs hand it a [`Batch`] and await an acknowledgement.
//! The thread takes whatever batches are waiting, applies them all in one transaction, commits
//! once (one fsync in `immediate` mode), and then acknowledges every caller. Under load this is
//! what turns a disk that does a few hundred fsyncs a second into thousands of durable writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;

mod keyed;

use super::batch::{CommitOutcome, Op, RunFlow};
use super::ready::ReadyIndex;
use super::schema::*;
use super::{Batch, Durability, StoreError};
use stepwise_core::flow::{EventRecord, RunWait};
use stepwise_core::model::{RunRecord, RunStatus};
use stepwise_store::CommitStats;
use stepwise_store::IdempotencyRecord;

/// Most batches folded into one transaction, so one commit never grows without bound.
const MAX_BATCHES_PER_COMMIT: usize = 4_096;

/// How long `eventual` mode lets non-durable commits accumulate before an fsync.
const EVENTUAL_FLUSH: Duration = Duration::from_millis(100);

pub(super) struct Pending {
    pub batch: Batch,
    pub ack: oneshot::Sender<Result<CommitOutcome, StoreError>>,
}

pub(super) fn spawn(
    db: Arc<Database>,
    durability: Durability,
    stats: Arc<CommitStats>,
    ready: Arc<ReadyIndex>,
) -> Result<(mpsc::Sender<Pending>, std::thread::JoinHandle<()>), StoreError> {
    let (tx, rx) = mpsc::channel::<Pending>();
    let handle = std::thread::Builder::new()
        .name("stepwise-writer".into())
        .spawn(move || run(db, durability, stats, ready, rx))
        .map_err(|e| StoreError::Io(e.to_string()))?;
    Ok((tx, handle))
}

fn run(
    db: Arc<Database>,
    durability: Durability,
    stats: Arc<CommitStats>,
    ready: Arc<ReadyIndex>,
    rx: mpsc::Receiver<Pending>,
) {
    let mut cache = WriterCache::default();
    // In eventual mode: when the oldest commit not yet on disk was made. It bounds how long an
    // acknowledged write may stay in memory, under steady load as when idle.
    let mut unflushed: Option<Instant> = None;
    loop {
        let first = if let Some(since) = unflushed {
            let left = EVENTUAL_FLUSH.saturating_sub(since.elapsed());
            match rx.recv_timeout(left) {
                Ok(p) => p,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = commit(
                        &db,
                        &[],
                        redb::Durability::Immediate,
                        &stats,
                        &mut cache,
                        &ready,
                        &mut Vec::new(),
                    ) {
                        tracing::error!(error = %e, "background flush failed");
                    }
                    unflushed = None;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(p) => p,
                Err(_) => break,
            }
        };
        let mut group = vec![first];
        while group.len() < MAX_BATCHES_PER_COMMIT {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let mode = match durability {
            Durability::Immediate => redb::Durability::Immediate,
            // The window is up: this commit goes to disk and takes the earlier ones with it.
            Durability::Eventual if unflushed.is_some_and(|t| t.elapsed() >= EVENTUAL_FLUSH) => {
                unflushed = None;
                redb::Durability::Immediate
            }
            Durability::Eventual => {
                unflushed.get_or_insert_with(Instant::now);
                redb::Durability::None
            }
        };
        let batches: Vec<&Batch> = group.iter().map(|p| &p.batch).collect();
        let mut fenced = Vec::new();
        let result = commit(&db, &batches, mode, &stats, &mut cache, &ready, &mut fenced);
        match &result {
            Err(e) => tracing::error!(error = %e, batches = group.len(), "group commit failed"),
            // Before any acknowledgement: a caller that sees its commit sees its ready moves.
            Ok(outcomes) => {
                for (p, (outcome, woken, instead)) in group.iter().zip(outcomes) {
                    if matches!(outcome, CommitOutcome::Applied | CommitOutcome::Replaced(_)) {
                        mirror_ready(&ready, instead.as_ref().unwrap_or(&p.batch));
                        for (run, at, placement) in woken {
                            ready.apply(run, Some((*at, placement)));
                        }
                    }
                }
            }
        }
        for run in fenced {
            ready.unfence(&run, result.is_ok());
        }
        stats
            .batches
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        for (i, p) in group.into_iter().enumerate() {
            let outcome = match &result {
                Ok(outcomes) => Ok(match &outcomes[i] {
                    (CommitOutcome::Applied, woken, _) if p.batch.stores_event() => {
                        CommitOutcome::EventStored {
                            woken: woken.len() as u64,
                        }
                    }
                    (outcome, _, _) => outcome.clone(),
                }),
                Err(e) => Err(e.clone()),
            };
            // A caller that stopped waiting (its run was cancelled) is not an error.
            let _ = p.ack.send(outcome);
        }
    }
    // Whatever `eventual` mode left unflushed is made durable before the thread ends.
    if unflushed.is_some()
        && let Err(e) = commit(
            &db,
            &[],
            redb::Durability::Immediate,
            &stats,
            &mut cache,
            &ready,
            &mut Vec::new(),
        )
    {
        tracing::error!(error = %e, "final flush failed");
    }
}

/// Runs a batch woke, with when they are due and where they wait: mirrored into the ready
/// index after the batch's own moves.
type Woken = Vec<(
    String,
    stepwise_core::clock::Millis,
    stepwise_store::Placement,
)>;

/// What one batch of a commit did: its outcome, the runs it woke, and the batch applied
/// instead of it (a keyed replacement).
type Done = (CommitOutcome, Woken, Option<Batch>);

/// Applies `batches` in one transaction and commits it. Runs a keyed replacement fenced from
/// claiming are added to `fenced`; the caller unfences them once the commit is mirrored.
fn commit(
    db: &Database,
    batches: &[&Batch],
    mode: redb::Durability,
    stats: &CommitStats,
    cache: &mut WriterCache,
    ready: &ReadyIndex,
    fenced: &mut Vec<String>,
) -> Result<Vec<Done>, StoreError> {
    let started = Instant::now();
    let mut txn = db.begin_write()?;
    txn.set_durability(mode)
        .map_err(|e| StoreError::Io(e.to_string()))?;
    let mut rows = 0u64;
    let mut outcomes = Vec::with_capacity(batches.len());
    let written;
    {
        let mut tables = Tables::new(&txn);
        let mut deltas = Deltas::new();
        let mut known = Heads {
            committed: &cache.heads,
            written: HashMap::new(),
        };
        for batch in batches {
            let mut outcome = check_guard(&mut tables, batch, &mut known)?;
            let mut instead = None;
            if outcome == CommitOutcome::Applied
                && let Some(new) = &batch.keyed
            {
                match keyed::check(&mut tables, ready, new)? {
                    keyed::Keyed::Create => {}
                    keyed::Keyed::Held(held) => outcome = held,
                    keyed::Keyed::Replace(run, replacement) => {
                        fenced.push(run.id.clone());
                        outcome = CommitOutcome::Replaced(run);
                        instead = Some(replacement);
                    }
                }
            }
            let mut woken = Woken::new();
            if matches!(outcome, CommitOutcome::Applied | CommitOutcome::Replaced(_)) {
                let mut cx = Apply {
                    deltas: &mut deltas,
                    seqs: &mut cache.seqs,
                    event_seq: &mut cache.event_seq,
                    known: &mut known,
                    woken: &mut woken,
                };
                rows += apply(&mut tables, instead.as_ref().unwrap_or(batch), &mut cx)?;
            }
            outcomes.push((outcome, woken, instead));
        }
        apply_deltas(&mut tables, deltas)?;
        written = known.written;
    }
    txn.commit()?;
    if cache.heads.len() >= MAX_CACHED_SEQS {
        cache.heads.clear();
    }
    for (id, head) in written {
        if head.status.is_final() {
            cache.heads.remove(&id);
        } else {
            cache.heads.insert(id, head);
        }
    }
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.rows.fetch_add(rows, Ordering::Relaxed);
    let micros = started.elapsed().as_micros() as u64;
    stats.commit_latency.observe(micros);
    stats.group_sizes.observe(batches.len() as u64);
    Ok(outcomes)
}

/// Applies a committed batch's ready-index moves to the in-memory mirror.
fn mirror_ready(ready: &ReadyIndex, batch: &Batch) {
    for op in &batch.ops {
        match op {
            Op::SetReady { run, new, .. } => {
                ready.apply(run, new.as_ref().map(|(at, p)| (*at, p)));
            }
            Op::WriteRun { id, ready: new, .. } => {
                ready.apply(id, new.as_ref().map(|(at, p)| (*at, p)));
            }
            _ => {}
        }
    }
}

/// Declares [`Tables`]: one lazily opened handle per table, kept for the whole transaction.
/// Opening a redb table looks it up in the table tree and decodes its definition, which is
/// work worth doing once per commit rather than once per mutation.
macro_rules! tables {
    ($($field:ident: $def:ident as $k:ty => $v:ty;)*) => {
        struct Tables<'t> {
            txn: &'t WriteTransaction,
            $($field: Option<Table<'t, $k, $v>>,)*
        }

        impl<'t> Tables<'t> {
            fn new(txn: &'t WriteTransaction) -> Self {
                Self { txn, $($field: None,)* }
            }

            $(
                fn $field(&mut self) -> Result<&mut Table<'t, $k, $v>, StoreError> {
                    if self.$field.is_none() {
                        self.$field = Some(self.txn.open_table($def)?);
                    }
                    Ok(self.$field.as_mut().expect("opened above"))
                }
            )*
        }
    };
}

tables! {
    runs: RUNS as &'static str => &'static [u8];
    steps: STEPS as (&'static str, u32) => &'static [u8];
    timeline: TIMELINE as (&'static str, u32) => &'static [u8];
    logs: LOGS as (&'static str, u32) => &'static [u8];
    ready: READY as (u64, &'static str) => ();
    dead_letters: DEAD_LETTERS as (&'static str, &'static str, &'static str) => u64;
    tenant_runs: TENANT_RUNS as (&'static str, &'static str) => ();
    idempotency: IDEMPOTENCY as (&'static str, &'static str, &'static str) => &'static [u8];
    tenants: TENANTS as &'static str => &'static [u8];
    tokens: TOKENS as &'static str => &'static str;
    tenant_modules: TENANT_MODULES as (&'static str, &'static str) => &'static [u8];
    job_routes: JOB_ROUTES as (&'static str, &'static str) => &'static str;
    queues: QUEUES as (&'static str, &'static str) => &'static [u8];
    modules: MODULES as &'static str => &'static [u8];
    counters: COUNTERS as (&'static str, &'static str, &'static str) => u64;
    egress: EGRESS as &'static str => &'static [u8];
    secrets: SECRETS as (&'static str, &'static str) => &'static [u8];
    meta: META as &'static str => u64;
    events: EVENTS as (&'static str, u64) => &'static [u8];
    event_ids: EVENT_IDS as (&'static str, &'static str) => u64;
    event_index: EVENT_INDEX as (&'static str, &'static str, &'static str, u64, u64) => ();
    event_expiry: EVENT_EXPIRY as (u64, &'static str, u64) => ();
    event_deliveries: EVENT_DELIVERIES as (&'static str, u64, &'static str) => &'static str;
    waiters: WAITERS as (&'static str, &'static str, &'static str, &'static str) => ();
    children: CHILDREN as (&'static str, &'static str) => ();
    pending_children: PENDING_CHILDREN as (&'static str, &'static str) => u64;
    event_latest: EVENT_LATEST as (&'static str, &'static str, &'static str) => u64;
    schedules: SCHEDULES as (&'static str, &'static str) => &'static [u8];
    pending_keys: PENDING_KEYS as (&'static str, &'static str, &'static str, &'static str) => &'static str;
}

/// What a write needs of a stored run record: its version, and what its counters and ready
/// entry were kept under. Decoded without the rest of the record.
#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct StoredHead {
    #[serde(default)]
    version: u64,
    status: stepwise_core::model::RunStatus,
    #[serde(default)]
    ready_at: Option<stepwise_core::clock::Millis>,
    /// What it waits for, kept so the waiter entry can be moved and a child's end can tell
    /// whether its parent waits for it.
    #[serde(default)]
    wait: Option<stepwise_core::flow::RunWait>,
}

/// The head of run `id` as this commit will find it: what this commit wrote or read of it,
/// else what the writer last committed (its cache), else the stored record, which is then
/// remembered so the write that follows does not read it again.
fn head_of(
    tables: &mut Tables<'_>,
    heads: &mut Heads<'_>,
    id: &str,
) -> Result<Option<StoredHead>, StoreError> {
    if let Some(h) = heads.written.get(id).or_else(|| heads.committed.get(id)) {
        return Ok(Some(h.clone()));
    }
    let head = stored_head(tables, id)?;
    if let Some(h) = &head {
        heads.written.insert(id.to_owned(), h.clone());
    }
    Ok(head)
}

/// Run heads known without reading: those committed earlier (the writer's cache) and those
/// this commit wrote or read so far (merged into the cache once the commit succeeds).
pub(super) struct Heads<'c> {
    committed: &'c HashMap<String, StoredHead>,
    written: HashMap<String, StoredHead>,
}

fn stored_head(tables: &mut Tables<'_>, id: &str) -> Result<Option<StoredHead>, StoreError> {
    match tables.runs()?.get(id)? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                what: format!("run {id}"),
                message: e.to_string(),
            }),
        None => Ok(None),
    }
}

/// Checks, inside the transaction, that every run the batch writes is at the version its
/// writer read; then takes the batch's idempotency key, or reports who holds it.
fn check_guard(
    tables: &mut Tables<'_>,
    batch: &Batch,
    known: &mut Heads<'_>,
) -> Result<CommitOutcome, StoreError> {
    for op in &batch.ops {
        if let Op::WriteRun { id, expected, .. } = op {
            let head = head_of(tables, known, id)?;
            let found = head.as_ref().map(|h| h.version);
            if found != Some(*expected) {
                return Ok(CommitOutcome::Conflict {
                    run: id.clone(),
                    expected: *expected,
                    found,
                });
            }
        }
    }
    for op in &batch.ops {
        if let Op::PutSchedule {
            tenant,
            name,
            expected,
            ..
        } = op
        {
            #[derive(serde::Deserialize)]
            struct Version {
                #[serde(default)]
                version: u64,
            }
            let found = tables
                .schedules()?
                .get((tenant.as_str(), name.as_str()))?
                .and_then(|v| serde_json::from_slice::<Version>(v.value()).ok())
                .map(|v| v.version);
            if found != *expected {
                return Ok(CommitOutcome::Conflict {
                    run: format!("schedule {name}"),
                    expected: expected.unwrap_or(0),
                    found,
                });
            }
        }
        if let Op::PutEvent { tenant, event } = op
            && let Some(seq) = tables
                .event_ids()?
                .get((tenant.as_str(), event.id.as_str()))?
        {
            return Ok(CommitOutcome::EventTaken { seq: seq.value() });
        }
    }
    let Some(g) = &batch.guard else {
        return Ok(CommitOutcome::Applied);
    };
    let table = tables.idempotency()?;
    let key = (g.tenant.as_str(), g.queue.as_str(), g.key.as_str());
    let held: Option<IdempotencyRecord> = match table.get(key)? {
        Some(v) => serde_json::from_slice(v.value()).ok(),
        None => None,
    };
    if let Some(held) = held
        && !held.expired(g.now)
    {
        return Ok(CommitOutcome::KeyTaken {
            same_payload: held.payload_hash == g.record.payload_hash,
            run: held.run,
        });
    }
    let json = serde_json::to_vec(&g.record).expect("records always serialize");
    table.insert(key, json.as_slice())?;
    Ok(CommitOutcome::Applied)
}

/// Counter changes of one commit, by (tenant, queue, counter).
type Deltas = HashMap<(String, String, &'static str), i64>;

pub(super) use stepwise_store::counters::{
    DEAD_LETTERS as DEAD_LETTERS_COUNTER, EVENTS as EVENTS_COUNTER,
    STORED_BYTES as STORED_BYTES_COUNTER,
};

fn count(deltas: &mut Deltas, tenant: &str, queue: &str, counter: &'static str, by: i64) {
    *deltas
        .entry((tenant.to_owned(), queue.to_owned(), counter))
        .or_default() += by;
}

/// Removes run `id` from every table that holds something of it (but the dead letters,
/// which the caller handled); returns the bytes of records removed.
fn delete_run(
    tables: &mut Tables<'_>,
    id: &str,
    tenant: &str,
    ready_at: Option<stepwise_core::clock::Millis>,
    key: Option<&str>,
    queue: &str,
) -> Result<u64, StoreError> {
    let mut bytes = 0u64;
    let removed = tables.runs()?.remove(id)?.map(|v| v.value().to_vec());
    if let Some(json) = removed {
        bytes = bytes.saturating_add(json.len() as u64);
        if let Ok(run) = serde_json::from_slice::<RunRecord>(&json) {
            keyed::release(tables, &run)?;
        }
    }
    for list in [ListTable::Steps, ListTable::Timeline, ListTable::Logs] {
        let table = match list {
            ListTable::Steps => tables.steps()?,
            ListTable::Timeline => tables.timeline()?,
            ListTable::Logs => tables.logs()?,
        };
        for entry in table.extract_from_if((id, 0)..=(id, u32::MAX), |_, _| true)? {
            let (_, v) = entry?;
            bytes = bytes.saturating_add(v.value().len() as u64);
        }
    }
    tables.tenant_runs()?.remove((tenant, id))?;
    if let Some(at) = ready_at {
        tables.ready()?.remove((at, id))?;
    }
    if let Some(key) = key {
        let table = tables.idempotency()?;
        let holder: Option<IdempotencyRecord> = table
            .get((tenant, queue, key))?
            .and_then(|v| serde_json::from_slice(v.value()).ok());
        if holder.is_some_and(|h| h.run == id) {
            table.remove((tenant, queue, key))?;
        }
    }
    Ok(bytes)
}

/// The per-run lists, keyed by (run, position).
#[derive(Clone, Copy)]
enum ListTable {
    Steps,
    Timeline,
    Logs,
}

/// Writes a commit's counter changes, each touched counter once.
fn apply_deltas(tables: &mut Tables<'_>, deltas: Deltas) -> Result<(), StoreError> {
    for ((tenant, queue, counter), by) in deltas {
        if by == 0 {
            continue;
        }
        let table = tables.counters()?;
        let key = (tenant.as_str(), queue.as_str(), counter);
        let now = table.get(key)?.map_or(0, |v| v.value());
        let next = now.saturating_add_signed(by);
        if next == 0 {
            table.remove(key)?;
        } else {
            table.insert(key, next)?;
        }
    }
    Ok(())
}

/// The next sequence number of each (list, run), kept by the writer thread across commits: a
/// run's numbers are read from its table's last key once (after the run's creation, a
/// restart, or a manual retry of a final run) and counted here afterwards, so appending costs
/// the writer no read. Only the writer appends, so the counts stay true; a failed commit
/// only leaves a gap. A run's entry is dropped when it becomes final.
#[derive(Default)]
pub(super) struct NextSeqs {
    timeline: HashMap<String, u32>,
    logs: HashMap<String, u32>,
}

/// What the writer thread remembers between commits so that writing costs it no reads: the
/// next timeline and log numbers of runs, and the head (version, status, due time) of every
/// run it wrote that is not final. Only the writer writes runs, so both stay true; the heads
/// of a commit join the cache only once the commit succeeded.
#[derive(Default)]
pub(super) struct WriterCache {
    seqs: NextSeqs,
    heads: HashMap<String, StoredHead>,
    /// The last event number assigned per tenant (read from the meta table once).
    event_seq: HashMap<String, u64>,
}

/// What applying one batch works with besides the tables.
struct Apply<'a, 'c> {
    deltas: &'a mut Deltas,
    seqs: &'a mut NextSeqs,
    event_seq: &'a mut HashMap<String, u64>,
    known: &'a mut Heads<'c>,
    woken: &'a mut Woken,
}

/// Most runs whose next numbers the writer keeps; past it the cache starts over.
const MAX_CACHED_SEQS: usize = 200_000;

impl NextSeqs {
    fn forget(&mut self, run: &str) {
        self.timeline.remove(run);
        self.logs.remove(run);
    }

    fn start_run(&mut self, run: &str) {
        if self.timeline.len() >= MAX_CACHED_SEQS || self.logs.len() >= MAX_CACHED_SEQS {
            self.timeline.clear();
            self.logs.clear();
        }
        self.timeline.insert(run.to_owned(), 0);
        self.logs.insert(run.to_owned(), 0);
    }
}

fn next_seq(
    cache: &mut HashMap<String, u32>,
    table: &mut Table<'_, (&'static str, u32), &'static [u8]>,
    run: &str,
) -> Result<u32, StoreError> {
    let next = match cache.get(run) {
        Some(n) => *n,
        None => match table.range((run, 0)..=(run, u32::MAX))?.next_back() {
            Some(entry) => entry?.0.value().1.saturating_add(1),
            None => 0,
        },
    };
    match cache.get_mut(run) {
        Some(n) => *n = next.saturating_add(1),
        None => {
            cache.insert(run.to_owned(), next.saturating_add(1));
        }
    }
    Ok(next)
}

fn apply(
    tables: &mut Tables<'_>,
    batch: &Batch,
    cx: &mut Apply<'_, '_>,
) -> Result<u64, StoreError> {
    let Apply {
        deltas,
        seqs,
        event_seq,
        known,
        woken,
    } = cx;
    for op in &batch.ops {
        match op {
            Op::WriteRun {
                id,
                expected,
                json,
                tenant,
                queue,
                status,
                ready,
                flow,
            } => {
                let head = head_of(tables, known, id)?;
                tables.runs()?.insert(id.as_str(), json.as_slice())?;
                if status.is_final() {
                    seqs.forget(id);
                }
                known.written.insert(
                    id.clone(),
                    StoredHead {
                        version: expected.saturating_add(1),
                        status: *status,
                        ready_at: ready.as_ref().map(|(at, _)| *at),
                        wait: flow.wait.clone(),
                    },
                );
                let prev = head.as_ref().map(|h| h.status);
                if prev != Some(*status) {
                    if let Some(prev) = prev {
                        count(deltas, tenant, queue, prev.as_str(), -1);
                    }
                    count(deltas, tenant, queue, status.as_str(), 1);
                }
                let old = head.as_ref().and_then(|h| h.ready_at);
                let new = ready.as_ref().map(|(at, _)| *at);
                if old != new {
                    let table = tables.ready()?;
                    if let Some(old) = old {
                        table.remove((old, id.as_str()))?;
                    }
                    if let Some(new) = new {
                        table.insert((new, id.as_str()), ())?;
                    }
                }
                let (old_wait, old_status) = match head {
                    Some(h) => (h.wait, Some(h.status)),
                    None => (None, None),
                };
                let change = Change {
                    id,
                    tenant,
                    old_wait,
                    old_status,
                    status: *status,
                };
                follow_flow(tables, known, woken, &change, flow)?;
            }
            Op::PutEvent { tenant, event } => {
                put_event(tables, known, woken, deltas, event_seq, tenant, event)?;
            }
            Op::PutDelivery {
                tenant,
                seq,
                run,
                step,
            } => {
                tables
                    .event_deliveries()?
                    .insert((tenant.as_str(), *seq, run.as_str()), step.as_str())?;
            }
            Op::PutSchedule {
                tenant, name, json, ..
            } => {
                tables
                    .schedules()?
                    .insert((tenant.as_str(), name.as_str()), json.as_slice())?;
            }
            Op::RemoveSchedule { tenant, name } => {
                tables
                    .schedules()?
                    .remove((tenant.as_str(), name.as_str()))?;
            }
            Op::RemoveEvent { tenant, seq } => {
                remove_event(tables, deltas, tenant, *seq)?;
            }
            Op::AppendTimeline { run, json } => {
                let table = tables.timeline()?;
                let seq = next_seq(&mut seqs.timeline, table, run)?;
                table.insert((run.as_str(), seq), json.as_slice())?;
            }
            Op::AppendLog { run, json } => {
                let table = tables.logs()?;
                let seq = next_seq(&mut seqs.logs, table, run)?;
                table.insert((run.as_str(), seq), json.as_slice())?;
            }
            Op::PutRun {
                id,
                json,
                counts,
                version,
                ready_at,
                parent,
            } => {
                tables.runs()?.insert(id.as_str(), json.as_slice())?;
                let (tenant, queue, prev, now) = counts;
                known.written.insert(
                    id.clone(),
                    StoredHead {
                        version: *version,
                        status: *now,
                        ready_at: *ready_at,
                        wait: None,
                    },
                );
                if let Some((parent, step)) = parent {
                    tables
                        .children()?
                        .insert((parent.as_str(), id.as_str()), ())?;
                    if prev.is_none() && !now.is_final() {
                        add_pending(tables, parent, step, 1)?;
                    }
                }
                if prev.is_none() {
                    // A new run has no entries yet.
                    seqs.start_run(id);
                }
                if *prev != Some(*now) {
                    if let Some(prev) = prev {
                        count(deltas, tenant, queue, prev.as_str(), -1);
                    }
                    count(deltas, tenant, queue, now.as_str(), 1);
                }
            }
            Op::PutStep { run, ordinal, json } => {
                tables
                    .steps()?
                    .insert((run.as_str(), *ordinal), json.as_slice())?;
            }
            Op::SetReady { run, old, new } => {
                let ready = tables.ready()?;
                if let Some(old) = old {
                    ready.remove((*old, run.as_str()))?;
                }
                if let Some((new, _)) = new {
                    ready.insert((*new, run.as_str()), ())?;
                }
            }
            Op::PutDeadLetter {
                tenant,
                queue,
                run,
                at,
            } => {
                let was = tables
                    .dead_letters()?
                    .insert((tenant.as_str(), queue.as_str(), run.as_str()), *at)?
                    .is_some();
                if !was {
                    count(deltas, tenant, queue, DEAD_LETTERS_COUNTER, 1);
                }
            }
            Op::RemoveDeadLetter { tenant, queue, run } => {
                let was = tables
                    .dead_letters()?
                    .remove((tenant.as_str(), queue.as_str(), run.as_str()))?
                    .is_some();
                if was {
                    count(deltas, tenant, queue, DEAD_LETTERS_COUNTER, -1);
                }
            }
            Op::PutModule { hash, bytes } => {
                tables.modules()?.insert(hash.as_str(), bytes.as_slice())?;
            }
            Op::PutTenantRun { tenant, run } => {
                tables
                    .tenant_runs()?
                    .insert((tenant.as_str(), run.as_str()), ())?;
            }
            Op::PutTenant { name, json } => {
                tables.tenants()?.insert(name.as_str(), json.as_slice())?;
            }
            Op::PutToken { token_hash, tenant } => {
                tables
                    .tokens()?
                    .insert(token_hash.as_str(), tenant.as_str())?;
            }
            Op::PutTenantModule { tenant, hash, json } => {
                tables
                    .tenant_modules()?
                    .insert((tenant.as_str(), hash.as_str()), json.as_slice())?;
            }
            Op::PutJobRoute { tenant, job, hash } => {
                tables
                    .job_routes()?
                    .insert((tenant.as_str(), job.as_str()), hash.as_str())?;
            }
            Op::PutQueue {
                tenant,
                queue,
                json,
            } => {
                tables
                    .queues()?
                    .insert((tenant.as_str(), queue.as_str()), json.as_slice())?;
            }
            Op::PutSecret { tenant, name, json } => {
                tables
                    .secrets()?
                    .insert((tenant.as_str(), name.as_str()), json.as_slice())?;
            }
            Op::RemoveSecret { tenant, name } => {
                tables.secrets()?.remove((tenant.as_str(), name.as_str()))?;
            }
            Op::PutEgress { tenant, json } => {
                tables.egress()?.insert(tenant.as_str(), json.as_slice())?;
            }
            Op::PutIdempotency {
                tenant,
                queue,
                key,
                json,
            } => {
                tables.idempotency()?.insert(
                    (tenant.as_str(), queue.as_str(), key.as_str()),
                    json.as_slice(),
                )?;
            }
            Op::RemoveIdempotency { tenant, queue, key } => {
                tables
                    .idempotency()?
                    .remove((tenant.as_str(), queue.as_str(), key.as_str()))?;
            }
            Op::DeleteDeadLetter {
                id,
                tenant,
                queue,
                key,
            } => {
                let listed = tables
                    .dead_letters()?
                    .remove((tenant.as_str(), queue.as_str(), id.as_str()))?
                    .is_some();
                if !listed {
                    continue;
                }
                count(deltas, tenant, queue, DEAD_LETTERS_COUNTER, -1);
                let Some(head) = head_of(tables, known, id)? else {
                    continue;
                };
                let parent = parent_of(tables, id)?;
                let bytes = delete_run(tables, id, tenant, head.ready_at, key.as_deref(), queue)?;
                if let Some(parent) = parent {
                    tables.children()?.remove((parent.as_str(), id.as_str()))?;
                }
                // Its children stay; they no longer list it as their parent's.
                for entry in tables
                    .children()?
                    .extract_from_if((id.as_str(), "")..=(id.as_str(), MAX_KEY), |_, _| true)?
                {
                    entry?;
                }
                known.written.remove(id);
                seqs.forget(id);
                count(deltas, tenant, queue, head.status.as_str(), -1);
                let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
                count(deltas, tenant, "", STORED_BYTES_COUNTER, -bytes);
            }
        }
    }
    if let Some(tenant) = &batch.charge {
        let bytes: u64 = batch.ops.iter().map(Op::stored_bytes).sum();
        let bytes = i64::try_from(bytes.saturating_sub(batch.refund)).unwrap_or(i64::MAX);
        count(deltas, tenant, "", STORED_BYTES_COUNTER, bytes);
    }
    Ok(batch.ops.len() as u64)
}

/// The waiter entry of an event wait: (name, correlation key or "").
fn waiter_key(wait: &Option<RunWait>) -> Option<(&str, &str)> {
    match wait {
        Some(RunWait::Event {
            name,
            correlation_key,
            ..
        }) => Some((name.as_str(), correlation_key.as_deref().unwrap_or(""))),
        _ => None,
    }
}

/// What a run write changed, as the flow bookkeeping needs it.
struct Change<'a> {
    id: &'a str,
    tenant: &'a str,
    old_wait: Option<RunWait>,
    old_status: Option<RunStatus>,
    status: RunStatus,
}

/// Keeps what hangs on a written run's flow fields: its waiter entry, a wait this write
/// already satisfies, its parent's count of children not yet ended, and its parent's wait
/// once it was the last of them.
fn follow_flow(
    tables: &mut Tables<'_>,
    known: &mut Heads<'_>,
    woken: &mut Woken,
    change: &Change<'_>,
    flow: &RunFlow,
) -> Result<(), StoreError> {
    let (id, tenant) = (change.id, change.tenant);
    let (old_key, new_key) = (waiter_key(&change.old_wait), waiter_key(&flow.wait));
    if old_key != new_key
        && let Some((name, key)) = old_key
    {
        tables.waiters()?.remove((tenant, name, key, id))?;
    }
    // Inserted on every such write: an event that woke the run took its entry away.
    if let Some((name, key)) = new_key {
        tables.waiters()?.insert((tenant, name, key, id), ())?;
    }
    let satisfied = match &flow.wait {
        Some(RunWait::Event {
            name,
            correlation_key,
            seen,
            ..
        }) => {
            let key = correlation_key.as_deref().unwrap_or("");
            tables
                .event_latest()?
                .get((tenant, name.as_str(), key))?
                .is_some_and(|latest| latest.value() > *seen)
        }
        Some(RunWait::Children { step, .. }) => pending(tables, id, step)? == 0,
        None => false,
    };
    if satisfied && change.status == RunStatus::Waiting {
        wake(tables, known, woken, id, flow.at)?;
    }
    let Some(parent) = &flow.parent else {
        return Ok(());
    };
    let was_open = change.old_status.is_some_and(|s| !s.is_final());
    let is_open = !change.status.is_final();
    if was_open == is_open {
        return Ok(());
    }
    add_pending(
        tables,
        &parent.run,
        &parent.step,
        if is_open { 1 } else { -1 },
    )?;
    if !is_open
        && pending(tables, &parent.run, &parent.step)? == 0
        && let Some(head) = head_of(tables, known, &parent.run)?
        && head.status == RunStatus::Waiting
        && matches!(&head.wait, Some(RunWait::Children { step, .. }) if *step == parent.step)
    {
        wake(tables, known, woken, &parent.run, flow.at)?;
    }
    Ok(())
}

/// Children of `parent`'s `step` not yet ended.
fn pending(tables: &mut Tables<'_>, parent: &str, step: &str) -> Result<u64, StoreError> {
    Ok(tables
        .pending_children()?
        .get((parent, step))?
        .map_or(0, |v| v.value()))
}

fn add_pending(
    tables: &mut Tables<'_>,
    parent: &str,
    step: &str,
    by: i64,
) -> Result<(), StoreError> {
    let table = tables.pending_children()?;
    let now = table.get((parent, step))?.map_or(0, |v| v.value());
    let next = now.saturating_add_signed(by);
    if next == 0 {
        table.remove((parent, step))?;
    } else {
        table.insert((parent, step), next)?;
    }
    Ok(())
}

/// The parent of stored run `id`, read before the run is deleted.
fn parent_of(tables: &mut Tables<'_>, id: &str) -> Result<Option<String>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Parent {
        #[serde(default)]
        parent: Option<stepwise_core::flow::ParentLink>,
    }
    Ok(tables
        .runs()?
        .get(id)?
        .and_then(|v| serde_json::from_slice::<Parent>(v.value()).ok())
        .and_then(|p| p.parent.map(|p| p.run)))
}

/// Makes waiting run `id` due at `at` (if it was due later): its record's `ready_at` and its
/// ready entry move, its version stays (see `stepwise_store::RunWrite`).
fn wake(
    tables: &mut Tables<'_>,
    known: &mut Heads<'_>,
    woken: &mut Woken,
    id: &str,
    at: stepwise_core::clock::Millis,
) -> Result<(), StoreError> {
    // The head first: most runs asked about are not waiting any more, or already due.
    let Some(head) = head_of(tables, known, id)? else {
        return Ok(());
    };
    if head.status != RunStatus::Waiting || head.ready_at.is_some_and(|r| r <= at) {
        return Ok(());
    }
    let Some(json) = tables.runs()?.get(id)?.map(|v| v.value().to_vec()) else {
        return Ok(());
    };
    let mut run: RunRecord = serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt {
        what: format!("run {id}"),
        message: e.to_string(),
    })?;
    run.ready_at = Some(at);
    let json = serde_json::to_vec(&run).expect("records always serialize");
    tables.runs()?.insert(id, json.as_slice())?;
    let ready = tables.ready()?;
    if let Some(old) = head.ready_at {
        ready.remove((old, id))?;
    }
    ready.insert((at, id), ())?;
    let mut head = head;
    head.ready_at = Some(at);
    known.written.insert(id.to_owned(), head);
    woken.push((id.to_owned(), at, stepwise_store::Placement::of(&run)));
    Ok(())
}

/// Stores an event under the tenant's next number and wakes every run waiting on its name
/// and key; their waiter entries go (a run that waits again registers again).
#[allow(clippy::too_many_arguments)]
fn put_event(
    tables: &mut Tables<'_>,
    known: &mut Heads<'_>,
    woken: &mut Woken,
    deltas: &mut Deltas,
    event_seq: &mut HashMap<String, u64>,
    tenant: &str,
    event: &EventRecord,
) -> Result<(), StoreError> {
    let meta_key = event_seq_key(tenant);
    let last = match event_seq.get(tenant) {
        Some(n) => *n,
        None => tables
            .meta()?
            .get(meta_key.as_str())?
            .map_or(0, |v| v.value()),
    };
    let seq = last.saturating_add(1);
    if event_seq.len() >= MAX_CACHED_SEQS {
        event_seq.clear();
    }
    event_seq.insert(tenant.to_owned(), seq);
    tables.meta()?.insert(meta_key.as_str(), seq)?;
    let mut event = event.clone();
    event.seq = seq;
    let json = serde_json::to_vec(&event).expect("records always serialize");
    let key = event.correlation_key.as_deref().unwrap_or("");
    let name = event.name.as_str();
    tables.events()?.insert((tenant, seq), json.as_slice())?;
    tables
        .event_ids()?
        .insert((tenant, event.id.as_str()), seq)?;
    tables
        .event_index()?
        .insert((tenant, name, key, event.received_at, seq), ())?;
    tables.event_latest()?.insert((tenant, name, key), seq)?;
    tables
        .event_expiry()?
        .insert((event.expires_at, tenant, seq), ())?;
    count(deltas, tenant, "", EVENTS_COUNTER, 1);
    let waiting: Vec<String> = tables
        .waiters()?
        .extract_from_if(
            (tenant, name, key, "")..=(tenant, name, key, MAX_KEY),
            |_, _| true,
        )?
        .map(|e| e.map(|(k, _)| k.value().3.to_owned()))
        .collect::<Result<_, _>>()?;
    for run in waiting {
        wake(tables, known, woken, &run, event.received_at)?;
    }
    Ok(())
}

/// Forgets event `seq` of `tenant`: the event, its id, its index entries and deliveries.
fn remove_event(
    tables: &mut Tables<'_>,
    deltas: &mut Deltas,
    tenant: &str,
    seq: u64,
) -> Result<(), StoreError> {
    let Some(json) = tables
        .events()?
        .remove((tenant, seq))?
        .map(|v| v.value().to_vec())
    else {
        return Ok(());
    };
    count(deltas, tenant, "", EVENTS_COUNTER, -1);
    let bytes = i64::try_from(json.len()).unwrap_or(i64::MAX);
    count(deltas, tenant, "", STORED_BYTES_COUNTER, -bytes);
    let event: EventRecord = serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt {
        what: format!("event {seq} of {tenant}"),
        message: e.to_string(),
    })?;
    let key = event.correlation_key.as_deref().unwrap_or("");
    tables.event_ids()?.remove((tenant, event.id.as_str()))?;
    tables
        .event_index()?
        .remove((tenant, event.name.as_str(), key, event.received_at, seq))?;
    tables
        .event_expiry()?
        .remove((event.expires_at, tenant, seq))?;
    for entry in tables
        .event_deliveries()?
        .extract_from_if((tenant, seq, "")..=(tenant, seq, MAX_KEY), |_, _| true)?
    {
        entry?;
    }
    Ok(())
}
