//! Parsing manifest text into a JSON tree that remembers where every key and value stood.

use std::collections::HashMap;
use std::ops::Range;

use serde_json::{Map, Number, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::Diagnostic;

/// Key and value spans of one node.
#[derive(Debug, Clone)]
pub struct NodeSpan {
    pub key: Option<Range<usize>>,
    pub value: Range<usize>,
}

/// A parsed manifest: its JSON tree and the spans of its nodes, by JSON pointer.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub value: Value,
    spans: HashMap<String, NodeSpan>,
}

/// Escapes one JSON-pointer segment (RFC 6901).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The segments of a JSON pointer.
pub fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// A JSON pointer as a dotted manifest key: `/sweep/grid/model.ffn.unit` → `sweep.grid."model.ffn.unit"`.
pub fn dotted(pointer: &str) -> String {
    segments(pointer)
        .iter()
        .map(|s| {
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                s.clone()
            } else {
                format!("{s:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl Document {
    /// Parses TOML text. Syntax errors are returned as diagnostics; the tree then holds what
    /// the parser could recover, which callers must not validate further.
    pub fn parse(text: &str) -> (Document, Vec<Diagnostic>) {
        let (table, errors) = DeTable::parse_recoverable(text);
        // After an unclosed bracket or string the recovering parser reports every later token
        // as a new error; only the unclosed construct is worth showing then.
        let unclosed: Vec<_> = errors
            .iter()
            .filter(|e| e.message().contains("unclosed"))
            .cloned()
            .collect();
        let errors = if unclosed.is_empty() {
            errors
        } else {
            unclosed
        };
        let mut diagnostics: Vec<Diagnostic> = errors
            .iter()
            .map(|e| {
                let message = e.message().trim_end().to_string();
                Diagnostic::at(e.span(), "", format!("TOML syntax error: {message}")).label("here")
            })
            .collect();
        let mut doc = Document::default();
        if diagnostics.is_empty() {
            let span = table.span();
            doc.value = doc.convert_table(table.get_ref(), "", &mut diagnostics);
            doc.spans.insert(
                String::new(),
                NodeSpan {
                    key: None,
                    value: span,
                },
            );
        }
        (doc, diagnostics)
    }

    fn convert_table(
        &mut self,
        table: &DeTable<'_>,
        pointer: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Value {
        let mut map = Map::new();
        for (key, value) in table.iter() {
            let child = format!("{pointer}/{}", escape(key.get_ref()));
            let converted = self.convert(value, &child, diagnostics);
            self.spans.insert(
                child,
                NodeSpan {
                    key: Some(key.span()),
                    value: value.span(),
                },
            );
            map.insert(key.get_ref().to_string(), converted);
        }
        Value::Object(map)
    }

    fn convert(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        pointer: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Value {
        match value.get_ref() {
            DeValue::String(s) => Value::String(s.to_string()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Value::Number(n.into()),
                Err(_) => {
                    diagnostics.push(
                        Diagnostic::at(Some(value.span()), dotted(pointer), "integer out of range")
                            .label("must fit in a signed 64-bit integer"),
                    );
                    Value::Null
                }
            },
            DeValue::Float(f) => match f.as_str().parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) => Value::Number(n),
                None => {
                    diagnostics.push(
                        Diagnostic::at(
                            Some(value.span()),
                            dotted(pointer),
                            format!("`{}` is not a finite number", f.as_str()),
                        )
                        .label("nan and inf are not accepted"),
                    );
                    Value::Null
                }
            },
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::String(d.to_string()),
            DeValue::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let child = format!("{pointer}/{i}");
                        let converted = self.convert(item, &child, diagnostics);
                        self.spans.insert(
                            child,
                            NodeSpan {
                                key: None,
                                value: item.span(),
                            },
                        );
                        converted
                    })
                    .collect(),
            ),
            DeValue::Table(t) => self.convert_table(t, pointer, diagnostics),
        }
    }

    /// The span of the value at `pointer`, or of its nearest ancestor that has one.
    pub fn value_span(&self, pointer: &str) -> Option<Range<usize>> {
        self.nearest(pointer).map(|s| s.value.clone())
    }

    /// The span of the key at `pointer` (falling back to the value's, then the nearest ancestor's).
    pub fn key_span(&self, pointer: &str) -> Option<Range<usize>> {
        self.nearest(pointer)
            .map(|s| s.key.clone().unwrap_or_else(|| s.value.clone()))
    }

    /// Whether the manifest itself sets this pointer.
    pub fn has(&self, pointer: &str) -> bool {
        self.spans.contains_key(pointer)
    }

    fn nearest(&self, pointer: &str) -> Option<&NodeSpan> {
        let mut p = pointer;
        loop {
            if let Some(span) = self.spans.get(p) {
                return Some(span);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_locates() {
        let text = "[model]\nlayers = 4\nffn = { unit = \"glu\" }\n[sweep.grid]\n\"train.lr\" = [1e-3, 5e-4]\n";
        let (doc, diags) = Document::parse(text);
        assert!(diags.is_empty());
        assert_eq!(doc.value["model"]["layers"], 4);
        assert_eq!(doc.value["sweep"]["grid"]["train.lr"][1], 5e-4);
        let span = doc.value_span("/model/ffn/unit").unwrap();
        assert_eq!(&text[span], "\"glu\"");
        let span = doc.key_span("/sweep/grid/train.lr").unwrap();
        assert_eq!(&text[span], "\"train.lr\"");
        assert_eq!(
            &text[doc.value_span("/sweep/grid/train.lr/1").unwrap()],
            "5e-4"
        );
        assert_eq!(dotted("/sweep/grid/train.lr"), "sweep.grid.\"train.lr\"");
    }

    #[test]
    fn reports_every_syntax_error() {
        let (_, diags) = Document::parse("a = \nb = [1,\nc = 'x");
        assert!(!diags.is_empty());
        assert!(
            diags
                .iter()
                .all(|d| d.message.starts_with("TOML syntax error"))
        );
    }

    #[test]
    fn rejects_non_finite_floats() {
        let (_, diags) = Document::parse("x = nan\ny = -inf\n");
        assert_eq!(diags.len(), 2);
    }
}
