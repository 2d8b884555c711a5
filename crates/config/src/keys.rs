//! The keys the schema accepts, read from the `*Spec` types themselves, and suggestions for a
//! key that is not one of them.
//!
//! A recording [`serde::Deserializer`] walks every struct the schema can nest and writes down
//! its field names as dotted paths (`account.health.interval`): the list can never disagree with
//! what `parse` accepts. The docs test holds docs/config.md to the same list.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::Deserialize as _;
use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use crate::spec::ConfigSpec;

/// A `Deserializer` that hands every type the emptiest value of its shape and records the field
/// names of each struct it is asked for, as dotted paths (`account.health.interval`).
struct Recorder<'a> {
    path: String,
    seen: &'a RefCell<BTreeSet<String>>,
}

impl Recorder<'_> {
    fn child(&self, name: &str) -> Recorder<'_> {
        let path = if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        };
        Recorder {
            path,
            seen: self.seen,
        }
    }
}

impl<'de> de::Deserializer<'de> for Recorder<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(false)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(One(Some(self)))
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Fields {
            recorder: self,
            fields: &[],
            next: 0,
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        for field in fields {
            self.seen.borrow_mut().insert(self.child(field).path);
        }
        visitor.visit_map(Fields {
            recorder: self,
            fields,
            next: 0,
        })
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u8 u16 u32 u128 f32 char bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct enum identifier ignored_any
    }
}

/// A sequence of one element.
struct One<'a>(Option<Recorder<'a>>);

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|r| seed.deserialize(r)).transpose()
    }
}

/// A map holding every field of a struct (none for a plain map).
struct Fields<'a> {
    recorder: Recorder<'a>,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        let key: StrDeserializer<'_, Error> = field.into_deserializer();
        seed.deserialize(key).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let field = self.fields[self.next];
        self.next += 1;
        seed.deserialize(self.recorder.child(field))
    }
}

/// Every dotted key path the schema accepts (array indices left out: `tenant.hosts`).
pub(crate) fn accepted_keys() -> BTreeSet<String> {
    let seen = RefCell::new(BTreeSet::new());
    let recorder = Recorder {
        path: String::new(),
        seen: &seen,
    };
    // The walk may stop at a value the emptiest input cannot fill; every struct reached before
    // that is recorded, and the assertions below would notice a section that was not reached.
    let _ = ConfigSpec::deserialize(recorder);
    seen.into_inner()
}

/// The accepted keys, computed once.
fn known() -> &'static BTreeSet<String> {
    static KNOWN: std::sync::OnceLock<BTreeSet<String>> = std::sync::OnceLock::new();
    KNOWN.get_or_init(accepted_keys)
}

/// For an unknown key at `path` (`tenant[3].hostz`, as problems spell it), the accepted key of
/// the same table that is closest to it, when one is close enough to be a typo: at most one
/// edit for short keys, two from six characters on.
pub(crate) fn suggest(path: &str) -> Option<&'static str> {
    let plain = strip_indices(path);
    let (parent, leaf) = match plain.rsplit_once('.') {
        Some((parent, leaf)) => (parent, leaf),
        None => ("", plain.as_str()),
    };
    let budget = if leaf.chars().count() >= 6 { 2 } else { 1 };
    known()
        .iter()
        .filter_map(|key| {
            let (key_parent, key_leaf) = match key.rsplit_once('.') {
                Some((p, l)) => (p, l),
                None => ("", key.as_str()),
            };
            (key_parent == parent).then_some(key_leaf)
        })
        .map(|candidate| (edit_distance(leaf, candidate), candidate))
        .filter(|&(d, _)| d <= budget)
        .min_by_key(|&(d, candidate)| (d, candidate))
        .map(|(_, candidate)| candidate)
}

/// `tenant[3].health.x` as `tenant.health.x`.
fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Damerau-Levenshtein distance (optimal string alignment) between two short keys, counting a
/// swap of neighbours as one edit (`hosts` / `hsots`). Keys longer than 64 characters are
/// never close to an accepted key, and are not compared.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_closest_key_of_their_table() {
        for (path, want) in [
            ("tenant[3].hostz", Some("hosts")),
            ("tenant[0].hsots", Some("hosts")),
            ("limits.heder_read_timeout", Some("header_read_timeout")),
            ("account[1].health.intervall", Some("interval")),
            ("htp", None),
            ("listen.htp", Some("http")),
            ("listen.completely_else", None),
            // A key of another table is not suggested.
            ("limits.hosts", None),
        ] {
            assert_eq!(suggest(path), want, "{path}");
        }
    }

    #[test]
    fn distance_table() {
        for (a, b, d) in [
            ("", "", 0),
            ("abc", "abc", 0),
            ("abc", "abd", 1),
            ("abc", "acb", 1),
            ("abc", "", 3),
            ("kitten", "sitting", 3),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
        }
    }
}
