//! Dashboard sessions: a tenant token signs in once and becomes a random session id in an
//! `HttpOnly`, `SameSite=Strict` cookie, with a CSRF token of its own that every form posts
//! back. The cookie is `Secure` on requests a TLS-terminating proxy marks
//! `X-Forwarded-Proto: https`; when the operator says the dashboard is served over HTTPS
//! only, it is always `Secure` and named [`HOST_COOKIE`], whose `__Host-` prefix browsers
//! accept only from this exact host, for `Path=/`, over HTTPS.
//!
//! Sessions are held in memory, by the sha256 of their id (the id itself is never kept):
//! a restart signs everyone out, which is the safe direction. At most
//! [`MAX_SESSIONS_PER_TENANT`] live at once per tenant and [`MAX_SESSIONS`] in all (past
//! either, the tenant's own oldest goes first, so no tenant can sign another's users out),
//! and each lasts [`SESSION_TTL`] from sign-in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The session cookie's name (scoped to `/ui`).
pub const COOKIE: &str = "stepwise_session";

/// The session cookie's name when the dashboard is served over HTTPS only.
pub const HOST_COOKIE: &str = "__Host-stepwise_session";

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Most sessions held at once, all tenants.
pub const MAX_SESSIONS: usize = 10_000;

/// Most sessions one tenant holds at once.
pub const MAX_SESSIONS_PER_TENANT: usize = 100;

/// A signed-in tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The tenant it acts for.
    pub tenant: String,
    /// What every form of this session must post back as `csrf`.
    pub csrf: String,
    created: Instant,
}

impl Session {
    /// Whether the session still holds at `now`: less than [`SESSION_TTL`] after sign-in.
    fn live_at(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) < SESSION_TTL
    }
}

/// The live sessions. See the module docs.
#[derive(Debug, Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_hash.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signs `tenant` in: returns the new session's id (the cookie's value).
    pub fn create(&self, tenant: &str) -> String {
        let id = random_hex();
        let now = Instant::now();
        let session = Session {
            tenant: tenant.to_owned(),
            csrf: random_hex(),
            created: now,
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.live_at(now));
        let mine = sessions.values().filter(|s| s.tenant == tenant).count();
        if sessions.len() >= MAX_SESSIONS || mine >= MAX_SESSIONS_PER_TENANT {
            // The tenant's own oldest session makes room; another tenant's never does.
            let oldest = sessions
                .iter()
                .filter(|(_, s)| s.tenant == tenant)
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(oldest) => {
                    sessions.remove(&oldest);
                }
                None if sessions.len() >= MAX_SESSIONS => {
                    // Full of other tenants' live sessions: the globally oldest goes.
                    if let Some(k) = sessions
                        .iter()
                        .min_by_key(|(_, s)| s.created)
                        .map(|(k, _)| k.clone())
                    {
                        sessions.remove(&k);
                    }
                }
                None => {}
            }
        }
        sessions.insert(hash(&id), session);
        id
    }

    /// The live session with id `id`.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.get_at(id, Instant::now())
    }

    /// The session with id `id` if it is live at `now` (an expired one is forgotten).
    fn get_at(&self, id: &str, now: Instant) -> Option<Session> {
        let key = hash(id);
        let mut sessions = self.lock();
        match sessions.get(&key) {
            Some(s) if s.live_at(now) => Some(s.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Signs session `id` out.
    pub fn remove(&self, id: &str) {
        self.lock().remove(&hash(id));
    }
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The session cookie's name: [`HOST_COOKIE`] when served over HTTPS only.
pub fn cookie_name(https_only: bool) -> &'static str {
    if https_only { HOST_COOKIE } else { COOKIE }
}

/// The `Set-Cookie` value for session `id` (`None`: one that clears it). `https_only`: the
/// operator serves the dashboard over HTTPS only; `forwarded_tls`: this request came through
/// a TLS-terminating proxy.
pub fn set_cookie(id: Option<&str>, https_only: bool, forwarded_tls: bool) -> String {
    // `__Host-` cookies must be `Secure` with `Path=/`, or browsers drop them.
    let (name, path) = if https_only {
        (HOST_COOKIE, "/")
    } else {
        (COOKIE, "/ui")
    };
    let secure = if https_only || forwarded_tls {
        "; Secure"
    } else {
        ""
    };
    let (value, age) = match id {
        Some(id) => (id, SESSION_TTL.as_secs()),
        None => ("", 0),
    };
    format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_id_only_and_signed_out() {
        let sessions = Sessions::default();
        let id = sessions.create("acme");
        let s = sessions.get(&id).unwrap();
        assert_eq!(s.tenant, "acme");
        assert_eq!(s.csrf.len(), 64);
        assert!(
            sessions.get(&hash(&id)).is_none(),
            "the stored key is not a session id"
        );
        sessions.remove(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn a_session_expires_its_time_after_sign_in_and_is_then_forgotten() {
        let sessions = Sessions::default();
        let id = sessions.create("acme");
        let signed_in = Instant::now();
        let just_before = signed_in + SESSION_TTL - Duration::from_secs(60);
        assert!(sessions.get_at(&id, just_before).is_some());
        assert!(sessions.get_at(&id, signed_in + SESSION_TTL).is_none());
        assert!(
            sessions.lock().is_empty(),
            "the expired session was forgotten"
        );
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn one_tenant_signing_in_again_and_again_signs_out_only_its_own_sessions() {
        let sessions = Sessions::default();
        let other = sessions.create("other");
        let first = sessions.create("acme");
        for _ in 0..MAX_SESSIONS_PER_TENANT {
            sessions.create("acme");
        }
        assert!(
            sessions.get(&other).is_some(),
            "another tenant's session survives"
        );
        assert!(
            sessions.get(&first).is_none(),
            "the tenant's oldest made room"
        );
        let acme = sessions
            .lock()
            .values()
            .filter(|s| s.tenant == "acme")
            .count();
        assert_eq!(acme, MAX_SESSIONS_PER_TENANT);
    }

    #[test]
    fn cookies_are_read_and_set_strictly() {
        assert_eq!(
            cookie("a=1; stepwise_session=xyz; b=2", COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie("xstepwise_session=1", COOKIE), None);
        let set = set_cookie(Some("id"), false, true);
        assert!(
            set.starts_with("stepwise_session=id; Path=/ui;")
                && set.contains("HttpOnly")
                && set.contains("SameSite=Strict")
                && set.ends_with("Secure")
        );
        assert!(!set_cookie(Some("id"), false, false).contains("Secure"));
        let host = set_cookie(Some("id"), true, false);
        assert!(
            host.starts_with("__Host-stepwise_session=id; Path=/;") && host.ends_with("Secure"),
            "{host}"
        );
        assert_eq!(
            cookie(&format!("{HOST_COOKIE}=x"), cookie_name(true)),
            Some("x")
        );
        assert!(set_cookie(None, true, false).contains("Max-Age=0"));
        assert!(set_cookie(None, false, false).contains("Max-Age=0"));
    }
}
