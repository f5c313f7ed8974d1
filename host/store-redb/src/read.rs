//! Queries: every read of the store, each in its own read transaction (redb readers never
//! block the writer, and see only committed data) — except the ready index, answered from its
//! in-memory mirror.

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};
use serde::de::DeserializeOwned;

use super::{RedbStore, Sequences, StoreError, decode, schema};
use stepwise_core::clock::Millis;
use stepwise_core::model::{LogLine, RunRecord, StepRecord, TimelineEntry};
use stepwise_core::picker::ClaimPolicy;
use stepwise_store::{
    Census, Claimed, IdempotencyRecord, Listing, ModuleRecord, Occupancy, QueueSettings,
    TenantRecord, TenantUsage,
};

impl RedbStore {
    /// A run's record.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::RUNS)?;
        table
            .get(id)?
            .map(|v| decode(v.value(), || format!("run {id}")))
            .transpose()
    }

    /// Every run record, in id order (ids are time-ordered).
    pub fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::RUNS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push(decode(v.value(), || format!("run {}", k.value()))?);
        }
        Ok(out)
    }

    /// A run's steps, in the order they first began.
    pub fn steps(&self, run: &str) -> Result<Vec<StepRecord>, StoreError> {
        self.scan(schema::STEPS, run, "step")
    }

    /// The attempt named by the last timeline entry of `run` that names one.
    pub fn last_attempt(&self, run: &str) -> Result<Option<u32>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::TIMELINE)?;
        // Entries without an attempt (created, manual retry, ...) come a few at a time.
        for entry in table.range((run, 0)..=(run, u32::MAX))?.rev().take(64) {
            let (k, v) = entry?;
            let entry: TimelineEntry = decode(v.value(), || {
                format!("timeline entry {}/{}", run, k.value().1)
            })?;
            if entry.attempt.is_some() {
                return Ok(entry.attempt);
            }
        }
        Ok(None)
    }

    /// A run's timeline, in order.
    pub fn timeline(&self, run: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        self.scan(schema::TIMELINE, run, "timeline entry")
    }

    /// A run's log, in order.
    pub fn logs(&self, run: &str) -> Result<Vec<LogLine>, StoreError> {
        self.scan(schema::LOGS, run, "log line")
    }

    /// Up to `limit` of a run's steps, timeline entries or log lines (`what`) from position
    /// `from`, with the position to continue from when more follow.
    pub fn page<T: DeserializeOwned>(
        &self,
        what: Listing,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<(Vec<T>, Option<u32>), StoreError> {
        let (def, name) = match what {
            Listing::Steps => (schema::STEPS, "step"),
            Listing::Timeline => (schema::TIMELINE, "timeline entry"),
            Listing::Logs => (schema::LOGS, "log line"),
        };
        let txn = self.db.begin_read()?;
        let table = txn.open_table(def)?;
        let mut out = Vec::new();
        for entry in table.range((run, from)..=(run, u32::MAX))? {
            let (k, v) = entry?;
            let seq = k.value().1;
            if out.len() >= limit {
                return Ok((out, Some(seq)));
            }
            out.push(decode(v.value(), || format!("{name} {run}/{seq}"))?);
        }
        Ok((out, None))
    }

    fn scan<T: DeserializeOwned>(
        &self,
        def: redb::TableDefinition<(&str, u32), &[u8]>,
        run: &str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        scan_in(&self.db.begin_read()?, def, run, what)
    }

    /// The next free timeline and log sequence numbers of `run`, read from the tables
    /// themselves so an attempt cut short by a crash never reuses a number.
    pub fn sequences(&self, run: &str) -> Result<Sequences, StoreError> {
        sequences_in(&self.db.begin_read()?, run)
    }

    /// Claims up to `room` runs due at `now` for attempts, fairly across tenants and within
    /// `policy`'s limits (see [`ClaimPolicy`]). A claimed run is not claimed again until
    /// [`Store::release`].
    pub fn claim(&self, now: Millis, room: usize, policy: &dyn ClaimPolicy) -> Vec<Claimed> {
        self.ready.claim(now, room, policy)
    }

    /// Ends the claim on `run` once its attempt is over (whatever ended it), charging
    /// `served_ms` of attempt time to its tenant; its next entry, if any, becomes claimable
    /// no earlier than `hold_until`.
    pub fn release(&self, run: &str, served_ms: u64, hold_until: Option<Millis>) {
        self.ready.release(run, served_ms, hold_until);
    }

    /// Whether `run` is claimed by an attempt now.
    pub fn is_claimed(&self, run: &str) -> bool {
        self.ready.is_claimed(run)
    }

    /// The earliest time a waiting run that was not yet due at the last claim becomes due.
    pub fn next_pending(&self) -> Option<Millis> {
        self.ready.next_pending()
    }

    /// Whether a run is waiting that no attempt holds.
    pub fn has_unclaimed(&self) -> bool {
        self.ready.has_unclaimed()
    }

    /// Slots and memory held by executing attempts, and the runs waiting.
    pub fn occupancy(&self) -> Occupancy {
        self.ready.occupancy()
    }

    /// Every run waiting for an attempt, as (due time, run id).
    pub fn waiting(&self) -> Result<Vec<(Millis, String)>, StoreError> {
        Ok(self.ready.all())
    }

    /// A queue's dead letters, as (run id, dead-lettered at).
    pub fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Result<Vec<(String, Millis)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::DEAD_LETTERS)?;
        let mut out = Vec::new();
        for entry in table.range((tenant, queue, "")..)? {
            let (k, v) = entry?;
            let (t, q, run) = k.value();
            if t != tenant || q != queue {
                break;
            }
            out.push((run.to_owned(), v.value()));
        }
        Ok(out)
    }

    /// Whether `run` is in its queue's dead letters.
    pub fn is_dead_lettered(&self, run: &RunRecord) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::DEAD_LETTERS)?;
        Ok(table
            .get((run.tenant.as_str(), run.queue.as_str(), run.id.as_str()))?
            .is_some())
    }

    /// A stored component's bytes.
    pub fn module(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::MODULES)?;
        Ok(table.get(hash)?.map(|v| v.value().to_vec()))
    }

    /// The tenant an API token (by its sha256) belongs to.
    pub fn tenant_for_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::TOKENS)?;
        Ok(table.get(token_hash)?.map(|v| v.value().to_owned()))
    }

    /// A tenant.
    pub fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::TENANTS)?;
        table
            .get(name)?
            .map(|v| decode(v.value(), || format!("tenant {name}")))
            .transpose()
    }

    /// The modules a tenant deployed.
    pub fn tenant_modules(&self, tenant: &str) -> Result<Vec<ModuleRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::TENANT_MODULES)?;
        let mut out = Vec::new();
        for entry in table.range((tenant, "")..)? {
            let (k, v) = entry?;
            let (t, hash) = k.value();
            if t != tenant {
                break;
            }
            out.push(decode(v.value(), || format!("module {hash} of {tenant}"))?);
        }
        Ok(out)
    }

    /// The module serving `job` for `tenant` (the newest deployed that offers it).
    pub fn job_route(&self, tenant: &str, job: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::JOB_ROUTES)?;
        Ok(table.get((tenant, job))?.map(|v| v.value().to_owned()))
    }

    /// Run `id` if it belongs to `tenant`: the tenant's index is checked first, in the same
    /// read transaction, so another tenant's run is never decoded (and answers as fast as a
    /// missing one).
    pub fn run_of(&self, tenant: &str, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        if txn
            .open_table(schema::TENANT_RUNS)?
            .get((tenant, id))?
            .is_none()
        {
            return Ok(None);
        }
        let table = txn.open_table(schema::RUNS)?;
        table
            .get(id)?
            .map(|v| decode(v.value(), || format!("run {id}")))
            .transpose()
    }

    /// Whether `tenant` deployed the module `hash`.
    pub fn tenant_has_module(&self, tenant: &str, hash: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::TENANT_MODULES)?;
        Ok(table.get((tenant, hash))?.is_some())
    }

    /// Every queue with stored settings, as (tenant, queue, settings).
    pub fn queues(&self) -> Result<Vec<(String, String, QueueSettings)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::QUEUES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let (t, q) = k.value();
            out.push((
                t.to_owned(),
                q.to_owned(),
                decode(v.value(), || format!("queue {t}/{q}"))?,
            ));
        }
        Ok(out)
    }

    /// Every tenant's stored egress settings.
    pub fn egress_all(
        &self,
    ) -> Result<Vec<(String, stepwise_core::egress::TenantEgress)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::EGRESS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let tenant = k.value();
            out.push((
                tenant.to_owned(),
                decode(v.value(), || format!("egress settings of {tenant}"))?,
            ));
        }
        Ok(out)
    }

    /// Every stored secret (sealed), by tenant, in name order.
    pub fn secrets_all(
        &self,
    ) -> Result<Vec<(String, Vec<stepwise_core::secret::SecretRecord>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::SECRETS)?;
        let mut out: Vec<(String, Vec<stepwise_core::secret::SecretRecord>)> = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let (tenant, name) = k.value();
            let record = decode(v.value(), || format!("secret {tenant}/{name}"))?;
            match out.last_mut() {
                Some((t, list)) if t == tenant => list.push(record),
                _ => out.push((tenant.to_owned(), vec![record])),
            }
        }
        Ok(out)
    }

    /// One tenant's stored secrets (sealed), in name order.
    pub fn secrets_of(
        &self,
        tenant: &str,
    ) -> Result<Vec<stepwise_core::secret::SecretRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::SECRETS)?;
        let mut out = Vec::new();
        for entry in table.range((tenant, "")..)? {
            let (k, v) = entry?;
            let (t, name) = k.value();
            if t != tenant {
                break;
            }
            out.push(decode(v.value(), || format!("secret {t}/{name}"))?);
        }
        Ok(out)
    }

    /// One tenant's stored egress settings (none stored: nothing allowed).
    pub fn egress(&self, tenant: &str) -> Result<stepwise_core::egress::TenantEgress, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::EGRESS)?;
        match table.get(tenant)? {
            Some(v) => decode(v.value(), || format!("egress settings of {tenant}")),
            None => Ok(Default::default()),
        }
    }

    /// The holder of an idempotency key, expired or not.
    pub fn idempotency(
        &self,
        tenant: &str,
        queue: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::IDEMPOTENCY)?;
        table
            .get((tenant, queue, key))?
            .map(|v| decode(v.value(), || format!("idempotency key {key}")))
            .transpose()
    }

    /// Idempotency keys whose retention has passed at `now`, as (tenant, queue, key).
    pub fn expired_idempotency(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::IDEMPOTENCY)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let (t, q, key) = k.value();
            let record: IdempotencyRecord = decode(v.value(), || format!("idempotency key {key}"))?;
            if record.expired(now) {
                out.push((t.to_owned(), q.to_owned(), key.to_owned()));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// A tenant's run ids in creation order, starting after `after`, at most `limit`.
    pub fn tenant_runs(
        &self,
        tenant: &str,
        after: Option<&str>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::TENANT_RUNS)?;
        let start = (tenant, after.unwrap_or(""));
        // Every key of another tenant sorts at or after `tenant\0` (names hold no NUL).
        let past = format!("{tenant}\0");
        let range: Box<dyn Iterator<Item = _>> = if newest_first {
            match after {
                Some(after) => Box::new(table.range((tenant, "")..(tenant, after))?.rev()),
                None => Box::new(table.range((tenant, "")..(past.as_str(), ""))?.rev()),
            }
        } else {
            Box::new(table.range(start..)?)
        };
        let mut out = Vec::new();
        for entry in range {
            let (k, _) = entry?;
            let (t, run) = k.value();
            if t != tenant {
                break;
            }
            if Some(run) == after {
                continue;
            }
            out.push(run.to_owned());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Runs by status, non-final runs by (tenant, queue), and dead letters by (tenant, queue),
    /// from the counters the writer keeps: reads one row per (queue, counter), never a run.
    pub fn census(&self) -> Result<Census, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::COUNTERS)?;
        let mut census = Census::default();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let (t, q, counter) = k.value();
            stepwise_store::counters::add_to_census(&mut census, t, q, counter, v.value());
        }
        Ok(census)
    }

    /// The counters of one tenant's queues and its stored bytes, as [`Census`] holds them.
    pub fn tenant_census(&self, tenant: &str) -> Result<Census, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::COUNTERS)?;
        let mut census = Census::default();
        for entry in table.range((tenant, "", "")..)? {
            let (k, v) = entry?;
            let (t, q, counter) = k.value();
            if t != tenant {
                break;
            }
            stepwise_store::counters::add_to_census(&mut census, t, q, counter, v.value());
        }
        Ok(census)
    }

    /// The counters of one queue, as [`Census`] holds them (depth, dead letters).
    pub fn queue_census(&self, tenant: &str, queue: &str) -> Result<Census, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::COUNTERS)?;
        let mut census = Census::default();
        for entry in table.range((tenant, queue, "")..)? {
            let (k, v) = entry?;
            let (t, q, counter) = k.value();
            if t != tenant || q != queue {
                break;
            }
            stepwise_store::counters::add_to_census(&mut census, t, q, counter, v.value());
        }
        Ok(census)
    }

    /// What `tenant` holds against its quotas, from the counters in one read.
    pub fn tenant_usage(&self, tenant: &str) -> Result<TenantUsage, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::COUNTERS)?;
        let mut usage = TenantUsage::default();
        for entry in table.range((tenant, "", "")..)? {
            let (k, v) = entry?;
            let (t, _, counter) = k.value();
            if t != tenant {
                break;
            }
            stepwise_store::counters::add_to_usage(&mut usage, counter, v.value());
        }
        Ok(usage)
    }

    /// [`Store::census`] computed the slow way, by decoding every run: the oracle the
    /// counters are tested against.
    pub fn census_by_scan(&self) -> Result<Census, StoreError> {
        let mut census = Census::default();
        for run in self.runs()? {
            *census.by_status.entry(run.status).or_default() += 1;
            *census
                .runs
                .entry((run.tenant.clone(), run.queue.clone()))
                .or_default() += 1;
            if !run.status.is_final() {
                *census
                    .depth
                    .entry((run.tenant.clone(), run.queue.clone()))
                    .or_default() += 1;
            }
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::DEAD_LETTERS)?;
        for entry in table.iter()? {
            let (k, _) = entry?;
            let (t, q, _) = k.value();
            *census
                .dead_letters
                .entry((t.to_owned(), q.to_owned()))
                .or_default() += 1;
        }
        Ok(census)
    }
}

/// A run's rows of a (run id, sequence) table, in order.
fn scan_in<T: DeserializeOwned>(
    txn: &ReadTransaction,
    def: redb::TableDefinition<(&str, u32), &[u8]>,
    run: &str,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    let table = txn.open_table(def)?;
    let mut out = Vec::new();
    for entry in table.range((run, 0)..=(run, u32::MAX))? {
        let (k, v) = entry?;
        out.push(decode(v.value(), || {
            format!("{what} {}/{}", run, k.value().1)
        })?);
    }
    Ok(out)
}

fn sequences_in(txn: &ReadTransaction, run: &str) -> Result<Sequences, StoreError> {
    let next = |def| -> Result<u32, StoreError> {
        let table = txn.open_table(def)?;
        let last = table.range((run, 0)..=(run, u32::MAX))?.next_back();
        Ok(match last {
            Some(entry) => {
                let (key, _) = entry?;
                let (_, seq): (&str, u32) = key.value();
                seq + 1
            }
            None => 0,
        })
    };
    Ok(Sequences {
        timeline: next(schema::TIMELINE)?,
        logs: next(schema::LOGS)?,
    })
}
