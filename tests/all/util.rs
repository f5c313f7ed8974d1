//! Shared test harness: an engine on a fresh data dir with a manual clock and seeded jitter.

use std::sync::Arc;

use stepwise::store::RedbStore;
use stepwise::{
    Durability, Engine, EngineConfig, ManualClock, NewRun, PolicyOverrides, RunView, RuntimeConfig,
    SeededJitter,
};

/// The time every harness clock starts at (2026-01-01T00:00:00Z).
pub const START: u64 = 1_767_225_600_000;

/// Seed of the harness's jitter source.
pub const SEED: u64 = 42;

/// Compiled components are cached here across tests (and test runs).
pub fn compile_cache() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-cache")
}

pub struct Harness {
    pub engine: Engine,
    /// The engine's store, for tests that read it directly (synchronously).
    pub redb: Arc<RedbStore>,
    pub clock: ManualClock,
    /// Kept so the data dir lives as long as the harness.
    pub _dir: tempfile::TempDir,
}

/// An engine over `store` with the harness's settings: the shared compile cache, a bounded
/// instance pool, `clock` and the seeded jitter.
pub async fn engine_over(
    store: Arc<dyn stepwise::Store>,
    mut config: EngineConfig,
    clock: &ManualClock,
) -> Engine {
    config.runtime = RuntimeConfig {
        compile_cache: Some(compile_cache()),
        max_instances: 32,
        ..config.runtime
    };
    Engine::new(
        store,
        config,
        Arc::new(clock.clone()),
        Arc::new(SeededJitter::new(SEED)),
    )
    .await
    .expect("engine opens")
}

pub async fn harness() -> Harness {
    harness_with(EngineConfig::default()).await
}

pub async fn harness_with(config: EngineConfig) -> Harness {
    harness_on(config, Durability::Immediate).await
}

/// [`harness_with`] on a store with the given durability.
pub async fn harness_on(config: EngineConfig, durability: Durability) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START);
    let redb = Arc::new(RedbStore::open(dir.path(), durability).expect("store opens"));
    let engine = engine_over(redb.clone(), config, &clock).await;
    Harness {
        engine,
        redb,
        clock,
        _dir: dir,
    }
}

impl Harness {
    /// Deploys the component at `path` and returns its hash.
    pub async fn deploy(&self, path: &str) -> String {
        let bytes = std::fs::read(path).expect("guest built");
        self.engine
            .deploy(&bytes)
            .await
            .expect("deploys")
            .hash
            .clone()
    }

    /// Creates a run of `job` in the component at `path`.
    pub async fn enqueue(
        &self,
        path: &str,
        job: &str,
        payload: serde_json::Value,
        overrides: PolicyOverrides,
    ) -> String {
        let module = self.deploy(path).await;
        self.engine
            .enqueue(NewRun {
                overrides,
                ..NewRun::local(&module, job, payload.to_string())
            })
            .await
            .expect("enqueue")
            .run
            .id
    }

    /// Creates a run and executes it to its end.
    pub async fn run(
        &self,
        path: &str,
        job: &str,
        payload: serde_json::Value,
        overrides: PolicyOverrides,
    ) -> RunView {
        let id = self.enqueue(path, job, payload, overrides).await;
        self.engine.run_to_end(&id).await.expect("run executes")
    }
}

/// How many times the guest logged `exec <step>` (the testbed logs each real execution).
pub fn executions(view: &RunView, step: &str) -> usize {
    let prefix = format!("exec {step} ");
    let exact = format!("exec {step}");
    view.logs
        .iter()
        .filter(|l| l.message.starts_with(&prefix) || l.message == exact)
        .count()
}

/// A step's recorded attempts.
pub fn step_attempts(view: &RunView, step: &str) -> u32 {
    view.steps
        .iter()
        .find(|s| s.name == step)
        .unwrap_or_else(|| panic!("step {step} recorded"))
        .attempts
}

/// Overrides with just `max_attempts` and a fixed, jitter-free backoff.
pub fn attempts(max: u32, initial_ms: u64) -> PolicyOverrides {
    PolicyOverrides {
        max_attempts: Some(max),
        backoff: Some(stepwise::Backoff {
            initial_ms,
            max_ms: 3_600_000,
            multiplier: 2.0,
            jitter: 0.0,
        }),
        ..Default::default()
    }
}

/// The kinds of a run's timeline entries, as their JSON names.
pub fn timeline_kinds(view: &RunView) -> Vec<String> {
    view.timeline
        .iter()
        .map(|t| {
            serde_json::to_value(t.kind)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A fake payment provider (`stepwise dev provider`) on a free loopback port: its base URL.
pub async fn fake_provider() -> String {
    let addr = stepwise::dev::provider::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the provider listens");
    format!("http://{addr}")
}

/// Tells the provider at `base` how to treat its next requests (`POST /control`).
pub async fn provider_control(base: &str, control: serde_json::Value) {
    reqwest::Client::new()
        .post(format!("{base}/control"))
        .json(&control)
        .send()
        .await
        .expect("the provider answers");
}

/// `GET {base}{path}` on the provider, as JSON.
pub async fn provider_get(base: &str, path: &str) -> serde_json::Value {
    reqwest::get(format!("{base}{path}"))
        .await
        .expect("the provider answers")
        .json()
        .await
        .expect("JSON")
}

/// The API key the payments example sends, as stored by the tests.
pub const PAYMENTS_KEY: &str = "sk_test_payments_4Jd81";

/// An engine config whose guests may reach loopback and whose secrets are sealed with a fresh
/// key.
pub fn http_config() -> EngineConfig {
    EngineConfig {
        egress: stepwise::egress::EgressConfig {
            allow_private: true,
            ..Default::default()
        },
        secrets: stepwise::secrets::SecretsConfig {
            key: Some(stepwise::secrets::KeyText(
                stepwise::secrets::SecretKeys::generate(),
            )),
            previous_keys: Vec::new(),
        },
        ..EngineConfig::default()
    }
}

impl Harness {
    /// Lets the local tenant reach `base` (`http://127.0.0.1:port`) and nothing else; returns
    /// the rule.
    pub async fn allow(&self, base: &str) -> stepwise::egress::RuleSpec {
        let spec = stepwise::egress::RuleSpec {
            pattern: base.to_owned(),
            methods: vec![],
        };
        let rules = stepwise::egress::TenantEgress {
            rules: vec![spec.clone()],
            limits: None,
        };
        self.engine.set_egress("local", rules).await.unwrap();
        spec
    }

    /// Lets the local tenant reach the provider at `base` and stores the payments example's
    /// `PAYMENTS_KEY`, bound to it.
    pub async fn allow_payments(&self, base: &str) {
        let spec = self.allow(base).await;
        let secret = stepwise::secrets::NewSecret {
            value: PAYMENTS_KEY.to_owned(),
            hosts: vec![spec],
            readable: false,
        };
        self.engine
            .set_secret("local", "PAYMENTS_KEY", secret)
            .await
            .unwrap();
    }
}

/// Executes runs until `id` is in `status` (a manual clock is not advanced past it).
pub async fn until_status(h: &Harness, id: &str, status: stepwise::RunStatus) {
    let (store, target) = (h.redb.clone(), id.to_owned());
    h.engine
        .work_until_async(move || {
            let (store, id) = (store.clone(), target.clone());
            async move {
                store
                    .run(&id)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.status == status)
            }
        })
        .await
        .unwrap();
    let run = h.redb.run(id).unwrap().unwrap();
    assert_eq!(run.status, status, "{run:?}");
}

/// Executes attempts until no run is due at the manual clock's now.
pub async fn drain_due(h: &Harness) {
    let (store, clock) = (h.redb.clone(), h.clock.clone());
    h.engine
        .work_until_async(move || {
            let (store, clock) = (store.clone(), clock.clone());
            async move {
                store
                    .waiting()
                    .unwrap()
                    .first()
                    .is_none_or(|(at, _)| *at > stepwise::Clock::now(&clock))
            }
        })
        .await
        .unwrap();
}

/// Asserts that no window of `window_ms` holds more than `max` of `starts` (sorted).
pub fn assert_at_most_per_window(starts: &[u64], max: usize, window_ms: u64) {
    for (i, &t) in starts.iter().enumerate() {
        let in_window = starts[i..]
            .iter()
            .take_while(|&&s| s < t + window_ms)
            .count();
        assert!(
            in_window <= max,
            "{in_window} starts within {window_ms} ms of {t}: {starts:?}"
        );
    }
}
