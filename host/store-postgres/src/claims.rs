//! Claims on a database shared by hosts: each host claims due runs with `FOR UPDATE SKIP
//! LOCKED` (so hosts claiming together never wait for, or take, each other's candidates) and
//! marks them with a lease — its id and an expiry it renews while the attempts run. A run
//! whose lease lapsed (its host died) is claimable again by any host. Every write an
//! attempt makes under its claim names the lease and is refused once another host holds the
//! run (see `runs.rs`).
//!
//! Fairness across tenants is [`stepwise_core::picker`]'s, decided per host over the heads
//! of the queues that have waiting runs (found by skipping through the ready index, a probe
//! per queue, never by scanning runs) and
//! this host's own running attempts: the engine's slots, a tenant's share of them and the
//! memory budget are per host. A queue's concurrency limit is the cluster's: claim rounds
//! take turns under an advisory lock and count every host's live claims of the queue.
//!
//! Leases are kept on the database's clock, whatever clock the engine schedules by (whether a
//! host is alive is a matter of real time) and whatever the hosts' own clocks say: each host
//! measures its clock's offset from the database's at every heartbeat and reads leases
//! through it ([`Shared::db_now`]), so clock skew between hosts never shortens or lengthens a
//! takeover.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use stepwise_core::clock::wall_ms;

use stepwise_core::clock::Millis;
use stepwise_core::picker::{self, ClaimPolicy, MemoryInUse, QueueHead, TenantLoad};
use stepwise_store::{Claimed, CommitStats, Lease, Occupancy, Placement, QueueId, StoreError};

use crate::cached::Cached;
use crate::tx::{db_ms, in_txn, ms};
use crate::{PgStore, io};

/// How long a claim lasts unless renewed: a killed host's runs are taken over by the others
/// at most this long (plus one claim round) after its last renewal.
pub const DEFAULT_LEASE_MS: u64 = 30_000;

/// How often a host renews its leases, as a share of the lease: a third, so two renewals
/// may fail (a slow database, a pause) before a live host loses a claim.
pub const RENEW_EVERY_MS: u64 = DEFAULT_LEASE_MS / 3;

/// How often the counters' deltas are folded.
const FOLD_EVERY: Duration = Duration::from_millis(500);

/// Claims and releases commit without waiting for the disk (on the `soft` connections): a
/// claim a crash of the database loses is a claim nobody holds (the attempt's writes, fenced
/// by it, are then refused), and a lost release is a lease that lapses. Nothing a run
/// records depends on them being durable, and the scheduler does not wait for an fsync per
/// claim round. A release waits at most this long for a claim round before the upkeep
/// writes it.
const RELEASE_FLUSH: Duration = Duration::from_millis(50);

/// A release not yet written: the run, when it may be due again, and the claim's token.
type Release = (String, Option<i64>, i64);

/// Writes `releases` of `holder`'s claims in one statement.
async fn write_releases(
    txn: &deadpool_postgres::Transaction<'_>,
    holder: &str,
    releases: &[Release],
) -> crate::tx::TxResult<()> {
    if releases.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = releases.iter().map(|(r, ..)| r.as_str()).collect();
    let holds: Vec<Option<i64>> = releases.iter().map(|(_, h, _)| *h).collect();
    let tokens: Vec<i64> = releases.iter().map(|(.., t)| *t).collect();
    txn.x(
        "UPDATE runs SET claimed_by = NULL, lease_until = NULL, claim_token = NULL,
                         hold_until = u.hold
         FROM unnest($1::text[], $2::bigint[], $4::bigint[]) AS u(id, hold, token)
         WHERE runs.id = u.id AND runs.claimed_by = $3 AND runs.claim_token = u.token",
        &[&ids, &holds, &holder, &tokens],
    )
    .await?;
    Ok(())
}

/// The holder a lease names: the host and the claim's token.
pub(crate) fn lease_holder(host: &str, token: i64) -> String {
    format!("{host}#{token}")
}

/// Whether a lease naming `holder` is the claim (`claimed_by`, `claim_token`) a run has.
pub(crate) fn lease_holds(holder: &str, claimed_by: Option<&str>, token: Option<i64>) -> bool {
    match (holder.rsplit_once('#'), claimed_by, token) {
        (Some((host, t)), Some(by), Some(token)) => host == by && t.parse() == Ok(token),
        _ => false,
    }
}

/// Key of the advisory lock claim rounds take turns under (the bytes of "claims!").
const CLAIM_LOCK: i64 = 0x0063_6c61_696d_7321;

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
    /// Each claim's token, by run.
    tokens: HashMap<String, i64>,
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
    /// Tenants whose settings this host changed since its last notification.
    pub settings_changed: Mutex<BTreeSet<String>>,
    /// When this host opened the store (wall clock).
    pub started_at: Millis,
    /// The database's clock less this host's, in milliseconds, as the last heartbeat
    /// measured it.
    pub(crate) clock_offset_ms: std::sync::atomic::AtomicI64,
    /// Connections that commit without waiting for the disk.
    pub soft: deadpool_postgres::Pool,
    /// Releases not yet written: (run, hold until), applied by the next claim round or
    /// within [`RELEASE_FLUSH`].
    releases: Mutex<Vec<Release>>,
    /// The next claim token (from a random start, so a second process with the same host id
    /// never hands out the same ones).
    next_token: std::sync::atomic::AtomicI64,
    /// Journal writes queued and not yet applied, by run.
    journal_pending: Mutex<HashMap<String, usize>>,
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
    pub fn new(
        holder: String,
        lease_ms: u64,
        config: tokio_postgres::Config,
        soft: deadpool_postgres::Pool,
    ) -> Self {
        Self {
            soft,
            releases: Mutex::default(),
            next_token: std::sync::atomic::AtomicI64::new(
                (uuid::Uuid::new_v4().as_u128() as i64 & 0x3fff_ffff_ffff_ffff).max(1),
            ),
            journal_pending: Mutex::default(),
            holder,
            config,
            waker: Mutex::default(),
            notifier: Arc::default(),
            notify_wanted: std::sync::atomic::AtomicBool::new(false),
            settings_changed: Mutex::default(),
            started_at: wall_ms(),
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
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

    /// Counts a journal write of `run` queued.
    pub fn journal_queued(&self, run: &str) {
        let mut pending = self
            .journal_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *pending.entry(run.to_owned()).or_default() += 1;
    }

    /// Counts a journal write of `run` applied (or failed).
    pub fn journal_done(&self, run: &str) {
        let mut pending = self
            .journal_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = pending.get_mut(run) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                pending.remove(run);
            }
        }
    }

    /// Whether journal writes of `run` are queued and not yet applied.
    pub fn journal_pending(&self, run: &str) -> bool {
        self.journal_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(run)
    }

    /// Whether this host released `run` without writing it yet: its lease no longer holds.
    pub fn releasing(&self, run: &str) -> bool {
        self.releases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(r, ..)| r == run)
    }

    /// Now on the database's clock (this host's clock corrected by the measured offset):
    /// the clock every lease is written and compared on.
    pub fn db_now(&self) -> Millis {
        let offset = self.clock_offset_ms.load(Ordering::Relaxed);
        let wall = i64::try_from(wall_ms()).unwrap_or(i64::MAX);
        u64::try_from(wall.saturating_add(offset)).unwrap_or(0)
    }

    /// Wakes this host's engine, if it registered a waker.
    pub fn wake(&self, why: stepwise_store::Wake) {
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(waker) = waker {
            waker(why);
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
        let wall = self.shared.db_now();
        let expires_at = wall.saturating_add(self.shared.lease_ms);
        let releases = self.take_releases();
        let claimed = in_txn!(soft self, |txn| {
            write_releases(&txn, &holder, &releases).await?;
            // Claim rounds take turns across hosts, so each counts the others' claims when it
            // holds a queue to its limit: a queue's concurrency is the whole cluster's.
            txn.x("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
                .await?;
            let running_rows = txn
                .q(
                    "SELECT tenant, queue, count(*) FROM runs
                     WHERE claimed_by IS NOT NULL AND lease_until >= $1
                     GROUP BY tenant, queue",
                    &[&db_ms(wall)],
                )
                .await?;
            let running_in: HashMap<(String, String), usize> = running_rows
                .iter()
                .map(|r| {
                    let n: i64 = r.get(2);
                    ((r.get(0), r.get(1)), usize::try_from(n).unwrap_or(usize::MAX))
                })
                .collect();
            let per_queue = MAX_CANDIDATES_PER_QUEUE.min(i64::try_from(room).unwrap_or(i64::MAX));
            // The queues with runs in the ready set, found by skipping through the ready
            // index one queue at a time, then each queue's priorities the same way (a probe
            // per queue and priority, however many runs wait), then for each priority its
            // runs due now, from the index range that ends at `now`: runs not yet due (the
            // sleepers, the backoffs) are never read.
            let rows = txn
                .q(
                    "WITH RECURSIVE q AS (
                         (SELECT tenant, queue FROM runs
                          WHERE ready_at IS NOT NULL AND set_aside IS NULL
                          ORDER BY tenant, queue LIMIT 1)
                         UNION ALL
                         SELECT n.tenant, n.queue FROM q CROSS JOIN LATERAL (
                             SELECT tenant, queue FROM runs
                             WHERE ready_at IS NOT NULL AND set_aside IS NULL
                               AND (tenant, queue) > (q.tenant, q.queue)
                             ORDER BY tenant, queue LIMIT 1
                         ) n
                     ),
                     p AS (
                         SELECT q.tenant, q.queue, f.priority FROM q CROSS JOIN LATERAL (
                             SELECT priority FROM runs
                             WHERE tenant = q.tenant AND queue = q.queue
                               AND ready_at IS NOT NULL AND set_aside IS NULL
                             ORDER BY priority DESC LIMIT 1
                         ) f
                         UNION ALL
                         SELECT p.tenant, p.queue, n.priority FROM p CROSS JOIN LATERAL (
                             SELECT priority FROM runs
                             WHERE tenant = p.tenant AND queue = p.queue
                               AND ready_at IS NOT NULL AND set_aside IS NULL
                               AND priority < p.priority
                             ORDER BY priority DESC LIMIT 1
                         ) n
                     )
                     SELECT r.id, r.tenant, r.queue, r.priority,
                            GREATEST(r.ready_at, COALESCE(r.hold_until, 0)), r.memory_bytes,
                            r.claimed_by IS NOT NULL
                     FROM p CROSS JOIN LATERAL (
                         SELECT id, tenant, queue, priority, ready_at, hold_until,
                                memory_bytes, claimed_by
                         FROM runs
                         WHERE runs.tenant = p.tenant AND runs.queue = p.queue
                           AND runs.priority = p.priority
                           AND ready_at IS NOT NULL AND set_aside IS NULL
                           AND ready_at <= $1
                           AND (hold_until IS NULL OR hold_until <= $1)
                           AND (claimed_by IS NULL OR lease_until < $2)
                         ORDER BY ready_at
                         LIMIT $3
                         FOR UPDATE SKIP LOCKED
                     ) r",
                    &[&db_ms(now), &db_ms(wall), &per_queue],
                )
                .await?;
            let mut by_tenant: BTreeMap<String, BTreeMap<String, VecDeque<Candidate>>> =
                BTreeMap::new();
            let mine: std::collections::HashSet<String> =
                self.shared.local().claimed.keys().cloned().collect();
            for r in &rows {
                let id: String = r.get(0);
                // A run of this host's own whose lease lapsed (renewals failed) is still
                // executing here: never claimed a second time by the same host.
                if mine.contains(&id) {
                    continue;
                }
                let tenant: String = r.get(1);
                let queue: String = r.get(2);
                by_tenant
                    .entry(tenant)
                    .or_default()
                    .entry(queue)
                    .or_default()
                    .push_back(Candidate {
                        id,
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
            let picked = self.pick(by_tenant, running_in, room, policy);
            tracing::debug!(room, candidates = rows.len(), picked = picked.len(), "claim round");
            let ids: Vec<String> = picked.iter().map(|(c, _)| c.id.clone()).collect();
            let tokens: Vec<i64> = ids
                .iter()
                .map(|_| self.shared.next_token.fetch_add(1, Ordering::Relaxed))
                .collect();
            if !ids.is_empty() {
                txn.x(
                    "UPDATE runs SET claimed_by = $1, lease_until = $2, claim_token = u.token
                     FROM unnest($3::text[], $4::bigint[]) AS u(id, token)
                     WHERE runs.id = u.id",
                    &[&holder, &db_ms(expires_at), &ids, &tokens],
                )
                .await?;
            }
            Ok(picked.into_iter().zip(tokens).collect::<Vec<_>>())
        });
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                // Not written: kept for the next round.
                self.shared
                    .releases
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(releases);
                return Err(e);
            }
        };
        let mut local = self.shared.local();
        let mut out = Vec::with_capacity(claimed.len());
        for ((c, placement), token) in claimed {
            if c.taken_over {
                self.shared.takeovers.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(run = %c.id, "run taken over from a host whose lease lapsed");
            }
            local.memory = local.memory.saturating_add(placement.memory_bytes);
            local.claimed.insert(c.id.clone(), placement.clone());
            local.tokens.insert(c.id.clone(), token);
            out.push(Claimed {
                run: c.id,
                placement,
                lease: Lease {
                    holder: lease_holder(&holder, token),
                    expires_at,
                },
            });
        }
        Ok(out)
    }

    /// The candidates the picker chooses, in order, with their placements, counting the
    /// attempts running (a tenant's on this host, whose slots they are; a queue's on every
    /// host, `running_in`) and those chosen before them.
    fn pick(
        &self,
        mut by_tenant: BTreeMap<String, BTreeMap<String, VecDeque<Candidate>>>,
        mut running_in: HashMap<(String, String), usize>,
        room: usize,
        policy: &(dyn ClaimPolicy + Sync),
    ) -> Vec<(Candidate, Placement)> {
        let local = self.shared.local();
        let mut running: HashMap<String, usize> = HashMap::new();
        for t in by_tenant.keys() {
            running.insert(t.clone(), local.running(t));
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
        let token = {
            let mut local = self.shared.local();
            if let Some(p) = local.claimed.remove(run) {
                local.memory = local.memory.saturating_sub(p.memory_bytes);
                let served = local.served_ms.entry(p.queue.tenant.clone()).or_default();
                *served = served.saturating_add(served_ms);
            }
            local.tokens.remove(run)
        };
        // Not this host's claim (any more): nothing to release.
        let Some(token) = token else {
            return Ok(());
        };
        // Written by the next claim round (which follows at once) or the upkeep, many at a
        // time: a release need not be durable (a lost one is a lease that lapses).
        self.shared
            .releases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((run.to_owned(), hold_until.map(db_ms), token));
        Ok(())
    }

    /// Takes the releases not yet written.
    fn take_releases(&self) -> Vec<Release> {
        std::mem::take(
            &mut *self
                .shared
                .releases
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Writes the releases not yet written, before a read that must see them.
    pub(crate) async fn flush_releases(&self) -> Result<(), StoreError> {
        let releases = self.take_releases();
        if releases.is_empty() {
            return Ok(());
        }
        let holder = self.shared.holder.clone();
        let written = in_txn!(soft self, |txn| {
            write_releases(&txn, &holder, &releases).await?;
            Ok(())
        });
        if written.is_err() {
            // Tried again with the next flush; meanwhile the runs look claimed.
            self.shared
                .releases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(releases);
        }
        written
    }

    /// Makes a waiting, unclaimed run that a release held back due at its stored time.
    pub(crate) async fn lift_hold(&self, run: &str) -> Result<(), StoreError> {
        self.flush_releases().await?;
        self.client()
            .await?
            .x(
                "UPDATE runs SET hold_until = NULL WHERE id = $1 AND claimed_by IS NULL",
                &[&run],
            )
            .await
            .map_err(io)?;
        Ok(())
    }

    /// Whether a live lease holds `run`.
    pub(crate) async fn is_claimed(&self, run: &str) -> Result<bool, StoreError> {
        self.flush_releases().await?;
        let row = self
            .client()
            .await?
            .q_opt(
                "SELECT claimed_by IS NOT NULL AND lease_until >= $2 FROM runs WHERE id = $1",
                &[&run, &db_ms(self.shared.db_now())],
            )
            .await
            .map_err(io)?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    /// When the next unclaimed run not due at the last claim round becomes due.
    pub(crate) async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        self.flush_releases().await?;
        let last = db_ms(self.shared.last_claim.load(Ordering::Relaxed));
        let row = self
            .client()
            .await?
            .q1(
                "SELECT LEAST(
                     (SELECT GREATEST(ready_at, COALESCE(hold_until, 0)) FROM runs
                      WHERE ready_at > $1 AND set_aside IS NULL
                        AND (claimed_by IS NULL OR lease_until < $2)
                      ORDER BY ready_at LIMIT 1),
                     (SELECT min(hold_until) FROM runs
                      WHERE hold_until > $1 AND ready_at IS NOT NULL AND set_aside IS NULL
                        AND (claimed_by IS NULL OR lease_until < $2)))",
                &[&last, &db_ms(self.shared.db_now())],
            )
            .await
            .map_err(io)?;
        Ok(row.get::<_, Option<i64>>(0).map(ms))
    }

    /// Whether any unclaimed run waits.
    pub(crate) async fn has_unclaimed(&self) -> Result<bool, StoreError> {
        self.flush_releases().await?;
        let row = self
            .client()
            .await?
            .q1(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE ready_at IS NOT NULL
                                AND set_aside IS NULL
                                AND (claimed_by IS NULL OR lease_until < $1))",
                &[&db_ms(self.shared.db_now())],
            )
            .await
            .map_err(io)?;
        Ok(row.get(0))
    }

    /// What this host's claims hold, and how many runs wait unclaimed: from the counters
    /// (runs not final) less the live claims, so it reads no runs but the claimed ones.
    pub(crate) async fn occupancy(&self) -> Result<Occupancy, StoreError> {
        self.flush_releases().await?;
        let row = self
            .client()
            .await?
            .q1(
                "SELECT GREATEST(
                     (SELECT COALESCE(sum(n), 0) FROM counters
                      WHERE counter IN ('queued', 'retrying', 'sleeping', 'waiting'))::bigint
                     - (SELECT count(*) FROM runs WHERE claimed_by IS NOT NULL
                        AND lease_until >= $1), 0)",
                &[&db_ms(self.shared.db_now())],
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
        self.flush_releases().await?;
        let rows = self
            .client()
            .await?
            .q(
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
        let client = self.client().await?;
        // The offset of this host's clock from the database's, half the round trip taken as
        // the moment the database read its clock.
        let before = wall_ms();
        let row = client
            .q1(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
                &[],
            )
            .await
            .map_err(io)?;
        let after = wall_ms();
        let db: i64 = row.get(0);
        let mid = i64::try_from(before / 2 + after / 2).unwrap_or(i64::MAX);
        self.shared
            .clock_offset_ms
            .store(db.saturating_sub(mid), Ordering::Relaxed);
        let now = db_ms(self.shared.db_now());
        client
            .x(
                "INSERT INTO hosts (id, started_at, last_seen) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET last_seen = EXCLUDED.last_seen",
                &[&self.shared.holder, &db_ms(self.shared.started_at), &now],
            )
            .await
            .map_err(io)?;
        client
            .x(
                "DELETE FROM hosts WHERE last_seen < $1",
                &[&now.saturating_sub(86_400_000)],
            )
            .await
            .map_err(io)?;
        Ok(())
    }

    /// The hosts whose last renewal is younger than a lease, with their claims.
    pub(crate) async fn hosts(&self) -> Result<Vec<stepwise_store::HostInfo>, StoreError> {
        let since = db_ms(self.shared.db_now().saturating_sub(self.shared.lease_ms));
        let rows = self
            .client()
            .await?
            .q(
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
        let (ids, tokens): (Vec<String>, Vec<i64>) = self
            .shared
            .local()
            .tokens
            .iter()
            .map(|(id, t)| (id.clone(), *t))
            .unzip();
        if ids.is_empty() {
            return Ok(());
        }
        let until = db_ms(self.shared.db_now().saturating_add(self.shared.lease_ms));
        let rows = self
            .client()
            .await?
            .q(
                "UPDATE runs SET lease_until = $1
                 FROM unnest($3::text[], $4::bigint[]) AS u(id, token)
                 WHERE runs.id = u.id AND runs.claimed_by = $2 AND runs.claim_token = u.token
                 RETURNING runs.id",
                &[&until, &self.shared.holder, &ids, &tokens],
            )
            .await
            .map_err(io)?;
        let kept: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
        let missing: Vec<&String> = ids.iter().filter(|id| !kept.contains(*id)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Only a run claimed again since (by another host, or another process with this
        // host's id) is lost; one whose claim a settlement cleared is released by its
        // attempt as usual.
        let taken: BTreeSet<String> = self
            .client()
            .await?
            .q(
                "SELECT id FROM runs WHERE id = ANY($1) AND claimed_by IS NOT NULL",
                &[&missing],
            )
            .await
            .map_err(io)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut local = self.shared.local();
        for id in ids.iter().filter(|id| taken.contains(*id)) {
            local.tokens.remove(id);
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
        let renew_every = Duration::from_millis((self.shared.lease_ms / 3).max(1));
        // Renewal has a task of its own, so nothing else the host does late (a slow fold)
        // can make its leases lapse.
        self.every(renew_every, |store| async move {
            // The heartbeat failing must not stop the renewal.
            if let Err(e) = store.heartbeat().await {
                tracing::warn!(error = %e, "this host's heartbeat could not be written");
            }
            if let Err(e) = store.renew_leases().await {
                tracing::error!(error = %e, "leases could not be renewed");
            }
            // A lease of a dead host may have lapsed: the scheduler looks again.
            store.shared.wake(stepwise_store::Wake::Work);
        });
        self.every(RELEASE_FLUSH, |store| async move {
            if let Err(e) = store.flush_releases().await {
                tracing::warn!(error = %e, "releases could not be written; tried again");
            }
        });
        self.every(FOLD_EVERY, |store| async move {
            if let Err(e) = store.fold_counters().await {
                tracing::warn!(error = %e, "counters could not be folded");
            }
        });
    }

    /// Runs `work` every `period` on a task of its own, until every clone of this store is
    /// dropped.
    fn every<F, Fut>(&self, period: Duration, work: F)
    where
        F: Fn(PgStore) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let weak = Arc::downgrade(&self.shared);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { break };
                work(PgStore {
                    pool: pool.clone(),
                    shared,
                    journal: None,
                })
                .await;
            }
        });
    }
}
