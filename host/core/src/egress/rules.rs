//! A tenant's egress allowlist: which schemes, hosts, ports and methods its guests may send
//! requests to. Nothing is allowed until a rule says so.
//!
//! A rule is written `[scheme://]host[:port]`: `api.stripe.com` (HTTPS on 443),
//! `*.example.com` (any subdomain, not the apex), `http://127.0.0.1:8080`, `https://h:*`
//! (any port). Without a scheme a rule allows HTTPS only; plain `http://` must be asked for.
//! Without a port it allows the scheme's default port. Methods are optional (absent: any).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Most rules one tenant may hold.
pub const MAX_RULES: usize = 256;

/// Longest rule pattern, in bytes.
pub const MAX_PATTERN: usize = 300;

/// Most methods one rule may list.
pub const MAX_METHODS: usize = 16;

/// Why a rule was refused. The message names the rule and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress rule {pattern:?}: {reason}")]
pub struct RuleError {
    /// The pattern as given (cut to [`MAX_PATTERN`] bytes).
    pub pattern: String,
    /// What is wrong.
    pub reason: String,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP/1.1: only where a rule names it.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
}

impl Scheme {
    /// The port a URL of this scheme uses when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// Which hosts a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this name or IP literal (lowercase; IPv6 without brackets).
    Exact(String),
    /// Any name ending in `.{suffix}`.
    Subdomains(String),
}

/// Which ports a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    One(u16),
    Any,
}

/// One allowlist entry, parsed and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    scheme: Scheme,
    host: HostPattern,
    ports: Ports,
    methods: Vec<String>,
}

/// The wire and storage form of a rule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// `[scheme://]host[:port]`.
    pub pattern: String,
    /// Methods allowed (`GET`, `POST`, ...); absent or empty: any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

impl EgressRule {
    /// Parses a rule, refusing anything ambiguous.
    pub fn parse(spec: &RuleSpec) -> Result<Self, RuleError> {
        let fail = |reason: String| RuleError {
            pattern: crate::text::prefix(&spec.pattern, MAX_PATTERN).to_owned(),
            reason,
        };
        let raw = spec.pattern.trim();
        if raw.is_empty() || raw.len() > MAX_PATTERN {
            return Err(fail(format!("a pattern must be 1 to {MAX_PATTERN} bytes")));
        }
        let (scheme, rest) = match raw.split_once("://") {
            Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
                "https" => (Scheme::Https, rest),
                "http" => (Scheme::Http, rest),
                other => return Err(fail(format!("scheme {other:?} is not http or https"))),
            },
            None => (Scheme::Https, raw),
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(fail(
                "a rule names a host and port only (no path, query or user)".into(),
            ));
        }
        let (host, port) = split_port(rest).map_err(fail)?;
        let ports = match port {
            None => Ports::One(scheme.default_port()),
            Some("*") => Ports::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Ports::One(n),
                _ => return Err(fail(format!("port {p:?} is not 1-65535 or *"))),
            },
        };
        let host = parse_host(host).map_err(fail)?;
        if spec.methods.len() > MAX_METHODS {
            return Err(fail(format!("at most {MAX_METHODS} methods per rule")));
        }
        let mut methods = Vec::new();
        for m in &spec.methods {
            let up = m.to_ascii_uppercase();
            if up.is_empty() || up.len() > 16 || !up.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(fail(format!(
                    "method {:?} is not 1-16 ASCII letters",
                    crate::text::prefix(m, 32)
                )));
            }
            if !methods.contains(&up) {
                methods.push(up);
            }
        }
        Ok(Self {
            scheme,
            host,
            ports,
            methods,
        })
    }

    /// The normalised wire form.
    pub fn spec(&self) -> RuleSpec {
        RuleSpec {
            pattern: self.to_string(),
            methods: self.methods.clone(),
        }
    }

    /// Whether this rule allows `method` to `scheme://host:port`. `host` is lowercase, without
    /// a trailing dot, and an IPv6 literal has no brackets.
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16, method: &str) -> bool {
        let host_ok = self.host_matches(host);
        let port_ok = match self.ports {
            Ports::Any => true,
            Ports::One(p) => p == port,
        };
        let method_ok = self.methods.is_empty() || self.methods.iter().any(|m| m == method);
        self.scheme == scheme && host_ok && port_ok && method_ok
    }
}

impl EgressRule {
    fn host_matches(&self, host: &str) -> bool {
        match &self.host {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }

    /// Whether this rule allows requests to everything `need` names (some method at least):
    /// the same scheme, and for a host the rule allows with its port; a wildcard need is
    /// covered only by the same wildcard.
    pub fn covers(&self, need: &EgressRule) -> bool {
        let ports_ok = match (self.ports, need.ports) {
            (Ports::Any, _) => true,
            (Ports::One(a), Ports::One(b)) => a == b,
            (Ports::One(_), Ports::Any) => false,
        };
        let host_ok = match &need.host {
            HostPattern::Exact(h) => self.host_matches(h),
            HostPattern::Subdomains(_) => self.host == need.host,
        };
        self.scheme == need.scheme && ports_ok && host_ok
    }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.host {
            HostPattern::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostPattern::Exact(h) => write!(f, "{h}")?,
            HostPattern::Subdomains(s) => write!(f, "*.{s}")?,
        }
        match self.ports {
            Ports::Any => write!(f, ":*"),
            Ports::One(p) => write!(f, ":{p}"),
        }
    }
}

/// Splits `host[:port]`, with IPv6 literals in brackets.
fn split_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = rest.strip_prefix('[') {
        let (v6, after) = inner
            .split_once(']')
            .ok_or_else(|| "an IPv6 literal needs its closing ']'".to_owned())?;
        return match after {
            "" => Ok((v6, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((v6, Some(p))),
                None => Err(format!("unexpected {after:?} after the IPv6 literal")),
            },
        };
    }
    Ok(match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    })
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return Ok(HostPattern::Exact(v6.to_string()));
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Ok(HostPattern::Exact(v4.to_string()));
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        check_domain(suffix)?;
        if !suffix.contains('.') {
            return Err(format!(
                "*.{suffix} would cover a whole top-level domain; name at least two labels"
            ));
        }
        return Ok(HostPattern::Subdomains(suffix.to_owned()));
    }
    if host.contains('*') {
        return Err("a wildcard is only allowed as the whole first label (*.example.com)".into());
    }
    check_domain(host)?;
    Ok(HostPattern::Exact(host.to_owned()))
}

/// A DNS name: 1-253 bytes of dot-separated labels of 1-63 letters, digits and inner hyphens.
fn check_domain(name: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{:?} is not a host name (labels of letters, digits and '-', dot-separated) or an \
             IP address",
            crate::text::prefix(name, 64)
        ));
    }
    Ok(())
}

/// Parses every rule of a list, refusing the whole list on the first bad one.
pub fn parse_all(specs: &[RuleSpec]) -> Result<Vec<EgressRule>, RuleError> {
    if specs.len() > MAX_RULES {
        return Err(RuleError {
            pattern: String::new(),
            reason: format!(
                "{} rules given, at most {MAX_RULES} per tenant",
                specs.len()
            ),
        });
    }
    specs.iter().map(EgressRule::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, methods: &[&str]) -> Result<EgressRule, RuleError> {
        EgressRule::parse(&RuleSpec {
            pattern: pattern.into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
        })
    }

    #[test]
    fn a_bare_host_means_https_on_443() {
        let r = rule("API.Stripe.com", &[]).unwrap();
        assert_eq!(r.to_string(), "https://api.stripe.com:443");
        assert!(r.allows(Scheme::Https, "api.stripe.com", 443, "POST"));
        assert!(!r.allows(Scheme::Http, "api.stripe.com", 80, "POST"));
        assert!(!r.allows(Scheme::Https, "api.stripe.com", 8443, "POST"));
        assert!(!r.allows(Scheme::Https, "evil.api.stripe.com", 443, "GET"));
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        let r = rule("*.example.com", &[]).unwrap();
        assert!(r.allows(Scheme::Https, "a.example.com", 443, "GET"));
        assert!(r.allows(Scheme::Https, "a.b.example.com", 443, "GET"));
        assert!(!r.allows(Scheme::Https, "example.com", 443, "GET"));
        assert!(!r.allows(Scheme::Https, "badexample.com", 443, "GET"));
        assert!(!r.allows(Scheme::Https, "example.com.evil.org", 443, "GET"));
    }

    #[test]
    fn scheme_port_and_methods_narrow_a_rule() {
        let r = rule("http://127.0.0.1:8080", &["post", "GET"]).unwrap();
        assert_eq!(r.spec().methods, vec!["POST", "GET"]);
        assert!(r.allows(Scheme::Http, "127.0.0.1", 8080, "POST"));
        assert!(!r.allows(Scheme::Http, "127.0.0.1", 8080, "DELETE"));
        assert!(!r.allows(Scheme::Https, "127.0.0.1", 8080, "POST"));
        let any = rule("https://h.example.org:*", &[]).unwrap();
        assert!(any.allows(Scheme::Https, "h.example.org", 9, "GET"));
        let v6 = rule("http://[::1]:9000", &[]).unwrap();
        assert_eq!(v6.to_string(), "http://[::1]:9000");
        assert!(v6.allows(Scheme::Http, "::1", 9000, "GET"));
    }

    #[test]
    fn a_rule_covers_the_needs_it_allows() {
        let need = |p: &str| rule(p, &[]).unwrap();
        let wild = rule("*.example.com", &["POST"]).unwrap();
        assert!(wild.covers(&need("api.example.com")));
        assert!(wild.covers(&need("*.example.com")));
        assert!(!wild.covers(&need("example.com")));
        assert!(!wild.covers(&need("http://api.example.com")));
        let any_port = rule("http://127.0.0.1:*", &[]).unwrap();
        assert!(any_port.covers(&need("http://127.0.0.1:7080")));
        assert!(!need("http://127.0.0.1:7080").covers(&need("http://127.0.0.1:*")));
    }

    #[test]
    fn refuses_malformed_rules_with_the_reason() {
        for (pattern, why) in [
            ("", "1 to"),
            ("ftp://x.com", "not http or https"),
            ("x.com/path", "no path"),
            ("user@x.com", "no path"),
            ("x.com:0", "not 1-65535"),
            ("x.com:99999", "not 1-65535"),
            ("*.com", "top-level"),
            ("a.*.com", "first label"),
            ("*", "first label"),
            ("-x.com", "not a host name"),
            ("x_y.com", "not a host name"),
            ("[::1", "closing"),
        ] {
            let e = rule(pattern, &[]).unwrap_err();
            assert!(e.reason.contains(why), "{pattern}: {e}");
        }
        let e = rule("x.com", &["G3T"]).unwrap_err();
        assert!(e.reason.contains("method"), "{e}");
        let long = "a".repeat(400);
        assert!(rule(&long, &[]).is_err());
        let many: Vec<RuleSpec> = (0..=MAX_RULES)
            .map(|i| RuleSpec {
                pattern: format!("h{i}.example.com"),
                methods: vec![],
            })
            .collect();
        assert!(parse_all(&many).unwrap_err().reason.contains("at most"));
    }
}
