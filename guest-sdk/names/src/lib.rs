//! The naming rules of Stepwise, in one place: the host checks tenant, queue and job names
//! with these functions when they arrive over the API or from a module's `describe`, and the
//! SDK's `#[job]` macro checks job names with the same function at compile time, so a handler
//! that builds always deploys. No dependencies, so the proc-macro crate can use it.
//!
//! Names travel in URLs, CLI arguments, metrics and log lines, so each is a plain word.

#![no_std]

use core::fmt;

/// The kinds of names, each with its own rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A tenant: 1–64 of `a-z`, `0-9`, `-`, `_`.
    Tenant,
    /// A queue: 1–128 of ASCII letters, digits, `-`, `_`, `.`.
    Queue,
    /// A job: 1–128 of ASCII letters, digits, `-`, `_`, `.`.
    Job,
}

impl Kind {
    /// The longest name of this kind, in bytes.
    pub const fn max_len(self) -> usize {
        match self {
            Self::Tenant => MAX_TENANT,
            Self::Queue => MAX_QUEUE,
            Self::Job => MAX_JOB,
        }
    }

    /// Whether `c` may appear in a name of this kind.
    pub const fn allows(self, c: char) -> bool {
        match self {
            Self::Tenant => c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'),
            Self::Queue | Self::Job => c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'),
        }
    }

    /// The characters allowed, for messages.
    pub const fn alphabet(self) -> &'static str {
        match self {
            Self::Tenant => "lowercase ASCII letters, digits, '-' and '_'",
            Self::Queue | Self::Job => "ASCII letters, digits, '-', '_' and '.'",
        }
    }

    /// The kind's name, for messages.
    pub const fn noun(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Queue => "queue",
            Self::Job => "job",
        }
    }

    /// The JSON-schema pattern of the rule.
    pub const fn pattern(self) -> &'static str {
        match self {
            Self::Tenant => "^[a-z0-9_-]{1,64}$",
            Self::Queue | Self::Job => "^[A-Za-z0-9._-]{1,128}$",
        }
    }
}

/// Longest tenant name.
pub const MAX_TENANT: usize = 64;
/// Longest queue name.
pub const MAX_QUEUE: usize = 128;
/// Longest job name.
pub const MAX_JOB: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The name is empty.
    Empty,
    /// The name is longer than the kind allows (its length in bytes).
    TooLong(usize),
    /// The name holds a character the kind does not allow.
    Character(char),
}

/// A refused name: its kind and what was wrong (the name itself is the caller's to quote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameError {
    /// The rule that refused it.
    pub kind: Kind,
    /// What was wrong.
    pub problem: Problem,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = self.kind.noun();
        match self.problem {
            Problem::Empty => write!(f, "a {noun} name cannot be empty"),
            Problem::TooLong(len) => write!(
                f,
                "a {noun} name is at most {} bytes (this one is {len})",
                self.kind.max_len()
            ),
            Problem::Character(c) => write!(
                f,
                "a {noun} name may hold only {}, not {c:?}",
                self.kind.alphabet()
            ),
        }
    }
}

/// Checks `name` against the rule of `kind`.
pub fn check(kind: Kind, name: &str) -> Result<(), NameError> {
    let problem = if name.is_empty() {
        Some(Problem::Empty)
    } else if let Some(c) = name.chars().find(|c| !kind.allows(*c)) {
        Some(Problem::Character(c))
    } else if name.len() > kind.max_len() {
        Some(Problem::TooLong(name.len()))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(NameError { kind, problem }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_rule() {
        assert!(check(Kind::Tenant, "acme-1_b").is_ok());
        assert_eq!(
            check(Kind::Tenant, "Acme").unwrap_err().problem,
            Problem::Character('A')
        );
        assert!(check(Kind::Queue, "Billing.v2").is_ok());
        assert!(check(Kind::Job, "charge-card").is_ok());
        assert_eq!(check(Kind::Job, "").unwrap_err().problem, Problem::Empty);
        assert_eq!(
            check(Kind::Queue, "a/b").unwrap_err().problem,
            Problem::Character('/')
        );
        let long = "a".repeat(129);
        assert_eq!(
            check(Kind::Job, &long).unwrap_err().problem,
            Problem::TooLong(129)
        );
        assert!(check(Kind::Job, &long[..128]).is_ok());
        assert!(check(Kind::Tenant, &long[..65]).is_err());
    }
}
