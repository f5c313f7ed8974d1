//! The job logic of `examples/bench-jobs`, line for line, as a native handler: the `--native`
//! baseline runs it through the same engine, store, scheduler and journal as the component.

use serde::Deserialize;
use serde_json::Value;

use crate::engine::journal::Journal;
use crate::engine::native::{NativeCtx, NativeError, NativeFuture, NativeHandler};
use crate::model::FailureKind;
use crate::policy::{Backoff, PolicyOverrides};
use crate::runtime::{GuestError, JobSpec};

/// The native bench jobs.
#[derive(Debug, Default)]
pub struct BenchJobs;

fn spec(name: &str, policy: PolicyOverrides) -> JobSpec {
    JobSpec {
        name: name.to_owned(),
        description: format!("native twin of bench-jobs' {name}"),
        policy,
        hosts: Vec::new(),
    }
}

#[derive(Deserialize)]
struct Indexed {
    #[serde(default)]
    i: u64,
}

#[derive(Deserialize)]
struct Replay {
    steps: u32,
    pause_ms: u64,
}

#[derive(Deserialize)]
struct Nap {
    ms: u64,
}

fn input<T: serde::de::DeserializeOwned>(payload: &str) -> Result<T, NativeError> {
    serde_json::from_str(payload).map_err(|e| {
        NativeError::Failed(GuestError {
            kind: FailureKind::NonRetryable,
            message: format!("invalid payload: {e}"),
            retry_after_ms: None,
        })
    })
}

fn output(value: impl Into<Value>) -> Result<String, NativeError> {
    Ok(value.into().to_string())
}

async fn run(ctx: &mut NativeCtx, job: &str, payload: &str) -> Result<String, NativeError> {
    match job {
        "noop" => output(input::<Indexed>(payload)?.i),
        "steps3" => {
            let i = input::<Indexed>(payload)?.i;
            let a: u64 = ctx.step("one", |_| Ok(i)).await?;
            let b: u64 = ctx.step("two", |_| Ok(a + 1)).await?;
            output(ctx.step("three", |_| Ok(b + 1)).await?)
        }
        "retry10" => {
            // A step's closure runs only when the step executes; log exactly those times.
            let i = input::<Indexed>(payload)?.i;
            let mut ran = false;
            let a: u64 = ctx
                .step("one", |_| {
                    ran = true;
                    Ok(i)
                })
                .await?;
            if std::mem::take(&mut ran) {
                ctx.log("exec one");
            }
            let b = ctx
                .step("two", |attempt| {
                    ran = true;
                    if i.is_multiple_of(10) && attempt == 1 {
                        return Err(GuestError {
                            kind: FailureKind::Retryable,
                            message: "planned failure".into(),
                            retry_after_ms: None,
                        });
                    }
                    Ok(a + 1)
                })
                .await;
            if std::mem::take(&mut ran) {
                ctx.log("exec two");
            }
            let b: u64 = b?;
            let c: u64 = ctx
                .step("three", |_| {
                    ran = true;
                    Ok(b + 1)
                })
                .await?;
            if ran {
                ctx.log("exec three");
            }
            output(c)
        }
        "replay" => {
            let r = input::<Replay>(payload)?;
            for n in 0..r.steps {
                // The SDK names repeats `s`, `s#2`, `s#3`, ...; do the same explicitly.
                let name = if n == 0 {
                    "s".to_owned()
                } else {
                    format!("s#{}", n + 1)
                };
                ctx.step(&name, |_| Ok(n)).await?;
            }
            ctx.sleep("pause", r.pause_ms)?;
            output(r.steps)
        }
        "sleeper" => {
            let nap = input::<Nap>(payload)?;
            ctx.sleep("nap", nap.ms)?;
            output(nap.ms)
        }
        other => Err(NativeError::Failed(GuestError {
            kind: FailureKind::NonRetryable,
            message: format!("unknown job '{other}'"),
            retry_after_ms: None,
        })),
    }
}

impl NativeHandler for BenchJobs {
    fn jobs(&self) -> Vec<JobSpec> {
        let retry = PolicyOverrides {
            max_attempts: Some(3),
            backoff: Some(Backoff {
                initial_ms: 0,
                jitter: 0.0,
                ..Backoff::default()
            }),
            ..PolicyOverrides::default()
        };
        vec![
            spec("noop", PolicyOverrides::default()),
            spec("steps3", PolicyOverrides::default()),
            spec("retry10", retry),
            spec("replay", PolicyOverrides::default()),
            spec("sleeper", PolicyOverrides::default()),
        ]
    }

    fn run(&self, journal: Journal, job: String, payload: String) -> NativeFuture {
        Box::pin(async move {
            let mut ctx = NativeCtx::new(journal);
            let result = run(&mut ctx, &job, &payload).await;
            (result, ctx.into_journal())
        })
    }
}
