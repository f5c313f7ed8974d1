//! The writer's side of keyed enqueues: inside the transaction, find the pending run holding
//! a new run's (tenant, queue, job, key), and create, keep, refuse or replace by the rules of
//! [`stepwise_core::keyed`]. Deciding here — not before sending — is what makes any number of
//! concurrent enqueues of one key leave exactly one pending run.

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
    /// A pending run holds it and is kept (or the new run refused); nothing applies.
    Held(CommitOutcome),
    /// A pending run holds it and takes the new request: this batch applies instead, and the
    /// run is fenced from claiming until the commit is mirrored.
    Replace(Box<RunRecord>, Batch),
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
    if let Some(id) = holder
        && let Some(mut held) = pending_run(tables, &id)?
    {
        match key.on_duplicate {
            OnDuplicate::Keep | OnDuplicate::Reject if key.debounce.is_none() => {
                return Ok(Keyed::Held(CommitOutcome::PendingHeld { run: id }));
            }
            _ => {}
        }
        // Fenced before the decision is final, so no attempt can claim it meanwhile; one
        // already claimed has started, and the new request gets a run of its own.
        if ready.fence(&id) {
            let expected = held.version;
            let due = keyed::replace(&mut held, new);
            held.version = expected.saturating_add(1);
            let mut batch = Batch::new();
            batch.charge_to(&held.tenant).write_run(&held, expected);
            if let Some(entry) = keyed::replacement_entry(&held, due) {
                batch.append_timeline(&held.id, &entry);
            }
            return Ok(Keyed::Replace(Box::new(held), batch));
        }
    }
    tables.pending_keys()?.insert(slot, new.id.as_str())?;
    Ok(Keyed::Create)
}

/// Run `id` if it is stored and still pending.
fn pending_run(tables: &mut Tables<'_>, id: &str) -> Result<Option<RunRecord>, StoreError> {
    let Some(json) = tables.runs()?.get(id)?.map(|v| v.value().to_vec()) else {
        return Ok(None);
    };
    let run: RunRecord = serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt {
        what: format!("run {id}"),
        message: e.to_string(),
    })?;
    let has_steps = tables
        .steps()?
        .range((id, 0)..=(id, u32::MAX))?
        .next()
        .is_some();
    // The claim is checked again, atomically, by the fence.
    Ok(keyed::is_pending(&run, has_steps, false).then_some(run))
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
