//! Who may use the control plane. Managers sign each request with a key derived from the
//! cluster secret (a file every manager holds); engines' join agents with a key derived from the
//! join token, which is itself derived from the secret, so a join agent cannot act as a manager.
//! A signature covers the method, the path, the body's digest, a timestamp and a nonce: a
//! captured request is refused when replayed, a changed one when altered. TLS client
//! certificates do not count: a CA-signed client certificate proves only that its holder is one
//! of the CA's clients, which every Docker API user is.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method};
use parking_lot::Mutex;
use ring::{digest, hmac};

/// The signature: `v1:<role>:<unix ms>:<nonce>:<hex mac>`.
pub const AUTH_HEADER: &str = "x-swarm-auth";
/// The body's SHA-256, hex, covered by the signature and checked once the body is read.
pub const BODY_DIGEST_HEADER: &str = "x-swarm-body-sha256";

/// Shortest secret accepted, in bytes (128 bits as hex: `swarm create` prints one).
pub const MIN_SECRET_BYTES: usize = 16;
/// Nonces remembered at most: past it, signed requests wait (503) rather than memory grow.
pub const MAX_REMEMBERED_NONCES: usize = 200_000;
/// What a join token starts with.
const JOIN_TOKEN_PREFIX: &str = "SWMJT-1-";

/// Who signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A manager: holds the cluster secret.
    Manager,
    /// A join agent (`swarm join`, `swarm list`): holds the join token.
    Join,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Join => "join",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "manager" => Some(Role::Manager),
            "join" => Some(Role::Join),
            _ => None,
        }
    }
}

/// The cluster secret, read from a file.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Reads a secret-bearing file, trimmed; `what` names it in errors.
fn read_secret_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    let text = bytes.trim_ascii().to_vec();
    if text.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{what} {} holds {} bytes; at least {MIN_SECRET_BYTES} are needed (`swarm create > FILE` makes one)",
            path.display(),
            text.len()
        ));
    }
    Ok(text)
}

fn derive(secret: &[u8], label: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), label.as_bytes()).as_ref().to_vec()
}

impl ClusterSecret {
    /// Reads `--cluster-secret-file`.
    pub fn read(path: &Path) -> Result<ClusterSecret, String> {
        read_secret_file(path, "the cluster secret file").map(ClusterSecret)
    }

    /// A secret from bytes (tests, benchmarks).
    pub fn from_bytes(bytes: &[u8]) -> ClusterSecret {
        ClusterSecret(bytes.to_vec())
    }

    fn manager_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &derive(&self.0, "swarm manager v1"))
    }

    /// The token engines' join agents hold: enough to register and list engines, not to act
    /// as a manager.
    pub fn join_token(&self) -> String {
        format!("{JOIN_TOKEN_PREFIX}{}", hex::encode(derive(&self.0, "swarm join v1")))
    }

    /// Signs as a manager.
    pub fn manager_signer(&self) -> Signer {
        Signer { role: Role::Manager, key: self.manager_key() }
    }

    /// What checks signed requests.
    pub fn verifier(&self, window: Duration) -> Verifier {
        Verifier {
            manager: self.manager_key(),
            join: join_key(&self.join_token()),
            window,
            nonces: Mutex::new(HashMap::new()),
        }
    }
}

fn join_key(token: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes())
}

/// Reads `--join-token-file` into a join signer.
pub fn join_signer(path: &Path) -> Result<Signer, String> {
    let token = read_secret_file(path, "the join token file")?;
    let token = String::from_utf8(token).map_err(|_| format!("the join token file {} is not text", path.display()))?;
    if !token.starts_with(JOIN_TOKEN_PREFIX) {
        return Err(format!(
            "the join token file {} holds no join token (`swarm join-token` prints one)",
            path.display()
        ));
    }
    Ok(Signer { role: Role::Join, key: join_key(&token) })
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn message(role: Role, method: &Method, path_and_query: &str, ms: u64, nonce: &str, digest_hex: &str) -> String {
    format!("v1\n{}\n{method}\n{path_and_query}\n{ms}\n{nonce}\n{digest_hex}", role.as_str())
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, body))
}

/// Signs requests as one role.
#[derive(Clone)]
pub struct Signer {
    role: Role,
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("role", &self.role).finish()
    }
}

impl Signer {
    /// Adds the signature headers for this request to `headers`.
    pub fn sign(&self, method: &Method, path_and_query: &str, body: &[u8], headers: &mut HeaderMap) {
        let digest_hex = sha256_hex(body);
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let ms = now_ms();
        let mac = hmac::sign(&self.key, message(self.role, method, path_and_query, ms, &nonce, &digest_hex).as_bytes());
        let value = format!("v1:{}:{ms}:{nonce}:{}", self.role.as_str(), hex::encode(mac.as_ref()));
        if let (Ok(v), Ok(d)) = (HeaderValue::from_str(&value), HeaderValue::from_str(&digest_hex)) {
            headers.insert(AUTH_HEADER, v);
            headers.insert(BODY_DIGEST_HEADER, d);
        }
    }

    /// The signature headers as a map of their own.
    pub fn headers(&self, method: &Method, path_and_query: &str, body: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        self.sign(method, path_and_query, body, &mut h);
        h
    }
}

/// Why a control request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No signature: a Docker API client, or a manager without the secret.
    Unsigned,
    /// A signature that does not parse.
    Malformed,
    /// Outside the time window: a replay, or a clock off by more than the window.
    Stale,
    /// A nonce seen before: a replay.
    Replayed,
    /// Not signed with the key the role claims.
    BadSignature,
    /// Signed by a role this route does not accept (a join agent asking for manager work).
    WrongRole,
    /// The nonce memory is full.
    Busy,
    /// The body is not the one signed.
    BodyChanged,
}

impl Refusal {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::Malformed => "malformed",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongRole => "wrong_role",
            Refusal::Busy => "busy",
            Refusal::BodyChanged => "body_changed",
        }
    }

    /// What the caller reads.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unsigned => "this is a control route of swarm managers: only managers (with the cluster secret) and join agents (with the join token) may call it",
            Refusal::Malformed => "malformed control signature",
            Refusal::Stale => "control signature outside the time window (replayed, or clocks apart)",
            Refusal::Replayed => "control request replayed",
            Refusal::BadSignature => "control signature does not match (wrong cluster secret or join token?)",
            Refusal::WrongRole => "this control route is for managers only",
            Refusal::Busy => "too many control requests in the time window",
            Refusal::BodyChanged => "control request body does not match its signature",
        }
    }
}

/// A request whose signature holds; its body is checked once read.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Who signed.
    pub role: Role,
    digest_hex: String,
}

impl Checked {
    /// Whether `body` is the body that was signed.
    pub fn body_matches(&self, body: &[u8]) -> bool {
        sha256_hex(body) == self.digest_hex
    }
}

/// Checks signatures and remembers nonces for the time window.
pub struct Verifier {
    manager: hmac::Key,
    join: hmac::Key,
    window: Duration,
    /// Nonce → when it may be forgotten (unix ms).
    nonces: Mutex<HashMap<String, u64>>,
}

impl Verifier {
    /// Checks the signature of a request for a route that accepts `allowed`.
    pub fn check(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        allowed: &[Role],
    ) -> Result<Checked, Refusal> {
        self.check_at(method, path_and_query, headers, allowed, now_ms())
    }

    fn check_at(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        allowed: &[Role],
        now: u64,
    ) -> Result<Checked, Refusal> {
        let value = headers.get(AUTH_HEADER).ok_or(Refusal::Unsigned)?.to_str().map_err(|_| Refusal::Malformed)?;
        let digest_hex = headers.get(BODY_DIGEST_HEADER).and_then(|d| d.to_str().ok()).ok_or(Refusal::Malformed)?;
        let parts: Vec<&str> = value.split(':').collect();
        let [version, role, ms, nonce, mac] = parts.as_slice() else { return Err(Refusal::Malformed) };
        let role = Role::parse(role).filter(|_| *version == "v1").ok_or(Refusal::Malformed)?;
        let ms: u64 = ms.parse().map_err(|_| Refusal::Malformed)?;
        let mac = hex::decode(mac).map_err(|_| Refusal::Malformed)?;
        if nonce.len() != 32 || digest_hex.len() != 64 {
            return Err(Refusal::Malformed);
        }
        let key = match role {
            Role::Manager => &self.manager,
            Role::Join => &self.join,
        };
        hmac::verify(key, message(role, method, path_and_query, ms, nonce, digest_hex).as_bytes(), &mac)
            .map_err(|_| Refusal::BadSignature)?;
        if !allowed.contains(&role) {
            return Err(Refusal::WrongRole);
        }
        let window = self.window.as_millis() as u64;
        if ms.abs_diff(now) > window {
            return Err(Refusal::Stale);
        }
        // Verified before remembered: unsigned callers cannot fill the memory.
        let mut nonces = self.nonces.lock();
        if nonces.len() >= MAX_REMEMBERED_NONCES {
            nonces.retain(|_, forget_at| *forget_at > now);
            if nonces.len() >= MAX_REMEMBERED_NONCES {
                return Err(Refusal::Busy);
            }
        }
        if nonces.insert((*nonce).to_string(), ms.saturating_add(window)).is_some() {
            return Err(Refusal::Replayed);
        }
        if nonces.len().is_multiple_of(4096) {
            nonces.retain(|_, forget_at| *forget_at > now);
        }
        Ok(Checked { role, digest_hex: digest_hex.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        ClusterSecret::from_bytes(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_manager_signature_passes_once_and_covers_path_method_and_body() {
        let s = secret();
        let v = s.verifier(Duration::from_secs(30));
        let h = s.manager_signer().headers(&Method::POST, "/_swarm/raft/vote", b"body");
        let ok = v.check(&Method::POST, "/_swarm/raft/vote", &h, &[Role::Manager]).unwrap();
        assert!(ok.body_matches(b"body") && !ok.body_matches(b"other"));
        assert_eq!(v.check(&Method::POST, "/_swarm/raft/vote", &h, &[Role::Manager]).unwrap_err(), Refusal::Replayed);
        let h = s.manager_signer().headers(&Method::POST, "/_swarm/raft/vote", b"body");
        assert_eq!(
            v.check(&Method::POST, "/_swarm/raft/append", &h, &[Role::Manager]).unwrap_err(),
            Refusal::BadSignature
        );
        assert_eq!(
            v.check(&Method::PUT, "/_swarm/raft/vote", &h, &[Role::Manager]).unwrap_err(),
            Refusal::BadSignature
        );
        assert_eq!(
            v.check(&Method::POST, "/_swarm/raft/vote", &HeaderMap::new(), &[Role::Manager]).unwrap_err(),
            Refusal::Unsigned
        );
    }

    #[test]
    fn join_agents_cannot_act_as_managers_and_other_secrets_fail() {
        let s = secret();
        let v = s.verifier(Duration::from_secs(30));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{}\n", s.join_token())).unwrap();
        let join = join_signer(&path).unwrap();
        let h = join.headers(&Method::PUT, "/_swarm/nodes/a:1?ttl=5", b"");
        assert_eq!(
            v.check(&Method::PUT, "/_swarm/nodes/a:1?ttl=5", &h, &[Role::Manager]).unwrap_err(),
            Refusal::WrongRole
        );
        let h = join.headers(&Method::PUT, "/_swarm/nodes/a:1?ttl=5", b"");
        assert_eq!(
            v.check(&Method::PUT, "/_swarm/nodes/a:1?ttl=5", &h, &[Role::Manager, Role::Join]).unwrap().role,
            Role::Join
        );
        let other = ClusterSecret::from_bytes(b"another secret of enough bytes").manager_signer();
        let h = other.headers(&Method::GET, "/_swarm/members", b"");
        assert_eq!(v.check(&Method::GET, "/_swarm/members", &h, &[Role::Manager]).unwrap_err(), Refusal::BadSignature);
        std::fs::write(&path, "short").unwrap();
        assert!(join_signer(&path).unwrap_err().contains("at least 16"));
    }

    #[test]
    fn old_signatures_are_stale() {
        let s = secret();
        let v = s.verifier(Duration::from_secs(30));
        let h = s.manager_signer().headers(&Method::GET, "/_swarm/members", b"");
        assert_eq!(
            v.check_at(&Method::GET, "/_swarm/members", &h, &[Role::Manager], now_ms() + 31_000).unwrap_err(),
            Refusal::Stale
        );
        let mut h = h;
        h.insert(AUTH_HEADER, HeaderValue::from_static("v1:manager:x"));
        assert_eq!(v.check(&Method::GET, "/_swarm/members", &h, &[Role::Manager]).unwrap_err(), Refusal::Malformed);
    }
}
