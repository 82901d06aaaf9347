//! How numbers, durations and ids are written on the page: thousands separators, units, fixed precision.
//!
//! Every figure goes through here so the same quantity always reads the same way.

use uuid::Uuid;

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `x` rounded to `decimals` digits (0..=6) as (whole part, fraction digits).
///
/// Integer arithmetic on purpose: Rust's float formatting (`{:.1}`) weighs about 20 KiB of WebAssembly.
/// Negative, infinite and NaN values (which no counter should produce) count as 0.
fn split_fixed(x: f64, decimals: u32) -> (u64, String) {
    let decimals = decimals.min(6);
    let scale = 10_u64.pow(decimals);
    let x = if x.is_finite() && x > 0.0 { x } else { 0.0 };
    // `as` saturates, so a huge value cannot wrap.
    let scaled = (x * scale as f64).round() as u64;
    let fraction = scaled % scale;
    let digits = if decimals == 0 {
        String::new()
    } else {
        format!("{fraction:0width$}", width = decimals as usize)
    };
    (scaled / scale, digits)
}

/// `x` with `decimals` digits after the point, no separators: `(3.14159, 2)` → `"3.14"` (for SVG and CSS).
pub fn fixed(x: f64, decimals: u32) -> String {
    match split_fixed(x, decimals) {
        (whole, digits) if digits.is_empty() => whole.to_string(),
        (whole, digits) => format!("{whole}.{digits}"),
    }
}

/// `x` with `decimals` digits after the point and separators before it: `(1234.56, 1)` → `"1,234.6"`.
pub fn decimal(x: f64, decimals: u32) -> String {
    match split_fixed(x, decimals) {
        (whole, digits) if digits.is_empty() => thousands(whole),
        (whole, digits) => format!("{}.{digits}", thousands(whole)),
    }
}

/// A rate in messages per second: one decimal below 100 (where it matters), whole numbers above.
pub fn rate(per_second: f64) -> String {
    if per_second < 100.0 {
        decimal(per_second, 1)
    } else {
        decimal(per_second, 0)
    }
}

/// A duration given in milliseconds: `"850 ms"`, `"1.25 s"`, `"12.5 s"`, `"3 min 05 s"`.
pub fn duration_ms(ms: f64) -> String {
    let ms = if ms.is_finite() && ms > 0.0 { ms } else { 0.0 };
    if ms < 999.5 {
        format!("{} ms", fixed(ms, 0))
    } else if ms < 9_995.0 {
        format!("{} s", fixed(ms / 1_000.0, 2))
    } else if ms < 59_950.0 {
        format!("{} s", fixed(ms / 1_000.0, 1))
    } else {
        let seconds = (ms / 1_000.0).round() as u64;
        format!("{} min {:02} s", seconds / 60, seconds % 60)
    }
}

/// A percentage of `part` in `whole`, clamped to 0..=100 (`"42%"`); `"0%"` when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> String {
    format!("{}%", fixed(percent_value(part, whole), 0))
}

/// `part / whole` as a number in 0..=100.
pub fn percent_value(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 100.0 / whole as f64).clamp(0.0, 100.0)
    }
}

/// The last 8 hex digits of a tracking id: the random part, so the ids of one burst tell apart (their leading
/// timestamp digits are the same).
pub fn short_id(id: &Uuid) -> String {
    let simple = id.simple().to_string();
    simple[simple.len() - 8..].to_owned()
}

/// Wall-clock time of day `HH:MM:SS` for `epoch_ms`, shifted by `offset_minutes` (local time = UTC + offset).
pub fn time_of_day(epoch_ms: f64, offset_minutes: i64) -> String {
    let seconds = (epoch_ms / 1_000.0).floor() as i64 + offset_minutes * 60;
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345), "12,345");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn decimals_keep_their_precision_and_separators() {
        assert_eq!(decimal(1234.56, 1), "1,234.6");
        assert_eq!(decimal(0.04, 1), "0.0");
        assert_eq!(decimal(50.0, 2), "50.00");
        assert_eq!(decimal(999_999.9, 0), "1,000,000");
        assert_eq!(decimal(-3.0, 1), "0.0");
        assert_eq!(decimal(f64::NAN, 1), "0.0");
    }

    #[test]
    fn fixed_rounds_without_separators() {
        assert_eq!(fixed(1.23456, 2), "1.23");
        assert_eq!(fixed(0.05, 1), "0.1");
        assert_eq!(fixed(1234.5, 0), "1235");
        assert_eq!(fixed(160.0, 1), "160.0");
        assert_eq!(fixed(-1.0, 1), "0.0");
    }

    #[test]
    fn rates_show_a_decimal_only_when_small() {
        assert_eq!(rate(0.0), "0.0");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(41_234.7), "41,235");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration_ms(0.0), "0 ms");
        assert_eq!(duration_ms(849.6), "850 ms");
        assert_eq!(duration_ms(999.7), "1.00 s");
        assert_eq!(duration_ms(9_999.0), "10.0 s");
        assert_eq!(duration_ms(1_250.0), "1.25 s");
        assert_eq!(duration_ms(12_500.0), "12.5 s");
        assert_eq!(duration_ms(185_000.0), "3 min 05 s");
        assert_eq!(duration_ms(-5.0), "0 ms");
    }

    #[test]
    fn percentages_are_clamped_and_survive_a_zero_whole() {
        assert_eq!(percent(25, 50), "50%");
        assert_eq!(percent(75, 50), "100%");
        assert_eq!(percent(3, 0), "0%");
    }

    #[test]
    fn short_ids_are_the_random_tail() {
        let id = Uuid::parse_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        assert_eq!(short_id(&id), "2e3f4a5b");
    }

    #[test]
    fn time_of_day_applies_the_offset_and_wraps() {
        // 2024-01-01T23:59:30Z
        let ms = 1_704_153_570_000.0;
        assert_eq!(time_of_day(ms, 0), "23:59:30");
        assert_eq!(time_of_day(ms, 60), "00:59:30");
        assert_eq!(time_of_day(ms, -90), "22:29:30");
    }
}
