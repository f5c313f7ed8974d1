//! Bearer-token authentication: a tenant token acts for its tenant, the admin token only manages
//! tenants. Extractors, so a handler's signature says who may call it.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use stepwise_api::ErrorCode;

use super::AppState;
use super::error::ApiError;

/// The tenant a request acts for.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

/// Proof that a request carries the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

/// Who reads `/metrics`: anyone sees the host-wide series; the series labelled by tenant
/// or queue (which name tenants and their queues) need the operator's metrics token.
#[derive(Debug, Clone, Copy)]
pub struct MetricsReader {
    /// Whether the request carried the metrics token.
    pub per_tenant: bool,
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let unauthorized =
        |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, m);
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing 'Authorization: Bearer <token>' header"))?;
    let text = header
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not valid text"))?;
    text.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("the Authorization header must be 'Bearer <token>'"))
}

/// Compares without an early exit, so response timing does not reveal a token's prefix.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl AppState {
    fn is_admin(&self, token: &str) -> bool {
        self.admin_token.as_deref().is_some_and(|a| same(a, token))
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if state.is_admin(token) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "the admin token only manages tenants; use a tenant's token",
            ));
        }
        match state.engine.authenticate(token).await? {
            Some(tenant) => Ok(Tenant(tenant)),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "unknown token",
            )),
        }
    }
}

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Ok(Self { per_tenant: false });
        }
        let token = bearer(parts)?;
        match state.metrics_token.as_deref() {
            Some(expected) if same(expected, token) => Ok(Self { per_tenant: true }),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "not the metrics token (metrics_token); leave the header out for the host-wide series",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if state.is_admin(token) {
            return Ok(Admin);
        }
        if state.engine.authenticate(token).await?.is_none() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "unknown token",
            ));
        }
        if state.admin_token.is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "no admin token is configured (set admin_token or STEPWISE_ADMIN_TOKEN)",
            ));
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "this route needs the admin token",
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_comparison() {
        assert!(super::same("abc", "abc"));
        assert!(!super::same("abc", "abd"));
        assert!(!super::same("abc", "abcd"));
    }
}
