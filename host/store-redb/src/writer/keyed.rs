//! The writer's side of keyed enqueues: inside the transaction, find the pending run holding
//! a new run's (tenant, queue, job, key), and create, keep, refuse or replace by the rules of
//! [`stepwise_core::keyed`]. Deciding here — not before sending — is what makes any number of
//! concurrent enqueues of one key leave exactly one pending run.
//!
//! "Pending" is decided from what is durable and what is claimed: a run whose record shows
//! no attempt and no step, with no attempt on its timeline (an attempt's start is recorded
//! there before its guest runs), and not claimed. A holder that is claimed but has not
//! recorded a start is between its claim and its start (or being handed back): the batch is
//! answered [`CommitOutcome::HolderBusy`] and asked again, so the key never moves to a second
//! run while the first may still turn out pending.

use redb::ReadableTable;

use super::super::ready::ReadyIndex;
use super::Tables;
use crate::StoreError;
use crate::batch::{Batch, CommitOutcome};
use stepwise_core::keyed::{self, OnDuplicate};
use stepwise_core::model::RunRecord;

/// What a keyed batch does.
pub(super) enum Keyed {
    /// No pending run holds the key: the batch applies, and its run now holds the key.
    Create,
    /// A pending run holds it and is kept (or the new run refused), or it is busy; nothing
    /// applies.
    Held(CommitOutcome),
    /// A pending run holds it and takes the new request: this batch applies instead, and the
    /// run is fenced from claiming until the commit is mirrored.
    Replace(Box<RunRecord>, Batch),
}

/// The holder of a key, as the writer finds it.
enum Holder {
    /// Stored, never started, not claimed; with the size of its stored record.
    Pending(Box<RunRecord>, u64),
    /// Claimed, and no start recorded yet.
    Busy,
    /// Started, ended, gone or unreadable: the key is free.
    Free,
}

/// Decides what the batch creating `new` does (see [`Keyed`]), taking the key for `new`
/// when it creates.
pub(super) fn check(
    tables: &mut Tables<'_>,
    ready: &ReadyIndex,
    new: &RunRecord,
) -> Result<Keyed, StoreError> {
    let Some(key) = &new.key else {
        return Ok(Keyed::Create);
    };
    let slot = (
        new.tenant.as_str(),
        new.queue.as_str(),
        new.job.as_str(),
        key.key.as_str(),
    );
    let holder = tables
        .pending_keys()?
        .get(slot)?
        .map(|v| v.value().to_owned());
    if let Some(id) = holder {
        match holder_state(tables, ready, &id)? {
            Holder::Free => {}
            Holder::Busy => return Ok(Keyed::Held(CommitOutcome::HolderBusy { run: id })),
            Holder::Pending(held, stored_bytes) => {
                let mut held = *held;
                if key.on_duplicate != OnDuplicate::Replace && key.debounce.is_none() {
                    return Ok(Keyed::Held(CommitOutcome::PendingHeld { run: id }));
                }
                // Fenced before the decision is final, so no attempt can claim it meanwhile.
                if !ready.fence(&id) {
                    return Ok(Keyed::Held(CommitOutcome::HolderBusy { run: id }));
                }
                let expected = held.version;
                let due = keyed::replace(&mut held, new);
                held.version = expected.saturating_add(1);
                let mut batch = Batch::new();
                batch.charge_to(&held.tenant).write_run(&held, expected);
                batch.refund = stored_bytes;
                if let Some(entry) = keyed::replacement_entry(&held, due) {
                    batch.append_timeline(&held.id, &entry);
                }
                return Ok(Keyed::Replace(Box::new(held), batch));
            }
        }
    }
    tables.pending_keys()?.insert(slot, new.id.as_str())?;
    Ok(Keyed::Create)
}

/// Whether run `id` still holds its key (see the module docs).
fn holder_state(
    tables: &mut Tables<'_>,
    ready: &ReadyIndex,
    id: &str,
) -> Result<Holder, StoreError> {
    let Some(json) = tables.runs()?.get(id)?.map(|v| v.value().to_vec()) else {
        return Ok(Holder::Free);
    };
    let run: RunRecord = match serde_json::from_slice(&json) {
        Ok(run) => run,
        Err(e) => {
            // One unreadable record must not fail the other batches of the commit: its key
            // goes to the new run.
            tracing::warn!(run = %id, error = %e, "a key's holder is unreadable; the key is taken over");
            return Ok(Holder::Free);
        }
    };
    let has_steps = tables
        .steps()?
        .range((id, 0)..=(id, u32::MAX))?
        .next()
        .is_some();
    if !keyed::is_pending(&run, has_steps, false) || attempt_recorded(tables, id)? {
        return Ok(Holder::Free);
    }
    if ready.is_claimed(id) {
        return Ok(Holder::Busy);
    }
    Ok(Holder::Pending(Box::new(run), json.len() as u64))
}

/// Whether run `id`'s timeline records an attempt (a start, a host fault, a wait).
fn attempt_recorded(tables: &mut Tables<'_>, id: &str) -> Result<bool, StoreError> {
    #[derive(serde::Deserialize)]
    struct Attempt {
        #[serde(default)]
        attempt: Option<u32>,
    }
    for entry in tables.timeline()?.range((id, 0)..=(id, u32::MAX))? {
        let (_, v) = entry?;
        if serde_json::from_slice::<Attempt>(v.value()).is_ok_and(|e| e.attempt.is_some()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Forgets the key `run` holds, when it is deleted.
pub(super) fn release(tables: &mut Tables<'_>, run: &RunRecord) -> Result<(), StoreError> {
    let Some(key) = &run.key else {
        return Ok(());
    };
    let slot = (
        run.tenant.as_str(),
        run.queue.as_str(),
        run.job.as_str(),
        key.key.as_str(),
    );
    let table = tables.pending_keys()?;
    if table.get(slot)?.is_some_and(|v| v.value() == run.id) {
        table.remove(slot)?;
    }
    Ok(())
}
