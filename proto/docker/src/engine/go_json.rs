//! Request bodies decoded as dockerd decodes them, with Go's encoding/json: an object key
//! matches a struct field case-insensitively (an exact match wins), so `{"global": {}}`
//! and `{"Global": {}}` are one thing; a key that names no field is ignored; `null` is
//! the zero value where the target has one. The rules sit in a serde `Deserializer` over
//! a parsed `serde_json::Value`, so the typed request structs stay plain serde.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::{Map, Value};

/// A JSON value read with Go's rules.
pub struct GoJson(pub Value);

type Error = serde_json::Error;

/// Renames the keys of `map` that match one of `fields` only up to case to that field's
/// spelling. Where a body spells one field several ways, the exact spelling wins (Go
/// takes the last in the document; a parsed map no longer knows the order).
fn fold_keys(map: Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    let mut folded = Map::new();
    let mut exact = Vec::new();
    for (key, value) in map {
        match fields.iter().find(|f| f.eq_ignore_ascii_case(&key)) {
            Some(field) if *field == key => {
                exact.push((key, value));
            }
            Some(field) => {
                folded.insert((*field).to_string(), value);
            }
            None => {
                folded.insert(key, value);
            }
        }
    }
    // An exact match wins over any other spelling of the same field.
    for (key, value) in exact {
        folded.insert(key, value);
    }
    folded
}

impl<'de> de::Deserializer<'de> for GoJson {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(GoMap::new(map)),
            Value::Array(items) => visitor.visit_seq(GoSeq(items.into_iter())),
            other => de::Deserializer::deserialize_any(other, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(GoMap::new(fold_keys(map, fields))),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Docker's enums travel as strings: match the variant's name up to case.
        match self.0 {
            Value::String(s) => {
                let s = variants
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(&s))
                    .map_or(s, |v| (*v).to_string());
                visitor.visit_enum(s.into_deserializer())
            }
            other => other.deserialize_enum(name, variants, visitor),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct GoSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for GoSeq {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(GoJson(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct GoMap {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl GoMap {
    fn new(map: Map<String, Value>) -> Self {
        GoMap {
            entries: map.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for GoMap {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without its key"))?;
        seed.deserialize(GoJson(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug, PartialEq, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Spec {
        name: Option<String>,
        mode: Option<Mode>,
        #[serde(default)]
        labels: HashMap<String, String>,
        #[serde(default)]
        ports: Vec<Port>,
    }

    #[derive(Deserialize, Debug, PartialEq, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Mode {
        replicated: Option<Replicated>,
        global: Option<Value>,
    }

    #[derive(Deserialize, Debug, PartialEq, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Replicated {
        replicas: Option<u64>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Port {
        target_port: u32,
        protocol: Option<Protocol>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Protocol {
        Tcp,
        Udp,
    }

    fn decode(text: &str) -> Spec {
        Spec::deserialize(GoJson(serde_json::from_str(text).unwrap())).unwrap()
    }

    #[test]
    fn fields_match_in_any_case_and_unknown_ones_are_ignored() {
        let spec = decode(
            r#"{"name": "web", "MODE": {"replicated": {"rePlicas": 3}},
                "ports": [{"targetport": 80, "Protocol": "UDP"}], "Colour": "red"}"#,
        );
        assert_eq!(spec.name.as_deref(), Some("web"));
        assert_eq!(spec.mode.unwrap().replicated.unwrap().replicas, Some(3));
        assert_eq!(
            spec.ports,
            [Port {
                target_port: 80,
                protocol: Some(Protocol::Udp)
            }]
        );
        assert_eq!(
            decode(r#"{"mode": {"global": {}}}"#).mode.unwrap().global,
            Some(Value::Object(Map::new()))
        );
    }

    #[test]
    fn an_exact_spelling_wins_and_map_keys_keep_their_case() {
        let spec = decode(r#"{"Name": "exact", "name": "folded", "Labels": {"Tier": "front"}}"#);
        assert_eq!(spec.name.as_deref(), Some("exact"));
        assert_eq!(spec.labels["Tier"], "front");
    }

    #[test]
    fn null_is_absent_and_a_wrong_type_is_still_an_error() {
        assert_eq!(decode(r#"{"Name": null, "Mode": null}"#), Spec::default());
        let wrong: Result<Spec, _> = Spec::deserialize(GoJson(
            serde_json::json!({"Ports": [{"TargetPort": "eighty"}]}),
        ));
        assert!(wrong.unwrap_err().to_string().contains("invalid type"));
    }
}
