//! # stepwise-sdk
//!
//! Write [Stepwise](https://example.invalid/stepwise) job handlers in plain Rust. A handler is a
//! WebAssembly component; each job in it is an ordinary function made of durable *steps*: the
//! host records every step's output, so when an attempt fails and the job runs again, completed
//! steps are answered from the record instead of running twice.
//!
//! ```no_run
//! use stepwise_sdk::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct Payment {
//!     payment_id: String,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Receipt {
//!     charge_id: String,
//! }
//!
//! /// Charge the card, then send a receipt.
//! #[job(max_attempts = 6, backoff_initial_ms = 500)]
//! fn charge_and_notify(ctx: &mut Ctx, input: Payment) -> Result<Receipt, JobError> {
//!     let charge_id: String = ctx.step("charge", || Ok(format!("ch_{}", input.payment_id)))?;
//!     ctx.sleep("cool-off", Duration::from_secs(30))?;
//!     ctx.step("send-receipt", || {
//!         ctx.log_info(format!("receipt for {charge_id}"));
//!         Ok(())
//!     })?;
//!     Ok(Receipt { charge_id })
//! }
//!
//! export_jobs!(charge_and_notify);
//! # fn main() {}
//! ```
//!
//! ## Building a handler
//!
//! A handler is a library crate compiled as a `cdylib`, depending on this crate and on `serde`
//! (the derives in the prelude expand to code that names `serde`):
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! stepwise-sdk = "0.1"
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `cargo build --target wasm32-wasip2 --release` then writes the component to
//! `target/wasm32-wasip2/release/<crate_name>.wasm`; no other tool is needed, as the
//! `wasm32-wasip2` target links components directly. Call [`export_jobs!`] exactly once per
//! crate, with every job the component offers.
//!
//! ## The determinism rule
//!
//! **Code between steps runs again on every attempt.** A job is re-run from the top after each
//! failed attempt and after each durable sleep; only completed steps are skipped. So:
//!
//! - put every side effect (a charge, an email, a write) inside a step;
//! - make the code between steps deterministic: the same input and the same step outputs must
//!   lead to the same steps, in the same order, with the same names. Read the clock, generate
//!   random ids or call services *inside* steps, and use their recorded outputs;
//! - a step's closure may run more than once (after a failure, or if the attempt ended before
//!   the step's output was recorded), so make it idempotent where it matters; [`Ctx::run_id`]
//!   is a good idempotency key.
//!
//! Step names identify journal entries. A name used again within one attempt gets a stable
//! suffix (`send`, `send#2`, `send#3`, ...), so loops work as long as they are deterministic.
//! A step's output is returned as read back from its JSON, on the first attempt as on replays.
//!
//! ## Events and child runs
//!
//! [`Ctx::wait_for_event`] suspends the run until an event with a name and correlation key
//! arrives (`POST /v1/events`) or a timeout passes; it matches an event sent after the run
//! was created even if it arrived before the wait was reached, and every run waiting on the
//! key gets it. [`Ctx::invoke`] and [`Ctx::invoke_all`] start child runs and wait for their
//! outputs (fan-out and join); [`Ctx::spawn`] starts one without waiting. Each is a step:
//! recorded once, replayed afterwards, each child started once whatever happens to the
//! parent's attempts. While the run waits no instance is held.
//!
//! ```no_run
//! use stepwise_sdk::prelude::*;
//!
//! #[job]
//! fn onboard(ctx: &mut Ctx, user: String) -> Result<Vec<String>, JobError> {
//!     let verified: Option<serde_json::Value> = ctx.wait_for_event(
//!         "email-verified", "user.verified", Some(&user), Duration::from_secs(86_400))?;
//!     if verified.is_none() {
//!         return Err(JobError::non_retryable("never verified"));
//!     }
//!     let children = ["welcome", "survey"]
//!         .into_iter()
//!         .map(|kind| Child::new("send-email", &(kind, &user)))
//!         .collect::<Result<Vec<_>, _>>()?;
//!     ctx.invoke_all("emails", children)
//! }
//!
//! export_jobs!(onboard);
//! # fn main() {}
//! ```
//!
//! ## Errors and retries
//!
//! Steps and jobs fail with a [`JobError`], whose [`ErrorKind`] tells the host what to do:
//! [`JobError::retryable`] (the default for any error converted with `?`),
//! [`JobError::non_retryable`] (fail the run now) or [`JobError::retry_after`] (retry, but not
//! before a delay). A failing step is retried on its own: every step counts its attempts, and a
//! failure outside any step counts against the run. A panic is not a `JobError`: it traps, which
//! ends the attempt at once, and the host records the trap (the panic message goes to stderr).
//!
//! ## Policies and defaults
//!
//! `#[job(...)]` sets the job's default policy; every option is optional, and an enqueue may
//! override it. An option left out is left to the host's default, except that giving *any*
//! backoff option fills the other backoff options with the SDK defaults:
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `max_attempts` | attempts per step, and for failures outside steps, counting the first | host's |
//! | `backoff_initial_ms` | delay after the first failed attempt | 1000 ms (SDK) |
//! | `backoff_max_ms` | upper bound on any one delay | 3 600 000 ms = 1 h (SDK) |
//! | `backoff_multiplier` | growth per further failed attempt, at least 1.0 | 2.0 (SDK) |
//! | `backoff_jitter` | random fraction of each delay, 0.0 to 1.0 | 0.2 (SDK) |
//! | `fuel` | instructions (roughly) one attempt may execute | host's |
//! | `timeout_ms` | wall-clock time one attempt may take | host's |
//! | `memory_bytes` | linear memory one attempt may use | host's |
//!
//! When no backoff option is given, the job leaves backoff entirely to the host.
//!
//! ## Logs and output
//!
//! Use the `log_*` methods of [`Ctx`]: their lines go to the run's log with a level. Output
//! printed to stdout or stderr is captured by the host, bounded, as a debugging aid only.

#![deny(missing_docs)]

#[cfg(doctest)]
mod compile_fail;
mod ctx;
mod error;
mod flows;
mod host;
pub mod http;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use ctx::Ctx;
pub use error::{ErrorKind, JobError};
pub use flows::{Child, ChildOptions};
#[doc(inline)]
pub use stepwise_sdk_macros::job;

/// Bindings generated from `wit/stepwise.wit` (world `handler`). Hidden: authors use [`job`],
/// [`export_jobs!`] and [`Ctx`], and the expansion of `export_jobs!` reaches in here.
#[doc(hidden)]
#[allow(
    unsafe_code,
    clippy::all,
    reason = "generated by wit-bindgen: the canonical ABI glue is unsafe by nature"
)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "handler",
        pub_export_macro: true,
        export_macro_name: "__export_handler",
        default_bindings_module: "::stepwise_sdk::__bindings",
        // The WASI interfaces `wasi:http` uses are bound here too, for the HTTP client.
        generate_all,
    });
}

/// The names a handler needs: `use stepwise_sdk::prelude::*;`.
///
/// It brings [`Ctx`], [`JobError`], [`ErrorKind`], [`job`], [`export_jobs!`],
/// [`Duration`](std::time::Duration) and serde's [`Deserialize`](serde::Deserialize) and
/// [`Serialize`](serde::Serialize) (trait and derive).
///
/// ```no_run
/// use stepwise_sdk::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct Ping {
///     n: u32,
/// }
///
/// #[job]
/// fn ping(_ctx: &mut Ctx, input: Ping) -> Result<Ping, JobError> {
///     Ok(Ping { n: input.n + 1 })
/// }
///
/// export_jobs!(ping);
/// # fn main() {}
/// ```
pub mod prelude {
    pub use crate::{Child, ChildOptions, Ctx, ErrorKind, JobError, export_jobs, job};
    pub use serde::{Deserialize, Serialize};
    pub use std::time::Duration;
}

/// Exports the given `#[job]` functions as this crate's component: builds the `describe` list
/// and the `run` dispatch of the `handler` world.
///
/// Call it once per crate, with every job the component offers, by name or by path:
///
/// ```no_run
/// use stepwise_sdk::prelude::*;
///
/// mod billing {
///     use stepwise_sdk::prelude::*;
///
///     /// Charges a card.
///     #[job(max_attempts = 3)]
///     pub fn charge(ctx: &mut Ctx, amount: u64) -> Result<String, JobError> {
///         ctx.step("charge", || Ok(format!("ch_{amount}")))
///     }
/// }
///
/// /// Says hello.
/// #[job]
/// fn hello(_ctx: &mut Ctx, name: String) -> Result<String, JobError> {
///     Ok(format!("hello, {name}"))
/// }
///
/// export_jobs!(hello, billing::charge);
/// # fn main() {}
/// ```
///
/// A run naming a job that is not in the list fails with a non-retryable error that lists the
/// jobs offered. Two jobs with the same name are a compile error. Every name must be a
/// function marked `#[job]`, declared at module level (not inside a function body).
#[macro_export]
macro_rules! export_jobs {
    ($($($job:ident)::+),+ $(,)?) => {
        const _: () = {
            const __STEPWISE_JOBS: &[$crate::__private::JobDef] =
                &[$($($job)::+::__STEPWISE_JOB),+];
            const _: () = $crate::__private::assert_unique_names(__STEPWISE_JOBS);

            struct __StepwiseHandler;

            impl $crate::__bindings::Guest for __StepwiseHandler {
                fn run(
                    ctx: $crate::__bindings::JobContext,
                    payload: ::std::string::String,
                ) -> ::core::result::Result<::std::string::String, $crate::__bindings::JobError> {
                    $crate::__private::run(__STEPWISE_JOBS, ctx, payload)
                }

                fn describe() -> ::std::vec::Vec<$crate::__bindings::JobSpec> {
                    $crate::__private::describe(__STEPWISE_JOBS)
                }

                fn egress_needs() -> ::std::vec::Vec<(
                    ::std::string::String,
                    ::std::vec::Vec<::std::string::String>,
                )> {
                    $crate::__private::egress_needs(__STEPWISE_JOBS)
                }
            }

            $crate::__bindings::__export_handler!(
                __StepwiseHandler with_types_in $crate::__bindings
            );
        };
    };
}
