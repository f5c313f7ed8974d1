//! A clock whose time is a number in a file: the end-to-end tests run a real `stepwise serve`
//! on it (see `stepwise-under-test`) and move time by rewriting the file, so time-based
//! behaviour (debounce, rate limits, schedules) is checked through the real process without
//! sleeping for the delays themselves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stepwise::Clock;
use stepwise::clock::{Millis, futures_sleep::SleepFuture};

/// The environment variable naming the clock file of `stepwise-under-test`.
pub const CLOCK_FILE_ENV: &str = "STEPWISE_TEST_CLOCK_FILE";

/// How often a sleeper looks at the file again.
const POLL: Duration = Duration::from_millis(2);

/// Time read from a file holding milliseconds since the Unix epoch. It never goes back: a
/// file that cannot be read or parsed (mid-rewrite) reads as the last time seen.
#[derive(Debug)]
pub struct FileClock {
    path: PathBuf,
    last: AtomicU64,
}

impl FileClock {
    /// A clock on `path`, which must hold a time now.
    pub fn new(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        let start = read(&path)?;
        Ok(Self {
            path,
            last: AtomicU64::new(start),
        })
    }

    /// Sets the time of the clock on `path` (written whole, then renamed into place).
    pub fn set(path: &Path, at: Millis) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, at.to_string())?;
        std::fs::rename(&tmp, path)
    }
}

fn read(path: &Path) -> std::io::Result<Millis> {
    let text = std::fs::read_to_string(path)?;
    text.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

impl Clock for FileClock {
    fn now(&self) -> Millis {
        let read = read(&self.path).unwrap_or(0);
        self.last.fetch_max(read, Ordering::SeqCst).max(read)
    }

    fn sleep_until(&self, at: Millis) -> SleepFuture<'_> {
        Box::pin(async move {
            while self.now() < at {
                tokio::time::sleep(POLL).await;
            }
        })
    }
}
