//! Claims on a database shared by hosts: each host claims due runs with `FOR UPDATE SKIP
//! LOCKED` (so hosts claiming together never wait for, or take, each other's candidates) and
//! marks them with a lease — its id and an expiry it renews while the attempts run. A run
//! whose lease lapsed (its host died) is claimable again by any host. Every write an
//! attempt makes under its claim names the lease and is refused once another host holds the
//! run (see `runs.rs`).
//!
//! Fairness across tenants is [`stepwise_core::picker`]'s, decided per host over the heads
//! of the queues that have waiting runs (read from the counters, never by scanning runs) and
//! this host's own running attempts: the engine's slots and memory budget are per host.
//!
//! Leases are kept on the wall clock, whatever clock the engine schedules by: whether a host
//! is alive is a matter of real time.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use stepwise_core::clock::wall_ms;

use stepwise_core::clock::Millis;
use stepwise_core::picker::{self, ClaimPolicy, MemoryInUse, QueueHead, TenantLoad};
use stepwise_store::{Claimed, CommitStats, Lease, Occupancy, Placement, QueueId, StoreError};

use crate::tx::{db_ms, in_txn, ms};
use crate::{PgStore, io};

/// How long a claim lasts unless renewed: a killed host's runs are taken over by the others
/// at most this long (plus one claim round) after its last renewal.
pub const DEFAULT_LEASE_MS: u64 = 30_000;

/// How often a host renews its leases, as a share of the lease: a third, so two renewals
/// may fail (a slow database, a pause) before a live host loses a claim.
pub const RENEW_EVERY_MS: u64 = DEFAULT_LEASE_MS / 3;

/// How often the counters' deltas are folded.
const FOLD_EVERY: Duration = Duration::from_secs(5);

/// Most runs read per queue in one claim round.
const MAX_CANDIDATES_PER_QUEUE: i64 = 256;

/// A host id unique among hosts: the machine's name, the process id and a random part.
pub(crate) fn fresh_host_id() -> String {
    let name = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{name}-{}-{}", std::process::id(), &random[..8])
}

/// What one host knows of its own claims.
#[derive(Debug, Default)]
struct Local {
    claimed: HashMap<String, Placement>,
    memory: u64,
    served_ms: HashMap<String, u64>,
}

impl Local {
    fn running(&self, tenant: &str) -> usize {
        self.claimed
            .values()
            .filter(|p| p.queue.tenant == tenant)
            .count()
    }

    fn running_in(&self, tenant: &str, queue: &str) -> usize {
        self.claimed
            .values()
            .filter(|p| p.queue.tenant == tenant && p.queue.queue == queue)
            .count()
    }
}

/// What every clone of a [`PgStore`] shares: the host's identity and claims.
pub(crate) struct Shared {
    pub holder: String,
    /// The database, for connections outside the pool (the listener's).
    pub config: tokio_postgres::Config,
    /// What wakes this host's scheduler, once the engine registered it.
    pub waker: Mutex<Option<stepwise_store::Waker>>,
    /// Wakes the notifier task; `notify_wanted` says a write asked for a notification.
    pub notifier: Arc<tokio::sync::Notify>,
    pub notify_wanted: std::sync::atomic::AtomicBool,
    /// When this host opened the store (wall clock).
    pub started_at: Millis,
    lease_ms: u64,
    local: Mutex<Local>,
    pub stats: CommitStats,
    /// The `now` of the last claim round: runs due by then were offered to it.
    last_claim: AtomicU64,
    /// Claims this host found taken over when renewing.
    pub leases_lost: AtomicU64,
    /// Writes refused because their lease no longer held the run.
    pub leases_refused: AtomicU64,
    /// Runs this host claimed from a host whose lease had lapsed.
    pub takeovers: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("holder", &self.holder)
            .finish()
    }
}

impl Shared {
    pub fn new(holder: String, lease_ms: u64, config: tokio_postgres::Config) -> Self {
        Self {
            holder,
            config,
            waker: Mutex::default(),
            notifier: Arc::default(),
            notify_wanted: std::sync::atomic::AtomicBool::new(false),
            started_at: wall_ms(),
            lease_ms: lease_ms.max(1),
            local: Mutex::default(),
            stats: CommitStats::default(),
            last_claim: AtomicU64::new(0),
            leases_lost: AtomicU64::new(0),
            leases_refused: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes this host's scheduler, if the engine registered a waker.
    pub fn wake(&self) {
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(waker) = waker {
            waker();
        }
    }
}

/// A claimable run as a claim round reads it.
struct Candidate {
    id: String,
    priority: i32,
    due: Millis,
    memory: u64,
    taken_over: bool,
}

impl PgStore {
    /// Claims up to `room` runs due at `now` (see the module docs).
    pub(crate) async fn claim_due(
        &self,
        now: Millis,
        room: usize,
        policy: &(dyn ClaimPolicy + Sync),
    ) -> Result<Vec<Claimed>, StoreError> {
        self.shared.last_claim.fetch_max(now, Ordering::Relaxed);
        if room == 0 {
            return Ok(Vec::new());
        }
        let holder = self.shared.holder.clone();
        let wall = wall_ms();
        let expires_at = wall.saturating_add(self.shared.lease_ms);
        let claimed = in_txn!(self, |txn| {
            let queues = txn
                .query(
                    "SELECT tenant, queue FROM counters
                     WHERE counter IN ('queued', 'retrying', 'sleeping', 'waiting')
                     GROUP BY tenant, queue HAVING sum(n) > 0",
                    &[],
                )
                .await?;
            let tenants: Vec<String> = queues.iter().map(|r| r.get(0)).collect();
            let names: Vec<String> = queues.iter().map(|r| r.get(1)).collect();
            let per_queue = MAX_CANDIDATES_PER_QUEUE.min(i64::try_from(room).unwrap_or(i64::MAX));
            let rows = txn
                .query(
                    "SELECT r.id, r.tenant, r.queue, r.priority,
                            GREATEST(r.ready_at, COALESCE(r.hold_until, 0)), r.memory_bytes,
                            r.claimed_by IS NOT NULL
                     FROM unnest($1::text[], $2::text[]) AS q(tenant, queue)
                     CROSS JOIN LATERAL (
                         SELECT id, tenant, queue, priority, ready_at, hold_until,
                                memory_bytes, claimed_by
                         FROM runs
                         WHERE runs.tenant = q.tenant AND runs.queue = q.queue
                           AND ready_at IS NOT NULL AND set_aside IS NULL
                           AND ready_at <= $3
                           AND (hold_until IS NULL OR hold_until <= $3)
                           AND (claimed_by IS NULL OR lease_until < $4)
                         ORDER BY priority DESC, ready_at
                         LIMIT $5
                         FOR UPDATE SKIP LOCKED
                     ) r",
                    &[&tenants, &names, &db_ms(now), &db_ms(wall), &per_queue],
                )
                .await?;
            let mut by_tenant: BTreeMap<String, BTreeMap<String, VecDeque<Candidate>>> =
                BTreeMap::new();
            for r in &rows {
                let tenant: String = r.get(1);
                let queue: String = r.get(2);
                by_tenant
                    .entry(tenant)
                    .or_default()
                    .entry(queue)
                    .or_default()
                    .push_back(Candidate {
                        id: r.get(0),
                        priority: r.get(3),
                        due: ms(r.get(4)),
                        memory: ms(r.get(5)),
                        taken_over: r.get(6),
                    });
            }
            for queues in by_tenant.values_mut() {
                for list in queues.values_mut() {
                    list.make_contiguous().sort_by(|a, b| {
                        (std::cmp::Reverse(a.priority), a.due, &a.id).cmp(&(
                            std::cmp::Reverse(b.priority),
                            b.due,
                            &b.id,
                        ))
                    });
                }
            }
            let picked = self.pick(by_tenant, room, policy);
            let ids: Vec<String> = picked.iter().map(|(c, _)| c.id.clone()).collect();
            if !ids.is_empty() {
                txn.execute(
                    "UPDATE runs SET claimed_by = $1, lease_until = $2 WHERE id = ANY($3)",
                    &[&holder, &db_ms(expires_at), &ids],
                )
                .await?;
            }
            Ok(picked)
        })?;
        let mut local = self.shared.local();
        let mut out = Vec::with_capacity(claimed.len());
        for (c, placement) in claimed {
            if c.taken_over {
                self.shared.takeovers.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(run = %c.id, "run taken over from a host whose lease lapsed");
            }
            local.memory = local.memory.saturating_add(placement.memory_bytes);
            local.claimed.insert(c.id.clone(), placement.clone());
            out.push(Claimed {
                run: c.id,
                placement,
                lease: Lease {
                    holder: holder.clone(),
                    expires_at,
                },
            });
        }
        Ok(out)
    }

    /// The candidates the picker chooses, in order, with their placements, counting this
    /// host's running attempts and those chosen before them.
    fn pick(
        &self,
        mut by_tenant: BTreeMap<String, BTreeMap<String, VecDeque<Candidate>>>,
        room: usize,
        policy: &(dyn ClaimPolicy + Sync),
    ) -> Vec<(Candidate, Placement)> {
        let local = self.shared.local();
        let mut running: HashMap<String, usize> = HashMap::new();
        let mut running_in: HashMap<(String, String), usize> = HashMap::new();
        for (t, queues) in &by_tenant {
            running.insert(t.clone(), local.running(t));
            for q in queues.keys() {
                running_in.insert((t.clone(), q.clone()), local.running_in(t, q));
            }
        }
        let mut memory = local.memory;
        let mut idle = local.claimed.is_empty();
        let served = local.served_ms.clone();
        drop(local);
        let mut blocked: BTreeSet<String> = BTreeSet::new();
        let mut out = Vec::new();
        while out.len() < room {
            let loads = by_tenant
                .iter()
                .filter(|(t, qs)| !blocked.contains(*t) && qs.values().any(|l| !l.is_empty()))
                .map(|(t, _)| TenantLoad {
                    tenant: t.as_str(),
                    running: running.get(t).copied().unwrap_or(0),
                    served_ms: served.get(t).copied().unwrap_or(0),
                });
            let Some(tenant) = picker::pick_tenant(loads, policy).map(str::to_owned) else {
                break;
            };
            let Some(queues) = by_tenant.get_mut(&tenant) else {
                break;
            };
            let heads = queues.iter().filter_map(|(q, list)| {
                list.front().map(|c| QueueHead {
                    queue: q.as_str(),
                    running: running_in
                        .get(&(tenant.clone(), q.clone()))
                        .copied()
                        .unwrap_or(0),
                    priority: c.priority,
                    due_at: c.due,
                    memory_bytes: c.memory,
                    key: q.clone(),
                })
            });
            let chosen = picker::pick_head(
                &tenant,
                heads,
                policy,
                MemoryInUse {
                    bytes: memory,
                    idle,
                },
            );
            let Some(queue) = chosen else {
                blocked.insert(tenant);
                continue;
            };
            let Some(c) = queues.get_mut(&queue).and_then(VecDeque::pop_front) else {
                blocked.insert(tenant);
                continue;
            };
            *running.entry(tenant.clone()).or_default() += 1;
            *running_in
                .entry((tenant.clone(), queue.clone()))
                .or_default() += 1;
            memory = memory.saturating_add(c.memory);
            idle = false;
            let placement = Placement {
                queue: Arc::new(QueueId {
                    tenant: tenant.clone(),
                    queue,
                }),
                priority: c.priority,
                memory_bytes: c.memory,
            };
            out.push((c, placement));
        }
        out
    }

    /// Ends this host's claim on `run` (see [`stepwise_store::Store::release`]).
    pub(crate) async fn release(
        &self,
        run: &str,
        served_ms: u64,
        hold_until: Option<Millis>,
    ) -> Result<(), StoreError> {
        {
            let mut local = self.shared.local();
            if let Some(p) = local.claimed.remove(run) {
                local.memory = local.memory.saturating_sub(p.memory_bytes);
                let served = local.served_ms.entry(p.queue.tenant.clone()).or_default();
                *served = served.saturating_add(served_ms);
            }
        }
        let hold = hold_until.map(db_ms);
        self.client()
            .await?
            .execute(
                "UPDATE runs SET claimed_by = NULL, lease_until = NULL, hold_until = $3
                 WHERE id = $1 AND claimed_by = $2",
                &[&run, &self.shared.holder, &hold],
            )
            .await
            .map_err(io)?;
        Ok(())
    }

    /// Makes a waiting, unclaimed run that a release held back due at its stored time.
    pub(crate) async fn lift_hold(&self, run: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE runs SET hold_until = NULL WHERE id = $1 AND claimed_by IS NULL",
                &[&run],
            )
            .await
            .map_err(io)?;
        Ok(())
    }

    /// Whether a live lease holds `run`.
    pub(crate) async fn is_claimed(&self, run: &str) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT claimed_by IS NOT NULL AND lease_until >= $2 FROM runs WHERE id = $1",
                &[&run, &db_ms(wall_ms())],
            )
            .await
            .map_err(io)?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    /// When the next unclaimed run not due at the last claim round becomes due.
    pub(crate) async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        let last = db_ms(self.shared.last_claim.load(Ordering::Relaxed));
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT LEAST(
                     (SELECT GREATEST(ready_at, COALESCE(hold_until, 0)) FROM runs
                      WHERE ready_at > $1 AND set_aside IS NULL
                        AND (claimed_by IS NULL OR lease_until < $2)
                      ORDER BY ready_at LIMIT 1),
                     (SELECT min(hold_until) FROM runs
                      WHERE hold_until > $1 AND ready_at IS NOT NULL AND set_aside IS NULL
                        AND (claimed_by IS NULL OR lease_until < $2)))",
                &[&last, &db_ms(wall_ms())],
            )
            .await
            .map_err(io)?;
        Ok(row.get::<_, Option<i64>>(0).map(ms))
    }

    /// Whether any unclaimed run waits.
    pub(crate) async fn has_unclaimed(&self) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE ready_at IS NOT NULL
                                AND set_aside IS NULL
                                AND (claimed_by IS NULL OR lease_until < $1))",
                &[&db_ms(wall_ms())],
            )
            .await
            .map_err(io)?;
        Ok(row.get(0))
    }

    /// What this host's claims hold, and how many runs wait unclaimed.
    pub(crate) async fn occupancy(&self) -> Result<Occupancy, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT count(*) FROM runs WHERE ready_at IS NOT NULL AND set_aside IS NULL
                 AND (claimed_by IS NULL OR lease_until < $1)",
                &[&db_ms(wall_ms())],
            )
            .await
            .map_err(io)?;
        let waiting: i64 = row.get(0);
        let local = self.shared.local();
        let mut o = Occupancy {
            running: local.claimed.len(),
            memory_in_use: local.memory,
            waiting: usize::try_from(waiting).unwrap_or(0),
            ..Occupancy::default()
        };
        for p in local.claimed.values() {
            *o.running_by_tenant
                .entry(p.queue.tenant.clone())
                .or_default() += 1;
            *o.running_by_queue
                .entry((p.queue.tenant.clone(), p.queue.queue.clone()))
                .or_default() += 1;
        }
        Ok(o)
    }

    /// Every run in the ready set with when it is due, earliest first.
    pub(crate) async fn waiting(&self) -> Result<Vec<(Millis, String)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT GREATEST(ready_at, COALESCE(hold_until, 0)), id FROM runs
                 WHERE ready_at IS NOT NULL AND set_aside IS NULL ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(io)?;
        Ok(rows.iter().map(|r| (ms(r.get(0)), r.get(1))).collect())
    }

    /// Records this host as live (and forgets hosts unseen for a day).
    pub(crate) async fn heartbeat(&self) -> Result<(), StoreError> {
        let now = db_ms(wall_ms());
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO hosts (id, started_at, last_seen) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET last_seen = EXCLUDED.last_seen",
                &[&self.shared.holder, &db_ms(self.shared.started_at), &now],
            )
            .await
            .map_err(io)?;
        client
            .execute(
                "DELETE FROM hosts WHERE last_seen < $1",
                &[&now.saturating_sub(86_400_000)],
            )
            .await
            .map_err(io)?;
        Ok(())
    }

    /// The hosts whose last renewal is younger than a lease, with their claims.
    pub(crate) async fn hosts(&self) -> Result<Vec<stepwise_store::HostInfo>, StoreError> {
        let since = db_ms(wall_ms().saturating_sub(self.shared.lease_ms));
        let rows = self
            .client()
            .await?
            .query(
                "SELECT h.id, h.started_at, h.last_seen, count(r.id), min(r.lease_until)
                 FROM hosts h LEFT JOIN runs r ON r.claimed_by = h.id
                 WHERE h.last_seen >= $1
                 GROUP BY h.id, h.started_at, h.last_seen ORDER BY h.id",
                &[&since],
            )
            .await
            .map_err(io)?;
        Ok(rows
            .iter()
            .map(|r| stepwise_store::HostInfo {
                id: r.get(0),
                started_at: ms(r.get(1)),
                last_seen: ms(r.get(2)),
                claims: ms(r.get(3)),
                next_expiry: r.get::<_, Option<i64>>(4).map(ms),
            })
            .collect())
    }

    /// Renews the leases of this host's claims; a claim another host took meanwhile is
    /// dropped, logged and counted (its attempt's writes are refused from now on).
    pub async fn renew_leases(&self) -> Result<(), StoreError> {
        self.heartbeat().await?;
        let ids: Vec<String> = self.shared.local().claimed.keys().cloned().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let until = db_ms(wall_ms().saturating_add(self.shared.lease_ms));
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE runs SET lease_until = $1 WHERE claimed_by = $2 AND id = ANY($3)
                 RETURNING id",
                &[&until, &self.shared.holder, &ids],
            )
            .await
            .map_err(io)?;
        let kept: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
        let mut local = self.shared.local();
        for id in ids.iter().filter(|id| !kept.contains(*id)) {
            if let Some(p) = local.claimed.remove(id) {
                local.memory = local.memory.saturating_sub(p.memory_bytes);
                self.shared.leases_lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(run = %id, host = %self.shared.holder, "lease lost: another host holds the run");
            }
        }
        Ok(())
    }

    /// Starts the host's upkeep: lease renewal and counter folding, until every clone of
    /// this store is dropped.
    pub(crate) fn start_upkeep(&self) {
        let weak = Arc::downgrade(&self.shared);
        let pool = self.pool.clone();
        let renew_every = Duration::from_millis((self.shared.lease_ms / 3).max(1));
        tokio::spawn(async move {
            let mut renew = tokio::time::interval(renew_every);
            let mut fold = tokio::time::interval(FOLD_EVERY);
            loop {
                tokio::select! {
                    _ = renew.tick() => {
                        let Some(shared) = weak.upgrade() else { break };
                        let store = PgStore { pool: pool.clone(), shared, journal: None };
                        if let Err(e) = store.renew_leases().await {
                            tracing::error!(error = %e, "leases could not be renewed");
                        }
                        // A lease of a dead host may have lapsed: the scheduler looks again.
                        store.shared.wake();
                    }
                    _ = fold.tick() => {
                        let Some(shared) = weak.upgrade() else { break };
                        let store = PgStore { pool: pool.clone(), shared, journal: None };
                        if let Err(e) = store.fold_counters().await {
                            tracing::warn!(error = %e, "counters could not be folded");
                        }
                    }
                }
            }
        });
    }
}
