//! Writes of runs on PostgreSQL: creating a run (under its idempotency key, or its pending
//! key: kept, refused or replaced), writing runs over the versions they were read at and
//! under their claim's lease, appending their journals, waking runs whose waits are
//! satisfied, and purging dead letters. Each write is one transaction; the rules are the
//! ones `stepwise-store` states for every backend, and the conformance suite checks them.
//!
//! Rows a write changes are locked (`FOR UPDATE`) before it decides, so two hosts writing
//! one run serialize on its row; a deadlock between them is resolved by PostgreSQL aborting
//! one, which [`crate::tx`] tries again.

use deadpool_postgres::Transaction;
use stepwise_core::clock::Millis;
use stepwise_core::flow::RunWait;
use stepwise_core::keyed::{self, OnDuplicate};
use stepwise_core::model::{RunRecord, RunStatus};
use stepwise_store::counters::{DEAD_LETTERS, STORED_BYTES};
use stepwise_store::{
    Created, DeadLetter, IdempotencyRecord, JournalWrites, KeyExpiry, NewRunWrite, RunWrite,
    StoreError,
};

use crate::cached::Cached;
use crate::counters::Deltas;
use crate::tx::{Failure, TxResult, db_ms, in_txn, ms};
use crate::{PgStore, decode_text, encode_text};

/// The columns of a run row that queries select on, from its record.
struct RunCols {
    json: String,
    status: &'static str,
    ready_at: Option<i64>,
    memory_bytes: i64,
    wait_name: Option<String>,
    wait_key: Option<String>,
}

impl RunCols {
    fn of(run: &RunRecord) -> Result<Self, StoreError> {
        let (wait_name, wait_key) = match &run.wait {
            Some(RunWait::Event {
                name,
                correlation_key,
                ..
            }) => (
                Some(name.clone()),
                Some(correlation_key.clone().unwrap_or_default()),
            ),
            _ => (None, None),
        };
        Ok(Self {
            json: encode_text(run)?,
            status: run.status.as_str(),
            ready_at: run.ready_at.map(db_ms),
            memory_bytes: db_ms(run.policy.memory_bytes),
            wait_name,
            wait_key,
        })
    }
}

/// A run row as a write finds it, locked.
pub(crate) struct Head {
    pub version: u64,
    pub status: RunStatus,
    pub claimed_by: Option<String>,
    pub claim_token: Option<i64>,
}

/// Locks run `id`'s row and reads its head.
async fn lock_head(txn: &Transaction<'_>, id: &str) -> TxResult<Option<Head>> {
    let row = txn
        .q_opt(
            "SELECT version, status, claimed_by, claim_token FROM runs WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    row.map(|r| {
        let status: String = r.get(1);
        Ok(Head {
            version: ms(r.get(0)),
            status: status.parse().map_err(|e: String| StoreError::Corrupt {
                what: format!("run {id}"),
                message: e,
            })?,
            claimed_by: r.get(2),
            claim_token: r.get(3),
        })
    })
    .transpose()
}

/// Locks and reads run `id`'s whole record.
async fn lock_record(txn: &Transaction<'_>, id: &str) -> TxResult<Option<(RunRecord, u64)>> {
    let row = txn
        .q_opt(
            "SELECT record::text, version, ready_at, record_bytes FROM runs WHERE id = $1
             FOR UPDATE",
            &[&id],
        )
        .await?;
    row.map(|r| {
        let mut run: RunRecord = decode_text(r.get(0), || format!("run {id}"))?;
        run.version = ms(r.get(1));
        run.ready_at = r.get::<_, Option<i64>>(2).map(ms);
        Ok((run, ms(r.get(3))))
    })
    .transpose()
}

/// Inserts a new run's row; returns the bytes of its record.
async fn insert_run(txn: &Transaction<'_>, run: &RunRecord) -> TxResult<u64> {
    let c = RunCols::of(run)?;
    let (parent, parent_step) = match &run.parent {
        Some(p) => (Some(p.run.as_str()), Some(p.step.as_str())),
        None => (None, None),
    };
    txn.x(
        "INSERT INTO runs (id, tenant, queue, job, status, version, ready_at, priority,
                           memory_bytes, created_at, parent, parent_step, wait_name, wait_key,
                           record_bytes, record)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::text::json)",
        &[
            &run.id,
            &run.tenant,
            &run.queue,
            &run.job,
            &c.status,
            &db_ms(run.version),
            &c.ready_at,
            &run.priority,
            &c.memory_bytes,
            &db_ms(run.created_at),
            &parent,
            &parent_step,
            &c.wait_name,
            &c.wait_key,
            &(c.json.len() as i64),
            &c.json,
        ],
    )
    .await?;
    Ok(c.json.len() as u64)
}

/// Writes `run` (carrying its new version) over its row; a release's hold ends with it, and
/// so does its claim when the run leaves the ready set (it ended): a host killed between
/// settling a run and releasing it must not leave the run claimed for ever.
/// Returns the bytes of its record.
async fn update_run(txn: &Transaction<'_>, run: &RunRecord) -> TxResult<u64> {
    let c = RunCols::of(run)?;
    txn.x(
        "UPDATE runs SET status = $2, version = $3, ready_at = $4, priority = $5,
                         memory_bytes = $6, wait_name = $7, wait_key = $8, hold_until = NULL,
                         record_bytes = $9, record = $10::text::json,
                         claimed_by = CASE WHEN $4::bigint IS NULL THEN NULL ELSE claimed_by END,
                         lease_until = CASE WHEN $4::bigint IS NULL THEN NULL ELSE lease_until END,
                         claim_token = CASE WHEN $4::bigint IS NULL THEN NULL ELSE claim_token END
         WHERE id = $1",
        &[
            &run.id,
            &c.status,
            &db_ms(run.version),
            &c.ready_at,
            &run.priority,
            &c.memory_bytes,
            &c.wait_name,
            &c.wait_key,
            &(c.json.len() as i64),
            &c.json,
        ],
    )
    .await?;
    Ok(c.json.len() as u64)
}

/// Appends what `journal` recorded for `run`; returns the bytes of the records stored.
pub(crate) async fn append_journal(
    txn: &Transaction<'_>,
    run: &str,
    journal: &JournalWrites,
) -> TxResult<u64> {
    let bytes = crate::appends::append_all(txn, &[(run, journal)]).await?;
    Ok(bytes.first().copied().unwrap_or(0))
}

/// Makes waiting run `id` due at `at` if it was due later; whether it was woken. Its
/// version stays (see [`RunWrite`]).
pub(crate) async fn wake(txn: &Transaction<'_>, id: &str, at: Millis) -> TxResult<bool> {
    let n = txn
        .x(
            "UPDATE runs SET ready_at = $2
             WHERE id = $1 AND status = 'waiting' AND (ready_at IS NULL OR ready_at > $2)",
            &[&id, &db_ms(at)],
        )
        .await?;
    Ok(n > 0)
}

/// Takes the lock that orders a wait on event (`name`, `key`) of `tenant` against the
/// storing of such an event: shared for a wait, exclusive for the event.
pub(crate) async fn waiter_lock(
    txn: &Transaction<'_>,
    tenant: &str,
    name: &str,
    key: &str,
    exclusive: bool,
) -> TxResult<()> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2 || chr(31) || $3, 0))"
    } else {
        "SELECT pg_advisory_xact_lock_shared(hashtextextended($1 || chr(31) || $2 || chr(31) || $3, 0))"
    };
    txn.x(sql, &[&tenant, &name, &key]).await?;
    Ok(())
}

/// Children of `parent`'s `step` not yet ended.
async fn pending_children(txn: &Transaction<'_>, parent: &str, step: &str) -> TxResult<i64> {
    Ok(txn
        .q_opt(
            "SELECT n FROM pending_children WHERE parent = $1 AND step = $2",
            &[&parent, &step],
        )
        .await?
        .map_or(0, |r| r.get(0)))
}

async fn add_pending(txn: &Transaction<'_>, parent: &str, step: &str, by: i64) -> TxResult<()> {
    txn.x(
        "INSERT INTO pending_children (parent, step, n) VALUES ($1, $2, GREATEST($3::bigint, 0))
         ON CONFLICT (parent, step) DO UPDATE SET n = GREATEST(pending_children.n + $3, 0)",
        &[&parent, &step, &by],
    )
    .await?;
    txn.x(
        "DELETE FROM pending_children WHERE parent = $1 AND step = $2 AND n = 0",
        &[&parent, &step],
    )
    .await?;
    Ok(())
}

/// Keeps what hangs on a written run's flow: a wait this write already satisfies, its
/// parent's count of children not yet ended, and its parent's wait once it was the last.
/// Whether it woke a run.
async fn follow_flow(
    txn: &Transaction<'_>,
    run: &RunRecord,
    old_status: Option<RunStatus>,
) -> TxResult<bool> {
    let mut woke = false;
    let at = run.updated_at;
    let satisfied = match &run.wait {
        Some(RunWait::Event {
            name,
            correlation_key,
            seen,
            ..
        }) => {
            let key = correlation_key.clone().unwrap_or_default();
            // Shared with other waits, exclusive with an event of this (name, key) being
            // stored: either that event committed before this read sees `event_latest`, or
            // its wake-up sees this waiter once this write commits (see `events.rs`).
            waiter_lock(txn, &run.tenant, name, &key, false).await?;
            txn.q_opt(
                "SELECT seq FROM event_latest WHERE tenant = $1 AND name = $2 AND key = $3",
                &[&run.tenant, name, &key],
            )
            .await?
            .is_some_and(|r| ms(r.get(0)) > *seen)
        }
        Some(RunWait::Children { step, .. }) => pending_children(txn, &run.id, step).await? == 0,
        None => false,
    };
    if satisfied && run.status == RunStatus::Waiting {
        woke |= wake(txn, &run.id, at).await?;
    }
    let Some(parent) = &run.parent else {
        return Ok(woke);
    };
    let was_open = old_status.is_some_and(|s| !s.is_final());
    let is_open = !run.status.is_final();
    if was_open == is_open {
        return Ok(woke);
    }
    add_pending(txn, &parent.run, &parent.step, if is_open { 1 } else { -1 }).await?;
    if !is_open && pending_children(txn, &parent.run, &parent.step).await? == 0 {
        // The parent's row locked, whatever its status: a write of the parent in flight (its
        // suspension on these children, which read the count before this child's end
        // committed) finishes first, and its status is read as committed.
        let waits = txn
            .q_opt(
                "SELECT record::text, status = 'waiting' FROM runs WHERE id = $1 FOR UPDATE",
                &[&parent.run],
            )
            .await?
            .filter(|row| row.get::<_, bool>(1));
        if let Some(row) = waits {
            let record: RunRecord = decode_text(row.get(0), || format!("run {}", parent.run))?;
            if matches!(&record.wait, Some(RunWait::Children { step, .. }) if *step == parent.step)
            {
                woke |= wake(txn, &parent.run, at).await?;
            }
        }
    }
    Ok(woke)
}

/// Whether run `held` (locked) still holds its key: never started, not claimed.
enum Holder {
    Pending(Box<RunRecord>, u64),
    Busy,
    Free,
}

async fn holder_state(txn: &Transaction<'_>, id: &str, lease_now: Millis) -> TxResult<Holder> {
    let Some(row) = txn
        .q_opt(
            "SELECT record::text, version, ready_at, record_bytes,
                    claimed_by IS NOT NULL AND lease_until >= $2,
                    EXISTS (SELECT 1 FROM steps WHERE run = $1),
                    EXISTS (SELECT 1 FROM timeline WHERE run = $1 AND attempt IS NOT NULL)
             FROM runs WHERE id = $1 FOR UPDATE",
            &[&id, &db_ms(lease_now)],
        )
        .await?
    else {
        return Ok(Holder::Free);
    };
    let mut run: RunRecord = match serde_json::from_str(row.get(0)) {
        Ok(run) => run,
        Err(e) => {
            tracing::warn!(run = %id, error = %e, "a key's holder is unreadable; the key is taken over");
            return Ok(Holder::Free);
        }
    };
    run.version = ms(row.get(1));
    run.ready_at = row.get::<_, Option<i64>>(2).map(ms);
    let (claimed, has_steps, started): (bool, bool, bool) = (row.get(4), row.get(5), row.get(6));
    if !keyed::is_pending(&run, has_steps, false) || started {
        return Ok(Holder::Free);
    }
    if claimed {
        return Ok(Holder::Busy);
    }
    Ok(Holder::Pending(Box::new(run), ms(row.get(3))))
}

/// What a keyed create does: create (the key is now the new run's), or answer without it.
enum KeyedOutcome {
    Create,
    Answer(Created),
}

/// Decides a keyed create inside its transaction (see [`Created`]).
async fn check_keyed(
    txn: &Transaction<'_>,
    new: &RunRecord,
    deltas: &mut Deltas,
    lease_now: Millis,
) -> TxResult<KeyedOutcome> {
    let Some(key) = &new.key else {
        return Ok(KeyedOutcome::Create);
    };
    let slot = [&new.tenant, &new.queue, &new.job, &key.key];
    let holder: Option<String> = txn
        .q_opt(
            "SELECT run FROM pending_keys
             WHERE tenant = $1 AND queue = $2 AND job = $3 AND key = $4 FOR UPDATE",
            &[slot[0], slot[1], slot[2], slot[3]],
        )
        .await?
        .map(|r| r.get(0));
    let Some(id) = holder else {
        txn.x(
            "INSERT INTO pending_keys (tenant, queue, job, key, run) VALUES ($1, $2, $3, $4, $5)",
            &[slot[0], slot[1], slot[2], slot[3], &new.id],
        )
        .await?;
        return Ok(KeyedOutcome::Create);
    };
    match holder_state(txn, &id, lease_now).await? {
        Holder::Free => {
            txn.x(
                "UPDATE pending_keys SET run = $5
                 WHERE tenant = $1 AND queue = $2 AND job = $3 AND key = $4",
                &[slot[0], slot[1], slot[2], slot[3], &new.id],
            )
            .await?;
            Ok(KeyedOutcome::Create)
        }
        Holder::Busy => Ok(KeyedOutcome::Answer(Created::HolderBusy { run: id })),
        Holder::Pending(held, stored_bytes) => {
            if key.on_duplicate != OnDuplicate::Replace && key.debounce.is_none() {
                return Ok(KeyedOutcome::Answer(Created::PendingHeld { run: id }));
            }
            let mut held = *held;
            let expected = held.version;
            let due = keyed::replace(&mut held, new);
            held.version = expected.saturating_add(1);
            let mut bytes = update_run(txn, &held).await?;
            if let Some(entry) = keyed::replacement_entry(&held, due) {
                let journal = JournalWrites {
                    timeline: vec![entry],
                    ..JournalWrites::default()
                };
                bytes = bytes.saturating_add(append_journal(txn, &held.id, &journal).await?);
            }
            let charged = i64::try_from(bytes.saturating_sub(stored_bytes)).unwrap_or(i64::MAX);
            deltas.add(&held.tenant, "", STORED_BYTES, charged);
            Ok(KeyedOutcome::Answer(Created::Replaced {
                run: Box::new(held),
            }))
        }
    }
}

/// Takes `claim`'s idempotency key for `run`, or answers who holds it.
async fn take_idempotency_key(
    txn: &Transaction<'_>,
    run: &RunRecord,
    claim: &stepwise_store::IdempotencyClaim,
) -> TxResult<Option<Created>> {
    let held = txn
        .q_opt(
            "SELECT record::text FROM idempotency WHERE tenant = $1 AND queue = $2 AND key = $3
             FOR UPDATE",
            &[&run.tenant, &run.queue, &claim.key],
        )
        .await?;
    let exists = held.is_some();
    // A record that cannot be decoded holds nothing: the key is taken over (rewritten).
    let held: Option<IdempotencyRecord> = match &held {
        Some(row) => serde_json::from_str(row.get(0)).ok(),
        None => None,
    };
    if let Some(h) = &held
        && !h.expired(claim.now)
    {
        return Ok(Some(Created::KeyTaken {
            run: h.run.clone(),
            same_payload: h.payload_hash == claim.payload_hash,
        }));
    }
    let record = IdempotencyRecord {
        run: run.id.clone(),
        payload_hash: claim.payload_hash.clone(),
        created_at: claim.now,
        expires_at: None,
    };
    let json = encode_text(&record)?;
    // A plain insert when no row was there: a concurrent create inserting the same key makes
    // one of the two fail on the key and try again, then find the other's record.
    let sql = if exists {
        "UPDATE idempotency SET record = $4::text::json, expires_at = NULL
         WHERE tenant = $1 AND queue = $2 AND key = $3"
    } else {
        "INSERT INTO idempotency (tenant, queue, key, record) VALUES ($1, $2, $3, $4::text::json)"
    };
    txn.x(sql, &[&run.tenant, &run.queue, &claim.key, &json])
        .await?;
    Ok(None)
}

/// Sets the expiry of the idempotency key `run` holds, if it holds one.
async fn set_key_expiry(
    txn: &Transaction<'_>,
    run: &RunRecord,
    expires_at: Option<Millis>,
) -> TxResult<()> {
    let Some(key) = &run.idempotency_key else {
        return Ok(());
    };
    let Some(row) = txn
        .q_opt(
            "SELECT record::text FROM idempotency WHERE tenant = $1 AND queue = $2 AND key = $3
             FOR UPDATE",
            &[&run.tenant, &run.queue, key],
        )
        .await?
    else {
        return Ok(());
    };
    let mut record: IdempotencyRecord =
        decode_text(row.get(0), || format!("idempotency key {key}"))?;
    if record.run != run.id {
        return Ok(());
    }
    record.expires_at = expires_at;
    txn.x(
        "UPDATE idempotency SET record = $4::text::json, expires_at = $5
         WHERE tenant = $1 AND queue = $2 AND key = $3",
        &[
            &run.tenant,
            &run.queue,
            key,
            &encode_text(&record)?,
            &expires_at.map(db_ms),
        ],
    )
    .await?;
    Ok(())
}

impl PgStore {
    /// See [`stepwise_store::Store::create_run`].
    pub(crate) async fn create_run(&self, new: NewRunWrite) -> Result<Created, StoreError> {
        let mut run = new.run;
        run.version = 1;
        if run.key.is_some() {
            // A holder this host released is pending again, not busy.
            self.flush_releases().await?;
        }
        let lease_now = self.shared.db_now();
        in_txn!(self, |txn| {
            let mut deltas = Deltas::default();
            if let Some(claim) = &new.idempotency
                && let Some(taken) = take_idempotency_key(&txn, &run, claim).await?
            {
                return Ok(taken);
            }
            if let KeyedOutcome::Answer(answer) =
                check_keyed(&txn, &run, &mut deltas, lease_now).await?
            {
                deltas.write(&txn).await?;
                return Ok(answer);
            }
            let mut bytes = insert_run(&txn, &run).await?;
            bytes = bytes.saturating_add(append_journal(&txn, &run.id, &new.journal).await?);
            if let Some(p) = &run.parent
                && !run.status.is_final()
            {
                add_pending(&txn, &p.run, &p.step, 1).await?;
            }
            deltas.moved(&run.tenant, &run.queue, None, Some(run.status));
            deltas.add(
                &run.tenant,
                "",
                STORED_BYTES,
                i64::try_from(bytes).unwrap_or(i64::MAX),
            );
            deltas.write(&txn).await?;
            Ok(Created::Created)
        })
    }

    /// See [`stepwise_store::Store::write_runs`]; also whether a run was woken.
    pub(crate) async fn write_runs(
        &self,
        writes: Vec<RunWrite>,
    ) -> Result<(Vec<u64>, bool), StoreError> {
        in_txn!(self, |txn| {
            // Event waits' locks before any run row, in the order an event takes them (see
            // `waiter_lock`), so a wait and an event never deadlock.
            let mut waits: Vec<(&str, &str, String)> = writes
                .iter()
                .filter_map(|w| match &w.run.wait {
                    Some(RunWait::Event {
                        name,
                        correlation_key,
                        ..
                    }) => Some((
                        w.run.tenant.as_str(),
                        name.as_str(),
                        correlation_key.clone().unwrap_or_default(),
                    )),
                    _ => None,
                })
                .collect();
            waits.sort();
            waits.dedup();
            for (tenant, name, key) in &waits {
                waiter_lock(&txn, tenant, name, key, false).await?;
            }
            // Rows locked in id order, so two writes of the same runs never deadlock.
            let mut ids: Vec<&str> = writes.iter().map(|w| w.run.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut heads = std::collections::HashMap::new();
            for id in ids {
                if let Some(head) = lock_head(&txn, id).await? {
                    heads.insert(id.to_owned(), head);
                }
            }
            for w in &writes {
                if let Some(lease) = &w.lease {
                    let head = heads.get(&w.run.id);
                    let holder = head.and_then(|h| h.claimed_by.as_deref());
                    let token = head.and_then(|h| h.claim_token);
                    if !crate::claims::lease_holds(&lease.holder, holder, token)
                        || self.shared.releasing(&w.run.id)
                    {
                        self.lease_refused(&w.run.id, &lease.holder, holder);
                        return Err(Failure::from(StoreError::LeaseLost {
                            run: w.run.id.clone(),
                            holder: lease.holder.clone(),
                        }));
                    }
                }
            }
            let mut deltas = Deltas::default();
            let mut versions = Vec::with_capacity(writes.len());
            let mut woke = false;
            for w in &writes {
                let expected = w.run.version;
                let head = heads.get_mut(&w.run.id);
                let found = head.as_ref().map(|h| h.version);
                if found != Some(expected) {
                    return Err(Failure::from(StoreError::Conflict {
                        run: w.run.id.clone(),
                        expected,
                        found,
                    }));
                }
                let mut run = w.run.clone();
                run.version = expected.saturating_add(1);
                let old_status = head.as_ref().map(|h| h.status);
                let mut bytes = update_run(&txn, &run).await?;
                if let Some(h) = head {
                    h.version = run.version;
                    h.status = run.status;
                }
                bytes = bytes.saturating_add(append_journal(&txn, &run.id, &w.journal).await?);
                if let Some(tenant) = &w.journal.tenant {
                    deltas.add(
                        tenant,
                        "",
                        STORED_BYTES,
                        i64::try_from(bytes).unwrap_or(i64::MAX),
                    );
                }
                deltas.moved(&run.tenant, &run.queue, old_status, Some(run.status));
                match w.dead_letter {
                    DeadLetter::Keep => {}
                    DeadLetter::Add(at) => {
                        let added = txn
                            .x(
                                "INSERT INTO dead_letters (tenant, queue, run, at)
                                 VALUES ($1, $2, $3, $4)
                                 ON CONFLICT (tenant, queue, run) DO NOTHING",
                                &[&run.tenant, &run.queue, &run.id, &db_ms(at)],
                            )
                            .await?;
                        if added == 0 {
                            txn.x(
                                "UPDATE dead_letters SET at = $4
                                 WHERE tenant = $1 AND queue = $2 AND run = $3",
                                &[&run.tenant, &run.queue, &run.id, &db_ms(at)],
                            )
                            .await?;
                        }
                        deltas.add(&run.tenant, &run.queue, DEAD_LETTERS, added as i64);
                    }
                    DeadLetter::Remove => {
                        let removed = txn
                            .x(
                                "DELETE FROM dead_letters WHERE tenant = $1 AND queue = $2 AND run = $3",
                                &[&run.tenant, &run.queue, &run.id],
                            )
                            .await?;
                        deltas.add(&run.tenant, &run.queue, DEAD_LETTERS, -(removed as i64));
                    }
                }
                match w.key {
                    KeyExpiry::Keep => {}
                    KeyExpiry::Held => set_key_expiry(&txn, &run, None).await?,
                    KeyExpiry::Until(at) => set_key_expiry(&txn, &run, Some(at)).await?,
                }
                woke |= follow_flow(&txn, &run, old_status).await?;
                versions.push(run.version);
            }
            deltas.write(&txn).await?;
            Ok((versions, woke))
        })
    }

    /// A write under a lease that no longer holds: logged and counted, never applied.
    pub(crate) fn lease_refused(&self, run: &str, lease: &str, holder: Option<&str>) {
        self.shared
            .leases_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            run = %run,
            lease = %lease,
            holder = holder.unwrap_or("nobody"),
            "write refused: the run's claim is no longer this lease's"
        );
    }

    /// See [`stepwise_store::Store::set_aside`].
    pub(crate) async fn set_aside(&self, run: &str, why: String) -> Result<(), StoreError> {
        tracing::error!(run = %run, error = %why, "run record cannot be read; run set aside");
        self.client()
            .await?
            .x(
                "UPDATE runs SET set_aside = $2 WHERE id = $1",
                &[&run, &why],
            )
            .await
            .map_err(crate::io)?;
        Ok(())
    }

    /// See [`stepwise_store::Store::purge_dead_letters`]: in transactions of at most
    /// [`PURGE_BATCH`] runs, so a large purge never holds locks for long.
    pub(crate) async fn purge_dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        runs: &[String],
    ) -> Result<(), StoreError> {
        for chunk in runs.chunks(PURGE_BATCH) {
            in_txn!(self, |txn| {
                let mut deltas = Deltas::default();
                for id in chunk {
                    let listed = txn
                        .x(
                            "DELETE FROM dead_letters WHERE tenant = $1 AND queue = $2 AND run = $3",
                            &[&tenant, &queue, id],
                        )
                        .await?;
                    if listed == 0 {
                        continue;
                    }
                    deltas.add(tenant, queue, DEAD_LETTERS, -1);
                    let Some((run, record_bytes)) = lock_record(&txn, id).await? else {
                        continue;
                    };
                    let bytes = delete_run(&txn, &run).await?.saturating_add(record_bytes);
                    deltas.moved(tenant, queue, Some(run.status), None);
                    deltas.add(
                        tenant,
                        "",
                        STORED_BYTES,
                        -i64::try_from(bytes).unwrap_or(i64::MAX),
                    );
                }
                deltas.write(&txn).await?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// See [`stepwise_store::Store::remove_idempotency`].
    pub(crate) async fn remove_idempotency(
        &self,
        keys: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        in_txn!(self, |txn| {
            for (tenant, queue, key) in keys {
                txn.x(
                    "DELETE FROM idempotency WHERE tenant = $1 AND queue = $2 AND key = $3",
                    &[tenant, queue, key],
                )
                .await?;
            }
            Ok(())
        })
    }
}

/// Runs deleted per transaction by a purge.
const PURGE_BATCH: usize = 100;

/// Deletes everything of `run` but its row's bytes (which the caller counts) and its
/// dead-letter entry; returns the bytes of its steps, timeline and logs.
async fn delete_run(txn: &Transaction<'_>, run: &RunRecord) -> TxResult<u64> {
    let id = run.id.as_str();
    let mut bytes = 0u64;
    for list in ["steps", "timeline", "logs"] {
        let sql = format!(
            "WITH gone AS (DELETE FROM {list} WHERE run = $1 RETURNING octet_length(record::text) AS b)
             SELECT COALESCE(sum(b), 0)::bigint FROM gone"
        );
        bytes = bytes.saturating_add(ms(txn.q1(&sql, &[&id]).await?.get(0)));
    }
    txn.x("DELETE FROM runs WHERE id = $1", &[&id]).await?;
    // Its children stay; they are no longer listed as its children.
    txn.x("UPDATE runs SET parent = NULL WHERE parent = $1", &[&id])
        .await?;
    if let Some(key) = &run.key {
        txn.x(
            "DELETE FROM pending_keys
             WHERE tenant = $1 AND queue = $2 AND job = $3 AND key = $4 AND run = $5",
            &[&run.tenant, &run.queue, &run.job, &key.key, &id],
        )
        .await?;
    }
    if let Some(key) = &run.idempotency_key {
        txn.x(
            "DELETE FROM idempotency WHERE tenant = $1 AND queue = $2 AND key = $3
             AND record->>'run' = $4",
            &[&run.tenant, &run.queue, key, &id],
        )
        .await?;
    }
    Ok(bytes)
}
