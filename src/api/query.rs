//! Query strings as dockerd reads them.

use std::collections::BTreeMap;

use serde_json::Value;

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

    /// The `filters` parameter, read as dockerd's `filters.FromJSON` does: `{"k":{"v":true}}`
    /// (every key of the inner object is a value, whatever its boolean) or the older
    /// `{"k":["v"]}`; anything else is the engine's 500 with Go's decoding message.
    pub fn filters(&self) -> Result<Vec<(String, Vec<String>)>, ApiError> {
        let Some(raw) = self.get("filters").filter(|f| !f.is_empty()) else { return Ok(Vec::new()) };
        parse_filters(raw).map_err(ApiError::internal)
    }

    /// The `filters` to pass on to engines, as the client wrote them less swarm's `node` key,
    /// and the `node` values. Malformed filters are refused here as [`Query::filters`] does.
    pub fn engine_filters(&self) -> Result<(Option<String>, Option<Vec<String>>), ApiError> {
        let Some(raw) = self.get("filters").filter(|f| !f.is_empty()) else { return Ok((None, None)) };
        let parsed = parse_filters(raw).map_err(ApiError::internal)?;
        let nodes = parsed.into_iter().find(|(k, _)| k == "node").map(|(_, v)| v);
        if nodes.is_none() {
            return Ok((Some(raw.to_string()), None));
        }
        let mut obj = serde_json::from_str::<serde_json::Map<String, Value>>(raw).unwrap_or_default();
        obj.remove("node");
        Ok(((!obj.is_empty()).then(|| Value::Object(obj).to_string()), nodes))
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

const MODERN: &str = "map[string]map[string]bool";

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => "null",
    }
}

fn parse_filters(raw: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let value: Value = serde_json::from_str(raw).map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of JSON input".to_string(),
        _ => format!("invalid character looking for beginning of value ({e})"),
    })?;
    let obj = match value {
        Value::Object(o) => o,
        Value::Null => return Ok(Vec::new()),
        other => return Err(format!("json: cannot unmarshal {} into Go value of type {MODERN}", json_kind(&other))),
    };
    // The modern shape first; on failure the legacy one, else the modern shape's error.
    let mut modern_error = None;
    let mut out = Vec::new();
    for (k, v) in &obj {
        match v {
            Value::Object(m) => match m.values().find(|b| !b.is_boolean()) {
                Some(bad) => {
                    modern_error
                        .get_or_insert(format!("json: cannot unmarshal {} into Go value of type bool", json_kind(bad)));
                }
                None => out.push((k.clone(), m.keys().cloned().collect())),
            },
            Value::Null => out.push((k.clone(), Vec::new())),
            other => {
                modern_error.get_or_insert(format!(
                    "json: cannot unmarshal {} into Go value of type map[string]bool",
                    json_kind(other)
                ));
            }
        }
    }
    let Some(err) = modern_error else { return Ok(out) };
    let mut legacy = Vec::new();
    for (k, v) in obj {
        match v {
            Value::Array(items) if items.iter().all(Value::is_string) => {
                let mut values: Vec<String> =
                    items.into_iter().filter_map(|i| i.as_str().map(str::to_string)).collect();
                values.dedup();
                legacy.push((k, values));
            }
            Value::Null => legacy.push((k, Vec::new())),
            _ => return Err(err),
        }
    }
    Ok(legacy)
}

/// The values of `key`, in order, without repeats (dockerd keeps them in a set).
pub fn filter_values<'a>(filters: &'a [(String, Vec<String>)], key: &str) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for (_, vs) in filters.iter().filter(|(k, _)| k == key) {
        for v in vs {
            if !out.contains(&v.as_str()) {
                out.push(v);
            }
        }
    }
    out
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
        let one = |v: &str| vec![("name".to_string(), vec![v.to_string()])];
        assert_eq!(parse_filters(r#"{"name":["web"]}"#).unwrap(), one("web"));
        assert_eq!(parse_filters(r#"{"name":{"web":true}}"#).unwrap(), one("web"));
        // Both shapes in one document: neither of dockerd's two readings takes it.
        assert!(parse_filters(r#"{"name":["web"],"status":{"running":true}}"#).is_err());
        assert!(Query::parse(Some("filters=nope")).filters().is_err());
        // dockerd counts a key whose values are false, and refuses mixed or non-string values.
        assert_eq!(parse_filters(r#"{"a":{"x":false}}"#).unwrap(), vec![("a".to_string(), vec!["x".to_string()])]);
        assert_eq!(
            parse_filters(r#"{"a":[1]}"#).unwrap_err(),
            "json: cannot unmarshal array into Go value of type map[string]bool"
        );
        assert_eq!(
            parse_filters("[]").unwrap_err(),
            "json: cannot unmarshal array into Go value of type map[string]map[string]bool"
        );
        assert_eq!(parse_filters("{").unwrap_err(), "unexpected end of JSON input");
    }
}
