//! What a dispatch carries in and out: the kinds of delivery, the request a
//! `fetch` handler sees and what it answers. A leaf module: the runtime, the
//! gateway and the host calls (for stubs) all speak it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, value::RawValue};

use crate::id::ObjectId;

/// One delivery to one object.
#[derive(Debug, Clone)]
pub struct DispatchRequest {
    /// The object.
    pub id: ObjectId,
    /// What to deliver.
    pub kind: DispatchKind,
}

/// The kinds of delivery.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum DispatchKind {
    /// Call an RPC method with positional JSON arguments.
    Rpc {
        /// The method name.
        method: String,
        /// Its arguments.
        args: Vec<Value>,
    },
    /// Call the object's `fetch(request)`.
    Fetch {
        /// The request the handler sees.
        request: Box<FetchRequest>,
    },
    /// Call an RPC method for another object's stub, with arguments by
    /// structured clone (Cloudflare-flavour JavaScript RPC). The result is
    /// the structured-clone text of the value, or of the exception, which
    /// starts with `!`.
    CloneRpc {
        /// The method name.
        method: String,
        /// The structured-clone text of the argument array.
        args: String,
    },
}

/// The request object a `fetch` handler receives.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FetchRequest {
    /// HTTP method.
    pub method: String,
    /// The full URL the client used.
    pub url: String,
    /// The path after `/fetch/NS/name` (`/` when empty).
    pub path: String,
    /// Query parameters: a string, or an array when repeated.
    pub query: Map<String, Value>,
    /// Headers by canonical name (`Content-Type`); repeated values joined
    /// with `, `.
    pub headers: Map<String, Value>,
    /// The body parsed as JSON when the content type says JSON, else text,
    /// else null when empty.
    pub body: Value,
    /// The body as text.
    pub raw_body: String,
    /// Why a body sent as JSON did not parse; the reference API refuses
    /// such a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_error: Option<String>,
    /// The URL as the object sees it (Cloudflare-flavour `request.url`):
    /// the client's scheme and host, then the path after `/fetch/NS/name`
    /// and the query exactly as sent.
    pub object_url: String,
    /// The body's exact bytes, in base64 (empty for no body).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body_base64: String,
}

/// What a `fetch` handler returned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FetchResponse {
    /// HTTP status, 200 to 599.
    pub status: u16,
    /// Header name and value pairs, in order.
    pub headers: Vec<(String, String)>,
    /// The body text, if any.
    #[serde(default)]
    pub body: Option<String>,
    /// The body's bytes in base64, when the handler returned bytes (a
    /// `Response`); takes the place of `body`.
    #[serde(default)]
    pub body_base64: Option<String>,
    /// The reason phrase, when the handler chose one.
    #[serde(default)]
    pub status_text: Option<String>,
}

/// A successful dispatch.
#[derive(Debug)]
pub struct DispatchOutput {
    /// What the handler produced.
    pub value: DispatchValue,
    /// Fuel the dispatch consumed (not counting an actor start).
    pub fuel_consumed: u64,
}

/// What the handler produced, by kind.
#[derive(Debug)]
pub enum DispatchValue {
    /// An RPC result as JSON (`undefined` is `null`).
    Rpc(Box<RawValue>),
    /// A fetch response.
    Fetch(FetchResponse),
}
