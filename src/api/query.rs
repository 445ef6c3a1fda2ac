//! Query strings as dockerd reads them.

use std::collections::BTreeMap;

use super::error::ApiError;

/// Decoded query parameters, in order.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Query {
        Query { pairs: raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default() }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// dockerd's `BoolValue`: false when absent, empty, `0`, `no`, `false` or `none`.
    pub fn bool(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "no" | "false" | "none"))
    }

    /// The `filters` parameter: `{"k":["v"]}` or the older `{"k":{"v":true}}`.
    pub fn filters(&self) -> Result<Vec<(String, Vec<String>)>, ApiError> {
        let Some(raw) = self.get("filters").filter(|f| !f.is_empty()) else { return Ok(Vec::new()) };
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
        let obj = value.as_object().ok_or_else(|| ApiError::bad_request("invalid filter: not an object"))?;
        let mut out = Vec::new();
        for (k, v) in obj {
            let values: Vec<String> = match v {
                serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
                serde_json::Value::Object(m) => m.iter().filter(|(_, on)| on.as_bool() != Some(false)).map(|(k, _)| k.clone()).collect(),
                _ => return Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
            };
            out.push((k.clone(), values));
        }
        Ok(out)
    }

    /// Every pair, for re-encoding.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Re-encodes with some keys replaced or removed.
    pub fn encode_with(&self, overrides: &BTreeMap<&str, Option<String>>) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            match overrides.get(k.as_str()) {
                Some(Some(new)) => {
                    ser.append_pair(k, new);
                }
                Some(None) => {}
                None => {
                    ser.append_pair(k, v);
                }
            }
        }
        for (k, v) in overrides {
            if let Some(v) = v {
                if !self.pairs.iter().any(|(pk, _)| pk == k) {
                    ser.append_pair(k, v);
                }
            }
        }
        ser.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_read_like_dockerd() {
        let q = Query::parse(Some("a=1&b=False&c=true&d=0&e=&f=none&g=True"));
        assert!(q.bool("a") && q.bool("c") && q.bool("g"));
        assert!(!q.bool("b") && !q.bool("d") && !q.bool("e") && !q.bool("f") && !q.bool("missing"));
    }

    #[test]
    fn filters_read_both_shapes() {
        let q = Query::parse(Some("filters=%7B%22name%22%3A%5B%22web%22%5D%2C%22status%22%3A%7B%22running%22%3Atrue%7D%7D"));
        assert_eq!(q.filters().unwrap(), vec![("name".to_string(), vec!["web".to_string()]), ("status".to_string(), vec!["running".to_string()])]);
        assert!(Query::parse(Some("filters=nope")).filters().is_err());
    }
}
