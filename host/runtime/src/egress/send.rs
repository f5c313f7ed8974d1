//! The `wasi:http` hooks of one attempt: checks every request against the attempt's limits,
//! the tenant's rules and the operator's address policy, then sends it to the address it
//! checked, recording the call on the run's timeline.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::{AttemptEgress, Scheme, addr};
use stepwise_core::model::HttpCall;

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// The hooks in one attempt's store. Without an attempt (in `describe`) every request is
/// refused.
pub struct EgressHooks {
    attempt: Option<Arc<AttemptEgress>>,
    sent: u32,
    in_flight: Arc<Semaphore>,
}

impl EgressHooks {
    /// Hooks that refuse everything: `describe` has no business on the network.
    pub fn deny_all() -> Self {
        Self {
            attempt: None,
            sent: 0,
            in_flight: Arc::new(Semaphore::new(0)),
        }
    }

    /// Hooks sending under `attempt`'s rules and limits.
    pub fn for_attempt(attempt: Arc<AttemptEgress>) -> Self {
        let permits = attempt.limits.max_concurrent as usize;
        Self {
            attempt: Some(attempt),
            sent: 0,
            in_flight: Arc::new(Semaphore::new(permits)),
        }
    }

    /// The attempt's egress, to take the recorded calls from.
    pub fn attempt(&self) -> Option<&Arc<AttemptEgress>> {
        self.attempt.as_ref()
    }
}

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let Some(attempt) = self.attempt.clone() else {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        self.sent = self.sent.saturating_add(1);
        let over = (self.sent > attempt.limits.max_requests).then_some(self.sent);
        let in_flight = self.in_flight.clone();
        Box::new(async move {
            let deadline = tokio::time::Instant::from_std(attempt.deadline);
            let call = Call::new(&request);
            // Kept to record a call the attempt's deadline cuts short.
            let cut = call.clone();
            let timeouts = Timeouts::new(&attempt.limits, options);
            let sending = send(&attempt, call, request, over, in_flight, timeouts);
            match tokio::time::timeout_at(deadline, sending).await {
                Ok(result) => result,
                // Past the deadline, `fail` records it as the reason.
                Err(_) => Err(cut.fail(&attempt, Error::ConnectionTimeout, 0)),
            }
        })
    }
}

/// What the timeline says of a call the attempt's deadline ended.
const DEADLINE_PASSED: &str = "the attempt's deadline passed during the call";

/// The timeouts of one request: the guest's, where it set shorter ones than the limits.
#[derive(Clone, Copy)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
}

impl Timeouts {
    fn new(limits: &super::EgressLimits, options: Option<RequestOptions>) -> Self {
        let cap = |limit_ms: u64, asked: Option<Duration>| {
            let limit = Duration::from_millis(limit_ms);
            asked.map_or(limit, |a| a.min(limit))
        };
        Self {
            connect: cap(
                limits.connect_timeout_ms,
                options.and_then(|o| o.connect_timeout),
            ),
            first_byte: cap(
                limits.first_byte_timeout_ms,
                options.and_then(|o| o.first_byte_timeout),
            ),
        }
    }
}

/// A call in progress: what will be recorded about it.
#[derive(Clone)]
struct Call {
    record: HttpCall,
    scheme: Option<Scheme>,
    started: Instant,
}

impl Call {
    fn new(request: &http::Request<WasiBody>) -> Self {
        let uri = request.uri();
        let scheme = match uri.scheme_str() {
            Some("https") => Some(Scheme::Https),
            Some("http") => Some(Scheme::Http),
            _ => None,
        };
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let port = uri
            .port_u16()
            .or(scheme.map(Scheme::default_port))
            .unwrap_or(0);
        Self {
            record: HttpCall {
                method: request.method().as_str().to_owned(),
                scheme: uri.scheme_str().unwrap_or_default().to_owned(),
                host,
                port,
                path: stepwise_core::text::prefix(uri.path(), 1024).to_owned(),
                status: None,
                error: None,
                duration_ms: 0,
                request_bytes: 0,
                response_bytes: 0,
            },
            scheme,
            started: Instant::now(),
        }
    }

    /// Records the call as refused before anything was sent.
    fn deny(mut self, attempt: &AttemptEgress, reason: String) -> Error {
        tracing::info!(
            tenant = %attempt.tenant, method = %self.record.method, host = %self.record.host,
            reason = %reason, "outbound request refused"
        );
        self.record.error = Some(reason);
        attempt.shared.stats.count(&attempt.tenant, "denied");
        push(attempt, self.record, true);
        Error::HttpRequestDenied
    }

    /// Records the call as failed after it was allowed, with the request body bytes it sent.
    fn fail(mut self, attempt: &AttemptEgress, error: Error, sent: u64) -> Error {
        // Whatever layer noticed first, a call cut by the deadline says so.
        self.record.error = Some(if Instant::now() >= attempt.deadline {
            DEADLINE_PASSED.to_owned()
        } else {
            describe(&error)
        });
        self.record.duration_ms = millis(self.started.elapsed());
        self.record.request_bytes = sent;
        attempt.shared.stats.count(&attempt.tenant, "error");
        push(attempt, self.record, false);
        error
    }
}

fn push(attempt: &AttemptEgress, call: HttpCall, denied: bool) {
    attempt
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((call, denied));
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The error as a handler author reads it on the timeline.
fn describe(error: &Error) -> String {
    match error {
        Error::Connect(e) => format!("connection failed: {e}"),
        Error::Tls(e) => format!("TLS failed: {e}"),
        Error::Hyper(e) => format!("HTTP error: {e}"),
        Error::HttpRequestBodySize(Some(n)) => format!("request body over the {n}-byte limit"),
        Error::HttpResponseBodySize(Some(n)) => format!("response body over the {n}-byte limit"),
        Error::ConnectionTimeout => "timed out connecting".into(),
        Error::ConnectionReadTimeout => "timed out waiting for the response".into(),
        Error::DnsTimeout => "timed out resolving the host".into(),
        Error::DnsError { rcode, .. } => {
            format!(
                "could not resolve the host: {}",
                rcode.as_deref().unwrap_or("no answer")
            )
        }
        other => format!("{other:?}"),
    }
}

async fn send(
    attempt: &Arc<AttemptEgress>,
    call: Call,
    mut request: http::Request<WasiBody>,
    over: Option<u32>,
    in_flight: Arc<Semaphore>,
    timeouts: Timeouts,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let limits = attempt.limits;
    if let Some(n) = over {
        // Past the cap only the first refusal is recorded: a loop must not flood the timeline.
        if n == limits.max_requests.saturating_add(1) {
            return Err(call.deny(
                attempt,
                format!(
                    "the attempt already sent {} requests, its limit (max_requests)",
                    limits.max_requests
                ),
            ));
        }
        return Err(Error::HttpRequestDenied);
    }
    let Some(scheme) = call.scheme else {
        let why = format!("scheme {:?} is not http or https", call.record.scheme);
        return Err(call.deny(attempt, why));
    };
    if let Some(gate) = &attempt.gate
        && let Err(why) = gate.clone().await
    {
        return Err(call.deny(attempt, format!("the attempt could not be recorded: {why}")));
    }
    let (host, port, method) = (
        call.record.host.clone(),
        call.record.port,
        call.record.method.clone(),
    );
    if !attempt
        .policy
        .rules
        .iter()
        .any(|r| r.allows(scheme, &host, port, &method))
    {
        let why = format!(
            "no egress rule of tenant '{}' allows {method} to {}://{host}:{port}",
            attempt.tenant,
            scheme.as_str()
        );
        return Err(call.deny(attempt, why));
    }
    if let Err(why) = fill_secrets(attempt, &mut request, scheme, &host, port) {
        return Err(call.deny(attempt, why));
    }
    if let Some(len) = declared_length(&request)
        && len > limits.max_request_bytes
    {
        let error = Error::HttpRequestBodySize(Some(limits.max_request_bytes));
        return Err(call.fail(attempt, error, 0));
    }
    let connect_timeout = timeouts.connect;
    let addrs = match tokio::time::timeout(connect_timeout, resolve(&host, port)).await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => return Err(call.fail(attempt, e, 0)),
        Err(_) => return Err(call.fail(attempt, Error::DnsTimeout, 0)),
    };
    if !attempt.shared.config.allow_private {
        for a in &addrs {
            if let Some(why) = addr::non_public(a.ip()) {
                let why = format!(
                    "{host} resolves to {}, {why}, which this host does not reach",
                    a.ip()
                );
                return Err(call.deny(attempt, why));
            }
        }
    }
    let _permit = in_flight
        .acquire_owned()
        .await
        .map_err(|_| Error::ConnectionLimitReached)?;
    let stream = match connect(&addrs, connect_timeout).await {
        Ok(s) => s,
        Err(e) => return Err(call.fail(attempt, e, 0)),
    };
    let io: Box<dyn Stream> = match scheme {
        Scheme::Http => Box::new(stream),
        Scheme::Https => {
            let name = match rustls::pki_types::ServerName::try_from(host.clone()) {
                Ok(n) => n,
                Err(_) => {
                    let e = Error::HttpRequestUriInvalid;
                    return Err(call.fail(attempt, e, 0));
                }
            };
            let tls = tokio_rustls::TlsConnector::from(attempt.shared.tls.clone());
            match tokio::time::timeout(connect_timeout, tls.connect(name, stream)).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => return Err(call.fail(attempt, Error::Tls(e), 0)),
                Err(_) => {
                    return Err(call.fail(attempt, Error::ConnectionTimeout, 0));
                }
            }
        }
    };
    let handshake = hyper::client::conn::http1::handshake(TokioIo::new(io));
    let (mut sender, conn) = match tokio::time::timeout(connect_timeout, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(call.fail(attempt, Error::from(e), 0)),
        Err(_) => return Err(call.fail(attempt, Error::ConnectionTimeout, 0)),
    };
    // On the wire only the path and query go in the request line (no proxy in between).
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let sent = Arc::new(AtomicU64::new(0));
    let request = request.map(|body| {
        LimitedRequest {
            inner: body,
            sent: sent.clone(),
            limit: limits.max_request_bytes,
        }
        .boxed_unsync()
    });
    let deadline = tokio::time::Instant::from_std(attempt.deadline);
    let mut conn = Box::pin(async move {
        match tokio::time::timeout_at(deadline, conn).await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::ConnectionTimeout),
        }
    });
    let first_byte = timeouts.first_byte;
    let mut conn_done = false;
    let response = {
        let exchange = tokio::time::timeout(first_byte, sender.send_request(request));
        tokio::pin!(exchange);
        // Drive the connection while waiting for the response head. A connection that ends
        // cleanly first (the server answered and closed) has already handed its response over.
        tokio::select! {
            biased;
            r = &mut exchange => r,
            r = &mut conn => match r {
                Ok(()) => {
                    conn_done = true;
                    exchange.await
                }
                Err(e) => return Err(call.fail(attempt, e, sent.load(Ordering::Relaxed))),
            }
        }
    };
    let response = match response {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let e = if e.is_user() {
                Error::HttpRequestBodySize(Some(limits.max_request_bytes))
            } else {
                Error::from(e)
            };
            return Err(call.fail(attempt, e, sent.load(Ordering::Relaxed)));
        }
        Err(_) => {
            return Err(call.fail(
                attempt,
                Error::ConnectionReadTimeout,
                sent.load(Ordering::Relaxed),
            ));
        }
    };
    let mut record = call.record;
    record.status = Some(response.status().as_u16());
    let body = ResponseBody {
        attempt: attempt.clone(),
        record: Some(record),
        started: call.started,
        sent,
        received: 0,
        limit: limits.max_response_bytes,
    };
    let response = response.map(|incoming| {
        let body = Tracked {
            incoming,
            tracker: body,
        };
        body.boxed_unsync()
    });
    // A finished connection future must not be polled again.
    let io: IoFuture = if conn_done {
        Box::new(std::future::ready(Ok(())))
    } else {
        Box::new(conn)
    };
    Ok((response, io))
}

/// The placeholder a guest writes in a header for a host-bound secret.
const PLACEHOLDER: &str = "{{secret:";

/// Replaces every `{{secret:NAME}}` in the request's headers with the value, where the secret
/// is bound to this request's destination; otherwise says why the request must be refused.
/// The filled headers are marked sensitive so no layer prints them.
fn fill_secrets(
    attempt: &AttemptEgress,
    request: &mut http::Request<WasiBody>,
    scheme: Scheme,
    host: &str,
    port: u16,
) -> Result<(), String> {
    for value in request.headers_mut().values_mut() {
        let Ok(text) = value.to_str() else { continue };
        if !text.contains(PLACEHOLDER) {
            continue;
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(PLACEHOLDER) {
            out.push_str(&rest[..start]);
            let after = &rest[start + PLACEHOLDER.len()..];
            let end = after
                .find("}}")
                .ok_or_else(|| "a header has an unclosed {{secret:...}} placeholder".to_owned())?;
            let name = &after[..end];
            out.push_str(&attempt.secrets.for_header(name, scheme, host, port)?);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        let mut filled = http::HeaderValue::from_str(&out)
            .map_err(|_| "a secret's value is not valid in a header".to_owned())?;
        filled.set_sensitive(true);
        *value = filled;
    }
    Ok(())
}

/// What a request's `Content-Length` says, if it says anything.
fn declared_length(request: &http::Request<WasiBody>) -> Option<u64> {
    request
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })?;
    let addrs: Vec<SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    Ok(addrs)
}

/// Connects to the first address that answers, each within `timeout`.
async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::DestinationNotFound;
    for a in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T> Stream for T where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static
{
}

/// A request body that fails once it passes its limit, counting what it sent.
struct LimitedRequest {
    inner: WasiBody,
    sent: Arc<AtomicU64>,
    limit: u64,
}

impl Body for LimitedRequest {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(data) = f.data_ref()
        {
            let total = self
                .sent
                .fetch_add(data.len() as u64, Ordering::Relaxed)
                .saturating_add(data.len() as u64);
            if total > self.limit {
                return Poll::Ready(Some(Err(Error::HttpRequestBodySize(Some(self.limit)))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts a response body, cuts it at its limit, and records the call when it ends (at its
/// end, at its error, or when the guest drops it).
struct ResponseBody {
    attempt: Arc<AttemptEgress>,
    record: Option<HttpCall>,
    started: Instant,
    sent: Arc<AtomicU64>,
    received: u64,
    limit: u64,
}

impl ResponseBody {
    fn finish(&mut self, error: Option<String>) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.duration_ms = millis(self.started.elapsed());
        record.request_bytes = self.sent.load(Ordering::Relaxed);
        record.response_bytes = self.received;
        let class = match (&error, record.status) {
            (Some(_), _) => "error",
            (None, Some(100..=199)) => "1xx",
            (None, Some(200..=299)) => "2xx",
            (None, Some(300..=399)) => "3xx",
            (None, Some(400..=499)) => "4xx",
            (None, _) => "5xx",
        };
        record.error = error;
        self.attempt.shared.stats.count(&self.attempt.tenant, class);
        push(&self.attempt, record, false);
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// The response body as the guest reads it.
struct Tracked {
    incoming: hyper::body::Incoming,
    tracker: ResponseBody,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.tracker.record.is_none() && this.tracker.received > this.tracker.limit {
            return Poll::Ready(None);
        }
        match std::task::ready!(Pin::new(&mut this.incoming).poll_frame(cx)) {
            None => {
                this.tracker.finish(None);
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                let e = Error::from(e);
                this.tracker.finish(Some(describe(&e)));
                Poll::Ready(Some(Err(e)))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.tracker.received = this.tracker.received.saturating_add(data.len() as u64);
                    if this.tracker.received > this.tracker.limit {
                        let e = Error::HttpResponseBodySize(Some(this.tracker.limit));
                        this.tracker.finish(Some(describe(&e)));
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
