//! The host's queues of journal writes (steps, timeline entries, log lines an attempt
//! records): [`SHARDS`] tasks, each taking the runs whose id hashes to it and applying their
//! writes in the order they were submitted, many to a transaction. So a run's writes stay in
//! order (an attempt's start is never durable after its first step), concurrent attempts
//! share commits (and fsyncs) instead of each paying its own, and while one shard waits for
//! its commit the others fill theirs.

use std::sync::{Arc, Weak};

use stepwise_store::counters::STORED_BYTES;
use stepwise_store::{JournalWrites, StoreError, Submitted};
use tokio::sync::{mpsc, oneshot};

use crate::PgStore;
use crate::cached::Cached;
use crate::claims::Shared;
use crate::counters::Deltas;
use crate::tx::in_txn;

/// Queues (and tasks, and transactions in flight at once) per host. One: measured with
/// `stepwise bench steps3 --store`, four cost more fsyncs per job (1.31 against 0.89, PostgreSQL
/// grouping fewer commits per flush) without raising throughput on a 2-core machine.
const SHARDS: usize = 1;

/// Most journal writes folded into one transaction.
const MAX_PER_COMMIT: usize = 512;

/// One queued write and who waits for it.
pub(crate) struct Job {
    run: String,
    journal: JournalWrites,
    ack: oneshot::Sender<Result<(), StoreError>>,
}

/// Starts the queues' tasks; each ends once every store clone (and so its sender) is gone.
pub(crate) fn start_all(
    pool: &deadpool_postgres::Pool,
    shared: &Arc<Shared>,
) -> Vec<mpsc::UnboundedSender<Job>> {
    (0..SHARDS)
        .map(|_| start(pool.clone(), Arc::downgrade(shared)))
        .collect()
}

/// Starts one queue's task.
fn start(pool: deadpool_postgres::Pool, shared: Weak<Shared>) -> mpsc::UnboundedSender<Job> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut group = vec![first];
            while group.len() < MAX_PER_COMMIT {
                match rx.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            let Some(shared) = shared.upgrade() else {
                for job in group {
                    let _ = job.ack.send(Err(StoreError::WriterStopped));
                }
                break;
            };
            let store = PgStore {
                pool: pool.clone(),
                shared,
                journal: None,
            };
            let together = store.apply(&group).await;
            match together {
                Ok(()) => {
                    for job in group {
                        store.shared.journal_done(&job.run);
                        let _ = job.ack.send(Ok(()));
                    }
                }
                // One bad write must not fail the others: each is tried alone.
                Err(_) if group.len() > 1 => {
                    for job in group {
                        let result = store.apply(std::slice::from_ref(&job)).await;
                        store.shared.journal_done(&job.run);
                        let _ = job.ack.send(result);
                    }
                }
                Err(e) => {
                    for job in group {
                        store.shared.journal_done(&job.run);
                        let _ = job.ack.send(Err(e.clone()));
                    }
                }
            }
        }
    });
    tx
}

impl PgStore {
    /// Applies `jobs` in order in one transaction (none for a group of barriers only).
    async fn apply(&self, jobs: &[Job]) -> Result<(), StoreError> {
        if jobs.iter().all(|j| j.journal.is_empty()) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        in_txn!(self, |txn| {
            // Every run of the group locked in id order, and each lease checked.
            let mut ids: Vec<&str> = jobs.iter().map(|j| j.run.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            type Claim = (Option<String>, Option<i64>);
            let holders: std::collections::HashMap<String, Claim> = txn
                .q(
                    "SELECT id, claimed_by, claim_token FROM runs WHERE id = ANY($1)
                     ORDER BY id FOR UPDATE",
                    &[&ids],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2))))
                .collect();
            for job in jobs {
                if let Some(lease) = &job.journal.lease {
                    let (holder, token) = holders.get(&job.run).cloned().unwrap_or_default();
                    if !crate::claims::lease_holds(&lease.holder, holder.as_deref(), token)
                        || self.shared.releasing(&job.run)
                    {
                        self.lease_refused(&job.run, &lease.holder, holder.as_deref());
                        return Err(crate::tx::Failure::from(StoreError::LeaseLost {
                            run: job.run.clone(),
                            holder: lease.holder.clone(),
                        }));
                    }
                }
            }
            let pairs: Vec<(&str, &JournalWrites)> =
                jobs.iter().map(|j| (j.run.as_str(), &j.journal)).collect();
            let bytes = crate::appends::append_all(&txn, &pairs).await?;
            let mut deltas = Deltas::default();
            for (job, bytes) in jobs.iter().zip(bytes) {
                if let Some(tenant) = &job.journal.tenant {
                    deltas.add(
                        tenant,
                        "",
                        STORED_BYTES,
                        i64::try_from(bytes).unwrap_or(i64::MAX),
                    );
                }
            }
            deltas.write(&txn).await?;
            Ok(())
        })?;
        let rows: u64 = jobs
            .iter()
            .map(|j| crate::backend::journal_rows(&j.journal))
            .sum();
        self.count_commit(started, rows, jobs.len() as u64);
        Ok(())
    }

    /// Resolves once every journal write submitted for `run` before it is applied: what an
    /// attempt's settlement waits for, so it is never applied before the attempt's start.
    pub(crate) async fn journal_barrier(&self, run: &str) -> Result<(), StoreError> {
        // Most settlements follow a step the attempt waited for: nothing is queued then.
        if !self.shared.journal_pending(run) {
            return Ok(());
        }
        self.submit_journal(run, JournalWrites::default()).await
    }

    /// Queues `journal` for `run`; see [`stepwise_store::Store::submit_step`].
    pub(crate) fn submit_journal(&self, run: &str, journal: JournalWrites) -> Submitted {
        let (ack, done) = oneshot::channel();
        let job = Job {
            run: run.to_owned(),
            journal,
            ack,
        };
        self.shared.journal_queued(run);
        let sent = self
            .journal
            .as_ref()
            .and_then(|queues| queues.get(shard_of(run, queues.len())))
            .ok_or(StoreError::WriterStopped)
            .and_then(|q| q.send(job).map_err(|_| StoreError::WriterStopped));
        if sent.is_err() {
            self.shared.journal_done(run);
        }
        Box::pin(async move {
            sent?;
            done.await.map_err(|_| StoreError::WriterStopped)?
        })
    }
}

/// The senders, kept by every store clone but the queues' own.
pub(crate) type Queue = Option<Arc<Vec<mpsc::UnboundedSender<Job>>>>;

/// The queue of run `run`, among `n`.
fn shard_of(run: &str, n: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    run.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}
