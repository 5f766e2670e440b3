//! `ANY /fetch/NAMESPACE/name/...`: the object's own `fetch` handler.

use std::collections::HashMap;

use axum::{
    body::{Body, Bytes},
    extract::{
        Path, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header},
    response::Response,
};
use base64::Engine as _;
use serde_json::{Map, Value};

use super::{AppState, FUEL_HEADER, body_error};
use crate::{
    bundle::Api,
    error::{DispatchError, ErrorCode},
    id::ObjectId,
    runtime::{DispatchKind, DispatchRequest, DispatchValue, FetchRequest, FetchResponse},
};

pub(super) async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let Path(segments) =
            path.map_err(|e| DispatchError::bad_request(format!("invalid path: {e}")))?;
        let (namespace, name) = (&segments["namespace"], &segments["name"]);
        let id = ObjectId::new(namespace, name)
            .map_err(|e| DispatchError::bad_request(e.to_string()))?;
        if state.runtime.classes().class_for(id.namespace()).is_none() {
            return Err(DispatchError::new(
                ErrorCode::UnknownNamespace,
                format!("unknown durable object namespace {}", id.namespace()),
            ));
        }
        let rest = segments.get("rest").map_or("", String::as_str);
        let route = FetchRoute {
            rest,
            fixed_segments: 3,
        };
        let api = state.runtime.classes().api();
        let request = fetch_request(
            &method,
            &uri,
            &headers,
            route,
            &body.map_err(body_error)?,
            Some(api),
        )?;
        let output = state
            .runtime
            .dispatch(DispatchRequest {
                id,
                kind: DispatchKind::Fetch {
                    request: Box::new(request),
                },
            })
            .await?;
        let DispatchValue::Fetch(response) = output.value else {
            unreachable!("a fetch dispatch answers with a fetch value");
        };
        build_response(response, output.fuel_consumed)
    }
    .await;
    result.unwrap_or_else(|error| state.error(error))
}

/// The request object the handler sees.
/// Where the object's own path starts in a `/fetch` route.
#[derive(Clone, Copy)]
pub(crate) struct FetchRoute<'a> {
    /// The path after the route's fixed segments, decoded.
    pub(crate) rest: &'a str,
    /// How many segments come before it (`fetch`, the namespace, the name).
    pub(crate) fixed_segments: usize,
}

pub(crate) fn fetch_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    route: FetchRoute<'_>,
    body: &[u8],
    api: Option<Api>,
) -> Result<FetchRequest, DispatchError> {
    let rest = route.rest;
    // A Host header that is not a host (and port) would make a URL that
    // does not parse; such a request is addressed as `localhost`.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.parse::<axum::http::uri::Authority>().is_ok_and(|a| {
                !h.is_empty() && a.as_str() == *h && !h.contains('@') && port_is_valid(h, &a)
            })
        })
        .unwrap_or("localhost");
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());

    let mut header_map = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let name = canonical_header_name(name.as_str());
        match header_map.get_mut(&name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            _ => {
                header_map.insert(name, Value::String(value));
            }
        }
    }

    // The object's URL keeps the path exactly as the client sent it
    // (escapes and all), so that an encoded `?`, `#` or `/` stays data.
    let raw_rest = raw_rest(uri.path(), route.fixed_segments);
    let object_url = match uri.query() {
        Some(query) => format!("http://{host}/{raw_rest}?{query}"),
        None => format!("http://{host}/{raw_rest}"),
    };

    // Each API gets the body in the form it reads: the reference API the
    // query map, the text and the parsed JSON; Cloudflare's Request only
    // the bytes. Without the API known (the one-shot runner), both.
    let reference = api != Some(Api::Cloudflare);
    let cloudflare = api != Some(Api::Reference);
    let (query, raw_body, parsed_body, body_error) = if reference {
        reference_body(uri, headers, body)
    } else {
        (Map::new(), String::new(), Value::Null, None)
    };
    let body_base64 = if cloudflare {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::new()
    };
    Ok(FetchRequest {
        method: method.as_str().to_string(),
        url: format!("http://{host}{target}"),
        path: format!("/{rest}"),
        query,
        headers: header_map,
        body: parsed_body,
        raw_body,
        body_error,
        object_url,
        body_base64,
    })
}

/// Whether the port of `host` (its text after the last `:` outside an IPv6
/// literal), if it has one, is a number a URL accepts.
fn port_is_valid(host: &str, authority: &axum::http::uri::Authority) -> bool {
    let after_literal = host.rsplit_once(']').map_or(host, |(_, rest)| rest);
    !after_literal.contains(':') || authority.port_u16().is_some()
}

/// The reference API's view of a request: the query parameters (an array
/// when repeated), the body as text, the body parsed as JSON when the
/// content type says JSON (else the text, else null), and why a JSON body
/// did not parse (its handler refuses such a request with `bad_request`).
fn reference_body(
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (Map<String, Value>, String, Value, Option<String>) {
    let mut query = Map::new();
    for (key, value) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        let value = Value::String(value.into_owned());
        match query.get_mut(key.as_ref()) {
            None => {
                query.insert(key.into_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    let raw_body = String::from_utf8_lossy(body).into_owned();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("application/json"));
    let mut body_error = None;
    let parsed_body = if body.is_empty() {
        Value::Null
    } else if is_json {
        serde_json::from_slice(body).unwrap_or_else(|e| {
            body_error = Some(format!("invalid JSON body: {e}"));
            Value::Null
        })
    } else {
        Value::String(raw_body.clone())
    };
    (query, raw_body, parsed_body, body_error)
}

/// The part of the raw (still percent-encoded) `path` after its first
/// `fixed` segments (`/fetch/NS/name` is three).
fn raw_rest(path: &str, fixed: usize) -> &str {
    path.trim_start_matches('/')
        .splitn(fixed + 1, '/')
        .nth(fixed)
        .unwrap_or("")
}

/// `content-type` → `Content-Type`.
fn canonical_header_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

/// Turns the handler's response into HTTP; an invalid header is the
/// handler's error (500).
pub(super) fn build_response(
    response: FetchResponse,
    fuel: u64,
) -> Result<Response, DispatchError> {
    let invalid = |what: String| DispatchError::new(ErrorCode::ExecutionError, what);
    let status = StatusCode::from_u16(response.status).map_err(|_| {
        invalid(format!(
            "fetch returned an invalid status {}",
            response.status
        ))
    })?;
    let no_body = matches!(status.as_u16(), 204 | 205 | 304);
    let body = match (response.body_base64, response.body) {
        _ if no_body => Body::empty(),
        (Some(encoded), _) => Body::from(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| invalid(format!("fetch returned a body that is not base64: {e}")))?,
        ),
        (None, Some(text)) => Body::from(text),
        (None, None) => Body::empty(),
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    if let Some(reason) = response.status_text.filter(|text| !text.is_empty()) {
        // HTTP/1.1 sends it on the status line; a phrase hyper cannot send
        // is dropped rather than failing the response.
        // Characters up to U+00FF are the phrase's bytes (as in the Fetch
        // standard's byte strings).
        let bytes: Option<Vec<u8>> = reason.chars().map(|c| u8::try_from(c).ok()).collect();
        if let Some(Ok(reason)) = bytes.map(hyper::ext::ReasonPhrase::try_from) {
            out.extensions_mut().insert(reason);
        }
    }
    for (name, value) in response.headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("fetch returned an invalid header name {name:?}")))?;
        if is_framing_header(&header_name) {
            // The gateway frames the response itself; a handler's own
            // length or encoding would contradict the body it sends.
            continue;
        }
        let header_value = HeaderValue::from_str(&value)
            .map_err(|_| invalid(format!("fetch returned an invalid value for header {name}")))?;
        out.headers_mut().append(header_name, header_value);
    }
    out.headers_mut()
        .insert(FUEL_HEADER, HeaderValue::from(fuel));
    Ok(out)
}

/// Headers that describe the connection or the message framing, which only
/// the gateway may set.
fn is_framing_header(name: &HeaderName) -> bool {
    [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalizes_header_names() {
        assert_eq!(canonical_header_name("content-type"), "Content-Type");
        assert_eq!(canonical_header_name("x-counter"), "X-Counter");
    }

    #[test]
    fn builds_the_handler_request() {
        let uri: Uri = "/fetch/NS/n/a/b?q=1&q=2&e=%20x".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("example.test"));
        headers.append("x-repeated", HeaderValue::from_static("1"));
        headers.append("x-repeated", HeaderValue::from_static("2"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let route = |rest| FetchRoute {
            rest,
            fixed_segments: 3,
        };
        let request = fetch_request(
            &Method::PUT,
            &uri,
            &headers,
            route("a/b"),
            b"{\"x\":1}",
            Some(Api::Reference),
        )
        .unwrap();
        assert_eq!(
            request.url,
            "http://example.test/fetch/NS/n/a/b?q=1&q=2&e=%20x"
        );
        assert_eq!(request.path, "/a/b");
        assert_eq!(request.query["q"], serde_json::json!(["1", "2"]));
        assert_eq!(request.query["e"], " x");
        assert_eq!(request.headers["X-Repeated"], "1, 2");
        assert_eq!(request.body, serde_json::json!({"x": 1}));
        let bad = fetch_request(
            &Method::POST,
            &uri,
            &headers,
            route(""),
            b"{bad",
            Some(Api::Reference),
        )
        .unwrap();
        assert!(
            bad.body_base64.is_empty(),
            "the reference request has no bytes"
        );
        let encoded: Uri = "/fetch/NS/n/a%3Fb%2Fc?q=1".parse().unwrap();
        let cloudflare = fetch_request(
            &Method::POST,
            &encoded,
            &headers,
            route("a?b/c"),
            b"\x00\xff",
            Some(Api::Cloudflare),
        )
        .unwrap();
        assert_eq!(cloudflare.object_url, "http://example.test/a%3Fb%2Fc?q=1");
        assert_eq!(cloudflare.body_base64, "AP8=");
        assert!(cloudflare.raw_body.is_empty());
        assert!(bad.body_error.unwrap().starts_with("invalid JSON body"));
    }
}
