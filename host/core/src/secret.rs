//! A stored secret as data: its sealed value and how it may be used, and what a listing
//! shows of it (never the value). Sealing, opening and use live in the engine's secrets.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::egress::RuleSpec;

/// A value as stored: which key sealed it, its nonce and its ciphertext (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The id of the key that sealed it.
    pub key_id: String,
    /// 12 bytes, hex.
    pub nonce: String,
    /// Ciphertext and tag, hex.
    pub ciphertext: String,
}

/// A stored secret: sealed value and how it may be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// Its name.
    pub name: String,
    /// The sealed value.
    pub sealed: Sealed,
    /// Hosts it is bound to (normalised patterns).
    pub hosts: Vec<RuleSpec>,
    /// Whether guests may read it.
    pub readable: bool,
    /// When it was last set.
    pub updated_at: Millis,
}

/// What a listing shows of a secret: never its value.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// Hosts it is bound to.
    pub hosts: Vec<RuleSpec>,
    /// Whether guests may read it.
    pub readable: bool,
    /// When it was last set.
    pub updated_at: Millis,
}

impl From<&SecretRecord> for SecretInfo {
    fn from(r: &SecretRecord) -> Self {
        Self {
            name: r.name.clone(),
            hosts: r.hosts.clone(),
            readable: r.readable,
            updated_at: r.updated_at,
        }
    }
}
