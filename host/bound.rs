//! Per-user objects: dispatch bound to an authenticated identity.
//!
//! The raw gateway lets any caller name any object. A product that gives
//! each user an object of their own must not: a caller who can choose the
//! name can read another user's object. A [`BoundDispatcher`] derives the
//! object's name from the user's authenticated id and a secret key,
//! `v1_` + base64url(HMAC-SHA256(key, namespace NUL user id)), so the name is
//! stable for one user, different for every other, reveals nothing of the
//! id, and cannot be chosen by the caller: the dispatcher takes no name at
//! all. Only an allow-list of namespaces is reachable, and both rules are
//! checked before any actor starts.

use std::{collections::BTreeSet, fmt, sync::Arc};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::{
    error::{DispatchError, ErrorCode},
    id::{ObjectId, validate_namespace},
    runtime::{DispatchKind, DispatchOutput, DispatchRequest, FetchRequest, Runtime},
};

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// The prefix of derived object names; it names the derivation's version.
pub const NAME_PREFIX: &str = "v1_";

/// Why a [`BoundDispatcher`] could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoundError {
    /// The key is shorter than [`MIN_KEY_BYTES`].
    #[error("the binding key must be at least {MIN_KEY_BYTES} bytes, got {0}")]
    KeyTooShort(usize),
    /// No namespace was allowed.
    #[error("at least one namespace must be allowed")]
    NoNamespaces,
    /// An allowed namespace is invalid or not served by the runtime.
    #[error("namespace {0:?} cannot be bound: {1}")]
    Namespace(String, String),
}

/// Dispatches to the object of an authenticated user; see the module
/// documentation.
#[derive(Clone)]
pub struct BoundDispatcher {
    runtime: Runtime,
    key: Arc<[u8]>,
    namespaces: Arc<BTreeSet<String>>,
}

impl fmt::Debug for BoundDispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundDispatcher")
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

impl BoundDispatcher {
    /// A dispatcher over `runtime` that derives names with `key` (copied)
    /// and reaches only `namespaces`.
    ///
    /// # Errors
    ///
    /// [`BoundError`] when the key is shorter than 32 bytes, no namespace is
    /// given, or a namespace is invalid or not served by `runtime`.
    pub fn new<'a>(
        runtime: Runtime,
        key: &[u8],
        namespaces: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, BoundError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(BoundError::KeyTooShort(key.len()));
        }
        let mut allowed = BTreeSet::new();
        for namespace in namespaces {
            let valid = validate_namespace(namespace)
                .map_err(|e| BoundError::Namespace(namespace.into(), e.to_string()))?;
            if runtime.classes().class_for(&valid).is_none() {
                return Err(BoundError::Namespace(
                    namespace.into(),
                    "the bundle does not serve it".into(),
                ));
            }
            allowed.insert(valid);
        }
        if allowed.is_empty() {
            return Err(BoundError::NoNamespaces);
        }
        Ok(Self {
            runtime,
            key: key.into(),
            namespaces: Arc::new(allowed),
        })
    }

    /// The API the bundle's objects are given.
    pub fn api(&self) -> crate::bundle::Api {
        self.runtime.classes().api()
    }

    /// The namespaces this dispatcher reaches.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(String::as_str)
    }

    /// The object of `user` in `namespace`. The user id is used exactly as
    /// given: `" alice"` and `"alice"` are different users.
    ///
    /// # Errors
    ///
    /// `unknown_namespace` for a namespace outside the allow-list,
    /// `bad_request` for an empty user id.
    pub fn object_for(&self, namespace: &str, user: &str) -> Result<ObjectId, DispatchError> {
        if !self.namespaces.contains(namespace) {
            return Err(DispatchError::new(
                ErrorCode::UnknownNamespace,
                format!("namespace {namespace} is not reachable through this dispatcher"),
            ));
        }
        if user.is_empty() {
            return Err(DispatchError::bad_request("the user id is empty"));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(namespace.as_bytes());
        mac.update(&[0]);
        mac.update(user.as_bytes());
        let name = format!(
            "{NAME_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        ObjectId::new(namespace, &name).map_err(|e| DispatchError::bad_request(e.to_string()))
    }

    /// Delivers `kind` to the object of `user` in `namespace`.
    ///
    /// # Errors
    ///
    /// As [`object_for`](Self::object_for), then as [`Runtime::dispatch`].
    pub async fn dispatch(
        &self,
        namespace: &str,
        user: &str,
        kind: DispatchKind,
    ) -> Result<DispatchOutput, DispatchError> {
        let id = self.object_for(namespace, user)?;
        self.runtime.dispatch(DispatchRequest { id, kind }).await
    }

    /// Calls `method(args)` on the object of `user` in `namespace`.
    ///
    /// # Errors
    ///
    /// As [`dispatch`](Self::dispatch).
    pub async fn rpc(
        &self,
        namespace: &str,
        user: &str,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Value, DispatchError> {
        let id = self.object_for(namespace, user)?;
        self.runtime.rpc(&id, method, args).await
    }

    /// Delivers `request` to the `fetch` of the object of `user` in
    /// `namespace`.
    ///
    /// # Errors
    ///
    /// As [`dispatch`](Self::dispatch).
    pub async fn fetch(
        &self,
        namespace: &str,
        user: &str,
        request: FetchRequest,
    ) -> Result<crate::runtime::FetchResponse, DispatchError> {
        let id = self.object_for(namespace, user)?;
        self.runtime.fetch(&id, request).await
    }
}
