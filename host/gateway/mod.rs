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
use tower_http::trace::TraceLayer;

use crate::{
    config::DEFAULT_MAX_REQUEST_BYTES,
    error::{DispatchError, ErrorCode},
    runtime::Runtime,
};
pub use bound::{Identify, bound_router};
pub(crate) use error::ApiError;
pub(crate) use fetch::{FetchRoute, fetch_request};
pub use serve::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ServeOptions, serve, shutdown_signal,
};

/// How long a client may take to send a whole request body, by default.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// How long a client may take to send a whole request body, from the
    /// end of its headers; a slower one gets 408. `None` waits forever.
    pub body_read_timeout: Option<Duration>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            dev_errors: true,
            body_read_timeout: Some(DEFAULT_BODY_READ_TIMEOUT),
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
    let limits = BodyLimits::of(&options);
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
    layered(router, limits)
}

/// How much of a request body the gateway reads, and for how long.
#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    max_bytes: usize,
    timeout: Option<Duration>,
}

impl BodyLimits {
    fn of(options: &GatewayOptions) -> Self {
        Self {
            max_bytes: options.max_request_bytes,
            timeout: options.body_read_timeout,
        }
    }
}

/// The layers every gateway router gets: the body read (with its size
/// limit and deadline) before any handler runs, and tracing.
fn layered(router: Router, limits: BodyLimits) -> Router {
    router
        .layer(middleware::from_fn(move |request, next| {
            read_body(limits, request, next)
        }))
        .layer(DefaultBodyLimit::max(limits.max_bytes))
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

/// Reads the whole request body before the handler runs: 413 at once for
/// a declared `Content-Length` over the limit, and as soon as more arrives;
/// 408 when the body takes longer than the deadline in all (a client that
/// trickles a byte at a time cannot hold a connection for long).
async fn read_body(limits: BodyLimits, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_bytes as u64) {
        return ApiError::new(too_large(), true).into_response();
    }
    let (parts, body) = request.into_parts();
    let reading = axum::body::to_bytes(body, limits.max_bytes);
    let read = match limits.timeout {
        Some(timeout) => match tokio::time::timeout(timeout, reading).await {
            Ok(read) => read,
            Err(_) => {
                let error = DispatchError::new(
                    ErrorCode::RequestTimeout,
                    format!("the request body took longer than {timeout:?} to arrive"),
                );
                return ApiError::new(error, true).into_response();
            }
        },
        None => reading.await,
    };
    match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(e) if is_length_limit(&e) => ApiError::new(too_large(), true).into_response(),
        Err(e) => {
            let error = DispatchError::bad_request(format!("failed to read the request body: {e}"));
            ApiError::new(error, true).into_response()
        }
    }
}

/// Whether a body read failed on the size limit.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
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
