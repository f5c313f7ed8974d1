//! The backend against a real PostgreSQL server (see [`crate::testing`]): migrations applied
//! once, concurrently and never over a newer schema, and the settings with the semantics the
//! storage interface gives them.

use stepwise_core::egress::{RuleSpec, TenantEgress};
use stepwise_core::schedule::{ScheduleRecord, ScheduleSpec};
use stepwise_core::secret::{Sealed, SecretRecord};
use stepwise_store::{ModuleRecord, QueueSettings, StoreError, TenantRecord};

use crate::{PgStore, migrate, testing};

const T0: u64 = 1_767_225_600_000;

async fn fresh() -> (PgStore, String) {
    let url = testing::server().fresh_database().await;
    (PgStore::open(&url, 4).await.expect("open"), url)
}

async fn schema_versions(store: &PgStore) -> Vec<i32> {
    store
        .client()
        .await
        .unwrap()
        .query("SELECT version FROM stepwise_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_even_when_hosts_open_together() {
    let url = testing::server().fresh_database().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::open(&url, 2).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().expect("every host opens"));
    }
    let expected: Vec<i32> = (1..=migrate::LATEST).collect();
    assert_eq!(schema_versions(&stores[0]).await, expected);
    // Opening again applies nothing.
    let mut client = stores[0].client().await.unwrap();
    assert!(migrate::migrate(&mut client).await.unwrap().is_empty());
    assert_eq!(schema_versions(&stores[0]).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_a_newer_binary_is_refused_and_left_alone() {
    let (store, url) = fresh().await;
    let tenant = TenantRecord {
        name: "t".into(),
        created_at: T0,
    };
    store.create_tenant(&tenant, "h").await.unwrap();
    let newer = migrate::LATEST + 1;
    store
        .client()
        .await
        .unwrap()
        .execute(
            "INSERT INTO stepwise_schema (version, description) VALUES ($1, 'from the future')",
            &[&newer],
        )
        .await
        .unwrap();
    match PgStore::open(&url, 2).await {
        Err(StoreError::Schema { found, expected }) => {
            assert_eq!(found, newer as u64);
            assert_eq!(expected, migrate::LATEST as u64);
        }
        other => panic!("a newer schema was not refused: {other:?}"),
    }
    let err = PgStore::open(&url, 2).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("schema version {newer}"))
            && err.contains(&format!("supports {}", migrate::LATEST)),
        "{err}"
    );
    assert_eq!(store.tenant("t").await.unwrap(), Some(tenant));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_or_an_absent_server_is_a_clear_error() {
    let err = PgStore::open("postgres://u:pw@[::1", 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(
        !err.to_string().contains("pw"),
        "the password is shown: {err}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PgStore::open(&format!("postgres://u:pw@127.0.0.1:{port}/db"), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("postgres://u@127.0.0.1:{port}/db")) && !text.contains("pw"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_round_trip_per_tenant() {
    let (store, _) = fresh().await;
    let tenant = TenantRecord {
        name: "t".into(),
        created_at: T0,
    };
    store.create_tenant(&tenant, "hash-of-token").await.unwrap();
    assert_eq!(store.tenant("t").await.unwrap(), Some(tenant));
    assert_eq!(store.tenant("u").await.unwrap(), None);
    assert_eq!(
        store
            .tenant_for_token("hash-of-token")
            .await
            .unwrap()
            .as_deref(),
        Some("t")
    );
    assert_eq!(store.tenant_for_token("other").await.unwrap(), None);

    store.put_module("abc", b"component").await.unwrap();
    store.put_module("abc", b"component").await.unwrap();
    assert_eq!(
        store.module("abc").await.unwrap().as_deref(),
        Some(&b"component"[..])
    );
    assert_eq!(store.module("nope").await.unwrap(), None);
    let job = |name: &str| stepwise_core::JobSpec {
        name: name.into(),
        description: String::new(),
        policy: Default::default(),
        hosts: Vec::new(),
    };
    let module = ModuleRecord {
        hash: "abc".into(),
        size: 9,
        jobs: vec![job("job"), job("other")],
        deployed_at: T0,
    };
    store.deploy_module("t", &module).await.unwrap();
    assert_eq!(store.tenant_modules("t").await.unwrap(), vec![module]);
    assert_eq!(
        store.job_route("t", "job").await.unwrap().as_deref(),
        Some("abc")
    );
    assert!(store.tenant_has_module("t", "abc").await.unwrap());
    assert!(!store.tenant_has_module("u", "abc").await.unwrap());
    assert_eq!(store.job_route("u", "job").await.unwrap(), None);
    // A newer deployment offering `job` takes its route; `other` stays where it was.
    let newer = ModuleRecord {
        hash: "def".into(),
        size: 3,
        jobs: vec![job("job")],
        deployed_at: T0 + 1,
    };
    store.deploy_module("t", &newer).await.unwrap();
    assert_eq!(
        store.job_route("t", "job").await.unwrap().as_deref(),
        Some("def")
    );
    assert_eq!(
        store.job_route("t", "other").await.unwrap().as_deref(),
        Some("abc")
    );
    assert_eq!(store.tenant_modules("t").await.unwrap().len(), 2);

    let settings = QueueSettings {
        concurrency: Some(3),
        rate_limit: Some(stepwise_core::rate::RateLimit {
            max: 5,
            per_ms: 1_000,
        }),
    };
    store.put_queue("t", "q", &settings).await.unwrap();
    store
        .put_queue("a", "q", &QueueSettings::default())
        .await
        .unwrap();
    assert_eq!(
        store.queues().await.unwrap(),
        vec![
            ("a".to_owned(), "q".to_owned(), QueueSettings::default()),
            ("t".to_owned(), "q".to_owned(), settings)
        ]
    );

    let egress = TenantEgress {
        rules: vec![RuleSpec {
            pattern: "https://api.example.com:443".into(),
            methods: vec!["POST".into()],
        }],
        limits: None,
    };
    store.put_egress("t", &egress).await.unwrap();
    assert_eq!(store.egress("t").await.unwrap(), egress);
    assert_eq!(store.egress("u").await.unwrap(), TenantEgress::default());
    assert_eq!(
        store.egress_all().await.unwrap(),
        vec![("t".to_owned(), egress)]
    );

    let secret = |name: &str| SecretRecord {
        name: name.into(),
        sealed: Sealed {
            key_id: "k1".into(),
            nonce: "00".into(),
            ciphertext: "ff".into(),
        },
        hosts: vec![],
        readable: false,
        updated_at: T0,
    };
    store
        .put_secrets(&[
            ("t".into(), secret("KEY")),
            ("t".into(), secret("A")),
            ("u".into(), secret("KEY")),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.secrets_of("t").await.unwrap(),
        vec![secret("A"), secret("KEY")]
    );
    assert_eq!(
        store.secrets_all().await.unwrap(),
        vec![
            ("t".to_owned(), vec![secret("A"), secret("KEY")]),
            ("u".to_owned(), vec![secret("KEY")])
        ]
    );
    store.remove_secret("t", "KEY").await.unwrap();
    assert_eq!(store.secrets_of("t").await.unwrap(), vec![secret("A")]);
    // Names sort by their bytes, as in the embedded store, whatever the database's locale.
    store
        .put_secrets(&[
            ("t".into(), secret("a_key")),
            ("t".into(), secret("API_KEY")),
            ("t".into(), secret("B-2")),
            ("t".into(), secret("B1")),
        ])
        .await
        .unwrap();
    let names: Vec<String> = store
        .secrets_of("t")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["A", "API_KEY", "B-2", "B1", "a_key"]);
    assert_eq!(store.secrets_of("u").await.unwrap(), vec![secret("KEY")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_created_once_and_written_over_their_version() {
    let (store, _) = fresh().await;
    let record = |name: &str| ScheduleRecord {
        name: name.to_owned(),
        version: 0,
        spec: ScheduleSpec {
            cron: "0 * * * *".into(),
            timezone: "UTC".into(),
            job: "j".into(),
            queue: "q".into(),
            payload: serde_json::json!({"n": u64::MAX, "nul": "a\u{0}b"}),
            overrides: Default::default(),
            priority: 0,
            overlap: Default::default(),
            catch_up: Default::default(),
            catch_up_limit: 10,
            paused: false,
        },
        next_fire_at: Some(T0),
        recent: Vec::new(),
        fired: 0,
        skipped: 0,
        created_at: T0,
        updated_at: T0,
    };
    let v1 = store.put_schedule("t", &record("a"), None).await.unwrap();
    assert_eq!(v1, 1);
    assert!(matches!(
        store.put_schedule("t", &record("a"), None).await,
        Err(StoreError::Conflict { found: Some(1), .. })
    ));
    store.put_schedule("u", &record("a"), None).await.unwrap();
    let mut changed = store.schedule("t", "a").await.unwrap().unwrap();
    assert_eq!(changed.version, 1);
    assert_eq!(
        changed.spec.payload,
        serde_json::json!({"n": u64::MAX, "nul": "a\u{0}b"}),
        "a payload holding NUL and a 64-bit integer comes back as it went in"
    );
    changed.next_fire_at = Some(T0 + 1);
    let v2 = store.put_schedule("t", &changed, Some(v1)).await.unwrap();
    assert_eq!(v2, 2);
    assert!(matches!(
        store.put_schedule("t", &changed, Some(v1)).await,
        Err(StoreError::Conflict {
            expected: 1,
            found: Some(2),
            ..
        })
    ));
    assert!(matches!(
        store.put_schedule("t", &record("absent"), Some(1)).await,
        Err(StoreError::Conflict { found: None, .. })
    ));
    assert_eq!(
        store
            .schedule("t", "a")
            .await
            .unwrap()
            .unwrap()
            .next_fire_at,
        Some(T0 + 1)
    );
    store.put_schedule("t", &record("b"), None).await.unwrap();
    let names: Vec<String> = store
        .schedules_of("t")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(store.all_schedules().await.unwrap().len(), 3);
    assert!(store.remove_schedule("t", "a").await.unwrap());
    assert!(!store.remove_schedule("t", "a").await.unwrap());
    assert!(store.schedule("t", "a").await.unwrap().is_none());
}

/// Two hosts on one database: a claim whose lease lapsed (its host stalled) is taken over,
/// and from then on every write the first host makes under its old lease is refused —
/// journal and settlement alike — logged and counted, while the new holder's go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_claim_is_taken_over_and_the_old_holders_writes_are_refused() {
    use std::sync::Arc;
    use stepwise_core::model::{EventKind, TimelineEntry};
    use stepwise_store::conformance::{Unlimited, create, run};
    use stepwise_store::{JournalWrites, RunWrite, Store};

    let url = testing::server().fresh_database().await;
    let a = Arc::new(PgStore::open(&url, 2).await.expect("host a"));
    let b = Arc::new(PgStore::open(&url, 2).await.expect("host b"));
    assert_ne!(a.host_id(), b.host_id());
    let stored = create(&*a, run("r", "t", "q")).await;
    let now = crate::claims::wall_ms();
    let claimed = Store::claim_due(&*a, now, 10, &Unlimited).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let lease = claimed[0].lease.clone();
    assert!(
        lease.holder.starts_with(&format!("{}#", a.host_id())),
        "{lease:?}"
    );
    assert!(
        Store::claim_due(&*b, now, 10, &Unlimited)
            .await
            .unwrap()
            .is_empty()
    );

    // Host a stalls past its lease (made so here, rather than by waiting).
    a.client()
        .await
        .unwrap()
        .execute("UPDATE runs SET lease_until = 0 WHERE id = 'r'", &[])
        .await
        .unwrap();
    let taken = Store::claim_due(&*b, now, 10, &Unlimited).await.unwrap();
    assert_eq!(taken.len(), 1, "the lapsed claim is taken over");
    assert!(
        taken[0]
            .lease
            .holder
            .starts_with(&format!("{}#", b.host_id()))
    );
    assert_eq!(b.lease_stats().takeovers, 1);

    let entry = TimelineEntry {
        at: now,
        kind: EventKind::AttemptStarted,
        attempt: Some(1),
        step: None,
        detail: String::new(),
        http: None,
    };
    let journal = |lease: &stepwise_store::Lease| JournalWrites {
        timeline: vec![entry.clone()],
        lease: Some(lease.clone()),
        ..JournalWrites::default()
    };
    assert!(matches!(
        a.record_step("r", journal(&lease)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let settle = RunWrite {
        lease: Some(lease.clone()),
        ..RunWrite::new(stored.clone(), JournalWrites::default())
    };
    assert!(matches!(
        Store::write_runs(&*a, vec![settle]).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(a.lease_stats().writes_refused, 2);
    // Renewing, host a finds the claim gone and lets it go.
    a.renew_leases().await.unwrap();
    assert_eq!(a.lease_stats().leases_lost, 1);
    assert_eq!(Store::occupancy(&*a).await.unwrap().running, 0);

    // The new holder writes as it should.
    b.record_step("r", journal(&taken[0].lease)).await.unwrap();
    let settle = RunWrite {
        lease: Some(taken[0].lease.clone()),
        ..RunWrite::new(stored, JournalWrites::default())
    };
    assert_eq!(Store::write_runs(&*b, vec![settle]).await.unwrap(), vec![2]);
    let (timeline, _) = b.timeline_page("r", 0, 10).await.unwrap();
    assert_eq!(
        timeline.len(),
        2,
        "the creation and the new holder's start only"
    );
    let hosts = Store::hosts(&*a).await.unwrap();
    let ids: Vec<&str> = hosts.iter().map(|h| h.id.as_str()).collect();
    assert!(
        ids.contains(&a.host_id()) && ids.contains(&b.host_id()),
        "{ids:?}"
    );
    let held: u64 = hosts
        .iter()
        .filter(|h| h.id == b.host_id())
        .map(|h| h.claims)
        .sum();
    assert_eq!(held, 1);
}

/// Two processes started with one host id (a configuration mistake) still fence each other:
/// every claim has a token of its own, and a write names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_two_processes_with_one_host_id_fence_each_other() {
    use std::sync::Arc;
    use stepwise_store::conformance::{Unlimited, create, run};
    use stepwise_store::{JournalWrites, RunWrite, Store};

    let url = testing::server().fresh_database().await;
    let options = || crate::PgOptions {
        host_id: "worker-1".into(),
        ..crate::PgOptions::new(2)
    };
    let a = Arc::new(PgStore::open_with(&url, options()).await.expect("first"));
    let b = Arc::new(PgStore::open_with(&url, options()).await.expect("second"));
    let stored = create(&*a, run("r", "t", "q")).await;
    let now = crate::claims::wall_ms();
    let first = Store::claim_due(&*a, now, 1, &Unlimited).await.unwrap();
    a.client()
        .await
        .unwrap()
        .execute("UPDATE runs SET lease_until = 0 WHERE id = 'r'", &[])
        .await
        .unwrap();
    let second = Store::claim_due(&*b, now, 1, &Unlimited).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].lease.holder, second[0].lease.holder);
    let under = |lease: &stepwise_store::Lease| RunWrite {
        lease: Some(lease.clone()),
        ..RunWrite::new(stored.clone(), JournalWrites::default())
    };
    assert!(matches!(
        Store::write_runs(&*a, vec![under(&first[0].lease)]).await,
        Err(StoreError::LeaseLost { .. })
    ));
    // The first process's release leaves the second's claim alone.
    Store::release(&*a, "r", 0, None).await.unwrap();
    assert!(Store::is_claimed(&*a, "r").await.unwrap());
    assert_eq!(
        Store::write_runs(&*b, vec![under(&second[0].lease)])
            .await
            .unwrap(),
        vec![2]
    );
}

/// Leases are read on the database's clock: a host's heartbeat measures its clock's offset
/// from the database's, so a wrong offset (a host whose clock is an hour off) is corrected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_follow_the_database_clock_whatever_the_hosts_clock_says() {
    use std::sync::atomic::Ordering;
    let (store, _) = fresh().await;
    let db_clock = |store: PgStore| async move {
        let row = store
            .client()
            .await
            .unwrap()
            .query_one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };
    store
        .shared
        .clock_offset_ms
        .store(3_600_000, Ordering::Relaxed);
    let db = db_clock(store.clone()).await;
    assert!((store.shared.db_now() as i64 - db).abs() > 3_000_000);
    store.heartbeat().await.unwrap();
    let db = db_clock(store.clone()).await;
    let off = (store.shared.db_now() as i64 - db).abs();
    assert!(
        off < 1_000,
        "{off} ms off the database's clock after a heartbeat"
    );
}

mod conformance {
    //! The backend conformance suite of `stepwise-store`, each test on a database of its own.

    use std::sync::Arc;

    use stepwise_store::Store;

    use crate::{PgStore, testing};

    stepwise_store::conformance_tests!({
        let url = testing::server().fresh_database().await;
        let store = PgStore::open(&url, 8).await.expect("open");
        (Arc::new(store) as Arc<dyn Store>, ())
    });
}
