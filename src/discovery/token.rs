//! `token://` discovery without Docker Hub: the hub's small API (`POST /v1/clusters/<token>?ttl=N`
//! with the address as body, `GET /v1/clusters/<token>` for the JSON list) is served by swarm's
//! manager itself; this module is its client and its in-memory registry.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracing::{info, warn};

use super::DiscoveryError;

/// Where a token lives: `token://host:port/v1/<token>` (or `token://host:port/<token>`), and a
/// bare `token://<token>` on the default manager address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUrl {
    /// `http://host:port/v1` (no trailing slash).
    pub base: String,
    /// The cluster token.
    pub token: String,
}

/// The service address a bare `token://<token>` uses: the manager's default listen address.
pub const DEFAULT_SERVICE: &str = "127.0.0.1:2375/v1";

impl TokenUrl {
    /// Parses what follows `token://`.
    pub fn parse(rest: &str) -> TokenUrl {
        let (service, token) = match rest.rsplit_once('/') {
            Some((service, token)) => (service, token),
            None => (DEFAULT_SERVICE, rest),
        };
        TokenUrl { base: format!("http://{}", service.trim_end_matches('/')), token: token.to_string() }
    }

    fn cluster_url(&self) -> String {
        format!("{}/clusters/{}", self.base, self.token)
    }
}

fn failed(e: impl std::fmt::Display) -> DiscoveryError {
    DiscoveryError::Token(e.to_string())
}

async fn request(method: http::Method, url: &str, body: Bytes) -> Result<(http::StatusCode, Bytes), DiscoveryError> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::builder().method(method).uri(url).body(Full::new(body)).map_err(failed)?;
    let resp =
        tokio::time::timeout(Duration::from_secs(5), client.request(req)).await.map_err(failed)?.map_err(failed)?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(failed)?.to_bytes();
    Ok((status, bytes))
}

/// The registered entries.
pub async fn fetch(url: &TokenUrl) -> Result<BTreeSet<String>, DiscoveryError> {
    let (status, body) = request(http::Method::GET, &url.cluster_url(), Bytes::new()).await?;
    if !status.is_success() {
        let message = crate::transport::error_message(&body);
        return Err(DiscoveryError::Token(format!("{} answered {status}: {message}", url.cluster_url())));
    }
    let list: Vec<String> = serde_json::from_slice(&body).map_err(failed)?;
    Ok(list.into_iter().collect())
}

/// Registers `addr` every `heartbeat` with a TTL, forever.
pub async fn register_forever(
    url: TokenUrl,
    addr: String,
    ttl: Duration,
    heartbeat: Duration,
) -> Result<(), DiscoveryError> {
    let target = format!("{}?ttl={}", url.cluster_url(), ttl.as_secs().max(1));
    let mut registered = false;
    loop {
        match request(http::Method::POST, &target, Bytes::from(addr.clone())).await {
            Ok((s, _)) if s.is_success() => {
                if !registered {
                    info!(token = %url.token, addr = %addr, "Registered with the token service.");
                }
                registered = true;
            }
            Ok((s, body)) => {
                warn!(status = %s, error = %crate::transport::error_message(&body), "Token service refused the registration; retrying.")
            }
            Err(e) => warn!(error = %e, "Token service unreachable; retrying."),
        }
        tokio::time::sleep(heartbeat).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls_name_their_service() {
        assert_eq!(TokenUrl::parse("abc"), TokenUrl { base: "http://127.0.0.1:2375/v1".into(), token: "abc".into() });
        assert_eq!(
            TokenUrl::parse("127.0.0.1:4000/v1/abc"),
            TokenUrl { base: "http://127.0.0.1:4000/v1".into(), token: "abc".into() }
        );
    }
}
