//! A small blocking HTTP client over `wasi:http/outgoing-handler`, for calls inside steps.
//!
//! Written for the SDK rather than re-exported: the well-kept wasip2 clients are async
//! (`wstd`) or pull in their own copy of the WASI bindings (`waki`), while a step is a plain
//! synchronous closure and the SDK already binds `wasi:http` from the same vendored WIT as the
//! host. Requests go where the tenant's egress rules allow and nowhere else; the host records
//! each call on the run's timeline.
//!
//! ```no_run
//! use stepwise_sdk::prelude::*;
//! use stepwise_sdk::http::Request;
//!
//! #[derive(Deserialize, Serialize)]
//! struct Charge { id: String }
//!
//! #[job(max_attempts = 8)]
//! fn charge(ctx: &mut Ctx, amount: u64) -> Result<String, JobError> {
//!     let charge: Charge = ctx.step("charge", || {
//!         let response = Request::post("https://api.example.com/v1/charges")
//!             .header("Authorization", "Bearer {{secret:PAYMENTS_KEY}}")
//!             .header("Idempotency-Key", &ctx.idempotency_key()?)
//!             .json(&serde_json::json!({ "amount": amount }))?
//!             .send()?            // timeouts, connection errors: retryable
//!             .error_for_status()?; // 5xx retryable, 429/503 honour Retry-After, 4xx final
//!         Ok(response.json()?)
//!     })?;
//!     Ok(charge.id)
//! }
//! # fn main() {}
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::wasi::http::outgoing_handler;
use crate::__bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::__bindings::wasi::io::streams::StreamError;
use crate::JobError;

/// Default time to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time from sending the request to the response's headers.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes per blocking write (the most `blocking-write-and-flush` takes at once).
const WRITE_CHUNK: usize = 4096;

/// Bytes asked for per blocking read.
const READ_CHUNK: u64 = 64 << 10;

/// Why a request failed. Converts into a [`JobError`] with the kind a retry policy wants:
/// timeouts, connection failures and 5xx are retryable; 429 and 503 with `Retry-After` wait
/// that long; a refused request (egress rules) and other 4xx are final. Match on it to decide
/// otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL is not `http://` or `https://` with a host.
    InvalidUrl(String),
    /// The host refused to send the request (egress rules, the attempt's request cap); the
    /// run's timeline says why.
    Denied,
    /// Connecting or waiting for the response took too long.
    Timeout,
    /// The connection failed (DNS, refused, TLS, reset).
    Connection(String),
    /// A body was over the host's limit.
    TooLarge(String),
    /// The server answered with an error status (from [`Response::error_for_status`]).
    Status {
        /// The status code.
        status: u16,
        /// The delay the server asked for in `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The start of the response body, for the error message.
        body: String,
    },
    /// Anything else the HTTP layer reported.
    Other(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(u) => write!(f, "invalid URL {u:?}: use http:// or https://"),
            Self::Denied => write!(
                f,
                "the host refused the request (egress rules or limits; see the run's timeline)"
            ),
            Self::Timeout => write!(f, "the request timed out"),
            Self::Connection(e) => write!(f, "connection failed: {e}"),
            Self::TooLarge(e) => write!(f, "{e}"),
            Self::Status { status, body, .. } if body.is_empty() => write!(f, "HTTP {status}"),
            Self::Status { status, body, .. } => write!(f, "HTTP {status}: {body}"),
            Self::Other(e) => write!(f, "{e}"),
        }
    }
}

impl From<HttpError> for JobError {
    fn from(e: HttpError) -> Self {
        let message = e.to_string();
        match e {
            HttpError::Timeout | HttpError::Connection(_) | HttpError::Other(_) => {
                JobError::retryable(message)
            }
            HttpError::Status {
                status: 429 | 503,
                retry_after: Some(delay),
                ..
            } => JobError::retry_after(delay, message),
            HttpError::Status {
                status: 408 | 429 | 500..=599,
                ..
            } => JobError::retryable(message),
            HttpError::InvalidUrl(_)
            | HttpError::Denied
            | HttpError::TooLarge(_)
            | HttpError::Status { .. } => JobError::non_retryable(message),
        }
    }
}

fn from_code(code: &ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied,
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::DnsTimeout
        | ErrorCode::HttpResponseTimeout => HttpError::Timeout,
        ErrorCode::HttpRequestBodySize(n) => {
            HttpError::TooLarge(format!("request body over the host's limit ({n:?} bytes)"))
        }
        ErrorCode::HttpResponseBodySize(n) => {
            HttpError::TooLarge(format!("response body over the host's limit ({n:?} bytes)"))
        }
        ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionLimitReached
        | ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_)
        | ErrorCode::HttpResponseIncomplete => HttpError::Connection(format!("{code:?}")),
        other => HttpError::Other(format!("{other:?}")),
    }
}

/// A request being built. Headers may carry `{{secret:NAME}}` placeholders, which the host
/// fills in for hosts the secret is bound to.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
}

impl Request {
    /// A request with any method.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            connect_timeout: CONNECT_TIMEOUT,
            first_byte_timeout: FIRST_BYTE_TIMEOUT,
        }
    }

    /// A `GET`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST`.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// A `PUT`.
    pub fn put(url: &str) -> Self {
        Self::new("PUT", url)
    }

    /// A `DELETE`.
    pub fn delete(url: &str) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its `Content-Type`.
    pub fn json<T: Serialize>(self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value).map_err(|e| HttpError::Other(e.to_string()))?;
        Ok(self.header("Content-Type", "application/json").body(body))
    }

    /// Time to connect (default 10 s; the host's limit and the attempt's deadline still apply).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time from sending to the response's headers (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let url = Url::parse(&self.url)?;
        let entries: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect();
        let headers = Fields::from_list(&entries)
            .map_err(|e| HttpError::Other(format!("bad header: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        };
        let invalid = || HttpError::InvalidUrl(self.url.clone());
        request.set_method(&method).map_err(|_| invalid())?;
        request
            .set_scheme(Some(&url.scheme))
            .map_err(|_| invalid())?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|_| invalid())?;
        request
            .set_path_with_query(Some(&url.path_and_query))
            .map_err(|_| invalid())?;
        let options = RequestOptions::new();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let _ = options.set_connect_timeout(Some(nanos(self.connect_timeout)));
        let _ = options.set_first_byte_timeout(Some(nanos(self.first_byte_timeout)));
        let body = request
            .body()
            .map_err(|_| HttpError::Other("request body taken twice".into()))?;
        // Send first, then stream the body: the host pulls it as it writes to the socket.
        let future = outgoing_handler::handle(request, Some(options)).map_err(|e| from_code(&e))?;
        write_body(body, &self.body)?;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(code))) => return Err(from_code(&code)),
            Some(Err(())) | None => return Err(HttpError::Other("response already taken".into())),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|_| HttpError::Other("response body taken twice".into()))?;
        let body = read_body(incoming)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    {
        let stream = body
            .write()
            .map_err(|_| HttpError::Other("request body stream taken twice".into()))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(stream_error)?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|e| from_code(&e))
}

fn read_body(body: IncomingBody) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|_| HttpError::Other("response body stream taken twice".into()))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_error(e)),
            }
        }
    }
    drop(IncomingBody::finish(body));
    Ok(out)
}

fn stream_error(e: StreamError) -> HttpError {
    match e {
        StreamError::Closed => HttpError::Connection("the connection closed".into()),
        StreamError::LastOperationFailed(io) => {
            match crate::__bindings::wasi::http::types::http_error_code(&io) {
                Some(code) => from_code(&code),
                None => HttpError::Connection(io.to_debug_string()),
            }
        }
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Other(format!("response is not the JSON expected: {e}")))
    }

    /// `Ok(self)` for 1xx-3xx, else [`HttpError::Status`] with `Retry-After` read (seconds
    /// or an HTTP date).
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.status < 400 {
            return Ok(self);
        }
        let retry_after = self
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let text = self.text();
        let mut cut = text.len().min(200);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        Err(HttpError::Status {
            status: self.status,
            retry_after,
            body: text[..cut].to_owned(),
        })
    }
}

/// `Retry-After` as a delay from `now`: delta-seconds or an HTTP date (a date in the past is
/// no delay).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A parsed `http(s)://authority/path?query`.
struct Url {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

impl Url {
    fn parse(url: &str) -> Result<Self, HttpError> {
        let invalid = || HttpError::InvalidUrl(url.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            _ => return Err(invalid()),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid());
        }
        let path_and_query = match tail {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        Ok(Self {
            scheme,
            authority: authority.to_owned(),
            path_and_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let u = Url::parse("https://api.example.com:8443/v1/x?y=1#frag").unwrap();
        assert!(matches!(u.scheme, Scheme::Https));
        assert_eq!(u.authority, "api.example.com:8443");
        assert_eq!(u.path_and_query, "/v1/x?y=1");
        assert_eq!(Url::parse("http://h").unwrap().path_and_query, "/");
        assert_eq!(Url::parse("http://h?q").unwrap().path_and_query, "/?q");
        for bad in ["ftp://h/", "h/x", "https:///x", "https://u@h/"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 12:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn errors_map_to_the_retry_kind_a_policy_wants() {
        use crate::ErrorKind;
        let status = |status, retry_after| HttpError::Status {
            status,
            retry_after,
            body: String::new(),
        };
        let kind = |e: HttpError| JobError::from(e).kind();
        assert_eq!(kind(HttpError::Timeout), ErrorKind::Retryable);
        assert_eq!(kind(status(500, None)), ErrorKind::Retryable);
        assert_eq!(kind(status(429, None)), ErrorKind::Retryable);
        assert_eq!(
            kind(status(429, Some(Duration::from_secs(2)))),
            ErrorKind::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(kind(status(404, None)), ErrorKind::NonRetryable);
        assert_eq!(kind(status(410, None)), ErrorKind::NonRetryable);
        assert_eq!(kind(HttpError::Denied), ErrorKind::NonRetryable);
    }
}
