//! `/exec/{id}/…`: routed to the engine the exec instance was created on.

use http::{HeaderMap, Method, Request, Response};

use super::error::ApiError;
use super::router::{encode_segment, Ctx};
use super::{proxy, ApiState};
use crate::body::Body;
use crate::cluster::NodeHandle;

/// Finds the engine of an exec instance: remembered at exec-create, else asked of every
/// healthy engine (another manager may have created it).
async fn locate(state: &ApiState, id: &str) -> Result<NodeHandle, ApiError> {
    if let Some(n) = state.cluster.exec_node(id) {
        return Ok(n);
    }
    for n in state.cluster.healthy_nodes() {
        let path = format!("/exec/{}/json", encode_segment(id));
        if let Ok((status, _, _)) =
            n.client.call(Method::GET, &path, None, &HeaderMap::new(), Some(n.client.timeout())).await
        {
            if status.is_success() {
                state.cluster.record_exec(id, &n.key);
                return Ok(n);
            }
        }
    }
    Err(ApiError::not_found(format!("No such exec instance: {id}")))
}

/// Every `/exec/{id}/…` route.
pub async fn by_id(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let id = &ctx.segs[1];
    let node = locate(state, id).await?;
    let mut path = format!("/exec/{}", encode_segment(id));
    for s in &ctx.segs[2..] {
        path.push('/');
        path.push_str(&encode_segment(s));
    }
    let target = ctx.engine_path_same_query(node.api_version.as_deref(), &path);
    proxy::forward(state, &node.client, req, &target).await
}
