//! The host's millisecond timestamps as people read and write them: RFC 3339 out (timeline
//! details, tables) and in (`run_at`, time filters).

use std::time::{Duration, UNIX_EPOCH};

use crate::clock::Millis;

/// The last millisecond of the year 9999: RFC 3339 has four-digit years.
const LATEST: Millis = 253_402_300_799_999;

/// `2026-11-23T10:00:00.123Z`. Times past the year 9999 (a run that will never be due) print
/// as its last millisecond rather than overflowing.
pub fn rfc3339(at: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at.min(LATEST))).to_string()
}

/// Parses a strict RFC 3339 time (`2030-01-01T00:00:00Z`, any offset, normalized to UTC) into
/// milliseconds since the Unix epoch. RFC 3339 lets applications take a space for the `T`;
/// the host does not. The error says why the text is not such a time.
pub fn parse_rfc3339(text: &str) -> Result<Millis, String> {
    if text
        .as_bytes()
        .get(10)
        .is_some_and(|b| !matches!(b, b'T' | b't'))
    {
        return Err("the date and the time are separated by T".into());
    }
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())?;
    Millis::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| "before 1970".into())
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

    #[test]
    fn parses_strict_rfc3339() {
        use super::parse_rfc3339;
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.500Z"), Ok(1_500));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:01+01:00"), Ok(1_000));
        assert!(
            parse_rfc3339("1970-01-01 00:00:01Z")
                .unwrap_err()
                .contains("T")
        );
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            Err("before 1970".into())
        );
        assert!(parse_rfc3339("yesterday").is_err());
        assert!(parse_rfc3339("").is_err());
    }
}
