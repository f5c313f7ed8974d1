//! The host's queue of journal writes (steps, timeline entries, log lines an attempt
//! records): one task applies them in the order they were submitted, many to a transaction,
//! so an attempt's start is never durable after its first step and concurrent attempts share
//! commits (and fsyncs) instead of each paying its own.

use std::sync::{Arc, Weak};

use stepwise_store::counters::STORED_BYTES;
use stepwise_store::{JournalWrites, StoreError, Submitted};
use tokio::sync::{mpsc, oneshot};

use crate::PgStore;
use crate::claims::Shared;
use crate::counters::Deltas;
use crate::runs::append_journal;
use crate::tx::in_txn;

/// Most journal writes folded into one transaction.
const MAX_PER_COMMIT: usize = 512;

/// One queued write and who waits for it.
pub(crate) struct Job {
    run: String,
    journal: JournalWrites,
    ack: oneshot::Sender<Result<(), StoreError>>,
}

/// Starts the queue's task; it ends once every store clone (and so the sender) is gone.
pub(crate) fn start(
    pool: deadpool_postgres::Pool,
    shared: Weak<Shared>,
) -> mpsc::UnboundedSender<Job> {
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
                        let _ = job.ack.send(Ok(()));
                    }
                }
                // One bad write must not fail the others: each is tried alone.
                Err(_) if group.len() > 1 => {
                    for job in group {
                        let result = store.apply(std::slice::from_ref(&job)).await;
                        let _ = job.ack.send(result);
                    }
                }
                Err(e) => {
                    for job in group {
                        let _ = job.ack.send(Err(e.clone()));
                    }
                }
            }
        }
    });
    tx
}

impl PgStore {
    /// Applies `jobs` in order in one transaction.
    async fn apply(&self, jobs: &[Job]) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        in_txn!(self, |txn| {
            let mut deltas = Deltas::default();
            for job in jobs {
                if let Some(lease) = &job.journal.lease {
                    crate::runs::check_lease(self, &txn, &job.run, lease).await?;
                }
                let bytes = append_journal(&txn, &job.run, &job.journal).await?;
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
        let rows: usize = jobs
            .iter()
            .map(|j| {
                j.journal.steps.len()
                    + j.journal.timeline.len()
                    + j.journal.logs.len()
                    + j.journal.deliveries.len()
            })
            .sum();
        self.count_commit(started, rows as u64, jobs.len() as u64);
        Ok(())
    }

    /// Queues `journal` for `run`; see [`stepwise_store::Store::submit_step`].
    pub(crate) fn submit_journal(&self, run: &str, journal: JournalWrites) -> Submitted {
        let (ack, done) = oneshot::channel();
        let job = Job {
            run: run.to_owned(),
            journal,
            ack,
        };
        let sent = self
            .journal
            .as_ref()
            .ok_or(StoreError::WriterStopped)
            .and_then(|q| q.send(job).map_err(|_| StoreError::WriterStopped));
        Box::pin(async move {
            sent?;
            done.await.map_err(|_| StoreError::WriterStopped)?
        })
    }
}

/// The sender half, kept by every store clone but the queue's own.
pub(crate) type Queue = Option<Arc<mpsc::UnboundedSender<Job>>>;
