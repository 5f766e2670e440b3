//! Object identity: a namespace and a name, and the hash that names storage.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The longest namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 128;

/// The longest object name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// The identity of one object: its namespace (which selects the class), its
/// name, and the hex SHA-256 of `namespace NUL name`, which names its
/// database file. The same namespace and name always give the same hash, so
/// an object finds its storage again after eviction or a restart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ObjectId {
    namespace: String,
    name: String,
    hash: String,
}

/// Why a namespace or object name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The namespace is empty, too long, `.`/`..`, or has a character outside
    /// letters, digits, `_`, `-` and `.`.
    #[error("invalid namespace {0:?}: {1}")]
    Namespace(String, &'static str),
    /// The name is empty, too long, `.`/`..`, or has `/`, `\` or a control
    /// character.
    #[error("invalid object name {0:?}: {1}")]
    Name(String, &'static str),
}

impl ObjectId {
    /// Validates a namespace and a name (both trimmed of surrounding white
    /// space first) and computes the object's hash.
    ///
    /// # Errors
    ///
    /// [`IdError`] when either part breaks the rules above.
    pub fn new(namespace: &str, name: &str) -> Result<Self, IdError> {
        let namespace = validate_namespace(namespace)?;
        let name = validate_name(name)?;
        let hash = object_hash(&namespace, &name);
        Ok(Self {
            namespace,
            name,
            hash,
        })
    }

    /// The namespace, as it selects the class.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The object's name within its namespace.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lower-case hex SHA-256 of `namespace NUL name` (64 characters).
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Hex SHA-256 of `namespace NUL name`.
fn object_hash(namespace: &str, name: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(namespace.as_bytes());
    hasher.update([0u8]);
    hasher.update(name.as_bytes());
    hex::encode(hasher.finalize())
}

/// Checks a namespace and returns it trimmed.
///
/// # Errors
///
/// [`IdError::Namespace`] when it breaks the rules of [`ObjectId::new`].
pub fn validate_namespace(namespace: &str) -> Result<String, IdError> {
    let trimmed = namespace.trim();
    let refuse = |why| Err(IdError::Namespace(namespace.to_string(), why));
    if trimmed.is_empty() {
        return refuse("it is empty");
    }
    if trimmed.len() > MAX_NAMESPACE_BYTES {
        return refuse("it is longer than 128 bytes");
    }
    if trimmed == "." || trimmed == ".." {
        return refuse("it is a relative path segment");
    }
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
    if !trimmed.chars().all(allowed) {
        return refuse("only letters, digits, `_`, `-` and `.` are allowed");
    }
    Ok(trimmed.to_string())
}

fn validate_name(name: &str) -> Result<String, IdError> {
    let trimmed = name.trim();
    let refuse = |why| Err(IdError::Name(name.to_string(), why));
    if trimmed.is_empty() {
        return refuse("it is empty");
    }
    if trimmed.len() > MAX_NAME_BYTES {
        return refuse("it is longer than 1024 bytes");
    }
    if trimmed == "." || trimmed == ".." {
        return refuse("it is a relative path segment");
    }
    if trimmed.chars().any(|c| c == '/' || c == '\\') {
        return refuse("it contains a slash");
    }
    if trimmed.chars().any(char::is_control) {
        return refuse("it contains a control character");
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unsafe_segments() {
        for (ns, name) in [
            ("../COUNTER", "global"),
            ("COUNTER", "../global"),
            ("COUNTER/slash", "global"),
            ("COUNTER", "with/slash"),
            ("COUNTER", "with\\backslash"),
            ("COUNTER", "bad\0name"),
            ("COUNTER", ".."),
            ("..", "x"),
            ("", "x"),
            ("COUNTER", "   "),
        ] {
            assert!(
                ObjectId::new(ns, name).is_err(),
                "{ns:?}/{name:?} was accepted"
            );
        }
        assert!(ObjectId::new("COUNTER", &"n".repeat(1025)).is_err());
        assert!(ObjectId::new(&"N".repeat(129), "x").is_err());
        assert!(ObjectId::new("COUNTER", &"n".repeat(1024)).is_ok());
    }

    #[test]
    fn is_stable_and_trimmed() {
        let a = ObjectId::new("COUNTER", "global").unwrap();
        let b = ObjectId::new(" COUNTER ", " global").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.hash().len(), 64);
        assert_eq!(
            a.hash(),
            hex::encode(Sha256::digest(b"COUNTER\0global")),
            "hash is SHA-256 of namespace NUL name"
        );
        assert_ne!(a.hash(), ObjectId::new("COUNTER", "other").unwrap().hash());
    }
}
