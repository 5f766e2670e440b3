//! `POST /rpc/NAMESPACE/name/method`.

use axum::{
    body::Bytes,
    extract::{
        Path, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{AppState, FUEL_HEADER, body_error};
use crate::{
    error::{DispatchError, ErrorCode},
    id::ObjectId,
    runtime::{DispatchKind, DispatchOutput, DispatchRequest, DispatchValue},
};

/// The longest method name, in bytes.
const MAX_METHOD_BYTES: usize = 1024;

pub(super) async fn handle(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match call(&state, path, body).await {
        Ok(output) => success(output),
        Err(error) => state.error(error),
    }
}

async fn call(
    state: &AppState,
    path: Result<Path<(String, String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<DispatchOutput, DispatchError> {
    let Path((namespace, name, method)) =
        path.map_err(|e| DispatchError::bad_request(format!("invalid path: {e}")))?;
    let id =
        ObjectId::new(&namespace, &name).map_err(|e| DispatchError::bad_request(e.to_string()))?;
    if state.runtime.classes().class_for(id.namespace()).is_none() {
        return Err(DispatchError::new(
            ErrorCode::UnknownNamespace,
            format!("unknown durable object namespace {}", id.namespace()),
        ));
    }
    if method.is_empty() || method.len() > MAX_METHOD_BYTES || method.chars().any(char::is_control)
    {
        return Err(DispatchError::new(
            ErrorCode::MethodNotFound,
            format!("method {method:?} is not an RPC method"),
        ));
    }
    let args = parse_args(&body.map_err(body_error)?)?;
    state
        .runtime
        .dispatch(DispatchRequest {
            id,
            kind: DispatchKind::Rpc { method, args },
        })
        .await
}

/// Reads the arguments: a JSON array, `{"args": [...]}`, or an empty body.
pub(super) fn parse_args(body: &[u8]) -> Result<Vec<Value>, DispatchError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let shape = "the body must be a JSON array of arguments, or {\"args\": [...]}";
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| DispatchError::bad_request(format!("invalid JSON body: {e}")))?;
    match value {
        Value::Array(args) => Ok(args),
        Value::Object(mut object) => match object.remove("args") {
            Some(Value::Array(args)) => Ok(args),
            _ => Err(DispatchError::bad_request(shape)),
        },
        _ => Err(DispatchError::bad_request(shape)),
    }
}

pub(super) fn success(output: DispatchOutput) -> Response {
    let DispatchValue::Rpc(result) = output.value else {
        unreachable!("an RPC dispatch answers with an RPC value");
    };
    let mut body = Vec::with_capacity(result.get().len() + 24);
    body.extend_from_slice(b"{\"ok\":true,\"result\":");
    body.extend_from_slice(result.get().as_bytes());
    body.extend_from_slice(b"}\n");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(FUEL_HEADER, HeaderValue::from(output.fuel_consumed));
    response
}

#[cfg(test)]
mod tests {
    use super::parse_args;
    use serde_json::json;

    #[test]
    fn accepts_the_three_body_shapes() {
        assert_eq!(
            parse_args(b"[1,\"two\"]").unwrap(),
            [json!(1), json!("two")]
        );
        assert_eq!(parse_args(b"{\"args\":[true]}").unwrap(), [json!(true)]);
        assert!(parse_args(b"").unwrap().is_empty());
        assert!(parse_args(b" \n").unwrap().is_empty());
    }

    #[test]
    fn refuses_everything_else() {
        for body in [
            &b"[1,"[..],
            b"{\"a\":1}",
            b"5",
            b"null",
            b"\"str\"",
            b"[1] x",
            b"[\"\xff\xfe\"]",
            b"[\"\\ud800\"]",
        ] {
            assert!(
                parse_args(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
