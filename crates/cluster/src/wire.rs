//! Reading the etcd JSON gateway's answers.
//!
//! The gateway (grpc-gateway with the proto3 JSON mapping) writes 64-bit integers as strings
//! (`"revision":"12"`), omits fields at their default value (`0`, `false`, `""`, the `PUT` event
//! type) and carries `bytes` as base64. Every reader here accepts an integer as a string or a
//! number and treats a missing field as its default.

use serde_json::Value;

use crate::b64;
use crate::error::EtcdError;
use crate::types::{EventKind, KeyValue, WatchEvent};

/// An `int64` field: a string or a number; missing or `null` is 0.
pub(crate) fn int(obj: &Value, field: &str) -> Result<i64, EtcdError> {
    integer(obj, field, serde_json::Number::as_i64, "an int64")
}

/// A `uint64` field (member IDs): a string or a number; missing is 0.
pub(crate) fn uint(obj: &Value, field: &str) -> Result<u64, EtcdError> {
    integer(obj, field, serde_json::Number::as_u64, "a uint64")
}

/// A 64-bit integer field as the JSON gateway writes it: a decimal string, or a JSON number
/// that `from_number` accepts (`kind`, "an int64", names the type in errors); missing or `null` is 0.
fn integer<T: std::str::FromStr + Default>(
    obj: &Value,
    field: &str,
    from_number: fn(&serde_json::Number) -> Option<T>,
    kind: &str,
) -> Result<T, EtcdError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| EtcdError::Protocol(format!("field {field}: not an integer: {s:?}"))),
        Some(Value::Number(n)) => from_number(n)
            .ok_or_else(|| EtcdError::Protocol(format!("field {field}: not {kind}: {n}"))),
        Some(other) => Err(EtcdError::Protocol(format!(
            "field {field}: not an integer: {other}"
        ))),
    }
}

/// A `bool` field; missing is false.
pub(crate) fn boolean(obj: &Value, field: &str) -> bool {
    obj.get(field).and_then(Value::as_bool).unwrap_or(false)
}

/// A `string` field; missing is empty.
pub(crate) fn string<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get(field).and_then(Value::as_str).unwrap_or("")
}

/// A `bytes` field, decoded; missing is empty.
pub(crate) fn bytes(obj: &Value, field: &str) -> Result<Vec<u8>, EtcdError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => {
            b64::decode(s).map_err(|e| EtcdError::Protocol(format!("field {field}: {e}")))
        }
        Some(other) => Err(EtcdError::Protocol(format!(
            "field {field}: not base64: {other}"
        ))),
    }
}

/// A repeated field; missing is empty.
pub(crate) fn list<'a>(obj: &'a Value, field: &str) -> &'a [Value] {
    obj.get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `header.revision` of a response.
pub(crate) fn header_revision(obj: &Value) -> Result<i64, EtcdError> {
    obj.get("header")
        .map_or(Ok(0), |header| int(header, "revision"))
}

/// An `mvccpb.KeyValue`.
pub(crate) fn key_value(obj: &Value) -> Result<KeyValue, EtcdError> {
    let key = bytes(obj, "key")?;
    let key = String::from_utf8(key)
        .map_err(|e| EtcdError::Protocol(format!("key is not UTF-8: {:?}", e.as_bytes())))?;
    Ok(KeyValue {
        key,
        value: bytes(obj, "value")?,
        create_revision: int(obj, "create_revision")?,
        mod_revision: int(obj, "mod_revision")?,
        version: int(obj, "version")?,
        lease: int(obj, "lease")?,
    })
}

/// The `kvs` of a `RangeResponse`.
pub(crate) fn kvs(obj: &Value) -> Result<Vec<KeyValue>, EtcdError> {
    list(obj, "kvs").iter().map(key_value).collect()
}

/// An `mvccpb.Event`.
pub(crate) fn event(obj: &Value) -> Result<WatchEvent, EtcdError> {
    let kind = match obj.get("type").and_then(Value::as_str) {
        None | Some("PUT") => EventKind::Put,
        Some("DELETE") => EventKind::Delete,
        Some(other) => return Err(EtcdError::Protocol(format!("unknown event type {other:?}"))),
    };
    let kv = obj
        .get("kv")
        .ok_or_else(|| EtcdError::Protocol("event without kv".to_owned()))?;
    Ok(WatchEvent {
        kind,
        kv: key_value(kv)?,
    })
}

/// The error an answer carries, if any.
///
/// Unary calls fail with a non-200 status and `{"error": "...", "code": 5, "message": "..."}`;
/// streaming calls put `{"error": {"grpc_code": 5, "message": "..."}}` in the stream.
pub(crate) fn error(obj: &Value) -> Option<EtcdError> {
    match obj.get("error")? {
        Value::Object(_) => {
            let inner = &obj["error"];
            let code = int(inner, "grpc_code")
                .ok()
                .filter(|c| *c != 0)
                .or_else(|| int(inner, "code").ok())
                .unwrap_or(2);
            Some(EtcdError::Status {
                code: i32::try_from(code).unwrap_or(2),
                message: string(inner, "message").to_owned(),
            })
        }
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => {
            let code = int(obj, "code").ok().filter(|c| *c != 0).unwrap_or(2);
            let message = match string(obj, "message") {
                "" => s.clone(),
                m => m.to_owned(),
            };
            Some(EtcdError::Status {
                code: i32::try_from(code).unwrap_or(2),
                message,
            })
        }
        _ => None,
    }
}

/// The end of the key range holding every key that starts with `prefix` (etcd's `range_end`):
/// the prefix with its last byte below 0xff incremented and the rest dropped. An empty (or
/// all-0xff) prefix gives `\0`, which etcd reads as "to the end of the keyspace".
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn integers_as_strings_numbers_or_missing() {
        let obj = json!({"a": "12", "b": 7, "c": null, "big": "9223372036854775807"});
        assert_eq!(int(&obj, "a").unwrap(), 12);
        assert_eq!(int(&obj, "b").unwrap(), 7);
        assert_eq!(int(&obj, "c").unwrap(), 0);
        assert_eq!(int(&obj, "missing").unwrap(), 0);
        assert_eq!(int(&obj, "big").unwrap(), i64::MAX);
        assert!(int(&json!({"a": "x"}), "a").is_err());
        assert!(int(&json!({"a": true}), "a").is_err());
        assert_eq!(
            uint(&json!({"a": "18446744073709551615"}), "a").unwrap(),
            u64::MAX
        );
    }

    #[test]
    fn key_value_with_defaults_omitted() {
        let kv = key_value(&json!({"key": "YWI=", "mod_revision": "8"})).unwrap();
        assert_eq!(
            kv,
            KeyValue {
                key: "ab".into(),
                mod_revision: 8,
                ..KeyValue::default()
            }
        );
        assert!(key_value(&json!({"key": "/w=="})).is_err(), "non-UTF-8 key");
    }

    #[test]
    fn events_default_to_put() {
        let put = event(&json!({"kv": {"key": "YQ==", "value": "Yg==", "mod_revision": "3"}}));
        assert_eq!(put.unwrap().kind, EventKind::Put);
        let del = event(&json!({"type": "DELETE", "kv": {"key": "YQ=="}})).unwrap();
        assert_eq!(del.kind, EventKind::Delete);
        assert!(event(&json!({"type": "WHAT", "kv": {}})).is_err());
    }

    #[test]
    fn errors_unary_and_streaming() {
        let unary = json!({"error": "etcdserver: requested lease not found",
                           "message": "etcdserver: requested lease not found", "code": 5});
        assert!(error(&unary).unwrap().is_not_found());
        let streaming =
            json!({"error": {"grpc_code": 14, "http_code": 503, "message": "no leader"}});
        assert_eq!(
            error(&streaming),
            Some(EtcdError::Status {
                code: 14,
                message: "no leader".into()
            })
        );
        assert_eq!(error(&json!({"header": {}})), None);
        assert_eq!(error(&json!({"error": ""})), None);
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
