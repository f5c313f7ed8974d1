//! A job as a module offers it: what `describe` told the host, kept with the module.

use serde::{Deserialize, Serialize};

use crate::policy::PolicyOverrides;

/// One job a module offers, as learned from `describe`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The job's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its default policy (absent fields take the host's defaults).
    pub policy: PolicyOverrides,
    /// The hosts it sends requests to, as normalised egress patterns (from `egress-needs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}
