//! Checking a manifest tree against the JSON schema, in one pass that reports every problem.

use std::sync::OnceLock;

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value};

use super::diagnostic::Diagnostic;
use super::schema::{describe, enum_values, property_names, schema, schema_at};
use super::source::{Document, dotted, escape, segments};

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft7::new(schema()).expect("the generated schema is valid draft-07")
    })
}

/// A value as a user would write it: strings quoted, containers named.
pub fn show(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a table".into(),
        other => other.to_string(),
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// One schema violation, before it is placed in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// JSON pointer of the offending node (for an unknown key, the key itself).
    pub pointer: String,
    pub unknown_key: bool,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

/// Every violation of the schema in `value`, at most one per node.
pub fn violations(value: &Value) -> Vec<Violation> {
    let mut out: Vec<Violation> = Vec::new();
    for error in validator().iter_errors(value) {
        let pointer = error.instance_path().to_string();
        let path = segments(&pointer);
        if let ValidationErrorKind::AdditionalProperties { unexpected } = error.kind() {
            let known = schema_at(&path).map(property_names).unwrap_or_default();
            for name in unexpected {
                let child = format!("{pointer}/{}", escape(name));
                let section = if path.is_empty() {
                    "the top level".to_string()
                } else {
                    format!("[{}]", dotted(&pointer))
                };
                let help = match did_you_mean(name, known.iter().map(String::as_str)) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("valid keys: {}", known.join(", ")),
                };
                out.push(Violation {
                    pointer: child.clone(),
                    unknown_key: true,
                    message: format!("unknown key `{}`", dotted(&child)),
                    label: format!("not a key of {section}"),
                    help: Some(help),
                });
            }
            continue;
        }
        if out.iter().any(|v| {
            !v.unknown_key
                && (pointer.starts_with(&format!("{}/", v.pointer)) || v.pointer == pointer)
        }) {
            continue;
        }
        let found = value
            .pointer(&pointer)
            .map(show)
            .unwrap_or_else(|| "nothing".into());
        let (expected, help) = match schema_at(&path) {
            Some(node) => {
                let expected = describe(node);
                let help = match (value.pointer(&pointer), enum_values(node)) {
                    (Some(Value::String(s)), Some(options)) => {
                        did_you_mean(s, options.iter().map(String::as_str))
                            .map(|b| format!("did you mean \"{b}\"?"))
                    }
                    _ => None,
                };
                (expected, help)
            }
            None => (error.to_string(), None),
        };
        let key = if pointer.is_empty() {
            "the manifest".to_string()
        } else {
            format!("`{}`", dotted(&pointer))
        };
        out.retain(|v| v.unknown_key || !v.pointer.starts_with(&format!("{pointer}/")));
        out.push(Violation {
            pointer: pointer.clone(),
            unknown_key: false,
            message: format!("invalid value for {key}: found {found}"),
            label: format!("expected {expected}"),
            help,
        });
    }
    out
}

/// Violations of a whole parsed manifest, placed at their spans.
pub fn check_document(doc: &Document) -> Vec<Diagnostic> {
    violations(&doc.value)
        .into_iter()
        .map(|v| {
            let span = if v.unknown_key {
                doc.key_span(&v.pointer)
            } else {
                doc.value_span(&v.pointer)
            };
            let mut d = Diagnostic::at(span, dotted(&v.pointer), v.message).label(v.label);
            d.help = v.help;
            d
        })
        .collect()
}

/// Builds `{a: {b: value}}` for the dotted path `a.b`.
pub fn nest(path: &[&str], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| {
        let mut map = Map::new();
        map.insert((*key).to_string(), inner);
        Value::Object(map)
    })
}

/// Whether `key` (dotted, e.g. `model.ffn.unit`) names a setting a run can take, and if so
/// which violations `value` would cause there.
pub fn check_setting(key: &str, value: &Value) -> Result<Vec<Violation>, String> {
    let path: Vec<&str> = key.split('.').collect();
    let settable = matches!(
        path.first(),
        Some(&("experiment" | "model" | "data" | "train" | "hardware" | "executor"))
    );
    if !settable || path.iter().any(|s| s.is_empty()) || schema_at(&path).is_none() {
        return Err(unknown_setting_help(&path));
    }
    Ok(violations(&nest(&path, value.clone())))
}

fn unknown_setting_help(path: &[&str]) -> String {
    let mut prefix: Vec<&str> = Vec::new();
    let sections = [
        "experiment",
        "model",
        "data",
        "train",
        "hardware",
        "executor",
    ];
    for (i, segment) in path.iter().enumerate() {
        let candidates: Vec<String> = if i == 0 {
            sections.iter().map(|s| s.to_string()).collect()
        } else {
            schema_at(&prefix).map(property_names).unwrap_or_default()
        };
        if !candidates.iter().any(|c| c == segment) {
            let mut guess = prefix.clone();
            return match did_you_mean(segment, candidates.iter().map(String::as_str)) {
                Some(best) => {
                    guess.push(best);
                    format!("did you mean `{}`?", guess.join("."))
                }
                None if candidates.is_empty() => {
                    format!("`{}` has no keys below it", prefix.join("."))
                }
                None if prefix.is_empty() => {
                    format!("a key starts with one of: {}", candidates.join(", "))
                }
                None => format!("keys of `{}`: {}", prefix.join("."), candidates.join(", ")),
            };
        }
        prefix.push(segment);
    }
    "name a setting of the manifest".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_unknown_keys_with_suggestions() {
        let v = violations(&serde_json::json!({"model": {"lyers": 4}}));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].message, "unknown key `model.lyers`");
        assert_eq!(v[0].help.as_deref(), Some("did you mean `layers`?"));
    }

    #[test]
    fn reports_each_bad_value_once() {
        let v = violations(
            &serde_json::json!({"model": {"dropout": 1.5, "ffn": {"unit": "glw"}}, "train": {"steps": 0}}),
        );
        let messages: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "invalid value for `model.dropout`: found 1.5",
                "invalid value for `model.ffn.unit`: found \"glw\"",
                "invalid value for `train.steps`: found 0"
            ]
        );
        assert_eq!(v[1].help.as_deref(), Some("did you mean \"glu\"?"));
    }

    #[test]
    fn checks_settings_by_dotted_key() {
        assert!(
            check_setting("train.lr", &serde_json::json!(0.1))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            check_setting("train.lr", &serde_json::json!("x"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            check_setting("train.lrr", &serde_json::json!(1)).unwrap_err(),
            "did you mean `train.lr`?"
        );
        assert!(check_setting("sweep.where", &serde_json::json!("x")).is_err());
    }
}
