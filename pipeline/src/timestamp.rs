//! Timestamps on the hot path, serialized exactly as chrono serializes them (RFC 3339, `Z`, as many
//! fraction digits as the value needs), but formatted into one string first.
//!
//! chrono's own `Serialize` hands serde a `Display` value, which serde_json writes character by character
//! through its escaping writer; with two timestamps per `POST /messages` (the element and the answer) that
//! was ~3% of the ingestor's CPU in perf. Formatting with chrono into a `String` and serializing that is
//! the same text for a fraction of the work.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// `#[serde(serialize_with = "crate::timestamp::serialize")]` for a `DateTime<Utc>`.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    #[test]
    fn the_text_is_chronos_own() {
        let base = Utc.with_ymd_and_hms(2026, 11, 29, 1, 54, 0).unwrap();
        let nanos = [
            0,
            1,
            999,
            1_000,
            123_456,
            1_000_000,
            120_000_000,
            123_456_789,
            999_999_999,
        ];
        for (i, nano) in nanos.into_iter().enumerate() {
            let at = base
                + chrono::Duration::days(i as i64 * 4000)
                + chrono::Duration::nanoseconds(nano);
            assert_eq!(
                serde_json::to_string(&Ours(at)).unwrap(),
                serde_json::to_string(&at).unwrap(),
                "{at:?}"
            );
        }
        assert_eq!(
            serde_json::to_string(&Ours(base + chrono::Duration::nanoseconds(123_456_789)))
                .unwrap(),
            r#""2026-11-29T01:54:00.123456789Z""#
        );
    }
}
