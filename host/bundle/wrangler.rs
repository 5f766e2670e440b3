//! Namespaces from a Wrangler configuration (`wrangler.toml`,
//! `wrangler.json` or `wrangler.jsonc`), as Cloudflare projects declare
//! them:
//!
//! ```toml
//! main = "src/index.js"
//!
//! [[durable_objects.bindings]]
//! name = "COUNTER"
//! class_name = "Counter"
//! ```
//!
//! Each binding becomes a namespace served by its class, like a manifest
//! entry; `main` names the bundle when `--bundle` does not. Everything else
//! in the file (routes, vars, migrations) is Cloudflare's deployment
//! configuration and is ignored.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::{BundleError, Manifest};

/// What go-go-objects takes from a Wrangler configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WranglerConfig {
    /// The Worker's entry module, relative to the configuration file's
    /// directory already resolved.
    pub main: Option<PathBuf>,
    /// The Durable Object bindings, as a manifest.
    pub manifest: Manifest,
}

#[derive(Deserialize)]
struct Wrangler {
    main: Option<String>,
    durable_objects: Option<DurableObjects>,
}

#[derive(Deserialize)]
struct DurableObjects {
    #[serde(default)]
    bindings: Vec<Binding>,
}

#[derive(Deserialize)]
struct Binding {
    name: String,
    class_name: String,
    script_name: Option<String>,
}

/// Reads a Wrangler configuration; TOML unless the file name ends in
/// `.json` or `.jsonc` (JSON with comments and trailing commas).
///
/// # Errors
///
/// [`BundleError::Manifest`] naming the file, when it cannot be read or
/// parsed, declares no Durable Object bindings, or binds a class of another
/// Worker (`script_name`).
pub fn read_wrangler(path: &Path) -> Result<WranglerConfig, BundleError> {
    let fail = |message: String| BundleError::Manifest {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let name = path.to_string_lossy();
    let parsed: Wrangler = if name.ends_with(".json") || name.ends_with(".jsonc") {
        json5::from_str(&text).map_err(|e| fail(format!("not a Wrangler configuration: {e}")))?
    } else {
        toml::from_str(&text).map_err(|e| fail(format!("not a Wrangler configuration: {e}")))?
    };

    let bindings = parsed
        .durable_objects
        .map(|d| d.bindings)
        .unwrap_or_default();
    if bindings.is_empty() {
        return Err(fail(
            "it declares no Durable Objects (durable_objects.bindings is empty)".to_string(),
        ));
    }
    let mut objects = BTreeMap::new();
    let mut problems = Vec::new();
    for binding in bindings {
        if let Some(script) = binding.script_name {
            problems.push(format!(
                "binding {} uses class {} of another Worker ({script}), which is not served here",
                binding.name, binding.class_name
            ));
            continue;
        }
        objects.insert(binding.name, binding.class_name);
    }
    if !problems.is_empty() {
        return Err(fail(problems.join("; ")));
    }
    let manifest = Manifest::from_objects(objects).map_err(|e| fail(e.to_string()))?;
    let main = parsed
        .main
        .map(|main| path.parent().unwrap_or_else(|| Path::new(".")).join(main));
    Ok(WranglerConfig { main, manifest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str, text: &str) -> Result<WranglerConfig, BundleError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        read_wrangler(&path).map(|config| WranglerConfig {
            main: config
                .main
                .map(|m| m.strip_prefix(dir.path()).unwrap().to_path_buf()),
            ..config
        })
    }

    #[test]
    fn reads_bindings_and_main_from_toml_and_jsonc() {
        let toml = read(
            "wrangler.toml",
            "name = \"app\"\nmain = \"src/index.js\"\n\n[[durable_objects.bindings]]\n\
             name = \"COUNTER\"\nclass_name = \"Counter\"\n\n[[migrations]]\ntag = \"v1\"\n",
        )
        .unwrap();
        assert_eq!(toml.main, Some(PathBuf::from("src/index.js")));
        assert_eq!(toml.manifest.objects["COUNTER"], "Counter");

        let jsonc = read(
            "wrangler.jsonc",
            "{\n  // the app\n  \"main\": \"w.js\",\n  \"durable_objects\": {\n    \"bindings\": [\n\
             { \"name\": \"ROOMS\", \"class_name\": \"ChatRoom\" }, /* trailing comma: */\n    ],\n  },\n}\n",
        )
        .unwrap();
        assert_eq!(jsonc.manifest.objects["ROOMS"], "ChatRoom");
        assert_eq!(jsonc.main, Some(PathBuf::from("w.js")));
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        let err = read("wrangler.toml", "name = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wrangler.toml") && err.contains("no Durable Objects"),
            "{err}"
        );
        let err = read(
            "wrangler.toml",
            "[[durable_objects.bindings]]\nname = \"A\"\nclass_name = \"A\"\nscript_name = \"other\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("another Worker"), "{err}");
        let err = read("wrangler.json", "{ nope").unwrap_err().to_string();
        assert!(err.contains("not a Wrangler configuration"), "{err}");
    }
}
