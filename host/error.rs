//! Error codes shared by the runtime and the gateway.
//!
//! Every failure a client can see carries one [`ErrorCode`]; the gateway turns
//! it into an HTTP status and the envelope
//! `{"ok":false,"error":{"code","message"}}`.

use std::fmt;

/// A client-visible failure class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed request: bad path, name, JSON or storage key (400).
    BadRequest,
    /// No such route (404).
    NotFound,
    /// The namespace is not served by this bundle (404).
    UnknownNamespace,
    /// The method is not an RPC method of the class (404).
    MethodNotFound,
    /// The class has no `fetch` handler (404, answered as plain text).
    FetchNotImplemented,
    /// The route needs an authenticated user and the request has none (401).
    Unauthorized,
    /// The route exists for other HTTP methods (405).
    MethodNotAllowed,
    /// The request body is larger than the gateway accepts (413).
    RequestTooLarge,
    /// The client took too long to send the request body (408).
    RequestTimeout,
    /// The object's storage is full (`--max-storage-bytes`) (507).
    QuotaExceeded,
    /// Fuel budget or wall-clock deadline exceeded, or a promise that can
    /// never settle (504).
    Timeout,
    /// The actor ran out of memory (500).
    OutOfMemory,
    /// The actor could not be started (500).
    ActorStartFailed,
    /// Every instance slot is taken by a busy actor (503, with
    /// `Retry-After`); the request did nothing and may be retried.
    Overloaded,
    /// SQLite failed (500).
    StorageError,
    /// The handler threw, rejected, trapped, or returned something that cannot
    /// be encoded (500).
    ExecutionError,
}

impl ErrorCode {
    /// The code as it appears in the error envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::UnknownNamespace => "unknown_namespace",
            Self::MethodNotFound => "method_not_found",
            Self::FetchNotImplemented => "fetch_not_implemented",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTooLarge => "request_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::Timeout => "timeout",
            Self::QuotaExceeded => "quota_exceeded",
            Self::OutOfMemory => "out_of_memory",
            Self::ActorStartFailed => "actor_start_failed",
            Self::Overloaded => "overloaded",
            Self::StorageError => "storage_error",
            Self::ExecutionError => "execution_error",
        }
    }

    /// Reads a code sent by the guest; unknown codes are execution errors.
    pub fn from_guest(code: &str) -> Self {
        match code {
            "bad_request" => Self::BadRequest,
            "unknown_namespace" => Self::UnknownNamespace,
            "method_not_found" => Self::MethodNotFound,
            "fetch_not_implemented" => Self::FetchNotImplemented,
            "timeout" | "never_settles" => Self::Timeout,
            "out_of_memory" => Self::OutOfMemory,
            "storage_error" => Self::StorageError,
            "quota_exceeded" => Self::QuotaExceeded,
            "overloaded" => Self::Overloaded,
            _ => Self::ExecutionError,
        }
    }

    /// The HTTP status the gateway answers with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,

            Self::NotFound
            | Self::UnknownNamespace
            | Self::MethodNotFound
            | Self::FetchNotImplemented => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::RequestTooLarge => 413,
            Self::Overloaded => 503,
            Self::Timeout => 504,
            Self::QuotaExceeded => 507,
            Self::OutOfMemory
            | Self::ActorStartFailed
            | Self::StorageError
            | Self::ExecutionError => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed dispatch: a code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DispatchError {
    /// The failure class.
    pub code: ErrorCode,
    /// What happened, for the client (5xx messages may be hidden).
    pub message: String,
    /// The fuel the failed dispatch consumed, when it got to run.
    pub fuel_consumed: Option<u64>,
}

impl DispatchError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            fuel_consumed: None,
        }
    }

    /// A [`ErrorCode::BadRequest`] error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}
