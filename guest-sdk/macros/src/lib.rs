//! Procedural macros behind `stepwise-sdk`: the `#[job]` attribute.
//!
//! Use them through `stepwise_sdk` (`stepwise_sdk::job`, or the prelude), never directly: the
//! generated code names `::stepwise_sdk` items, so this crate is useless on its own.

mod expand;
mod options;

use proc_macro::TokenStream;

/// Turns a function into a Stepwise job.
///
/// The function keeps working as written; `#[job]` adds a hidden registration that
/// [`export_jobs!`](../stepwise_sdk/macro.export_jobs.html) picks up. The function must have the
/// shape
///
/// ```text
/// fn name(ctx: &mut Ctx, input: In) -> Result<Out, JobError>
/// ```
///
/// where `In: Deserialize` (parsed from the run's JSON payload; a payload that does not parse
/// fails the run with a non-retryable `invalid payload for job '<name>': ...`) and
/// `Out: Serialize` (the run's JSON output). It cannot be async, generic or a method, and must
/// be declared at module level.
///
/// ```no_run
/// use stepwise_sdk::prelude::*;
///
/// #[derive(Deserialize)]
/// struct Digest {
///     user_id: String,
/// }
///
/// /// Send a user their weekly digest.
/// #[job(max_attempts = 4, backoff_initial_ms = 2_000, timeout_ms = 30_000)]
/// fn weekly_digest(ctx: &mut Ctx, input: Digest) -> Result<u32, JobError> {
///     let sent: u32 = ctx.step("send", || Ok(input.user_id.len() as u32))?;
///     Ok(sent)
/// }
///
/// export_jobs!(weekly_digest);
/// # fn main() {}
/// ```
///
/// # Options
///
/// All are optional, written `key = value`:
///
/// - `name = "..."`: the job's name; by default the function's name with `_` turned into `-`
///   (`weekly_digest` → `weekly-digest`). ASCII letters, digits, `-`, `_` and `.`.
/// - `description = "..."`: one line for humans; by default the first line of the function's
///   doc comment.
/// - `max_attempts = N`: attempts per step (and for failures outside steps), counting the first.
/// - `backoff_initial_ms = N`, `backoff_max_ms = N`, `backoff_multiplier = X` (at least 1.0),
///   `backoff_jitter = X` (0.0 to 1.0): exponential backoff between attempts. Giving any of them
///   fills the others with the SDK defaults: 1000 ms, 3 600 000 ms, 2.0 and 0.2.
/// - `fuel = N`, `timeout_ms = N`, `memory_bytes = N`: per-attempt limits.
/// - `hosts = "api.stripe.com, http://127.0.0.1:7080"`: the hosts the job sends requests to,
///   as egress patterns; a deploy warns when the tenant's egress rules do not allow one.
///
/// Options left out are left to the host's defaults. Out-of-range values are compile errors.
#[proc_macro_attribute]
pub fn job(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::job(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
