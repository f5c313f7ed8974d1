//! The modules page: each deployed component's hash, size, jobs with their policies, and
//! when it was deployed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{layout, time};
use crate::{Signed, UiState, page};

pub(crate) async fn list(State(state): State<UiState>, signed: Signed) -> Response {
    let session = &signed.session;
    let mut modules = match state.engine.modules_of(&session.tenant).await {
        Ok(m) => m,
        Err(e) => return super::error(Some(session), &e),
    };
    modules.sort_by_key(|m| std::cmp::Reverse(m.deployed_at));
    let body = html! {
        h1 { "Modules" }
        @if modules.is_empty() { p.empty { "No module deployed yet." } }
        @for m in &modules {
            section.module {
                h2.mono { (m.hash) }
                p { (m.size) " bytes, deployed " (time(m.deployed_at)) }
                div.scroll { table {
                    thead { tr { th { "Job" } th { "Description" } th { "Max attempts" } th { "Timeout" } th { "Hosts" } } }
                    tbody { @for j in &m.jobs {
                        tr {
                            td.mono { (j.name) }
                            td { (j.description) }
                            td.num { @if let Some(n) = j.policy.max_attempts { (n) } @else { "default" } }
                            td { @if let Some(t) = j.policy.timeout_ms { (stepwise_core::time_fmt::duration(t)) } @else { "default" } }
                            td { (j.hosts.join(", ")) }
                        }
                    } }
                } }
            }
        }
    };
    page(StatusCode::OK, layout("Modules", Some(session), body))
}
