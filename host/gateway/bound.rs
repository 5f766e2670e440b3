//! Routes for per-user objects, over a [`BoundDispatcher`].
//!
//! `POST /rpc/NAMESPACE/method` and `ANY /fetch/NAMESPACE/path...` reach the
//! calling user's own object in `NAMESPACE`. The user comes from the
//! application's `identify` function (its authentication), never from the
//! request path: a path that names an object is refused.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{
        Path, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, Method, Uri},
    response::{IntoResponse, Response},
    routing::{any, post},
};

use super::{
    ApiError, GatewayOptions, body_error, fetch, layered, method_not_allowed, not_found, rpc,
};
use crate::{
    bound::BoundDispatcher,
    error::{DispatchError, ErrorCode},
    runtime::{DispatchKind, DispatchValue},
};

/// Finds the authenticated user of a request, or `None`.
pub type Identify = dyn Fn(&HeaderMap) -> Option<String> + Send + Sync;

#[derive(Clone)]
struct BoundState {
    dispatcher: BoundDispatcher,
    identify: Arc<Identify>,
    dev_errors: bool,
}

impl BoundState {
    fn user(&self, headers: &HeaderMap) -> Result<String, DispatchError> {
        (self.identify)(headers).ok_or_else(|| {
            DispatchError::new(
                ErrorCode::Unauthorized,
                "this route needs an authenticated user",
            )
        })
    }

    fn error(&self, error: DispatchError) -> Response {
        ApiError::new(error, self.dev_errors).into_response()
    }
}

/// The per-user routes: `/rpc/NAMESPACE/method` and `/fetch/NAMESPACE/...`,
/// each reaching the object that `dispatcher` derives for the user that
/// `identify` finds (401 `unauthorized` when it finds none).
pub fn bound_router(
    dispatcher: BoundDispatcher,
    identify: impl Fn(&HeaderMap) -> Option<String> + Send + Sync + 'static,
    options: GatewayOptions,
) -> Router {
    let state = BoundState {
        dispatcher,
        identify: Arc::new(identify),
        dev_errors: options.dev_errors,
    };
    let router = Router::new()
        .route(
            "/rpc/{namespace}/{method}",
            post(bound_rpc).fallback(method_not_allowed),
        )
        .route("/rpc/{namespace}/{name}/{method}", any(named_object))
        .route("/fetch/{namespace}", any(bound_fetch))
        .route("/fetch/{namespace}/", any(bound_fetch))
        .route("/fetch/{namespace}/{*rest}", any(bound_fetch))
        .fallback(not_found)
        .with_state(state);
    layered(router, super::BodyLimits::of(&options))
}

async fn bound_rpc(
    State(state): State<BoundState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let call = async {
        let user = state.user(&headers)?;
        let Path((namespace, method)) =
            path.map_err(|e| DispatchError::bad_request(format!("invalid path: {e}")))?;
        let args = rpc::parse_args(&body.map_err(body_error)?)?;
        let kind = DispatchKind::Rpc { method, args };
        state.dispatcher.dispatch(&namespace, &user, kind).await
    };
    match call.await {
        Ok(output) => rpc::success(output),
        Err(error) => state.error(error),
    }
}

async fn named_object(State(state): State<BoundState>) -> Response {
    state.error(DispatchError::bad_request(
        "object names come from the authenticated user; use /rpc/NAMESPACE/method",
    ))
}

async fn bound_fetch(
    State(state): State<BoundState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<Vec<(String, String)>>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let call = async {
        let user = state.user(&headers)?;
        let Path(segments) =
            path.map_err(|e| DispatchError::bad_request(format!("invalid path: {e}")))?;
        let segment = |key: &str| {
            segments
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let namespace = segment("namespace").unwrap_or_default().to_string();
        let rest = segment("rest").unwrap_or("");
        let route = fetch::FetchRoute {
            rest,
            fixed_segments: 2,
        };
        let request = fetch::fetch_request(
            &method,
            &uri,
            &headers,
            route,
            &body.map_err(body_error)?,
            Some(state.dispatcher.api()),
        )?;
        let kind = DispatchKind::Fetch {
            request: Box::new(request),
        };
        let output = state.dispatcher.dispatch(&namespace, &user, kind).await?;
        let DispatchValue::Fetch(response) = output.value else {
            unreachable!("a fetch dispatch answers with a fetch value");
        };
        fetch::build_response(response, output.fuel_consumed)
    };
    call.await.unwrap_or_else(|error| state.error(error))
}
