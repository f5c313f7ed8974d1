//! End-to-end tests: real guest components built from `examples/` and `tests/guests/` for
//! wasm32-wasip2, run through the real host on a real redb file. Time and jitter are injected,
//! so backoff and timers never sleep for real; the crash tests kill a real process.

mod serve_util;
mod util;

mod api;
mod api_reference;
mod bad_input;
mod bench_smoke;
mod cancel;
mod cli_service;
mod crash;
mod dashboard;
mod dashboard_browser;
mod egress;
mod egress_tls;
mod flows;
mod flows_service;
mod hostile;
mod http_defences;
mod idempotency;
mod lifecycle;
mod multi_host;
mod recovery;
mod retries;
mod sandbox;
mod schedules;
mod schedules_clock;
mod schedules_service;
mod sdk_package;
mod secrets;
mod service_crash;
mod tenancy;
mod tenancy_service;
mod time_control;
mod time_control_service;
mod wire_fuzz;
