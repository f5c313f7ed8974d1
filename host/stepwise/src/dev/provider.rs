//! A fake payment provider for tests, the demo and local development: `stepwise dev provider`.
//!
//! It behaves like the providers handlers call for real: charges are stored by
//! `Idempotency-Key`, and the same key gets the first response again (Stripe's semantics). It
//! can be told (`POST /control`) to fail the next requests with 500, to process the next
//! charges but lose the response (answer only after a long delay, so the client times out),
//! or to answer 429 with a `Retry-After`. Everything lives in memory.
//!
//! Routes: `POST /v1/charges` (JSON `{"amount": n}`, header `Idempotency-Key` required),
//! `GET /v1/charges` (every charge), `POST /v1/accounts`, `POST /v1/receipts` (plain
//! records), `POST /v1/webhooks` (answers `status` from `/control`), `GET /v1/contacts` (a
//! list, rate-limited by `throttle_next`), `GET /bytes/{n}` (n bytes), `GET /hold/{n}`
//! (holds each request until `n` are held at once, or `hold_ms` passed, and answers the most
//! held at once since it started: a client's real concurrency, seen from the server),
//! `GET /requests` (how many requests arrived, by path), `POST /control`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

/// Largest `GET /bytes/{n}` answer.
const MAX_BYTES: usize = 64 << 20;

/// What the provider was told to do with the next requests.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// Answer this many of the next charge requests with 500, storing nothing.
    pub fail_next: u32,
    /// Answer this many of the next `POST /v1/accounts` with 500, storing nothing.
    pub fail_accounts_next: u32,
    /// Store this many of the next charges but answer only after `lose_delay_ms`.
    pub lose_next: u32,
    /// How long a lost response is held back. Default 60 s.
    pub lose_delay_ms: Option<u64>,
    /// Answer this many of the next charge and contacts requests with 429.
    pub throttle_next: u32,
    /// The 429's `Retry-After` value, as sent (`"2"` or an HTTP date).
    pub retry_after: Option<String>,
    /// The status `POST /v1/webhooks` answers with (default 200), with `retry_after` as its
    /// `Retry-After` when set.
    pub webhook_status: Option<u16>,
    /// How many webhook requests get `webhook_status` before the rest get 200; absent: all.
    pub webhook_times: Option<u32>,
    /// How long `GET /hold/{n}` holds a request when fewer than `n` arrive. Default 2 s.
    pub hold_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Provider {
    control: Control,
    /// Idempotency key → the charge stored under it.
    charges: BTreeMap<String, Value>,
    /// Requests received, by path.
    requests: HashMap<String, u64>,
    records: u64,
    /// Requests `GET /hold/{n}` holds now.
    held: u32,
    /// The most it held at once since the provider started.
    most_held: Option<watch::Sender<u32>>,
}

type Shared = Arc<Mutex<Provider>>;

/// The provider's router, to serve on any listener.
pub fn router() -> Router {
    let state: Shared = Arc::default();
    Router::new()
        .route("/v1/charges", post(charge).get(list_charges))
        .route("/v1/accounts", post(record))
        .route("/v1/receipts", post(record))
        .route("/v1/webhooks", post(webhook))
        .route("/v1/contacts", get(contacts))
        .route("/bytes/{n}", get(bytes))
        .route("/hold/{n}", get(hold))
        .route("/requests", get(requests))
        .route("/control", post(control))
        .with_state(state)
}

/// Serves the provider on `listen` until the process ends, or returns the bound address
/// when `listen`'s port is 0 (the server then runs on a spawned task).
pub async fn spawn(listen: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router()).await {
            tracing::error!(error = %e, "fake provider stopped");
        }
    });
    Ok(addr)
}

/// Sets the provider's behaviour for its next requests, as `POST /control` does.
pub async fn set_control(base: &str, control: Control) -> anyhow::Result<()> {
    reqwest::Client::new()
        .post(format!("{base}/control"))
        .json(&control)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

fn seen(state: &Shared, path: &str) {
    let mut p = state.lock().unwrap_or_else(|e| e.into_inner());
    *p.requests.entry(path.to_owned()).or_default() += 1;
}

#[derive(Deserialize)]
struct ChargeBody {
    amount: u64,
}

async fn charge(State(state): State<Shared>, headers: HeaderMap, body: String) -> Response {
    seen(&state, "/v1/charges");
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "Idempotency-Key header required" })),
        )
            .into_response();
    };
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (answer, delay) = {
        let mut p = state.lock().unwrap_or_else(|e| e.into_inner());
        if p.control.fail_next > 0 {
            p.control.fail_next -= 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "provider unavailable").into_response();
        }
        if let Some(throttled) = throttle(&mut p) {
            return throttled;
        }
        if let Some(existing) = p.charges.get(&key) {
            // Same key: the first response again, whatever the body says.
            (existing.clone(), None)
        } else {
            let amount = match serde_json::from_str::<ChargeBody>(&body) {
                Ok(b) => b.amount,
                Err(e) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        Json(json!({ "error": format!("bad charge: {e}") })),
                    )
                        .into_response();
                }
            };
            let charge = json!({
                "id": format!("ch_{}", p.charges.len() + 1),
                "payment_id": serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|b| b.get("payment_id").cloned()),
                "amount": amount,
                "idempotency_key": key,
                "authorized": authorized,
            });
            p.charges.insert(key, charge.clone());
            let delay = (p.control.lose_next > 0).then(|| {
                p.control.lose_next -= 1;
                Duration::from_millis(p.control.lose_delay_ms.unwrap_or(60_000))
            });
            (charge, delay)
        }
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    (StatusCode::OK, Json(answer)).into_response()
}

/// A 429 with `Retry-After` while `throttle_next` lasts (counting it down), else `None`.
fn throttle(p: &mut Provider) -> Option<Response> {
    if p.control.throttle_next == 0 {
        return None;
    }
    p.control.throttle_next -= 1;
    let retry = p.control.retry_after.clone().unwrap_or_else(|| "1".into());
    let answer = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry)],
        "slow down",
    );
    Some(answer.into_response())
}

/// A rate-limited read: 429 with `Retry-After` while `throttle_next` lasts, then a list.
async fn contacts(State(state): State<Shared>) -> Response {
    seen(&state, "/v1/contacts");
    let mut p = state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(throttled) = throttle(&mut p) {
        return throttled;
    }
    Json(json!({ "contacts": ["ada@example.com", "grace@example.com"] })).into_response()
}

async fn list_charges(State(state): State<Shared>) -> Json<Value> {
    let p = state.lock().unwrap_or_else(|e| e.into_inner());
    let charges: Vec<&Value> = p.charges.values().collect();
    Json(json!({ "count": charges.len(), "charges": charges }))
}

async fn record(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    seen(&state, uri.path());
    let mut p = state.lock().unwrap_or_else(|e| e.into_inner());
    if uri.path() == "/v1/accounts" && p.control.fail_accounts_next > 0 {
        p.control.fail_accounts_next -= 1;
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "accounts backend unavailable",
        )
            .into_response();
    }
    p.records += 1;
    let prefix = if uri.path() == "/v1/accounts" {
        "acct"
    } else {
        "rcpt"
    };
    Json(json!({ "id": format!("{prefix}_{}", p.records) })).into_response()
}

async fn webhook(State(state): State<Shared>) -> Response {
    seen(&state, "/v1/webhooks");
    let mut p = state.lock().unwrap_or_else(|e| e.into_inner());
    let control = &mut p.control;
    let failing = match &mut control.webhook_times {
        None => true,
        Some(0) => false,
        Some(n) => {
            *n -= 1;
            true
        }
    };
    let status = control
        .webhook_status
        .filter(|_| failing)
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    match (&control.retry_after, status) {
        (Some(retry), StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) => {
            (status, [(header::RETRY_AFTER, retry.clone())], "try later").into_response()
        }
        _ => (status, "webhook received").into_response(),
    }
}

async fn bytes(State(state): State<Shared>, Path(n): Path<usize>) -> Response {
    seen(&state, "/bytes");
    vec![b'x'; n.min(MAX_BYTES)].into_response()
}

async fn hold(State(state): State<Shared>, Path(n): Path<u32>) -> Json<Value> {
    let (mut most, wait) = {
        let mut p = state.lock().unwrap_or_else(|e| e.into_inner());
        *p.requests.entry("/hold".to_owned()).or_default() += 1;
        p.held = p.held.saturating_add(1);
        let now = p.held;
        let wait = Duration::from_millis(p.control.hold_ms.unwrap_or(2_000).min(600_000));
        let most = p.most_held.get_or_insert_with(|| watch::channel(0).0);
        most.send_if_modified(|m| {
            let grew = now > *m;
            *m = (*m).max(now);
            grew
        });
        (most.subscribe(), wait)
    };
    // The most held only grows, so every waiter sees `n` once it was reached, even after
    // the first released ones left.
    let _ = tokio::time::timeout(wait, most.wait_for(|m| *m >= n)).await;
    let most_held = *most.borrow();
    let mut p = state.lock().unwrap_or_else(|e| e.into_inner());
    p.held = p.held.saturating_sub(1);
    Json(json!({ "most_held": most_held }))
}

async fn requests(State(state): State<Shared>) -> Json<Value> {
    let p = state.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!(p.requests))
}

async fn control(State(state): State<Shared>, Json(control): Json<Control>) -> Json<Value> {
    state.lock().unwrap_or_else(|e| e.into_inner()).control = control;
    Json(json!({ "ok": true }))
}
