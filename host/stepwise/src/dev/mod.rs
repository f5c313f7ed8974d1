//! Development tools that run beside the host: the fake payment provider.

pub mod provider;
