//! Rendering of the host's millisecond timestamps for people (timeline details, tables).

use std::time::{Duration, UNIX_EPOCH};

use crate::clock::Millis;

/// `2026-11-23T10:00:00.123Z`.
pub fn rfc3339(at: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at)).to_string()
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
    }
}
