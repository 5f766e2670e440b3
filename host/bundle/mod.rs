//! Bundles: the user's source, and the namespace → class map that says which
//! exported class serves which namespace.
//!
//! A bundle is either a CommonJS script that sets `exports.objects` (or
//! `module.exports.objects`) to an object of classes, whose objects get the
//! reference API, or an ES module whose exported classes get Cloudflare's
//! API ([`BundleFormat`], [`Api`]). Its namespaces come
//! from a [`Manifest`] when one is given, and are otherwise derived from the
//! export names with [`export_name_to_namespace`]. What the bundle exports is
//! only known once the guest has evaluated it, so [`resolve_classes`] takes
//! the guest's description of the exports and checks everything at once.

mod manifest;
mod namespace;
mod wrangler;

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

pub use manifest::{Manifest, ManifestError};
pub use namespace::export_name_to_namespace;
pub use wrangler::{WranglerConfig, read_wrangler};

/// The source of the built-in demo bundle.
const BUILTIN_COUNTER: &str = include_str!("counter.js");

/// A bundle: its source and the name it is reported under.
#[derive(Debug, Clone)]
pub struct Bundle {
    filename: String,
    source: String,
}

/// How a bundle's source is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleFormat {
    /// A script run with `exports`, `module` and `require`.
    CommonJs,
    /// An ES module (`import`/`export`).
    Module,
}

/// Whether `line` starts with an `import` or `export` statement.
fn is_module_statement(line: &str) -> bool {
    const EXPORTED: &[&str] = &[
        "class ", "function", "async ", "const ", "let ", "var ", "default ",
    ];
    if let Some(rest) = line.strip_prefix("export") {
        let trimmed = rest.trim_start();
        let spaced = trimmed.len() < rest.len();
        return trimmed.starts_with(['{', '*'])
            || spaced && EXPORTED.iter().any(|start| trimmed.starts_with(start));
    }
    if let Some(rest) = line.strip_prefix("import") {
        let trimmed = rest.trim_start();
        let spaced = trimmed.len() < rest.len();
        if trimmed.starts_with(['{', '*', '"', '\'']) {
            return true;
        }
        // `import name from "..."`, `import name, { ... } from "..."`.
        let first = trimmed.split_whitespace().next().unwrap_or("");
        let name = first.trim_end_matches(',');
        let identifier = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$');
        return spaced && identifier && trimmed.contains(" from ");
    }
    false
}

/// The API a bundle's objects are given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// The reference API of CommonJS bundles: `new Class(state, env)`,
    /// synchronous storage of JSON values, `fetch` with plain objects.
    #[default]
    Reference,
    /// Cloudflare's API of ES module classes: `new Class(ctx, env)`,
    /// asynchronous `ctx.storage` of structured-clone values, `fetch` with
    /// `Request` and `Response`.
    Cloudflare,
}

/// One own enumerable property of `exports.objects`, as the guest saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExportInfo {
    /// The export's name.
    pub name: String,
    /// Whether the value can be called with `new`.
    pub is_class: bool,
}

/// Why a bundle or manifest could not be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file could not be read.
    #[error("failed to read bundle `{path}`: {error}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A pre-initialized image could not be read or is not usable here.
    #[error("failed to load image `{name}`: {message}")]
    Image {
        /// The image's path, or the name it was given.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// The bundle threw or did not parse while it was evaluated.
    #[error("failed to load bundle `{file}`: {message}")]
    Load {
        /// The bundle's file name.
        file: String,
        /// The engine's description, with the line where there is one.
        message: String,
    },
    /// The exports do not make a usable set of namespaces.
    #[error("bundle `{file}` cannot be served: {}", .problems.join("; "))]
    Invalid {
        /// The bundle's file name.
        file: String,
        /// Every problem found.
        problems: Vec<String>,
    },
    /// The manifest could not be read or is invalid.
    #[error("failed to load manifest `{path}`: {message}")]
    Manifest {
        /// The manifest's path.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A bundle's pre-initialized image (made by `go-go-objects build` or
/// [`crate::runtime::build_image`]): a wasm module, served without the
/// bundle's source.
#[derive(Debug, Clone)]
pub struct Image {
    name: String,
    wasm: Vec<u8>,
}

impl Image {
    /// Reads an image file.
    ///
    /// # Errors
    ///
    /// [`BundleError::Image`] naming the file when it cannot be read.
    pub fn from_file(path: &Path) -> Result<Self, BundleError> {
        let wasm = std::fs::read(path).map_err(|e| BundleError::Image {
            name: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self::from_bytes(path.display().to_string(), wasm))
    }

    /// An image from its bytes; `name` is what errors call it.
    pub fn from_bytes(name: impl Into<String>, wasm: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            wasm,
        }
    }

    /// The name errors call the image.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The module's bytes.
    pub fn wasm(&self) -> &[u8] {
        &self.wasm
    }

    /// The module's bytes, owned.
    pub fn into_wasm(self) -> Vec<u8> {
        self.wasm
    }
}

impl Bundle {
    /// The built-in demo: a `Counter` class served as `COUNTER`.
    pub fn builtin_counter() -> Self {
        Self::from_source("<built-in counter>", BUILTIN_COUNTER)
    }

    /// A bundle from source text; `filename` appears in error messages.
    pub fn from_source(filename: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            filename: filename.into(),
            source: source.into(),
        }
    }

    /// Reads a bundle file.
    ///
    /// # Errors
    ///
    /// [`BundleError::Read`] when the file cannot be read as UTF-8 text.
    pub fn from_file(path: &Path) -> Result<Self, BundleError> {
        let source = std::fs::read_to_string(path).map_err(|error| BundleError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Ok(Self::from_source(path.display().to_string(), source))
    }

    /// The name the bundle is reported under.
    pub fn filename(&self) -> &str {
        &self.filename
    }

    /// The name JavaScript sees in stack traces and syntax errors: the file
    /// name without its directory. Fuel must not depend on where the bundle
    /// happens to lie, and the engine's work grows with the name's length.
    pub fn script_name(&self) -> &str {
        Path::new(&self.filename)
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or(&self.filename)
    }

    /// The bundle's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How the source is evaluated: `.mjs` files are ES modules and `.cjs`
    /// files CommonJS; otherwise a bundle is a module when a line starts
    /// with an `import` or `export` statement (`export class`, `export {`,
    /// `import { x } from`, `import "./x"`...), not merely with the word.
    pub fn format(&self) -> BundleFormat {
        if self.filename.ends_with(".mjs") {
            return BundleFormat::Module;
        }
        if self.filename.ends_with(".cjs") {
            return BundleFormat::CommonJs;
        }
        // A minified module may have its statements after a `;` or `}`.
        let module = self
            .source
            .lines()
            .map(str::trim_start)
            .any(is_module_statement)
            || self.source.split([';', '}']).skip(1).any(|rest| {
                let rest = rest.trim_start();
                rest.starts_with("export{") || rest.starts_with("export {")
            });
        if module {
            BundleFormat::Module
        } else {
            BundleFormat::CommonJs
        }
    }
}

/// Reads and validates a manifest file.
///
/// # Errors
///
/// [`BundleError::Manifest`] naming the file and every problem.
pub fn read_manifest(path: &Path) -> Result<Manifest, BundleError> {
    let fail = |message: String| BundleError::Manifest {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    Manifest::parse(&text).map_err(|e| fail(e.to_string()))
}

/// Namespace → exported class name, checked against the bundle's exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassMap {
    classes: BTreeMap<String, String>,
    api: Api,
}

impl ClassMap {
    /// The API the bundle's objects are given.
    pub fn api(&self) -> Api {
        self.api
    }

    /// The class that serves `namespace`, if the namespace exists.
    pub fn class_for(&self, namespace: &str) -> Option<&str> {
        self.classes.get(namespace).map(String::as_str)
    }

    /// Every namespace, in order.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.classes.keys().map(String::as_str)
    }

    /// Namespace and class pairs, in namespace order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.classes.iter().map(|(n, c)| (n.as_str(), c.as_str()))
    }
}

/// Builds the class map from the bundle's exports and an optional manifest,
/// reporting every problem at once.
///
/// # Errors
///
/// [`BundleError::Invalid`] when an export that must be a class is not one,
/// two exports derive to the same namespace, an export derives to nothing,
/// no class is exported, or the manifest names a class the bundle lacks.
pub fn resolve_classes(
    filename: &str,
    api: Api,
    exports: &[ExportInfo],
    manifest: Option<&Manifest>,
) -> Result<ClassMap, BundleError> {
    let mut problems = Vec::new();
    let mut classes = BTreeMap::new();
    let holder = match api {
        Api::Reference => "exports.objects",
        Api::Cloudflare => "the module's exports",
    };

    match manifest {
        Some(manifest) => {
            for (namespace, class) in &manifest.objects {
                match exports.iter().find(|e| &e.name == class) {
                    None => problems.push(format!(
                        "the manifest maps {namespace} to `{class}`, which is not among the classes of {holder}"
                    )),
                    Some(e) if !e.is_class => problems.push(format!(
                        "the manifest maps {namespace} to `{class}`, which is not a class"
                    )),
                    Some(_) => {
                        classes.insert(namespace.clone(), class.clone());
                    }
                }
            }
        }
        None => {
            for export in exports {
                let namespace = export_name_to_namespace(&export.name);
                if !export.is_class {
                    problems.push(format!("exports.objects.{} is not a class", export.name));
                } else if namespace.is_empty() {
                    problems.push(format!(
                        "export `{}` derives no namespace; add a manifest entry",
                        export.name
                    ));
                } else if let Some(other) = classes.insert(namespace.clone(), export.name.clone()) {
                    problems.push(format!(
                        "exports `{other}` and `{}` both derive the namespace {namespace}",
                        export.name
                    ));
                }
            }
            if exports.is_empty() {
                problems.push(format!("there are no classes in {holder}"));
            }
        }
    }

    if problems.is_empty() {
        Ok(ClassMap { classes, api })
    } else {
        Err(BundleError::Invalid {
            file: filename.to_string(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str) -> ExportInfo {
        ExportInfo {
            name: name.to_string(),
            is_class: true,
        }
    }

    #[test]
    fn tells_module_statements_from_words() {
        for line in [
            "export class A {}",
            "export { A, B };",
            "export default class {}",
            "export async function f() {}",
            "import { DurableObject } from 'cloudflare:workers';",
            "import * as x from \"y\";",
            "import './side-effect.js';",
            "import thing from \"thing\";",
            "import a, { b } from 'c';",
        ] {
            assert!(is_module_statement(line), "{line}");
        }
        for line in [
            "export the values below",
            "import this list into the table",
            "exports.objects = { A };",
            "important = true;",
            "import(\"x\").then(f);",
        ] {
            assert!(!is_module_statement(line), "{line}");
        }
    }

    #[test]
    fn finds_minified_module_statements() {
        let minified = Bundle::from_source("w.js", "var B=class{};export{B as Bee};");
        assert_eq!(minified.format(), BundleFormat::Module);
        let commonjs = Bundle::from_source("w.js", "var s='a;b';exports.objects={};");
        assert_eq!(commonjs.format(), BundleFormat::CommonJs);
    }

    #[test]
    fn derives_namespaces_from_exports() {
        let map = resolve_classes(
            "b.js",
            Api::Reference,
            &[class("Counter"), class("ChatRoom")],
            None,
        )
        .unwrap();
        assert_eq!(map.class_for("CHAT_ROOM"), Some("ChatRoom"));
        assert_eq!(
            map.namespaces().collect::<Vec<_>>(),
            ["CHAT_ROOM", "COUNTER"]
        );
    }

    #[test]
    fn an_explicit_manifest_replaces_derivation() {
        let manifest = Manifest::parse("objects:\n  ROOMS: ChatRoom\n  R2: ChatRoom\n").unwrap();
        let map = resolve_classes(
            "b.js",
            Api::Reference,
            &[class("Counter"), class("ChatRoom")],
            Some(&manifest),
        )
        .unwrap();
        assert_eq!(map.class_for("COUNTER"), None);
        assert_eq!(map.class_for("ROOMS"), Some("ChatRoom"));
        assert_eq!(map.class_for("R2"), Some("ChatRoom"));
    }

    #[test]
    fn reports_every_problem() {
        let exports = [
            class("ChatRoom"),
            class("chat_room"),
            ExportInfo {
                name: "helper".into(),
                is_class: false,
            },
            class("$"),
        ];
        let err = resolve_classes("b.js", Api::Reference, &exports, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`b.js`"), "{err}");
        assert!(err.contains("both derive the namespace CHAT_ROOM"), "{err}");
        assert!(err.contains("helper is not a class"), "{err}");
        assert!(err.contains("derives no namespace"), "{err}");

        let manifest = Manifest::parse("objects:\n  X: Missing\n").unwrap();
        let err =
            resolve_classes("b.js", Api::Reference, &[class("A")], Some(&manifest)).unwrap_err();
        assert!(err.to_string().contains("not among"), "{err}");
    }
}
