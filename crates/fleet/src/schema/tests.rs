//! Tests of the key schema and the stored values.

use super::*;

#[test]
fn keys_round_trip_through_their_text() {
    let keys = [
        Key::Replica("gw1"),
        Key::Heartbeat("gw1"),
        Key::Vote {
            account: "east-a",
            replica: "gw2",
        },
        Key::Decision("contoso"),
        Key::Pin("contoso"),
        Key::Region("eastus"),
        Key::Config {
            kind: "tenant",
            name: "contoso",
        },
        Key::Event {
            replica: "gw3",
            seq: 42,
        },
    ];
    for key in keys {
        let text = key.to_string();
        assert_eq!(Key::parse(&text), Some(key), "{text}");
    }
    assert_eq!(
        Key::Event {
            replica: "gw3",
            seq: 42
        }
        .under("/pairgate/"),
        "/pairgate/events/gw3/00000000000000000042"
    );
}

#[test]
fn keys_outside_the_schema_are_none() {
    for text in [
        "",
        "replicas",
        "replicas/a/b",
        "health/east-a",
        "decisions/a/b",
        "config/tenant",
        "events/gw1/not-a-number",
        "unknown/x",
    ] {
        assert_eq!(Key::parse(text), None, "{text:?}");
    }
}

#[test]
fn decisions_read_what_earlier_releases_wrote() {
    // Written before the schema had types: no `by`, and `reject`/`cause` could be missing.
    let old: Decision = serde_json::from_str(r#"{"side":"secondary","epoch":3}"#).expect("reads");
    assert_eq!(
        old,
        Decision {
            side: StoredSide::Secondary,
            reject: false,
            epoch: 3,
            cause: "fleet_decision".to_owned(),
            by: String::new(),
        }
    );
    let written = Decision {
        side: StoredSide::Primary,
        reject: true,
        epoch: 7,
        cause: "region_down".to_owned(),
        by: "gw1".to_owned(),
    };
    let text = serde_json::to_string(&written).expect("writes");
    assert_eq!(
        text,
        r#"{"side":"primary","reject":true,"epoch":7,"cause":"region_down","by":"gw1"}"#
    );
    assert!(serde_json::from_str::<Decision>(r#"{"side":"left","epoch":1}"#).is_err());
}

#[test]
fn unreadable_overrides_count_as_auto() {
    let pin = Pin::read(b"{not json");
    assert_eq!(Mode::from(pin.mode), Mode::Auto);
    let pin = Pin::read(br#"{"mode":"secondary","reason":"maintenance"}"#);
    assert_eq!(Mode::from(pin.mode), Mode::Pinned(Side::Secondary));
    assert_eq!(pin.reason, "maintenance");

    let region = RegionState::read(b"");
    assert_eq!(RegionOverride::from(region.state), RegionOverride::Auto);
    let region = RegionState::read(br#"{"state":"down","reason":"INC1","source":"azure-monitor"}"#);
    assert_eq!(RegionOverride::from(region.state), RegionOverride::Down);
    assert_eq!(region.source.as_str(), "azure-monitor");
    let region = RegionState::read(br#"{"state":"down"}"#);
    assert_eq!(region.source, RegionSource::Operator);
}

#[test]
fn votes_read_their_names() {
    assert_eq!(read_vote(b"healthy"), Health::Healthy);
    assert_eq!(read_vote(b"unhealthy"), Health::Unhealthy);
    assert_eq!(read_vote(b"unknown"), Health::Unknown);
    assert_eq!(read_vote(b"garbage"), Health::Unknown);
}
