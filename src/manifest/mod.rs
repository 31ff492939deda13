//! Manifests: TOML text → schema-checked [`Manifest`], plus the layers that resolve a run's config.

pub mod check;
pub mod diagnostic;
pub mod layers;
pub mod machine;
pub mod presets;
pub mod profiles;
pub mod schema;
pub mod source;
pub mod types;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

pub use diagnostic::{Diagnostic, Diagnostics, Origin};
pub use source::Document;
pub use types::*;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// A manifest that parsed and matches the schema.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    /// The path as shown in messages.
    pub display: String,
    pub text: Arc<String>,
    /// blake3 of the manifest bytes.
    pub digest: String,
    pub doc: Document,
    pub manifest: Manifest,
}

impl Loaded {
    /// The folder that relative paths in the manifest are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// An empty diagnostics list for this manifest.
    pub fn diagnostics(&self) -> Diagnostics {
        Diagnostics::new(self.display.clone(), self.text.clone())
    }
}

/// Reads and checks a manifest file.
pub fn load(path: &Path) -> Result<Loaded, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(path.display().to_string(), bytes, path)
}

/// Checks manifest bytes as if read from `path`.
pub fn parse_bytes(display: String, bytes: Vec<u8>, path: &Path) -> Result<Loaded, Error> {
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let mut diagnostics = Diagnostics::new(display, Arc::new(text));
            diagnostics.push(
                Diagnostic::at(Some(valid..valid), "", "the manifest is not valid UTF-8")
                    .label("invalid byte here")
                    .help("TOML files must be UTF-8 text"),
            );
            return Err(Error::Invalid(diagnostics));
        }
    };
    parse(display, text, path)
}

/// Checks manifest text as if read from `path`.
pub fn parse(display: String, text: String, path: &Path) -> Result<Loaded, Error> {
    let text = Arc::new(text);
    let mut diagnostics = Diagnostics::new(display.clone(), text.clone());
    let (doc, syntax) = Document::parse(&text);
    if !syntax.is_empty() {
        diagnostics.extend(syntax);
        diagnostics.sort();
        return Err(Error::Invalid(diagnostics));
    }
    diagnostics.extend(check::check_document(&doc));
    if !diagnostics.is_empty() {
        diagnostics.sort();
        return Err(Error::Invalid(diagnostics));
    }
    let mut manifest: Manifest = match serde_json::from_value(doc.value.clone()) {
        Ok(m) => m,
        Err(e) => {
            // The schema and the types come from one definition, so this means a bug in xp.
            diagnostics.push(Diagnostic::at(
                None,
                "",
                format!("internal error: schema accepted what the types reject: {e}"),
            ));
            return Err(Error::Invalid(diagnostics));
        }
    };
    if manifest.experiment.name.is_empty() {
        manifest.experiment.name = default_name(path);
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        display,
        digest: blake3::hash(text.as_bytes()).to_hex().to_string(),
        text,
        doc,
        manifest,
    })
}

fn default_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "experiment".into()
    } else {
        cleaned
    }
}

/// A value set from outside the manifest: an `XP_…` variable or a `--set` flag.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted key, e.g. `train.lr`.
    pub key: String,
    pub value: Value,
    pub origin: Origin,
}

/// Parses a command-line or environment value as a TOML value, or else takes it as a string,
/// so that `--set model.ffn.unit=glu` needs no quotes.
pub fn parse_value(text: &str) -> Value {
    let (doc, errors) = Document::parse(&format!("v = {text}"));
    match (errors.is_empty(), doc.value.get("v")) {
        (true, Some(v)) => v.clone(),
        _ => Value::String(text.to_string()),
    }
}

/// Collects overrides from `XP_SECTION__KEY` variables (double underscore between levels,
/// so that `XP_DB` and `XP_LOG` stay xp's own settings) and `--set key=value` flags,
/// checking each against the schema.
pub fn overrides(
    env: impl IntoIterator<Item = (String, String)>,
    sets: &[String],
) -> (Vec<Override>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("XP_") && k.contains("__"))
        .collect();
    env.sort();
    let env_items = env.into_iter().map(|(var, value)| {
        let key = var["XP_".len()..].to_lowercase().replace("__", ".");
        (key, value.clone(), Origin::Env(var))
    });
    let set_items = sets.iter().map(|s| match s.split_once('=') {
        Some((k, v)) => (k.trim().to_string(), v.to_string(), Origin::Flag(s.clone())),
        None => (String::new(), s.clone(), Origin::Flag(s.clone())),
    });
    for (key, raw, origin) in env_items.chain(set_items) {
        if key.is_empty() {
            problems.push(
                Diagnostic::at(None, "", "a --set flag needs the form key=value")
                    .origin(origin)
                    .label("for example --set train.lr=3e-4"),
            );
            continue;
        }
        let value = parse_value(&raw);
        match check::check_setting(&key, &value) {
            Err(help) => problems.push(
                Diagnostic::at(None, key.clone(), format!("unknown setting `{key}`"))
                    .origin(origin)
                    .help(help),
            ),
            Ok(violations) if !violations.is_empty() => {
                for v in violations {
                    let mut d = Diagnostic::at(None, key.clone(), v.message)
                        .origin(origin.clone())
                        .label(v.label);
                    d.help = v.help;
                    problems.push(d);
                }
            }
            Ok(_) => out.push(Override { key, value, origin }),
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_override_values() {
        assert_eq!(parse_value("3e-4"), serde_json::json!(3e-4));
        assert_eq!(parse_value("glu"), serde_json::json!("glu"));
        assert_eq!(parse_value("\"glu\""), serde_json::json!("glu"));
        assert_eq!(parse_value("[1, 2]"), serde_json::json!([1, 2]));
        assert_eq!(parse_value("true"), serde_json::json!(true));
    }

    #[test]
    fn collects_env_and_flags() {
        let env = vec![
            ("XP_TRAIN__LR".to_string(), "0.01".to_string()),
            ("XP_DB".to_string(), "x.db".to_string()),
            ("XP_MODEL__LAYRS".to_string(), "2".to_string()),
        ];
        let (ok, bad) = overrides(
            env,
            &["model.ffn.unit=glu".into(), "train.steps=zero".into()],
        );
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].key, "train.lr");
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].message, "unknown setting `model.layrs`");
        assert_eq!(
            bad[1].message,
            "invalid value for `train.steps`: found \"zero\""
        );
    }
}
