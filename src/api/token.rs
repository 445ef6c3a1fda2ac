//! The token discovery service, on the manager's own listener: the Docker Hub discovery API
//! that `swarm join/manage/list token://…` speak, for closed networks.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::error::ApiError;
use super::router::Ctx;
use super::system::json_response;
use super::ApiState;
use crate::body::{self, Body};

/// Longest registration TTL accepted, so that a typo cannot pin an entry for years.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// `/v1/clusters[/<token>]`.
pub async fn handle(state: &ApiState, ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).skip_while(|s| *s == "v1").collect();
    match (req.method(), segs.as_slice()) {
        (&Method::POST, ["clusters"]) => {
            let token: [u8; 16] = rand::random();
            Ok(Response::new(body::full(hex::encode(token))))
        }
        (&Method::GET, ["clusters", token]) => Ok(json_response(StatusCode::OK, &serde_json::json!(state.tokens.entries(token)))),
        (&Method::POST, ["clusters", token]) => {
            let token = token.to_string();
            let ttl = ctx.query.get("ttl").and_then(|t| t.parse::<u64>().ok()).ok_or_else(|| ApiError::bad_request("ttl (seconds) is required"))?;
            let ttl = Duration::from_secs(ttl).min(MAX_TTL);
            let addr = body::collect_limited(req.into_body(), 1024).await?;
            let addr = String::from_utf8_lossy(&addr).trim().to_string();
            if !crate::config::validate_host_port(&addr) {
                return Err(ApiError::bad_request(format!("invalid address {addr:?}: expected host:port")));
            }
            state.tokens.register(&token, &addr, ttl);
            Ok(Response::new(body::empty()))
        }
        (&Method::DELETE, ["clusters", token]) => {
            state.tokens.delete(token);
            Ok(Response::new(body::empty()))
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}
