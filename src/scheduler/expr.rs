//! Constraint and affinity expressions: `key==value`, `key!=value`, soft `~`, globs, `/regex/`.

use regex::Regex;

/// An expression that does not parse; texts are classic Swarm's.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExprError {
    /// Neither `==` nor `!=`.
    #[error("One of operator ==, != is expected")]
    NoOperator,
    /// The key has characters classic Swarm refused.
    #[error("Key '{0}' is invalid")]
    BadKey(String),
    /// The value has characters classic Swarm refused, or a regex that does not compile.
    #[error("Value '{0}' is invalid")]
    BadValue(String),
}

/// `==` or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Matches when any candidate matches.
    Eq,
    /// Matches when no candidate matches.
    Ne,
}

/// A parsed expression with its matcher compiled once.
#[derive(Debug, Clone)]
pub struct Expr {
    /// Left-hand side, e.g. `node`, `storage`, `container`, `image`.
    pub key: String,
    /// Operator.
    pub op: Op,
    /// Right-hand side as written, without the soft marker.
    pub value: String,
    /// Soft expressions are dropped on the second scheduling pass.
    pub soft: bool,
    matcher: Matcher,
}

/// How deeply a client's regex may nest: the regex compiler recurses once per level, and a
/// fuzzed constraint 259 repetitions deep overflowed a 2 MiB thread stack (a debug build; the
/// crate's own limit is 250). Constraints never need more than a few.
pub const REGEX_NEST_LIMIT: u32 = 32;

/// Compiled size of a client's regex (the crate's default is 10 MiB).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a regex a client wrote (constraints, affinities, `ps` filters) within the limits
/// above.
pub fn client_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).nest_limit(REGEX_NEST_LIMIT).size_limit(REGEX_SIZE_LIMIT).build()
}

/// Literal values compare as strings; only globs and `/regex/` pay for a regex.
#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Pattern(Regex),
}

impl Matcher {
    fn is_match(&self, candidate: &str) -> bool {
        match self {
            Matcher::Exact(v) => v == candidate,
            Matcher::Pattern(re) => re.is_match(candidate),
        }
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.op == other.op && self.value == other.value && self.soft == other.soft
    }
}

fn key_ok(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn value_ok(value: &str) -> bool {
    // Classic: ^(?i)[=!\/]?(~)?[a-z0-9:\-_\s\.\*/\(\)\?\+\[\]\\\^\$\|]+$
    let rest = value.strip_prefix(['=', '!', '/']).unwrap_or(value);
    let rest = rest.strip_prefix('~').unwrap_or(rest);
    !rest.is_empty()
        && rest.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || c.is_whitespace()
                || matches!(
                    c,
                    ':' | '-' | '_' | '.' | '*' | '/' | '(' | ')' | '?' | '+' | '[' | ']' | '\\' | '^' | '$' | '|'
                )
        })
}

impl Expr {
    /// Parses `key==value` / `key!=value` (with `~` for soft).
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let (key, op, value) = if let Some((k, v)) = text.split_once("==") {
            (k, Op::Eq, v)
        } else if let Some((k, v)) = text.split_once("!=") {
            (k, Op::Ne, v)
        } else {
            return Err(ExprError::NoOperator);
        };
        let key = key.trim();
        if !key_ok(key) {
            return Err(ExprError::BadKey(key.to_string()));
        }
        let value = value.trim();
        if !value_ok(value) {
            return Err(ExprError::BadValue(value.to_string()));
        }
        let (soft, value) = match value.strip_prefix('~') {
            Some(v) => (true, v),
            None => (false, value),
        };
        let pattern = match value.strip_prefix('/').and_then(|v| v.strip_suffix('/')) {
            Some(re) if !re.is_empty() => Some(re.to_string()),
            // Globs are anchored; classic did not escape other metacharacters, neither do we.
            _ if value.contains(|c: char| "*.?+()[]{}^$|\\".contains(c)) => {
                Some(format!("^{}$", value.replace('*', ".*")))
            }
            _ => None,
        };
        let matcher = match pattern {
            Some(p) => Matcher::Pattern(client_regex(&p).map_err(|_| ExprError::BadValue(value.to_string()))?),
            None => Matcher::Exact(value.to_string()),
        };
        Ok(Expr { key: key.to_string(), op, value: value.to_string(), soft, matcher })
    }

    /// Whether the expression holds over the candidate values (a missing label is `""`).
    pub fn holds<'a>(&self, candidates: impl IntoIterator<Item = &'a str>) -> bool {
        let any = candidates.into_iter().any(|c| self.matcher.is_match(c));
        match self.op {
            Op::Eq => any,
            Op::Ne => !any,
        }
    }

    /// The expression as written, `key==value` or `key!=~value`.
    pub fn text(&self) -> String {
        let op = if self.op == Op::Eq { "==" } else { "!=" };
        format!("{}{}{}{}", self.key, op, if self.soft { "~" } else { "" }, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_split_key_and_value() {
        let e = Expr::parse("storage==ssd").unwrap();
        assert_eq!((e.key.as_str(), e.op, e.value.as_str(), e.soft), ("storage", Op::Eq, "ssd", false));
        let e = Expr::parse("node!=~node-1").unwrap();
        assert_eq!((e.op, e.value.as_str(), e.soft), (Op::Ne, "node-1", true));
        assert_eq!(e.text(), "node!=~node-1");
    }

    #[test]
    fn malformed_expressions_get_classic_messages() {
        assert_eq!(Expr::parse("storage=ssd").unwrap_err().to_string(), "One of operator ==, != is expected");
        assert_eq!(Expr::parse("s==ssd").unwrap_err().to_string(), "Key 's' is invalid");
        assert_eq!(Expr::parse("1abc==ssd").unwrap_err().to_string(), "Key '1abc' is invalid");
        assert_eq!(Expr::parse("zone==a;b").unwrap_err().to_string(), "Value 'a;b' is invalid");
    }

    #[test]
    fn globs_are_anchored_and_regexes_are_not() {
        let exact = Expr::parse("zone==a").unwrap();
        assert!(exact.holds(["a"]) && !exact.holds(["ab"]));
        let dot = Expr::parse("kernelversion==6.1").unwrap();
        assert!(dot.holds(["6x1"]), "a dot is a regex dot, as in classic Swarm");
        let glob = Expr::parse("node==node-*").unwrap();
        assert!(glob.holds(["node-12"]));
        assert!(!glob.holds(["xnode-1"]));
        let re = Expr::parse("node==/node[12]/").unwrap();
        assert!(re.holds(["mynode2x"]));
        assert!(!re.holds(["node3"]));
    }

    #[test]
    fn not_equal_means_no_candidate_matches() {
        let e = Expr::parse("image!=redis").unwrap();
        assert!(e.holds(["busybox", "web"]));
        assert!(!e.holds(["busybox", "redis"]));
        assert!(e.holds([]));
        let missing = Expr::parse("zone==a").unwrap();
        assert!(!missing.holds([""]));
    }
}
