//! Timestamps on the hot path, serialized exactly as chrono serializes them (RFC 3339, `Z`, as many
//! fraction digits as the value needs: none, 3, 6 or 9), with less work.
//!
//! chrono's own `Serialize` hands serde a `Display` value, which serde_json writes character by character
//! through its escaping writer, and chrono's formatter goes through `fmt::write` for each part. With two
//! timestamps per `POST /messages` (the element and the answer) that was ~10% of the ingestor's
//! instructions (callgrind); this writes the 20 to 30 ASCII bytes into a stack buffer and hands serde one
//! string. Years outside 0..=9999 and leap seconds (never made by `Utc::now`) go through chrono.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::Serializer;

/// `#[serde(serialize_with = "crate::timestamp::serialize")]` for a `DateTime<Utc>`.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0u8; MAX_LEN];
    match format(at, &mut buffer) {
        Some(text) => serializer.serialize_str(text),
        None => serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 30;

/// `at` as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` writes it, or `None` for a year outside
/// 0..=9999 or a leap second.
fn format<'a>(at: &DateTime<Utc>, buffer: &'a mut [u8; MAX_LEN]) -> Option<&'a str> {
    // Once: each accessor of `DateTime` would convert from its internal form again.
    let (date, time) = (at.date_naive(), at.time());
    let year = u32::try_from(date.year())
        .ok()
        .filter(|year| *year <= 9999)?;
    let nano = time.nanosecond();
    if nano >= 1_000_000_000 {
        return None;
    }
    let mut out = Digits { buffer, len: 0 };
    out.number(year, 4);
    out.byte(b'-');
    out.number(date.month(), 2);
    out.byte(b'-');
    out.number(date.day(), 2);
    out.byte(b'T');
    out.number(time.hour(), 2);
    out.byte(b':');
    out.number(time.minute(), 2);
    out.byte(b':');
    out.number(time.second(), 2);
    if nano != 0 {
        out.byte(b'.');
        if nano.is_multiple_of(1_000_000) {
            out.number(nano / 1_000_000, 3);
        } else if nano.is_multiple_of(1_000) {
            out.number(nano / 1_000, 6);
        } else {
            out.number(nano, 9);
        }
    }
    out.byte(b'Z');
    let Digits { buffer, len } = out;
    // Only ASCII digits and separators were written.
    std::str::from_utf8(&buffer[..len]).ok()
}

struct Digits<'a> {
    buffer: &'a mut [u8; MAX_LEN],
    len: usize,
}

impl Digits<'_> {
    fn byte(&mut self, byte: u8) {
        self.buffer[self.len] = byte;
        self.len += 1;
    }

    /// `value` in exactly `width` decimal digits, zero-padded (`value` has at most `width` digits).
    fn number(&mut self, mut value: u32, width: usize) {
        for slot in self.buffer[self.len..self.len + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += width;
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, NaiveDate, TimeZone};
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    fn assert_same_as_chrono(at: DateTime<Utc>) {
        assert_eq!(
            serde_json::to_string(&Ours(at)).unwrap(),
            serde_json::to_string(&at).unwrap(),
            "{at:?}"
        );
    }

    #[test]
    fn the_text_is_chronos_own() {
        let base = Utc.with_ymd_and_hms(2026, 11, 29, 1, 54, 0).unwrap();
        assert_eq!(
            serde_json::to_string(&Ours(base + Duration::nanoseconds(123_456_789))).unwrap(),
            r#""2026-11-29T01:54:00.123456789Z""#
        );
        let nanos = [
            0,
            1,
            10,
            999,
            1_000,
            120_000,
            123_456,
            1_000_000,
            120_000_000,
            999_999_999,
        ];
        // Every fraction width, across days, months, leap years and the ends of the supported range.
        let starts = [
            base,
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(2024, 2, 29, 12, 0, 9).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        ];
        for start in starts {
            for nano in nanos {
                assert_same_as_chrono(start + Duration::nanoseconds(nano));
            }
        }
        for step in 0..2_000 {
            assert_same_as_chrono(
                base + Duration::seconds(step * 86_413) + Duration::nanoseconds(step * 7_919),
            );
        }
    }

    #[test]
    fn years_beyond_four_digits_and_leap_seconds_are_left_to_chrono() {
        let mut buffer = [0u8; MAX_LEN];
        let far = Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(format(&far, &mut buffer), None);
        assert_same_as_chrono(far);
        let before_zero = Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(format(&before_zero, &mut buffer), None);
        assert_same_as_chrono(before_zero);
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        assert_eq!(format(&leap, &mut buffer), None);
        assert_same_as_chrono(leap);
    }
}
