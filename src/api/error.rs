//! Errors in Docker's shape: `{"message": "..."}` with the right status code.

use http::{header, Response, StatusCode};

use crate::body::{self, Body, CollectError};
use crate::cluster::LookupError;
use crate::scheduler::ScheduleError;
use crate::transport::EngineError;

/// The header a manager sets on a refusal that left nothing done because it no longer leads:
/// the request may go to the next leader as if never sent.
pub const NOT_PRIMARY_HEADER: &str = "x-swarm-not-primary";

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The message users see.
    pub message: String,
    /// Nothing was done because this manager no longer leads: the request may be sent to the
    /// next leader as if it had never been sent.
    pub not_primary: bool,
}

impl ApiError {
    /// An error with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), not_primary: false }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The response.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({ "message": self.message }).to_string() + "\n";
        let mut resp = Response::builder().status(self.status).header(header::CONTENT_TYPE, "application/json");
        if self.not_primary {
            resp = resp.header(NOT_PRIMARY_HEADER, "1");
        }
        resp.body(body::full(body)).unwrap_or_else(|_| Response::new(body::empty()))
    }
}

/// Go's `json.Decoder` words for a body serde could not read, as dockerd answers them.
pub fn go_json_error(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected EOF".to_string(),
        serde_json::error::Category::Data => format!("json: cannot unmarshal: {e}"),
        _ => format!("invalid character in JSON: {e}"),
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        // One mapping of engine failures to statuses: the orchestrator's.
        crate::orchestrator::Error::from(e).into()
    }
}

impl From<crate::orchestrator::Error> for ApiError {
    fn from(e: crate::orchestrator::Error) -> Self {
        ApiError { status: e.status, message: e.message, not_primary: e.not_primary }
    }
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        // An ambiguous prefix is the caller's to fix (400, as recent dockerd answers), not a
        // miss: `rm -f` takes a 404 for done. Classic Swarm said 404, dockerd 20.10 says 500.
        match e {
            LookupError::Ambiguous(_) => ApiError::bad_request(e.to_string()),
            _ => ApiError::not_found(e.to_string()),
        }
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        crate::orchestrator::Error::from(e).into()
    }
}

impl From<CollectError> for ApiError {
    fn from(e: CollectError) -> Self {
        match e {
            CollectError::TooLarge { limit } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than the limit of {limit} bytes (--api-max-body-bytes)"),
            ),
            CollectError::Read(e) => ApiError::bad_request(format!("failed to read request body: {e}")),
            CollectError::OverBudget { .. } => ApiError::internal(e.to_string()),
            CollectError::MemoryFull { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}
