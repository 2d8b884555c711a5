//! A minimal DER walk to a certificate's validity window, and UTC date arithmetic and formatting.
//!
//! Only what [`validity`] needs: single-byte tags, definite lengths (DER forbids the indefinite
//! form), and the two RFC 5280 §4.1.2.5 time forms. Anything else is `None`, never a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// DER tag of a constructed SEQUENCE.
const SEQUENCE: u8 = 0x30;
/// DER tag of `[0] EXPLICIT` (the certificate version).
const CONTEXT_0: u8 = 0xA0;
/// DER tag of UTCTime.
const UTC_TIME: u8 = 0x17;
/// DER tag of GeneralizedTime.
const GENERALIZED_TIME: u8 = 0x18;

/// Seconds in a day.
const DAY: i64 = 86_400;

/// notBefore and notAfter of a DER X.509 certificate.
///
/// Walks `Certificate.tbsCertificate.validity` (skipping the optional version, the serial
/// number, the signature algorithm and the issuer) and reads both times, as UTCTime
/// (`YYMMDDHHMMSSZ`, years 1950–2049 per RFC 5280 §4.1.2.5.1) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`). `None` when the input is not shaped like a certificate.
pub fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&CONTEXT_0) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Some((not_before, not_after))
}

/// `t` as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian calendar; sub-second part dropped).
pub fn format_utc(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            // Round towards the past, so 0.5 s before the epoch prints as 23:59:59.
            let d = before.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(DAY);
    let of_day = secs.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The instant `y-m-d h:min:s` UTC, or `None` for a date or time that does not exist.
pub(crate) fn utc(y: i64, m: u32, d: u32, h: u32, min: u32, s: u32) -> Option<SystemTime> {
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || h > 23 || min > 59 || s > 59 {
        return None;
    }
    let secs =
        days_from_civil(y, m, d) * DAY + i64::from(h) * 3600 + i64::from(min) * 60 + i64::from(s);
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// One TLV: `(tag, contents, rest)`.
pub(crate) fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    // High tag numbers (low five bits all set) never occur on the path we walk.
    if tag & 0x1F == 0x1F {
        return None;
    }
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        // Long form: 1..=4 length bytes; 0x80 alone is BER's indefinite length, invalid in DER.
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let (bytes, rest) = input.split_at(count);
        input = rest;
        bytes.iter().try_fold(0usize, |acc, &b| {
            acc.checked_mul(256)?.checked_add(usize::from(b))
        })?
    };
    if input.len() < len {
        return None;
    }
    let (contents, rest) = input.split_at(len);
    Some((tag, contents, rest))
}

/// One TLV that must carry `tag`: `(contents, rest)`.
pub(crate) fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(input)? {
        (t, contents, rest) if t == tag => Some((contents, rest)),
        _ => None,
    }
}

/// A UTCTime or GeneralizedTime in the RFC 5280 profile (UTC, seconds present, no fraction).
fn time(input: &[u8]) -> Option<(SystemTime, &[u8])> {
    let (tag, contents, rest) = tlv(input)?;
    let (year, digits) = match (tag, contents.len()) {
        (UTC_TIME, 13) => {
            let yy = i64::from(number(&contents[..2])?);
            // RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &contents[2..])
        }
        (GENERALIZED_TIME, 15) => (i64::from(number(&contents[..4])?), &contents[4..]),
        _ => return None,
    };
    // MMDDHHMMSSZ
    if digits.get(10) != Some(&b'Z') {
        return None;
    }
    let field = |i: usize| number(&digits[i..i + 2]);
    let t = utc(year, field(0)?, field(2)?, field(4)?, field(6)?, field(8)?)?;
    Some((t, rest))
}

/// ASCII decimal digits as a number; `None` on anything else.
fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: `(year, month, day)`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
