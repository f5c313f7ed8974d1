//! Programs the SDK must refuse to compile, kept as `compile_fail` doctests (this module exists
//! only under `cfg(doctest)`).
//!
//! An input type that cannot be deserialized:
//!
//! ```compile_fail,E0277
//! use stepwise_sdk::prelude::*;
//! struct NotDeserialize;
//! #[job]
//! fn j(_ctx: &mut Ctx, _input: NotDeserialize) -> Result<(), JobError> { Ok(()) }
//! fn main() {}
//! ```
//!
//! An output type that cannot be serialized:
//!
//! ```compile_fail,E0277
//! use stepwise_sdk::prelude::*;
//! struct NotSerialize;
//! #[job]
//! fn j(_ctx: &mut Ctx, _input: u32) -> Result<NotSerialize, JobError> { Ok(NotSerialize) }
//! fn main() {}
//! ```
//!
//! An error type other than `JobError`:
//!
//! ```compile_fail,E0277
//! use stepwise_sdk::prelude::*;
//! #[job]
//! fn j(_ctx: &mut Ctx, _input: u32) -> Result<u32, String> { Ok(1) }
//! fn main() {}
//! ```
//!
//! A first argument other than `&mut Ctx`:
//!
//! ```compile_fail,E0277
//! use stepwise_sdk::prelude::*;
//! #[job]
//! fn j(_ctx: &mut String, _input: u32) -> Result<u32, JobError> { Ok(1) }
//! fn main() {}
//! ```
//!
//! Shapes the attribute rejects itself (async, one argument, an option out of range):
//!
//! ```compile_fail
//! use stepwise_sdk::prelude::*;
//! #[job]
//! async fn j(_ctx: &mut Ctx, _input: u32) -> Result<u32, JobError> { Ok(1) }
//! fn main() {}
//! ```
//!
//! ```compile_fail
//! use stepwise_sdk::prelude::*;
//! #[job]
//! fn j(_input: u32) -> Result<u32, JobError> { Ok(1) }
//! fn main() {}
//! ```
//!
//! ```compile_fail
//! use stepwise_sdk::prelude::*;
//! #[job(max_attempts = 0)]
//! fn j(_ctx: &mut Ctx, _input: u32) -> Result<u32, JobError> { Ok(1) }
//! fn main() {}
//! ```
//!
//! A job name longer than the host's 128-byte limit (the host's own rule, so it would not
//! deploy):
//!
//! ```compile_fail
//! use stepwise_sdk::prelude::*;
//! #[job(name = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
//! fn j(_ctx: &mut Ctx, _input: u32) -> Result<u32, JobError> { Ok(1) }
//! fn main() {}
//! ```
//!
//! The same name at the limit compiles:
//!
//! ```
//! use stepwise_sdk::prelude::*;
//! #[job(name = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
//! fn j(_ctx: &mut Ctx, _input: u32) -> Result<u32, JobError> { Ok(1) }
//! fn main() {}
//! ```
//!
//! Two exported jobs with the same name:
//!
//! ```compile_fail,E0080
//! use stepwise_sdk::prelude::*;
//! #[job(name = "same")]
//! fn a(_ctx: &mut Ctx, _input: u32) -> Result<u32, JobError> { Ok(1) }
//! #[job(name = "same")]
//! fn b(_ctx: &mut Ctx, _input: u32) -> Result<u32, JobError> { Ok(1) }
//! export_jobs!(a, b);
//! fn main() {}
//! ```
//!
//! A function that is not a job, given to `export_jobs!`:
//!
//! ```compile_fail
//! use stepwise_sdk::prelude::*;
//! fn plain() {}
//! export_jobs!(plain);
//! fn main() {}
//! ```
