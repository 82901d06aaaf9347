//! Wall-clock time and randomness from the browser.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Minutes to add to UTC for local time (JavaScript's offset has the opposite sign).
pub fn local_offset_minutes() -> i64 {
    -(js_sys::Date::new_0().get_timezone_offset() as i64)
}

/// A number in `0.0..1.0` (for jitter).
pub fn random() -> f64 {
    js_sys::Math::random()
}
