//! Duration strings: a decimal number and a unit, e.g. `500ms`, `2s`, `1.5m`, `1h`.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a duration such as `500ms`, `2s`, `1.5s`, `1m` or `1h`.
///
/// The number is unsigned decimal with an optional fraction (digits on both sides of the `.`);
/// the unit is one of `ms`, `s`, `m`, `h` and is required. Precision below a nanosecond is
/// truncated. The error is a short English sentence meant to follow a path in a [`Problem`].
///
/// [`Problem`]: crate::Problem
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const UNITS: &str = "use a number and a unit: ms, s, m or h (e.g. \"500ms\", \"2s\")";
    if s.is_empty() {
        return Err(format!("empty duration; {UNITS}"));
    }
    if s.starts_with('-') {
        return Err("negative durations are not allowed".to_owned());
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "" => return Err(format!("missing unit; {UNITS}")),
        _ => return Err(format!("not a duration; {UNITS}")),
    };
    let (whole, frac) = match number.split_once('.') {
        Some((whole, frac)) => (whole, frac),
        None => (number, ""),
    };
    let digits_ok = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok(whole) || (number.contains('.') && !digits_ok(frac)) {
        return Err(format!("not a duration; {UNITS}"));
    }
    // Exact integer arithmetic: the value is whole + frac / 10^len(frac) units. Digits beyond
    // what a nanosecond can express are dropped (the longest unit is 3.6e12 ns, so 13 suffice).
    let too_large = || "duration is too large".to_owned();
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_large)?;
    let mut scale = unit_nanos;
    for digit in frac.bytes().take(13) {
        scale /= 10;
        nanos += u128::from(digit - b'0') * scale;
    }
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_large())?;
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).expect("a remainder of 1e9 fits in u32");
    Ok(Duration::new(secs, subsec))
}
