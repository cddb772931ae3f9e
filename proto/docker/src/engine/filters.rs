//! The `filters` query parameter: `{"name":{"web":true}}` (or the older
//! `{"name":["web"]}`), keys ANDed, values of one key ORed, as dockerd matches them.

use std::collections::{BTreeSet, HashMap};

use crate::error::{Invalid, Result};

#[derive(Debug, Default, Clone)]
pub struct Filters(HashMap<String, BTreeSet<String>>);

impl Filters {
    /// Parses the parameter, refusing keys the endpoint does not know, as dockerd does.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Filters> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Filters::default());
        };
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| Invalid::new(format!("invalid filters {raw:?}: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Invalid::new(format!("invalid filters {raw:?}: not an object")))?;
        let mut out = HashMap::new();
        for (key, values) in obj {
            if !known.contains(&key.as_str()) {
                return Err(Invalid::new(format!("invalid filter '{key}'")));
            }
            let set: BTreeSet<String> = match values {
                serde_json::Value::Object(m) => m
                    .iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(false))
                    .map(|(v, _)| v.clone())
                    .collect(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                _ => {
                    return Err(Invalid::new(format!(
                        "invalid filter '{key}': values must be a map or a list"
                    )));
                }
            };
            out.insert(key.clone(), set);
        }
        Ok(Filters(out))
    }

    pub fn values(&self, key: &str) -> Option<&BTreeSet<String>> {
        self.0.get(key).filter(|v| !v.is_empty())
    }

    /// True when `key` is not filtered on, or `accept` holds for one of its values.
    pub fn any(&self, key: &str, accept: impl Fn(&str) -> bool) -> bool {
        self.values(key)
            .is_none_or(|vs| vs.iter().any(|v| accept(v)))
    }

    /// `label` filters: `key` (present) or `key=value`, all of them must hold.
    pub fn labels(&self, key: &str, labels: &HashMap<String, String>) -> bool {
        self.values(key).is_none_or(|vs| {
            vs.iter().all(|f| match f.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
                None => labels.contains_key(f),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_parse_and_unknown_keys_are_refused() {
        let f = Filters::parse(
            Some(r#"{"name":{"web":true},"label":["a=b"]}"#),
            &["name", "label"],
        )
        .unwrap();
        assert!(f.any("name", |n| n == "web"));
        assert!(!f.any("name", |n| n == "db"));
        assert!(f.any("id", |_| false), "an absent key filters nothing");
        let labels = HashMap::from([("a".to_string(), "b".to_string())]);
        assert!(f.labels("label", &labels));
        assert!(!f.labels("label", &HashMap::new()));
        let e = Filters::parse(Some(r#"{"colour":{"red":true}}"#), &["name"]).unwrap_err();
        assert_eq!(e.0, "invalid filter 'colour'");
        assert!(Filters::parse(Some("{"), &["name"]).is_err());
    }
}
