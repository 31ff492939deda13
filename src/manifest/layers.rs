//! Layering with figment: defaults < hardware profile < preset < manifest < sweep < `XP_…` < `--set`.

use figment::value::{Dict, Map as FigmentMap};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::{Map, Value};

use super::types::Config;

/// One named layer of settings.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub value: Value,
}

impl Layer {
    pub fn new(name: impl Into<String>, value: Value) -> Self {
        Self {
            name: name.into(),
            value,
        }
    }

    /// The value this layer gives a dotted key, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        key.split('.')
            .try_fold(&self.value, |node, segment| node.get(segment))
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<FigmentMap<Profile, Dict>, figment::Error> {
        figment::providers::Serialized::defaults(&self.value).data()
    }
}

/// Merges layers, lowest first.
pub fn figment(layers: &[Layer]) -> Figment {
    layers
        .iter()
        .fold(Figment::new(), |f, layer| f.merge(layer.clone()))
}

/// The resolved config of the merged layers.
pub fn resolve(layers: &[Layer]) -> Result<Config, Box<figment::Error>> {
    figment(layers).extract().map_err(Box::new)
}

/// Which layer gave `key` its value, and every layer's value for it, lowest first.
pub fn explain(layers: &[Layer], key: &str) -> (Option<String>, Vec<(String, Value)>) {
    let winner = figment(layers)
        .find_metadata(key)
        .map(|m| m.name.to_string());
    let chain = layers
        .iter()
        .filter_map(|l| l.get(key).map(|v| (l.name.clone(), v.clone())))
        .collect();
    (winner, chain)
}

/// Leaf values of a JSON tree by dotted key.
pub fn flatten(tree: &Value) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack: Vec<(String, &Value)> = vec![(String::new(), tree)];
    while let Some((prefix, node)) = stack.pop() {
        match node {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    stack.push((key, v));
                }
            }
            leaf => {
                out.insert(prefix, leaf.clone());
            }
        }
    }
    out
}

/// For every leaf setting of a resolved config, the name of the layer that gave it.
pub fn origins(layers: &[Layer], resolved: &Value) -> std::collections::BTreeMap<String, String> {
    let f = figment(layers);
    flatten(resolved)
        .into_keys()
        .map(|key| {
            let name = f
                .find_metadata(&key)
                .map(|m| m.name.to_string())
                .unwrap_or_else(|| "built-in defaults".into());
            (key, name)
        })
        .collect()
}

/// Sets a dotted key in a JSON tree, merging tables into tables as figment does.
pub fn set(tree: &mut Value, key: &str, value: &Value) {
    let mut node = tree;
    let mut segments = key.split('.').peekable();
    while let Some(segment) = segments.next() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().expect("made an object above");
        if segments.peek().is_none() {
            match (map.get_mut(segment), value) {
                (Some(existing @ Value::Object(_)), Value::Object(incoming)) => {
                    for (k, v) in incoming {
                        set(existing, k, v);
                    }
                }
                _ => {
                    map.insert(segment.to_string(), value.clone());
                }
            }
            return;
        }
        node = map
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn later_layers_win_and_are_named() {
        let layers = vec![
            Layer::new(
                "built-in defaults",
                serde_json::to_value(Config::default()).unwrap(),
            ),
            Layer::new("preset `tiny`", json!({"model": {"layers": 2, "dim": 64}})),
            Layer::new(
                "manifest",
                json!({"model": {"dim": 96}, "train": {"lr": 0.01}}),
            ),
            Layer::new("--set train.lr=0.02", json!({"train": {"lr": 0.02}})),
        ];
        let config = resolve(&layers).unwrap();
        assert_eq!(
            (config.model.layers, config.model.dim, config.train.lr),
            (2, 96, 0.02)
        );
        let (winner, chain) = explain(&layers, "train.lr");
        assert_eq!(winner.as_deref(), Some("--set train.lr=0.02"));
        assert_eq!(chain.len(), 3);
    }

    #[test]
    fn set_merges_tables() {
        let mut tree = json!({"model": {"ffn": {"unit": "mlp", "hidden_mult": 4}}});
        set(&mut tree, "model.ffn", &json!({"unit": "glu"}));
        set(&mut tree, "train.lr", &json!(0.1));
        assert_eq!(
            tree,
            json!({"model": {"ffn": {"unit": "glu", "hidden_mult": 4}}, "train": {"lr": 0.1}})
        );
    }
}
