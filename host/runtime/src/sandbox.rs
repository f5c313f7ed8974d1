//! What one attempt's `Store` holds: the WASI context (no files, sockets or environment), the
//! `wasi:http` context with the attempt's egress hooks, the captured standard output and error,
//! the memory limiter, and the run's step journal.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::step_host::StepHost;
use crate::egress::EgressHooks;
use stepwise_core::attempt::CancelFlag;

/// Data of one attempt's `Store`.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    /// Outbound HTTP: the tenant's rules and the attempt's limits (refuse-all in describe).
    pub(crate) egress: EgressHooks,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// Absent while `describe` runs: steps exist only inside `run`.
    pub(crate) journal: Option<Box<dyn StepHost>>,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    /// Set by the epoch callback when the wall-clock deadline interrupted the guest.
    pub(crate) timed_out: bool,
    /// Set by whoever cancels the run; checked at every epoch tick and host call.
    pub(crate) cancel: CancelFlag,
    /// Calls of our own imports (steps, log) so far: a guest that made none during a whole
    /// epoch tick was computing all along (see `runtime::cpu`).
    pub(crate) host_calls: u64,
}

impl HostState {
    pub(crate) fn new(
        journal: Option<Box<dyn StepHost>>,
        egress: EgressHooks,
        memory_bytes: u64,
        capture_bytes: usize,
    ) -> Self {
        let stdout = CapturedOutput::new(capture_bytes);
        let stderr = CapturedOutput::new(capture_bytes);
        let clock = journal.as_ref().map(|j| j.clock());
        // The builder's defaults are already closed: no preopened directories, no environment,
        // no arguments, and a socket check that denies every address. Spelled out so a future
        // default change cannot open anything silently.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        // The guest's wall clock is the engine's, so its notion of "now" (an HTTP date in a
        // Retry-After, a timestamp it records) follows the clock tests inject.
        if let Some(clock) = clock {
            wasi.wall_clock(EngineWallClock(clock));
        }
        let wasi = wasi.build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            egress,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            journal,
            stdout,
            stderr,
            timed_out: false,
            cancel: CancelFlag::default(),
            host_calls: 0,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl HostState {
    /// `text` with the tenant's secret values masked.
    pub(crate) fn masked(&self, text: String) -> String {
        match self.egress.attempt() {
            Some(attempt) => attempt.secrets().mask(&text),
            None => text,
        }
    }

    /// Moves the outbound calls finished since the last host call onto the run's timeline.
    pub(crate) fn record_http_calls(&mut self) {
        let (Some(egress), Some(journal)) = (self.egress.attempt(), self.journal.as_mut()) else {
            return;
        };
        for (call, denied) in egress.take_calls() {
            journal.record_http(call, denied);
        }
    }
}

/// The engine's [`Clock`](stepwise_core::clock::Clock) as the guest's `wasi:clocks/wall-clock`.
struct EngineWallClock(Arc<dyn stepwise_core::clock::Clock>);

impl wasmtime_wasi::HostWallClock for EngineWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.now())
    }
}

/// Caps linear memory and table growth of one attempt, and remembers whether the cap was hit so
/// the resulting trap is reported as a memory-limit failure rather than a generic crash.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) hit: bool,
    /// The largest linear memory the guest asked for, granted or not.
    pub(crate) peak: usize,
}

/// Table elements an attempt may have; generous for Rust guests, bounded for hostile ones.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            hit: false,
            peak: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.peak = self.peak.max(desired);
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A bounded, truncating capture of a guest's stdout or stderr.
///
/// Unlike wasmtime's `MemoryOutputPipe`, writing past the bound never fails (which would make a
/// chatty guest's `println!` panic): the excess is counted and dropped.
#[derive(Clone, Debug)]
pub(crate) struct CapturedOutput(Arc<Mutex<Captured>>);

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    capacity: usize,
    dropped: u64,
}

impl CapturedOutput {
    fn new(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(Captured {
            capacity,
            ..Default::default()
        })))
    }

    /// The captured text, and how many bytes were dropped past the bound.
    pub(crate) fn take(&self) -> (String, u64) {
        let mut c = self.0.lock().expect("capture lock");
        let text = String::from_utf8_lossy(&c.bytes).into_owned();
        c.bytes.clear();
        (text, std::mem::take(&mut c.dropped))
    }

    fn push(&self, buf: &[u8]) {
        let mut c = self.0.lock().expect("capture lock");
        let room = c.capacity.saturating_sub(c.bytes.len());
        let keep = room.min(buf.len());
        c.bytes.extend_from_slice(&buf[..keep]);
        c.dropped += (buf.len() - keep) as u64;
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn capture_truncates_instead_of_failing() {
        let c = CapturedOutput::new(5);
        c.push(b"hello world");
        c.push(b"!");
        let (text, dropped) = c.take();
        assert_eq!(text, "hello");
        assert_eq!(dropped, 7);
    }

    #[test]
    fn limiter_refuses_growth_past_the_limit_and_remembers() {
        let mut l = MemoryLimiter::new(1 << 20);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!l.hit);
        assert!(!l.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert!(l.hit);
    }
}
