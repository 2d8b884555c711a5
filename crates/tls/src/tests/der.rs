//! `validity` against rcgen-set dates, malformed input, and UTC formatting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, KeyPair, date_time_ymd};

use super::{ALWAYS, leaf};
use crate::der::utc;
use crate::{format_utc, validity};

/// A self-signed certificate valid from `nb` to `na` (each `(y, m, d, seconds into the day)`).
fn cert(nb: (i32, u8, u8, u64), na: (i32, u8, u8, u64)) -> Vec<u8> {
    let mut params = CertificateParams::new(vec!["v.test".to_owned()]).expect("valid SAN");
    params.not_before = date_time_ymd(nb.0, nb.1, nb.2) + Duration::from_secs(nb.3);
    params.not_after = date_time_ymd(na.0, na.1, na.2) + Duration::from_secs(na.3);
    let key = KeyPair::generate().expect("ring generates P-256 keys");
    params
        .self_signed(&key)
        .expect("rcgen signs test certificates")
        .der()
        .to_vec()
}

fn at(y: i64, m: u32, d: u32, h: u32, min: u32, s: u32) -> SystemTime {
    utc(y, m, d, h, min, s).expect("test dates exist")
}

#[test]
fn validity_reads_utc_time_and_generalized_time() {
    const NOON_ISH: u64 = 12 * 3600 + 34 * 60 + 56;
    const LAST_SECOND: u64 = 86_399;
    // rcgen writes UTCTime for years before 2050 and GeneralizedTime from 2050 on (RFC 5280).
    let cases = [
        // Both UTCTime, 19YY and 20YY.
        ((1975, 1, 1, 0), (2049, 12, 31, LAST_SECOND)),
        ((1999, 12, 31, LAST_SECOND), (2000, 1, 1, 0)),
        // Leap day with a time of day; UTCTime then GeneralizedTime.
        ((2020, 2, 29, NOON_ISH), (2050, 1, 1, 0)),
        // Both GeneralizedTime, far future.
        ((2051, 6, 15, NOON_ISH), (4096, 1, 1, 0)),
        ((2100, 3, 1, 1), (9999, 12, 31, LAST_SECOND)),
    ];
    for (nb, na) in cases {
        let der = cert(nb, na);
        let expected = |(y, m, d, s): (i32, u8, u8, u64)| {
            at(i64::from(y), u32::from(m), u32::from(d), 0, 0, 0) + Duration::from_secs(s)
        };
        assert_eq!(
            validity(&der),
            Some((expected(nb), expected(na))),
            "validity of {nb:?} .. {na:?}"
        );
    }
}

#[test]
fn validity_of_a_ca_signed_leaf() {
    let leaf = leaf(&["a.test"], Some(&super::Ca::new("ca")), ALWAYS);
    assert_eq!(
        validity(&leaf.der),
        Some((at(1975, 1, 1, 0, 0, 0), at(4096, 1, 1, 0, 0, 0)))
    );
}

#[test]
fn validity_rejects_what_is_not_a_certificate() {
    let good = cert((2020, 1, 1, 0), (2030, 1, 1, 0));
    let mut indefinite = good.clone();
    indefinite[1] = 0x80;
    let mut wrong_tag = good.clone();
    wrong_tag[0] = 0x31;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one byte", vec![0x30]),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("indefinite length", indefinite),
        ("not a sequence", wrong_tag),
        ("garbage", b"hello, world".to_vec()),
        ("length overflow", vec![0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]),
        // SEQUENCE { SEQUENCE { INTEGER 1 } }: no validity at all.
        ("short tbs", vec![0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x01]),
    ];
    for (what, der) in cases {
        assert_eq!(validity(&der), None, "{what}");
    }
    assert!(
        validity(&good).is_some(),
        "the unmodified certificate parses"
    );
}

#[test]
fn utc_rejects_dates_that_do_not_exist() {
    let cases = [
        ((2023, 2, 29, 0, 0, 0), false),
        ((2024, 2, 29, 0, 0, 0), true),
        ((1900, 2, 29, 0, 0, 0), false),
        ((2000, 2, 29, 0, 0, 0), true),
        ((2024, 4, 31, 0, 0, 0), false),
        ((2024, 13, 1, 0, 0, 0), false),
        ((2024, 0, 1, 0, 0, 0), false),
        ((2024, 1, 0, 0, 0, 0), false),
        ((2024, 1, 1, 24, 0, 0), false),
        ((2024, 1, 1, 23, 60, 0), false),
        ((2024, 1, 1, 23, 59, 60), false),
        ((2024, 12, 31, 23, 59, 59), true),
    ];
    for ((y, m, d, h, min, s), exists) in cases {
        assert_eq!(
            utc(y, m, d, h, min, s).is_some(),
            exists,
            "{y}-{m}-{d} {h}:{min}:{s}"
        );
    }
}

#[test]
fn format_utc_prints_dates_in_utc() {
    let cases = [
        (UNIX_EPOCH, "1970-01-01 00:00:00 UTC"),
        (at(2025, 1, 1, 0, 0, 0), "2025-01-01 00:00:00 UTC"),
        (at(2024, 2, 29, 23, 59, 59), "2024-02-29 23:59:59 UTC"),
        (at(2049, 12, 31, 12, 0, 1), "2049-12-31 12:00:01 UTC"),
        (at(9999, 12, 31, 23, 59, 59), "9999-12-31 23:59:59 UTC"),
        (at(1969, 12, 31, 23, 59, 59), "1969-12-31 23:59:59 UTC"),
        (at(1950, 1, 1, 0, 0, 0), "1950-01-01 00:00:00 UTC"),
        (
            UNIX_EPOCH - Duration::from_millis(500),
            "1969-12-31 23:59:59 UTC",
        ),
        (
            UNIX_EPOCH + Duration::from_millis(86_400_999),
            "1970-01-02 00:00:00 UTC",
        ),
    ];
    for (t, expected) in cases {
        assert_eq!(format_utc(t), expected);
    }
}
