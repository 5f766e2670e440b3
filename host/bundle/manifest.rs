//! The optional manifest that maps namespaces to exported classes.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::id::validate_namespace;

/// An explicit namespace → class map, read from JSON or YAML:
///
/// ```yaml
/// objects:
///   COUNTER: Counter
///   ROOMS: ChatRoom
/// ```
///
/// With a manifest, only its namespaces exist. Several namespaces may name
/// the same class.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Namespace → exported class name.
    pub objects: BTreeMap<String, String>,
}

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Neither JSON nor YAML of the expected shape.
    #[error(
        "not a manifest of the form `objects: {{NAMESPACE: Class}}` (as JSON: {json}; as YAML: {yaml})"
    )]
    Parse {
        /// The JSON parser's complaint.
        json: String,
        /// The YAML parser's complaint.
        yaml: String,
    },
    /// Parsed, but breaks a rule; every problem is listed.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl Manifest {
    /// Parses JSON first, then YAML, and validates the result.
    ///
    /// # Errors
    ///
    /// [`ManifestError`] when the text is neither, or when the map is empty or
    /// has a blank class or an invalid namespace.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest = match serde_json::from_str::<Manifest>(text) {
            Ok(m) => m,
            Err(json) => {
                serde_yaml_ng::from_str::<Manifest>(text).map_err(|yaml| ManifestError::Parse {
                    json: json.to_string(),
                    yaml: yaml.to_string(),
                })?
            }
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// A manifest of the given namespace → class map, validated.
    ///
    /// # Errors
    ///
    /// [`ManifestError::Invalid`] as for [`Manifest::parse`].
    pub fn from_objects(objects: BTreeMap<String, String>) -> Result<Self, ManifestError> {
        let manifest = Self { objects };
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let mut problems = Vec::new();
        if self.objects.is_empty() {
            problems.push("`objects` maps no namespace".to_string());
        }
        for (namespace, class) in &self.objects {
            if let Err(e) = validate_namespace(namespace) {
                problems.push(e.to_string());
            } else if namespace.trim() != namespace {
                problems.push(format!(
                    "namespace {namespace:?} has surrounding white space"
                ));
            }
            if class.trim().is_empty() {
                problems.push(format!("namespace {namespace:?} names no class"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Invalid(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_yaml_and_json() {
        let yaml = Manifest::parse("objects:\n  COUNTER: Counter\n  ROOMS: ChatRoom\n").unwrap();
        let json =
            Manifest::parse(r#"{"objects":{"COUNTER":"Counter","ROOMS":"ChatRoom"}}"#).unwrap();
        assert_eq!(yaml, json);
        assert_eq!(yaml.objects["ROOMS"], "ChatRoom");
    }

    #[test]
    fn lists_every_problem() {
        let err = Manifest::parse("objects:\n  'a/b': Counter\n  OK: ''\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("a/b"), "{text}");
        assert!(text.contains("names no class"), "{text}");
        assert!(Manifest::parse("objects: {}").is_err());
        assert!(Manifest::parse("nothing: here").is_err());
    }
}
