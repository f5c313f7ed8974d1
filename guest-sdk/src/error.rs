//! [`JobError`]: how a step or a job tells the host that an attempt failed, and whether to retry.

use std::fmt;
use std::time::Duration;

/// How the host treats a failure.
///
/// ```
/// use stepwise_sdk::{ErrorKind, JobError};
/// use std::time::Duration;
///
/// let e = JobError::retry_after(Duration::from_secs(2), "rate limited");
/// assert_eq!(e.kind(), ErrorKind::RetryAfter(Duration::from_secs(2)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A transient failure: the host tries again after the job's backoff delay, until the
    /// failing step (or the run, for a failure outside any step) has used `max_attempts`.
    Retryable,
    /// A permanent failure: the run fails at once, with no further attempts.
    NonRetryable,
    /// A transient failure whose next attempt must not start before this much time has
    /// passed, such as an upstream's `Retry-After`. It counts as an attempt like
    /// [`Retryable`](ErrorKind::Retryable). The host works in whole milliseconds and rounds
    /// up.
    RetryAfter(Duration),
}

/// A failure reported by a step or by a job: a kind, which drives retries, and a message,
/// which is kept in the run's record.
///
/// Any error type converts into a *retryable* `JobError`, so `?` works on I/O, parsing and
/// client errors; say so explicitly when a failure is permanent:
///
/// ```
/// use stepwise_sdk::JobError;
///
/// fn parse_amount(text: &str) -> Result<u64, JobError> {
///     if text.is_empty() {
///         return Err(JobError::non_retryable("the amount is missing"));
///     }
///     Ok(text.parse::<u64>()?) // a ParseIntError becomes a retryable JobError
/// }
/// assert!(parse_amount("12").is_ok());
/// assert!(!parse_amount("").unwrap_err().is_retryable());
/// ```
///
/// `JobError` does not implement [`std::error::Error`] itself: that is what lets it convert
/// from every type that does (the same trade-off as `anyhow::Error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError {
    kind: ErrorKind,
    message: String,
}

impl JobError {
    /// A transient failure, retried after the job's backoff delay.
    ///
    /// ```
    /// use stepwise_sdk::{ErrorKind, JobError};
    ///
    /// let e = JobError::retryable("the provisioning backend is unavailable");
    /// assert_eq!(e.kind(), ErrorKind::Retryable);
    /// ```
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retryable, message)
    }

    /// A permanent failure: the run fails now, without further attempts.
    ///
    /// ```
    /// use stepwise_sdk::{ErrorKind, JobError};
    ///
    /// let e = JobError::non_retryable("user 'u_9' does not exist");
    /// assert_eq!(e.kind(), ErrorKind::NonRetryable);
    /// ```
    pub fn non_retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NonRetryable, message)
    }

    /// A transient failure whose next attempt must wait at least `delay`.
    ///
    /// ```
    /// use stepwise_sdk::JobError;
    /// use std::time::Duration;
    ///
    /// let e = JobError::retry_after(Duration::from_millis(1500), "rate limited");
    /// assert_eq!(e.retry_after_delay(), Some(Duration::from_millis(1500)));
    /// ```
    pub fn retry_after(delay: Duration, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RetryAfter(delay), message)
    }

    /// A failure of the given kind.
    ///
    /// ```
    /// use stepwise_sdk::{ErrorKind, JobError};
    ///
    /// let e = JobError::new(ErrorKind::NonRetryable, "bad input");
    /// assert_eq!(e.message(), "bad input");
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// How the host treats this failure.
    ///
    /// ```
    /// use stepwise_sdk::{ErrorKind, JobError};
    ///
    /// assert_eq!(JobError::retryable("x").kind(), ErrorKind::Retryable);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable explanation.
    ///
    /// ```
    /// use stepwise_sdk::JobError;
    ///
    /// assert_eq!(JobError::retryable("timed out").message(), "timed out");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the host may try again: true for [`ErrorKind::Retryable`] and
    /// [`ErrorKind::RetryAfter`].
    ///
    /// ```
    /// use stepwise_sdk::JobError;
    /// use std::time::Duration;
    ///
    /// assert!(JobError::retry_after(Duration::from_secs(1), "busy").is_retryable());
    /// assert!(!JobError::non_retryable("gone").is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        !matches!(self.kind, ErrorKind::NonRetryable)
    }

    /// The minimum delay before the next attempt, for [`ErrorKind::RetryAfter`].
    ///
    /// ```
    /// use stepwise_sdk::JobError;
    ///
    /// assert_eq!(JobError::retryable("x").retry_after_delay(), None);
    /// ```
    pub fn retry_after_delay(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::RetryAfter(delay) => Some(delay),
            _ => None,
        }
    }
}

/// Shows the message alone, as it is shown in the run's record.
///
/// ```
/// use stepwise_sdk::JobError;
///
/// assert_eq!(JobError::retryable("timed out").to_string(), "timed out");
/// ```
impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Any error becomes a *retryable* `JobError` whose message is the error followed by its
/// sources, so `?` keeps the whole story (`connecting: connection refused`).
///
/// ```
/// use stepwise_sdk::{ErrorKind, JobError};
///
/// let io = std::io::Error::other("disk on fire");
/// let e = JobError::from(io);
/// assert_eq!(e.kind(), ErrorKind::Retryable);
/// assert_eq!(e.message(), "disk on fire");
/// ```
impl<E> From<E> for JobError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::retryable(message)
    }
}

/// Milliseconds for the host, rounded up so that "not before" is never shortened.
pub(crate) fn duration_to_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("connecting to the ledger")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn conversion_keeps_the_source_chain() {
        let e = JobError::from(Outer(std::io::Error::other("connection refused")));
        assert_eq!(e.message(), "connecting to the ledger: connection refused");
        assert!(e.is_retryable());
    }

    #[test]
    fn durations_round_up_to_whole_milliseconds() {
        assert_eq!(duration_to_ms(Duration::ZERO), 0);
        assert_eq!(duration_to_ms(Duration::from_micros(1)), 1);
        assert_eq!(duration_to_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_to_ms(Duration::MAX), u64::MAX);
    }
}
