//! One request, asked of the engine and of swarm; both answers kept for comparison.

use std::time::Duration;

use serde_json::Value;

use crate::support::http_within;

/// The headers clients read, compared between engine and swarm (`Server` apart).
pub const COMPARED_HEADERS: &[&str] =
    &["api-version", "content-type", "docker-experimental", "ostype", "x-docker-container-path-stat"];

/// One HTTP request of the corpus.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Vec<u8>>,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Req {
        Req { method: "GET", path: path.into(), body: None }
    }
    pub fn new(method: &'static str, path: impl Into<String>, body: Option<&str>) -> Req {
        Req { method, path: path.into(), body: body.map(|b| b.as_bytes().to_vec()) }
    }
    /// The same request under `/v1.41`.
    pub fn versioned(&self) -> Req {
        Req { method: self.method, path: format!("/v1.41{}", self.path), body: self.body.clone() }
    }
    pub fn show(&self) -> String {
        let body = self.body.as_ref().map(|b| format!(" {}", String::from_utf8_lossy(b))).unwrap_or_default();
        format!("{} {}{body}", self.method, percent_encoding::percent_decode_str(&self.path).decode_utf8_lossy())
    }
}

/// An answer: status, the compared headers, the body (JSON when it parses as such).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    /// Newline-delimited JSON (events).
    Lines(Vec<Value>),
    Raw(Vec<u8>),
}

/// Sends `req` to `addr`, reading at most `bound` (event windows end by themselves).
pub fn ask(addr: &str, req: &Req) -> Answer {
    let (status, head, body) = http_within(addr, req.method, &req.path, req.body.as_deref(), Duration::from_secs(30));
    let mut headers = Vec::new();
    // The first line is the status line; the rest are headers.
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if COMPARED_HEADERS.contains(&k.as_str()) {
                headers.push((k, v.trim().to_string()));
            }
        }
    }
    headers.sort();
    Answer { status, headers, body: parse_body(&body) }
}

fn parse_body(raw: &[u8]) -> Body {
    if let Ok(v) = serde_json::from_slice::<Value>(raw) {
        return Body::Json(v);
    }
    let lines: Vec<&[u8]> = raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    if !lines.is_empty() {
        if let Ok(vs) = lines.iter().map(|l| serde_json::from_slice::<Value>(l)).collect::<Result<Vec<_>, _>>() {
            return Body::Lines(vs);
        }
    }
    Body::Raw(raw.to_vec())
}

/// Percent-encodes a query value.
pub fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}
