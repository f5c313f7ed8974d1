//! Transactions that are tried again when PostgreSQL gives up on them for a reason that a
//! second try resolves: a deadlock between two hosts locking rows in different orders, a
//! serialization failure, or a unique key another transaction took first (the second try
//! reads the row and answers from it, as an idempotency key or an event id does).

use stepwise_store::StoreError;
use tokio_postgres::error::SqlState;

/// Most tries of one transaction before its last failure is returned.
pub(crate) const MAX_TRIES: u32 = 8;

/// Why a transaction body stopped: the error, and whether trying again may succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: StoreError,
    pub retry: bool,
}

/// What a transaction body returns.
pub(crate) type TxResult<T> = Result<T, Failure>;

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        let retry = e.code().is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::UNIQUE_VIOLATION
        });
        Self {
            error: crate::io(e),
            retry,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self {
            error,
            retry: false,
        }
    }
}

/// Runs `$body` (an expression using the transaction `$txn` and `?` on [`TxResult`]s) in a
/// transaction of `$store` (`soft $store`: on a connection that commits without waiting for
/// the disk, for claims), committing when it returns `Ok`, rolling back otherwise, and
/// trying again (up to [`MAX_TRIES`]) when the failure says so. Evaluates to
/// `Result<T, StoreError>`. A macro rather than a function taking a closure: the body
/// borrows the transaction across awaits, and the futures must stay `Send`.
macro_rules! in_txn {
    (soft $store:expr, |$txn:ident| $body:expr) => {
        $crate::tx::in_txn!(@with $store, soft_client, |$txn| $body)
    };
    ($store:expr, |$txn:ident| $body:expr) => {
        $crate::tx::in_txn!(@with $store, client, |$txn| $body)
    };
    (@with $store:expr, $client:ident, |$txn:ident| $body:expr) => {{
        let mut tries = 0u32;
        loop {
            tries += 1;
            let mut client = $store.$client().await?;
            let $txn = client.transaction().await.map_err($crate::io)?;
            let result: $crate::tx::TxResult<_> = async { $body }.await;
            let result = match result {
                Ok(value) => $txn
                    .commit()
                    .await
                    .map(|()| value)
                    .map_err($crate::tx::Failure::from),
                Err(failure) => Err(failure),
            };
            match result {
                Ok(value) => break Ok::<_, stepwise_store::StoreError>(value),
                Err(f) if f.retry && tries < $crate::tx::MAX_TRIES => {
                    tracing::debug!(error = %f.error, tries, "transaction tried again");
                }
                Err(f) => break Err(f.error),
            }
        }
    }};
}
pub(crate) use in_txn;

/// Milliseconds as PostgreSQL's `bigint` stores them (saturating: `u64::MAX` is "never").
pub(crate) fn db_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A stored `bigint` as milliseconds (never negative).
pub(crate) fn ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
