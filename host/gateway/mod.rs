//! The HTTP gateway: `/rpc/NAMESPACE/name/method` and `/fetch/NAMESPACE/name/...`.
//!
//! [`router`] builds an axum [`Router`] over a [`Runtime`], so a host
//! application can serve it alone (as the binary does) or nest it under a
//! prefix next to its own routes. Bad input is refused before any actor
//! starts: a malformed path or body is 400, an unknown namespace, route or
//! method 404, a wrong HTTP method 405, an oversized body 413. Every error
//! uses the envelope `{"ok":false,"error":{"code","message"}}`.

mod bound;
mod error;
mod fetch;
mod rpc;
mod serve;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, rejection::BytesRejection},
    http::{StatusCode, Uri, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{any, post},
};
use tower_http::{timeout::RequestBodyTimeoutLayer, trace::TraceLayer};

use crate::{
    config::DEFAULT_MAX_REQUEST_BYTES,
    error::{DispatchError, ErrorCode},
    runtime::Runtime,
};
pub use bound::{Identify, bound_router};
pub(crate) use error::ApiError;
pub(crate) use fetch::fetch_request;
pub use serve::{DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ServeOptions, serve};

/// How long a client may take between two pieces of a request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The response header that carries the fuel a dispatch consumed.
pub const FUEL_HEADER: &str = "x-fuel-consumed";

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Largest request body accepted; larger ones get 413.
    pub max_request_bytes: usize,
    /// Whether 5xx responses carry the real message (else "internal server
    /// error").
    pub dev_errors: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            dev_errors: true,
        }
    }
}

#[derive(Clone)]
struct AppState {
    runtime: Runtime,
    options: Arc<GatewayOptions>,
}

impl AppState {
    fn error(&self, error: DispatchError) -> Response {
        ApiError::new(error, self.options.dev_errors).into_response()
    }
}

/// The gateway's routes over `runtime`.
pub fn router(runtime: Runtime, options: GatewayOptions) -> Router {
    let limit = options.max_request_bytes;
    let state = AppState {
        runtime,
        options: Arc::new(options),
    };
    let router = Router::new()
        .route(
            "/rpc/{namespace}/{name}/{method}",
            post(rpc::handle).fallback(method_not_allowed),
        )
        .route("/fetch/{namespace}/{name}", any(fetch::handle))
        .route("/fetch/{namespace}/{name}/", any(fetch::handle))
        .route("/fetch/{namespace}/{name}/{*rest}", any(fetch::handle))
        .fallback(not_found)
        .with_state(state);
    layered(router, limit)
}

/// The layers every gateway router gets: the body limit (refusing a
/// declared oversize at once), the body read timeout, and tracing.
fn layered(router: Router, limit: usize) -> Router {
    router
        .layer(middleware::from_fn(move |request, next| {
            refuse_declared_oversize(limit, request, next)
        }))
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .layer(TraceLayer::new_for_http().on_failure(()))
}

async fn not_found(uri: Uri) -> Response {
    let error = DispatchError::new(ErrorCode::NotFound, format!("no route for {}", uri.path()));
    ApiError::new(error, true).into_response()
}

async fn method_not_allowed() -> Response {
    let error = DispatchError::new(ErrorCode::MethodNotAllowed, "RPC calls must use POST");
    ApiError::new(error, true).into_response()
}

/// Answers 413 at once to a request whose `Content-Length` is over the
/// limit, before any of its body is read.
async fn refuse_declared_oversize(limit: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return ApiError::new(too_large(), true).into_response();
    }
    next.run(request).await
}

fn too_large() -> DispatchError {
    DispatchError::new(
        ErrorCode::RequestTooLarge,
        "the request body is larger than the gateway accepts (--max-request-bytes)",
    )
}

/// Maps a failed body read: too large is 413, anything else 400.
fn body_error(rejection: BytesRejection) -> DispatchError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        DispatchError::bad_request(format!("failed to read the request body: {rejection}"))
    }
}
