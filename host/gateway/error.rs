//! The error envelope: `{"ok":false,"error":{"code","message"}}`.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::error::{DispatchError, ErrorCode};

/// A failed request, ready to be written as the error envelope.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) error: DispatchError,
    /// Whether 5xx messages are shown (`--dev-errors`).
    pub(crate) dev_errors: bool,
}

impl ApiError {
    pub(crate) fn new(error: DispatchError, dev_errors: bool) -> Self {
        Self { error, dev_errors }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.error.code;
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = code.as_str(), "{}", self.error.message);
        }
        let fuel = self.error.fuel_consumed;
        let mut response = self.envelope(status);
        if code == ErrorCode::Overloaded {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(fuel) = fuel {
            response
                .headers_mut()
                .insert(super::FUEL_HEADER, HeaderValue::from(fuel));
        }
        response
    }
}

impl ApiError {
    fn envelope(self, status: StatusCode) -> Response {
        let code = self.error.code;
        if code == ErrorCode::FetchNotImplemented {
            return (status, "fetch not implemented").into_response();
        }
        let message =
            if status.is_server_error() && code != ErrorCode::Overloaded && !self.dev_errors {
                "internal server error".to_string()
            } else {
                self.error.message
            };
        let mut body = serde_json::to_vec(&json!({
            "ok": false,
            "error": { "code": code.as_str(), "message": message },
        }))
        .expect("JSON values always encode");
        body.push(b'\n');
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if code == ErrorCode::MethodNotAllowed {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}
