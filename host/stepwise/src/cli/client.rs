//! The HTTP plumbing of the client subcommands (`deploy`, `enqueue`, `runs`, ...): the
//! `--server` / `--token` / `--json` flags, a small [`Client`] that sends the bearer token, and
//! the translation of the server's error bodies (see `docs/api.md`) into [`Failure`]s,
//! which carry the exit code of their class and print as JSON with `--json`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::Outcome;
use super::common::{write_json, write_stdout};

/// Where `stepwise serve` listens unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// How long to wait for the TCP connection before saying the server cannot be reached.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest piece of a non-API error body quoted in an error message.
const MAX_QUOTED_BODY: usize = 200;

/// Set once a command is asked for `--json`: its errors are then JSON on stdout too.
static JSON_ERRORS: AtomicBool = AtomicBool::new(false);

/// Makes the command's errors JSON on stdout (for `--json`).
pub fn json_errors(on: bool) {
    if on {
        JSON_ERRORS.store(true, Ordering::SeqCst);
    }
}

/// Whether errors are to be printed as JSON.
pub fn errors_as_json() -> bool {
    JSON_ERRORS.load(Ordering::SeqCst)
}

/// The class of a failed command, which is its exit code (see README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Bad input: arguments, files, or a request the server refused as malformed (2).
    BadInput = 2,
    /// The run, queue, job or route does not exist for this tenant (3).
    NotFound = 3,
    /// The request conflicts with what is stored (an idempotency key, a run not failed, a
    /// tenant that exists) or a quota (4).
    Conflict = 4,
    /// No token, an unknown one, or one that may not do this (5).
    Unauthorized = 5,
    /// The server could not be reached, failed, or answered something unexpected (6).
    Server = 6,
}

impl Class {
    /// The class of an error answer's status.
    fn of(status: StatusCode) -> Self {
        match status.as_u16() {
            401 | 403 => Self::Unauthorized,
            404 => Self::NotFound,
            // The request took too long to arrive and be answered: the server's side.
            408 => Self::Server,
            409 | 429 => Self::Conflict,
            400..=499 => Self::BadInput,
            _ => Self::Server,
        }
    }
}

/// A failed request: its class, the API's error code (or the client's own: `unreachable`,
/// `bad_answer`), a readable message and the error body's other fields.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// Which exit code.
    pub class: Class,
    /// The stable code.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// The error body's other fields.
    pub details: Map<String, Value>,
}

impl Failure {
    fn client(class: Class, code: &str, message: String) -> Self {
        Self {
            class,
            code: code.to_owned(),
            message,
            details: Map::new(),
        }
    }

    /// The failure an error answer stands for.
    fn answer(status: StatusCode, body: &str) -> Self {
        let parsed = serde_json::from_str::<crate::api::ErrorBody>(body).ok();
        let message = error_message(status, body);
        match parsed {
            Some(body) => Self {
                class: Class::of(status),
                code: body.error.code.as_str().to_owned(),
                message,
                details: body.error.details,
            },
            None => Self::client(Class::of(status), "http_error", message),
        }
    }

    /// `{"error": {"code", "message", ...}}`, the API's error shape.
    pub fn to_json(&self) -> Value {
        let mut error = self.details.clone();
        error.insert("code".into(), self.code.clone().into());
        error.insert("message".into(), self.message.clone().into());
        serde_json::json!({ "error": error })
    }
}

/// Flags of every client subcommand that acts for a tenant.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientFlags {
    /// URL of the Stepwise server.
    #[arg(long, env = "STEPWISE_URL", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// The tenant's token (`sw_…`), as printed by `stepwise tenant create`.
    #[arg(long, env = "STEPWISE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print exactly one JSON document instead of a readable summary.
    #[arg(long)]
    pub json: bool,
}

impl ClientFlags {
    /// A client for the server, refusing to start without a token.
    pub fn client(&self) -> Result<Client> {
        json_errors(self.json);
        let token = non_empty(self.token.clone())
            .context("no tenant token: pass --token or set STEPWISE_TOKEN")?;
        Client::new(&self.server, token)
    }
}

/// `None` for an absent or empty value (an exported but empty variable means "unset").
pub fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// A connection to one Stepwise server, acting with one bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the server at `server` (e.g. `http://127.0.0.1:7070`; empty means that
    /// default, so an exported but empty `STEPWISE_URL` is harmless).
    pub fn new(server: &str, token: String) -> Result<Self> {
        let server = match server.trim() {
            "" => DEFAULT_SERVER,
            given => given,
        };
        let base = Url::parse(server)
            .with_context(|| format!("'{server}' is not a server URL like {DEFAULT_SERVER}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!("'{server}' is not an http:// URL like {DEFAULT_SERVER}");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("stepwise/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self { base, token, http })
    }

    /// `GET` the path made of `segments`, with optional query parameters.
    pub async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        let request = self.request(Method::GET, segments)?.query(query);
        self.send(request).await
    }

    /// `POST` a JSON body.
    pub async fn post<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &impl Serialize,
    ) -> Result<T> {
        let request = self.request(Method::POST, segments)?.json(body);
        self.send(request).await
    }

    /// `POST` without a body.
    pub async fn post_empty<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        let request = self.request(Method::POST, segments)?;
        self.send(request).await
    }

    /// `POST` raw bytes of the given content type.
    pub async fn post_bytes<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<T> {
        let request = self
            .request(Method::POST, segments)?
            .header(CONTENT_TYPE, content_type)
            .body(bytes);
        self.send(request).await
    }

    /// `PUT` a JSON body.
    pub async fn put<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &impl Serialize,
    ) -> Result<T> {
        let request = self.request(Method::PUT, segments)?.json(body);
        self.send(request).await
    }

    /// `DELETE` the resource.
    pub async fn delete<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        let request = self.request(Method::DELETE, segments)?;
        self.send(request).await
    }

    /// `GET` a stream of server-sent events; an error answer becomes an error.
    pub async fn events(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        let request = self
            .request(Method::GET, segments)?
            .query(query)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(Failure::answer(status, &body).into());
        }
        Ok(response)
    }

    fn request(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder> {
        let url = endpoint(&self.base, segments)?;
        Ok(self.http.request(method, url).bearer_auth(&self.token))
    }

    /// Sends the request and decodes a successful answer; an error answer becomes an error.
    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            Failure::client(
                Class::Server,
                "unreachable",
                format!("the server's answer was cut short: {e}"),
            )
        })?;
        if !status.is_success() {
            return Err(Failure::answer(status, &body).into());
        }
        serde_json::from_str(&body).map_err(|e| {
            Failure::client(
                Class::Server,
                "bad_answer",
                format!(
                    "unexpected answer from the server ({e}): {}",
                    quote(&body, MAX_QUOTED_BODY)
                ),
            )
            .into()
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        let message = if e.is_connect() || e.is_timeout() {
            format!(
                "cannot reach the Stepwise server at {}: {} \
                 (is `stepwise serve` running there? set --server or STEPWISE_URL)",
                self.base,
                root_cause(&e)
            )
        } else {
            format!(
                "request to the Stepwise server at {} failed: {}",
                self.base,
                source_chain(&e)
            )
        };
        Failure::client(Class::Server, "unreachable", message).into()
    }
}

/// The URL of `segments` under `base`, each segment percent-encoded.
fn endpoint(base: &Url, segments: &[&str]) -> Result<Url> {
    if let Some(bad) = segments
        .iter()
        .find(|s| s.is_empty() || matches!(**s, "." | ".."))
    {
        bail!("'{bad}' cannot be used as a name or id here");
    }
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| anyhow!("'{base}' cannot be a base URL"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The innermost cause, e.g. "Connection refused (os error 111)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// reqwest's top-level message is vague ("error sending request"); the causes say why.
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The error an error answer stands for: `<code>: <message>` for the API's error body (with the
/// conflicting run for `idempotency_conflict`), else the HTTP status and the start of the body.
pub fn error_message(status: StatusCode, body: &str) -> String {
    let error = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned());
    let code = error
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str);
    let Some(code) = code else {
        let body = body.trim();
        return if body.is_empty() {
            format!("the server answered {status}")
        } else {
            format!(
                "the server answered {status}: {}",
                quote(body, MAX_QUOTED_BODY)
            )
        };
    };
    let field = |name: &str| {
        error
            .as_ref()
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
    };
    let message = field("message").filter(|m| !m.is_empty());
    let mut text = match message {
        Some(message) => format!("{code}: {message}"),
        None => format!("{code} ({status})"),
    };
    if let Some(run) = field("run_id")
        && !message.is_some_and(|m| m.contains(run))
    {
        text.push_str(&format!(" (existing run: {run})"));
    }
    text
}

/// At most `max` characters of `text`, marked when cut.
fn quote(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let head: String = text.chars().take(max).collect();
        format!("{head}…")
    }
}

/// Decodes a JSON answer kept as a [`Value`] (to print it verbatim with `--json`) into the
/// shape the readable output needs.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        Failure::client(
            Class::Server,
            "bad_answer",
            format!("unexpected answer from the server: {e}"),
        )
        .into()
    })
}

/// Prints the server's answer: as it came with `--json`, otherwise decoded as `T` and rendered
/// for people by `render`.
pub fn reply<T: DeserializeOwned>(
    answer: Value,
    json: bool,
    render: impl FnOnce(T) -> String,
) -> Result<Outcome> {
    if json {
        write_json(&answer)?;
    } else {
        write_stdout(render(decode(answer)?).trim_end())?;
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_code_and_message() {
        let body =
            r#"{"error":{"code":"unknown_job","message":"no module offers 'x'; jobs: a, b"}}"#;
        assert_eq!(
            error_message(StatusCode::NOT_FOUND, body),
            "unknown_job: no module offers 'x'; jobs: a, b"
        );
    }

    #[test]
    fn idempotency_conflicts_name_the_existing_run() {
        let body = r#"{"error":{"code":"idempotency_conflict","message":"key k is held by a run with another payload","run_id":"run_0193"}}"#;
        assert_eq!(
            error_message(StatusCode::CONFLICT, body),
            "idempotency_conflict: key k is held by a run with another payload \
             (existing run: run_0193)"
        );
        let named = r#"{"error":{"code":"idempotency_conflict","message":"key k is used by run 'run_0193'","run_id":"run_0193"}}"#;
        assert_eq!(
            error_message(StatusCode::CONFLICT, named),
            "idempotency_conflict: key k is used by run 'run_0193'"
        );
    }

    #[test]
    fn other_error_bodies_show_the_status() {
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, "<html>proxy error</html>\n"),
            "the server answered 502 Bad Gateway: <html>proxy error</html>"
        );
        assert_eq!(
            error_message(StatusCode::UNAUTHORIZED, ""),
            "the server answered 401 Unauthorized"
        );
        assert_eq!(
            error_message(StatusCode::FORBIDDEN, r#"{"error":{"code":"forbidden"}}"#),
            "forbidden (403 Forbidden)"
        );
        let long = "x".repeat(1_000);
        let text = error_message(StatusCode::INTERNAL_SERVER_ERROR, &long);
        assert!(text.ends_with('…') && text.len() < 300, "{text}");
    }

    #[test]
    fn endpoints_encode_segments_under_the_base_path() {
        let base = Url::parse("http://127.0.0.1:7070").unwrap();
        assert_eq!(
            endpoint(&base, &["v1", "queues", "a b/c", "jobs"])
                .unwrap()
                .as_str(),
            "http://127.0.0.1:7070/v1/queues/a%20b%2Fc/jobs"
        );
        let proxied = Url::parse("https://example.com/stepwise/?x=1").unwrap();
        assert_eq!(
            endpoint(&proxied, &["v1", "runs"]).unwrap().as_str(),
            "https://example.com/stepwise/v1/runs"
        );
        for bad in ["..", ".", ""] {
            assert!(endpoint(&base, &["v1", "queues", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clients_need_an_http_url_and_a_token() {
        assert!(Client::new("127.0.0.1:7070", "t".into()).is_err());
        assert!(Client::new("ftp://host", "t".into()).is_err());
        assert!(Client::new(DEFAULT_SERVER, "t".into()).is_ok());
        assert_eq!(
            Client::new("", "t".into()).unwrap().base.as_str(),
            "http://127.0.0.1:7070/"
        );
        let flags = ClientFlags {
            server: DEFAULT_SERVER.into(),
            token: Some("  ".into()),
            json: false,
        };
        let err = flags.client().unwrap_err().to_string();
        assert!(err.contains("STEPWISE_TOKEN"), "{err}");
    }
}
