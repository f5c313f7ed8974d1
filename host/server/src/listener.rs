//! The accept loop of `stepwise serve`, written on hyper directly because `axum::serve` has no
//! knobs for what a hostile client may hold: it takes at most `max_connections` connections at
//! once (the rest wait in the kernel's backlog), gives each `header_timeout` to send a
//! request's headers (hyper closes idle keep-alive connections on the same timer), and
//! [`request_timeout`] bounds the time from the headers to the answer, body included, with a
//! `408 request_timeout` in the API's error shape. On shutdown it stops accepting and lets
//! open connections finish their requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use stepwise_api::ErrorCode;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::config::HttpLimits;
use super::error::ApiError;

/// Answers `408 request_timeout` when a request (its body and its handling) takes longer
/// than `limit`.
pub async fn request_timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!(
                "the request took longer than {} ms to arrive and be answered",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// Serves `app` on `listener` under `limits` until `stop` resolves; then waits up to
/// `drain` for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    stop: impl Future<Output = ()>,
    drain: Duration,
) {
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        request_timeout,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish within the grace period");
    }
}
