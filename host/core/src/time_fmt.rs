//! Rendering of the host's millisecond timestamps for people (timeline details, tables).

use std::time::{Duration, UNIX_EPOCH};

use crate::clock::Millis;

/// The last millisecond of the year 9999: RFC 3339 has four-digit years.
const LATEST: Millis = 253_402_300_799_999;

/// `2026-11-23T10:00:00.123Z`. Times past the year 9999 (a run that will never be due) print
/// as its last millisecond rather than overflowing.
pub fn rfc3339(at: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at.min(LATEST))).to_string()
}

/// A delay such as `1s 500ms`.
pub fn duration(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::rfc3339(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(super::duration(1_500), "1s 500ms");
        assert_eq!(super::rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
        assert!(!super::duration(u64::MAX).is_empty());
    }
}
