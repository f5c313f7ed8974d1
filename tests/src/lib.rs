//! Shared support for Stepwise's integration tests (`tests/all/`).
//!
//! [`guests`] holds the path of every example and test guest component, built for
//! `wasm32-wasip2` from the current source by this crate's build script.

/// Paths of the guest components, one `&str` constant per guest crate: `PAYMENTS`, `DIGEST`,
/// `RATE_LIMITED`, `TESTBED`, `WRONG_WORLD`, and `ALL` as (package name, path) pairs.
pub mod file_clock;

pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}
