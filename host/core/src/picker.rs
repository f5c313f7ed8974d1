//! Who gets the next attempt slot: weighted fair sharing across tenants, then priority and
//! due time within the chosen tenant. Pure functions over what a backend's ready sets hold
//! now (per tenant: its running attempts and time served; per queue: its best due run), so
//! every backend decides the same way and the rule is tested here, apart from any storage.
//!
//! The rule: each free slot goes to the tenant with the fewest running attempts per unit of
//! weight (ties: the least attempt time served per unit of weight), among tenants below their
//! own cap that have a due run. Within that tenant the best head of its queues wins — higher
//! priority, then earlier due time — skipping queues at their limit and runs whose memory
//! cap does not fit the host's budget. Priority therefore never crosses tenants, and a
//! tenant's backlog of any size costs another tenant nothing but its share.

use crate::clock::Millis;

/// The limits a claim respects, chosen by the engine.
pub trait ClaimPolicy {
    /// Most attempts of `tenant` executing at once (at least 1).
    fn tenant_limit(&self, tenant: &str) -> usize;
    /// `tenant`'s share weight (at least 1).
    fn tenant_weight(&self, tenant: &str) -> u64;
    /// Most attempts of `queue` executing at once; `None` = no limit of its own.
    fn queue_limit(&self, tenant: &str, queue: &str) -> Option<usize>;
    /// Most memory (sum of the running attempts' caps) in use at once.
    fn memory_budget(&self) -> u64;
}

/// A tenant with due runs, as the picker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLoad<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// Its attempts executing now.
    pub running: usize,
    /// Milliseconds of attempts it was served so far.
    pub served_ms: u64,
}

/// The best due run of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueHead<'a, K> {
    /// The queue.
    pub queue: &'a str,
    /// The queue's attempts executing now.
    pub running: usize,
    /// The run's priority (higher first).
    pub priority: i32,
    /// When the run became due.
    pub due_at: Millis,
    /// The memory cap of its attempts.
    pub memory_bytes: u64,
    /// The backend's handle on the run.
    pub key: K,
}

/// Memory held by the attempts executing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryInUse {
    /// Sum of their memory caps.
    pub bytes: u64,
    /// Whether nothing runs at all: a run larger than the whole budget then runs, alone.
    pub idle: bool,
}

/// The tenant the next slot goes to, if any tenant may take one.
pub fn pick_tenant<'a>(
    tenants: impl IntoIterator<Item = TenantLoad<'a>>,
    policy: &dyn ClaimPolicy,
) -> Option<&'a str> {
    let mut best: Option<(&str, (u128, u128))> = None;
    for t in tenants {
        if t.running >= policy.tenant_limit(t.tenant).max(1) {
            continue;
        }
        let weight = u128::from(policy.tenant_weight(t.tenant).max(1));
        // Compared as fractions scaled by a common factor, so no float is involved.
        let load = (
            t.running as u128 * 1_000_000 / weight,
            u128::from(t.served_ms) * 1_000 / weight,
        );
        if best.is_none_or(|(_, b)| load < b) {
            best = Some((t.tenant, load));
        }
    }
    best.map(|(tenant, _)| tenant)
}

/// The run `tenant` starts next among its queues' heads; `None`: none can start now.
pub fn pick_head<'a, K>(
    tenant: &str,
    heads: impl IntoIterator<Item = QueueHead<'a, K>>,
    policy: &dyn ClaimPolicy,
    memory: MemoryInUse,
) -> Option<K> {
    let mut best: Option<QueueHead<'a, K>> = None;
    for head in heads {
        if policy
            .queue_limit(tenant, head.queue)
            .is_some_and(|limit| head.running >= limit.max(1))
        {
            continue;
        }
        let fits =
            memory.bytes.saturating_add(head.memory_bytes) <= policy.memory_budget() || memory.idle;
        if !fits {
            continue;
        }
        let better = best.as_ref().is_none_or(|b| {
            (std::cmp::Reverse(head.priority), head.due_at)
                < (std::cmp::Reverse(b.priority), b.due_at)
        });
        if better {
            best = Some(head);
        }
    }
    best.map(|h| h.key)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Limits {
        tenant: HashMap<&'static str, usize>,
        weight: HashMap<&'static str, u64>,
        queue: HashMap<&'static str, usize>,
        memory: Option<u64>,
    }

    impl ClaimPolicy for Limits {
        fn tenant_limit(&self, tenant: &str) -> usize {
            self.tenant.get(tenant).copied().unwrap_or(usize::MAX)
        }
        fn tenant_weight(&self, tenant: &str) -> u64 {
            self.weight.get(tenant).copied().unwrap_or(1)
        }
        fn queue_limit(&self, _: &str, queue: &str) -> Option<usize> {
            self.queue.get(queue).copied()
        }
        fn memory_budget(&self) -> u64 {
            self.memory.unwrap_or(u64::MAX)
        }
    }

    fn load(tenant: &str, running: usize, served_ms: u64) -> TenantLoad<'_> {
        TenantLoad {
            tenant,
            running,
            served_ms,
        }
    }

    fn head(queue: &str, priority: i32, due_at: Millis) -> QueueHead<'_, &str> {
        QueueHead {
            queue,
            running: 0,
            priority,
            due_at,
            memory_bytes: 1,
            key: queue,
        }
    }

    const FREE: MemoryInUse = MemoryInUse {
        bytes: 0,
        idle: true,
    };

    #[test]
    fn the_least_loaded_tenant_wins_then_the_least_served() {
        let limits = Limits::default();
        let tenants = [load("a", 3, 0), load("b", 1, 9_000), load("c", 1, 10)];
        assert_eq!(pick_tenant(tenants, &limits), Some("c"));
        assert_eq!(
            pick_tenant([load("a", 2, 0), load("b", 3, 0)], &limits),
            Some("a")
        );
        assert_eq!(pick_tenant([], &limits), None);
    }

    #[test]
    fn weights_scale_the_share_and_caps_exclude_a_tenant() {
        let limits = Limits {
            weight: HashMap::from([("heavy", 3)]),
            tenant: HashMap::from([("capped", 2)]),
            ..Limits::default()
        };
        // 5 running at weight 3 is less load than 2 at weight 1.
        assert_eq!(
            pick_tenant([load("light", 2, 0), load("heavy", 5, 0)], &limits),
            Some("heavy")
        );
        assert_eq!(
            pick_tenant([load("capped", 2, 0), load("light", 9, 0)], &limits),
            Some("light")
        );
        assert_eq!(pick_tenant([load("capped", 2, 0)], &limits), None);
    }

    #[test]
    fn a_zero_cap_or_weight_counts_as_one() {
        let limits = Limits {
            tenant: HashMap::from([("t", 0)]),
            weight: HashMap::from([("t", 0)]),
            ..Limits::default()
        };
        assert_eq!(pick_tenant([load("t", 0, u64::MAX)], &limits), Some("t"));
        assert_eq!(pick_tenant([load("t", 1, 0)], &limits), None);
    }

    #[test]
    fn within_a_tenant_priority_then_due_time_wins() {
        let limits = Limits::default();
        let heads = [
            head("late", 0, 5),
            head("early", 0, 1),
            head("urgent", 7, 9),
        ];
        assert_eq!(pick_head("t", heads, &limits, FREE), Some("urgent"));
        let heads = [head("late", 0, 5), head("early", 0, 1)];
        assert_eq!(pick_head("t", heads, &limits, FREE), Some("early"));
    }

    #[test]
    fn queue_limits_and_the_memory_budget_skip_a_head() {
        let limits = Limits {
            queue: HashMap::from([("full", 1)]),
            memory: Some(100),
            ..Limits::default()
        };
        let full = QueueHead {
            running: 1,
            ..head("full", 9, 0)
        };
        let big = QueueHead {
            memory_bytes: 80,
            ..head("big", 5, 0)
        };
        let busy = MemoryInUse {
            bytes: 50,
            idle: false,
        };
        assert_eq!(
            pick_head("t", [full, big, head("small", 0, 0)], &limits, busy),
            Some("small")
        );
        assert_eq!(pick_head("t", [full, big], &limits, busy), None);
        // Bigger than the whole budget: runs when nothing else does.
        let huge = QueueHead {
            memory_bytes: 500,
            ..head("huge", 0, 0)
        };
        assert_eq!(pick_head("t", [huge], &limits, FREE), Some("huge"));
    }
}
