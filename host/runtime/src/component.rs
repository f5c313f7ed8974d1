//! Loading a handler component: checking that the bytes are a component for our world, compiling
//! and pre-instantiating it once, and learning its jobs from its own `describe` export.

use std::collections::BTreeSet;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};

use super::bindings::{HandlerPre, WitJobSpec};
use super::sandbox::HostState;
pub use stepwise_core::job::JobSpec;
use stepwise_core::policy::{Backoff, PolicyOverrides};

/// The world a handler must target, as named in errors.
pub const WORLD: &str = "stepwise:jobs/handler@0.1.2";

/// Interfaces of our own package a handler may import, at any 0.1.x version (0.1.1 added
/// `secrets`, 0.1.2 `flows`; the linker resolves an older import to the 0.1.2 definition).
const OWN_IMPORTS: [&str; 5] = [
    "stepwise:jobs/types",
    "stepwise:jobs/steps",
    "stepwise:jobs/log",
    "stepwise:jobs/secrets",
    "stepwise:jobs/flows",
];

/// WASI interfaces the host links (WASI 0.2, any 0.2.x patch version): the CLI, clock, random,
/// filesystem and I/O interfaces Rust's standard library imports (no directories are opened,
/// no environment is passed), and outbound HTTP. Sockets and incoming HTTP are not provided:
/// a guest reaches the network only through `wasi:http`, where egress rules apply.
const WASI_PROVIDED: [&str; 20] = [
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// WASI interfaces provided beside [`WASI_PROVIDED`] that need no mention in errors.
const WASI_ALSO_PROVIDED: [&str; 2] = ["wasi:random/insecure", "wasi:random/insecure-seed"];

/// Why the host cannot satisfy an import, if it cannot.
fn import_problem(name: &str) -> Option<String> {
    let (iface, version) = name.split_once('@').unwrap_or((name, ""));
    if OWN_IMPORTS.contains(&iface) {
        return (!version.starts_with("0.1."))
            .then(|| format!("imports {name}; this host provides {iface} at 0.1.x (up to 0.1.2)"));
    }
    let wasi = WASI_PROVIDED.contains(&iface) || WASI_ALSO_PROVIDED.contains(&iface);
    if !wasi {
        return Some(format!("imports {name}, which Stepwise does not provide"));
    }
    if !version.starts_with("0.2.") {
        return Some(format!(
            "imports {name}; Stepwise provides {iface} at WASI 0.2 (0.2.0 to 0.2.12)"
        ));
    }
    None
}

/// Exports the world requires.
const REQUIRED_EXPORTS: [&str; 2] = ["run", "describe"];

/// The export naming the hosts each job calls; optional (0.1.0 components lack it).
pub(crate) const EGRESS_NEEDS: &str = "egress-needs";

/// Most hosts one job may declare.
pub const MAX_JOB_HOSTS: usize = 16;

/// Why a component could not be loaded. Each case names what was wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file (it does not start with the \\0asm magic bytes)")]
    NotWasm,
    /// A core module was given where a component is required.
    #[error(
        "this is a core WebAssembly module, not a component; build the handler for the \
         wasm32-wasip2 target, which emits a component"
    )]
    CoreModule,
    /// The component failed validation or compilation.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component targets a different world.
    #[error("component does not target {WORLD}: {0}")]
    WrongWorld(String),
    /// The component's `describe` export failed or returned something unusable.
    #[error("component's describe() failed: {0}")]
    Describe(String),
}

impl From<WitJobSpec> for JobSpec {
    fn from(s: WitJobSpec) -> Self {
        Self {
            name: s.name,
            description: s.description,
            policy: s.policy.into(),
            hosts: Vec::new(),
        }
    }
}

impl From<super::bindings::JobPolicy> for PolicyOverrides {
    fn from(p: super::bindings::JobPolicy) -> Self {
        Self {
            max_attempts: p.max_attempts,
            backoff: p.backoff.map(|b| Backoff {
                initial_ms: b.initial_ms,
                max_ms: b.max_ms,
                multiplier: b.multiplier,
                jitter: b.jitter,
            }),
            fuel: p.fuel,
            timeout_ms: p.timeout_ms,
            memory_bytes: p.memory_bytes,
        }
    }
}

/// A compiled, pre-instantiated handler, ready for fresh instances.
pub struct LoadedModule {
    /// sha256 of the component bytes, hex.
    pub hash: String,
    /// The jobs it offers.
    pub jobs: Vec<JobSpec>,
    pub(crate) pre: HandlerPre<HostState>,
    /// Memory it holds loaded (its compiled image, at least its component's size).
    pub size_bytes: u64,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("hash", &self.hash)
            .field("jobs", &self.jobs)
            .finish()
    }
}

impl LoadedModule {
    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<&JobSpec> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The names of every job, for error messages.
    pub fn job_names(&self) -> Vec<String> {
        self.jobs.iter().map(|j| j.name.clone()).collect()
    }
}

/// Checks the binary header before handing the bytes to the compiler, so the two commonest
/// mistakes get a precise message instead of a parser error.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Bytes 4..8: version (2 bytes) then layer (2 bytes); layer 0 is a core module.
    if bytes[6..8] == [0, 0] {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

/// Compares the component's imports and exports with the world and names every difference.
pub(crate) fn check_world(
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let exports: BTreeSet<String> = ty
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
        .map(|(name, _)| name.to_owned())
        .collect();
    let all_exports: BTreeSet<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let missing: Vec<&str> = REQUIRED_EXPORTS
        .iter()
        .copied()
        .filter(|e| !exports.contains(*e))
        .collect();
    let unexpected: Vec<&String> = all_exports
        .iter()
        .filter(|e| !REQUIRED_EXPORTS.contains(&e.as_str()) && e.as_str() != EGRESS_NEEDS)
        .collect();
    let import_problems: Vec<String> = ty
        .imports(engine)
        .filter_map(|(name, _)| import_problem(name))
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing exports: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        let list: Vec<&str> = unexpected.iter().map(|s| s.as_str()).collect();
        problems.push(format!("unexpected exports: {}", list.join(", ")));
    }
    problems.extend(import_problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LoadError::WrongWorld(problems.join("; ")))
    }
}

/// Links the component against our imports and type-checks its exports.
pub(crate) fn pre_instantiate(
    linker: &Linker<HostState>,
    component: &Component,
) -> Result<HandlerPre<HostState>, LoadError> {
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
    HandlerPre::new(pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))
}

/// Most jobs one module may offer.
pub const MAX_JOBS_PER_MODULE: usize = 256;

/// Longest job description, in bytes.
pub const MAX_JOB_DESCRIPTION: usize = 4 << 10;

/// Attaches what `egress-needs` declared to the jobs, each host checked with the egress rules'
/// grammar and normalised; a need for an unknown job or a malformed host refuses the deploy.
pub(crate) fn attach_needs(
    jobs: &mut [JobSpec],
    needs: Vec<(String, Vec<String>)>,
) -> Result<(), LoadError> {
    check_spec_count(needs.len())?;
    for (job, hosts) in needs {
        let name = stepwise_core::text::prefix(&job, 200).to_owned();
        let spec = jobs.iter_mut().find(|j| j.name == job).ok_or_else(|| {
            LoadError::Describe(format!(
                "egress-needs names job {name:?}, which describe does not list"
            ))
        })?;
        if hosts.len() > MAX_JOB_HOSTS {
            return Err(LoadError::Describe(format!(
                "job '{name}' declares {} hosts, at most {MAX_JOB_HOSTS}",
                hosts.len()
            )));
        }
        for host in hosts {
            let rule = crate::egress::EgressRule::parse(&crate::egress::RuleSpec {
                pattern: host,
                methods: Vec::new(),
            })
            .map_err(|e| LoadError::Describe(format!("job '{name}' declares a bad host: {e}")))?;
            let pattern = rule.to_string();
            if !spec.hosts.contains(&pattern) {
                spec.hosts.push(pattern);
            }
        }
    }
    Ok(())
}

/// Refuses a `describe` that lists more jobs than a module may offer.
pub(crate) fn check_spec_count(n: usize) -> Result<(), LoadError> {
    if n > MAX_JOBS_PER_MODULE {
        return Err(LoadError::Describe(format!(
            "the component lists {n} jobs, more than the {MAX_JOBS_PER_MODULE} a module may offer"
        )));
    }
    Ok(())
}

/// Checks what `describe` returned: 1 to [`MAX_JOBS_PER_MODULE`] jobs, each with a unique
/// plain name, a bounded description and a policy the host can run (no NaN, infinite or
/// out-of-range backoff; the numeric limits are clamped to the caps later, not refused).
pub(crate) fn check_jobs(jobs: &[JobSpec]) -> Result<(), LoadError> {
    if jobs.is_empty() {
        return Err(LoadError::Describe("the component offers no jobs".into()));
    }
    check_spec_count(jobs.len())?;
    let mut seen = BTreeSet::new();
    for job in jobs {
        if let Err(e) = stepwise_core::names::check(stepwise_core::names::Kind::Job, &job.name) {
            return Err(LoadError::Describe(format!(
                "job name {:?}: {e}",
                stepwise_core::text::prefix(&job.name, 200)
            )));
        }
        if job.description.len() > MAX_JOB_DESCRIPTION {
            return Err(LoadError::Describe(format!(
                "job '{}' has a {}-byte description, over the {MAX_JOB_DESCRIPTION}-byte limit",
                job.name,
                job.description.len()
            )));
        }
        if let Some(backoff) = job.policy.backoff {
            backoff
                .check()
                .map_err(|e| LoadError::Describe(format!("job '{}': {e}", job.name)))?;
        }
        if !seen.insert(job.name.as_str()) {
            return Err(LoadError::Describe(format!(
                "job name '{}' appears twice",
                job.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_tells_text_core_and_component_apart() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(check_header(b"\0asm"), Err(LoadError::NotWasm)));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn declared_hosts_are_normalised_and_checked() {
        let job = |n: &str| JobSpec {
            name: n.into(),
            description: String::new(),
            policy: Default::default(),
            hosts: Vec::new(),
        };
        let mut jobs = vec![job("charge")];
        let needs = vec![("charge".to_owned(), vec!["API.Stripe.com".to_owned()])];
        attach_needs(&mut jobs, needs).unwrap();
        assert_eq!(jobs[0].hosts, ["https://api.stripe.com:443"]);
        for (needs, says) in [
            (vec![("other".to_owned(), vec![])], "does not list"),
            (
                vec![("charge".to_owned(), vec!["*.com".to_owned()])],
                "bad host",
            ),
            (
                vec![("charge".to_owned(), vec!["h.example.com".to_owned(); 17])],
                "at most",
            ),
        ] {
            let e = attach_needs(&mut jobs, needs).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn job_lists_must_be_nonempty_and_unique() {
        let job = |n: &str| JobSpec {
            name: n.into(),
            description: String::new(),
            policy: Default::default(),
            hosts: Vec::new(),
        };
        assert!(check_jobs(&[]).is_err());
        assert!(check_jobs(&[job("a"), job("b")]).is_ok());
        let e = check_jobs(&[job("a"), job("a")]).unwrap_err();
        assert!(e.to_string().contains("'a' appears twice"), "{e}");
        assert!(check_jobs(&[job(&"x".repeat(129))]).is_err());
        assert!(check_jobs(&[job("a b")]).is_err());
        let many: Vec<JobSpec> = (0..=MAX_JOBS_PER_MODULE)
            .map(|i| job(&format!("j{i}")))
            .collect();
        assert!(
            check_jobs(&many)
                .unwrap_err()
                .to_string()
                .contains("257 jobs")
        );
        let mut nan = job("nan");
        nan.policy.backoff = Some(Backoff {
            multiplier: f64::NAN,
            ..Backoff::default()
        });
        let e = check_jobs(&[nan]).unwrap_err().to_string();
        assert!(
            e.contains("job 'nan'") && e.contains("backoff.multiplier"),
            "{e}"
        );
    }
}
