//! Sign-in with a tenant token, and sign-out.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::{ActionForm, forbidden, layout, refusal};
use crate::{Signed, UiState, page, session};

fn form(error: Option<&str>) -> maud::Markup {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            p { "Sign in with your tenant's API token. It is checked once; the browser keeps only a session cookie." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.signin method="post" action="/ui/sign-in" {
                label for="token" { "Tenant token" }
                input id="token" name="token" type="password" autocomplete="off" required autofocus;
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub(crate) async fn sign_in_page() -> Response {
    page(StatusCode::OK, form(None))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct SignIn {
    #[serde(default)]
    token: String,
}

pub(crate) async fn sign_in(
    State(state): State<UiState>,
    headers: HeaderMap,
    Form(body): Form<SignIn>,
) -> Response {
    if !crate::same_origin(&headers) {
        return forbidden(None, "this form was posted from another site");
    }
    let token = body.token.trim();
    let tenant = if token.is_empty() || token.len() > 256 {
        None
    } else {
        match state.engine.authenticate(token).await {
            Ok(tenant) => tenant,
            Err(e) => return super::error(None, &e),
        }
    };
    let Some(tenant) = tenant else {
        return page(StatusCode::UNAUTHORIZED, form(Some("Unknown token.")));
    };
    let id = state.sessions.create(&tenant);
    tracing::info!(tenant = %tenant, "dashboard sign-in");
    let tls = forwarded_tls(&headers);
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(Some(&id), state.https_only, tls),
        )],
        Redirect::to("/ui/runs"),
    )
        .into_response()
}

/// Whether a TLS-terminating proxy says the browser reached it over HTTPS: the cookie is then
/// `Secure`, so it never travels in clear.
fn forwarded_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

pub(crate) async fn sign_out(
    State(state): State<UiState>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = refusal(&signed, &headers, &form) {
        return refused;
    }
    state.sessions.remove(&signed.id);
    let tls = forwarded_tls(&headers);
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(None, state.https_only, tls),
        )],
        Redirect::to("/ui/sign-in"),
    )
        .into_response()
}
