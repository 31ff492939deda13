//! The manifest's JSON schema (draft-07), generated from the types in `types.rs`.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use schemars::transform::{Transform, transform_subschemas};
use serde_json::Value;

use super::types::Manifest;

/// Where the committed copy lives, relative to the repository root.
pub const SCHEMA_PATH: &str = "schemas/experiment.schema.json";

/// Drops `default` annotations: a manifest value's real default depends on the preset and
/// hardware profile in force, so the struct defaults would mislead an editor's hover text.
#[derive(Clone)]
struct DropDefaults;

impl Transform for DropDefaults {
    fn transform(&mut self, schema: &mut schemars::Schema) {
        if let Some(object) = schema.as_object_mut() {
            object.remove("default");
        }
        transform_subschemas(self, schema);
    }
}

/// The schema as a JSON value.
pub fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let generator = SchemaSettings::draft07()
            .with_transform(DropDefaults)
            .into_generator();
        generator.into_root_schema_for::<Manifest>().to_value()
    })
}

/// The schema as committed: pretty JSON with a trailing newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(schema()).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// Resolves `$ref` pointers of the form `#/definitions/Name`, and the one-element `allOf`
/// that draft-07 output wraps a `$ref` in when it has a description beside it.
fn resolve(node: &Value) -> &Value {
    let mut node = node;
    loop {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let Some(name) = reference.strip_prefix("#/definitions/") else {
                return node;
            };
            match schema().get("definitions").and_then(|d| d.get(name)) {
                Some(target) => node = target,
                None => return node,
            }
        } else if let Some([only]) = node
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            node = only;
        } else {
            return node;
        }
    }
}

/// The sub-schema that describes the value at `path` (object keys only), if the schema
/// describes such a key. Alternatives (`anyOf`) are searched in order.
pub fn schema_at<'a, I, S>(path: I) -> Option<&'static Value>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str> + 'a,
{
    let mut node = resolve(schema());
    for segment in path {
        node = child(node, segment.as_ref())?;
    }
    Some(node)
}

fn child(node: &'static Value, key: &str) -> Option<&'static Value> {
    let node = resolve(node);
    if let Some(found) = node.get("properties").and_then(|p| p.get(key)) {
        return Some(resolve(found));
    }
    if let Some(alternatives) = node.get("anyOf").and_then(Value::as_array) {
        return alternatives.iter().find_map(|alt| child(alt, key));
    }
    match node.get("additionalProperties") {
        Some(Value::Bool(false)) | None => None,
        Some(Value::Bool(true)) => None,
        Some(other) => Some(resolve(other)),
    }
}

/// The property names an object schema allows (for "did you mean" hints).
pub fn property_names(node: &Value) -> Vec<String> {
    let node = resolve(node);
    let mut names: Vec<String> = node
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(alternatives) = node.get("anyOf").and_then(Value::as_array) {
        for alt in alternatives {
            names.extend(property_names(alt));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The string values an enumeration schema allows (`enum`, or a `oneOf` of `const`s).
pub fn enum_values(node: &Value) -> Option<Vec<String>> {
    let node = resolve(node);
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        return Some(
            values
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
        );
    }
    let alternatives = node
        .get("oneOf")
        .or_else(|| node.get("anyOf"))?
        .as_array()?;
    let mut out = Vec::new();
    for alt in alternatives.iter().map(resolve) {
        if let Some(c) = alt.get("const").and_then(Value::as_str) {
            out.push(c.to_string());
        } else if let Some(inner) = enum_values(alt) {
            out.extend(inner);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A short English description of what a schema accepts, e.g.
/// `an integer ≥ 1`, `one of "char", "gpt2"`, `a number in [0, 1], "learnable" or "cosine"`.
pub fn describe(node: &Value) -> String {
    let node = resolve(node);
    if let Some(alternatives) = node
        .get("anyOf")
        .or_else(|| node.get("oneOf"))
        .and_then(Value::as_array)
    {
        let alternatives: Vec<&Value> = alternatives
            .iter()
            .map(resolve)
            .filter(|alt| alt.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        // An enum whose variants carry doc comments comes out as a oneOf of consts.
        let consts: Option<Vec<String>> = alternatives
            .iter()
            .map(|a| a.get("const").map(Value::to_string))
            .collect();
        if let Some(consts) = consts {
            return format!("one of {}", consts.join(", "));
        }
        let parts: Vec<String> = alternatives.into_iter().map(describe).collect();
        return join_or(&parts);
    }
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        let parts: Vec<String> = values
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| v.to_string())
            .collect();
        return format!("one of {}", parts.join(", "));
    }
    if let Some(value) = node.get("const") {
        return value.to_string();
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => vec![],
    };
    let Some(kind) = types.first() else {
        return "a value".into();
    };
    match *kind {
        "integer" => format!("an integer{}", bounds(node)),
        "number" => format!("a number{}", bounds(node)),
        "string" => match node.get("pattern").and_then(Value::as_str) {
            Some(pattern) => format!("a string matching {pattern}"),
            None => "a string".into(),
        },
        "boolean" => "true or false".into(),
        "array" => match node.get("items") {
            Some(items @ Value::Object(_)) => format!("a list of {}", plural(&describe(items))),
            Some(Value::Array(tuple)) => {
                let parts: Vec<String> = tuple.iter().map(describe).collect();
                format!("a list of {} values [{}]", tuple.len(), parts.join(", "))
            }
            _ => "a list".into(),
        },
        "object" => {
            let names = property_names(node);
            if names.is_empty() {
                "a table".into()
            } else {
                format!("a table with keys {}", names.join(", "))
            }
        }
        other => format!("a {other}"),
    }
}

fn plural(description: &str) -> String {
    description
        .strip_prefix("an ")
        .or_else(|| description.strip_prefix("a "))
        .map(|rest| {
            let mut words = rest.splitn(2, ' ');
            let head = words.next().unwrap_or_default();
            let tail = words.next().map(|t| format!(" {t}")).unwrap_or_default();
            format!("{head}s{tail}")
        })
        .unwrap_or_else(|| description.to_string())
}

fn number(value: &Value) -> Option<String> {
    value.as_f64().map(|v| {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            format!("{v}")
        }
    })
}

fn bounds(node: &Value) -> String {
    let min = node.get("minimum").and_then(number);
    let xmin = node.get("exclusiveMinimum").and_then(number);
    let max = node.get("maximum").and_then(number);
    let xmax = node.get("exclusiveMaximum").and_then(number);
    let low = min
        .as_ref()
        .map(|m| ('[', m.clone()))
        .or(xmin.as_ref().map(|m| ('(', m.clone())));
    let high = max
        .as_ref()
        .map(|m| (']', m.clone()))
        .or(xmax.as_ref().map(|m| (')', m.clone())));
    match (low, high) {
        (Some((l, a)), Some((h, b))) => format!(" in {l}{a}, {b}{h}"),
        (Some(('[', a)), None) => format!(" ≥ {a}"),
        (Some((_, a)), None) => format!(" > {a}"),
        (None, Some((']', b))) => format!(" ≤ {b}"),
        (None, Some((_, b))) => format!(" < {b}"),
        (None, None) => String::new(),
    }
}

fn join_or(parts: &[String]) -> String {
    match parts {
        [] => "nothing".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_leaf_schemas() {
        let at = |p: &[&str]| describe(schema_at(p.iter().copied()).unwrap());
        assert_eq!(at(&["train", "steps"]), "an integer ≥ 1");
        assert_eq!(at(&["model", "dropout"]), "a number in [0, 1)");
        assert_eq!(at(&["data", "tokenizer"]), r#"one of "char", "gpt2""#);
        assert_eq!(
            at(&["model", "ffn", "alpha"]),
            r#"a number in [0, 1] or one of "learnable", "cosine""#
        );
    }

    #[test]
    fn finds_keys_and_rejects_unknown_ones() {
        assert!(schema_at(["model", "ffn", "unit"]).is_some());
        assert!(schema_at(["model", "lyers"]).is_none());
        assert!(schema_at(["sweep", "random", "train.lr"]).is_some());
        assert!(property_names(schema_at(["model"]).unwrap()).contains(&"layers".to_string()));
    }

    #[test]
    fn is_draft_07() {
        assert_eq!(
            schema()["$schema"],
            "http://json-schema.org/draft-07/schema#"
        );
    }
}
