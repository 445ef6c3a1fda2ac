//! API versions in paths (`/v1.41/...`) and their comparison.

use std::cmp::Ordering;

/// The lowest API version the manager accepts: docker-py's minimum, and far below today's CLI.
pub const MIN_API_VERSION: &str = "1.24";
/// What the manager advertises before any engine is known (the test bed's dockerd 20.10).
pub const DEFAULT_API_VERSION: &str = "1.41";

fn parts(v: &str) -> (u32, u32) {
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
}

/// Orders `1.9` before `1.41`.
pub fn compare(a: &str, b: &str) -> Ordering {
    parts(a).cmp(&parts(b))
}

/// The path to send an engine: under the client's version (`client`), lowered to the engine's
/// own (`engine`) when the client is newer; unversioned when the client sent none.
pub fn engine_path(client: Option<&str>, engine: Option<&str>, path: &str, query: Option<&str>) -> String {
    let v = match (client, engine) {
        (Some(c), Some(e)) if compare(c, e).is_gt() => Some(e),
        (Some(c), _) => Some(c),
        (None, _) => None,
    };
    let mut out = match v {
        Some(v) => format!("/v{v}{path}"),
        None => path.to_string(),
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Splits `/v1.41/containers/json` into `(Some("1.41"), "/containers/json")`.
pub fn split_path(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let candidate = &rest[..end];
        let numeric = candidate.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
        if numeric {
            let tail = &rest[end..];
            return (Some(candidate), if tail.is_empty() { "/" } else { tail });
        }
    }
    (None, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare("1.9", "1.41"), Ordering::Less);
        assert_eq!(compare("1.41", "1.41"), Ordering::Equal);
        assert_eq!(compare("2.0", "1.99"), Ordering::Greater);
    }

    #[test]
    fn version_prefix_is_split_off() {
        assert_eq!(split_path("/v1.41/containers/json"), (Some("1.41"), "/containers/json"));
        assert_eq!(split_path("/_ping"), (None, "/_ping"));
        assert_eq!(split_path("/v1.41"), (Some("1.41"), "/"));
        assert_eq!(split_path("/volumes/x"), (None, "/volumes/x"));
    }
}
