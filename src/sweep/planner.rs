//! What planning one manifest knows, shared by its stages (`axes`, `points`, `resolve`, each
//! adding its methods): the manifest, the overrides, the profiles, the sweep's axes and the
//! problems found so far.

use serde_json::Value;

use crate::manifest::profiles::{HardwareProfile, Machine};
use crate::manifest::source::escape;
use crate::manifest::{Diagnostic, Diagnostics, Distribution, Loaded, Origin, Override};

#[derive(Debug, Clone)]
pub(super) struct Axis {
    pub(super) key: String,
    /// Pointer to the axis in the manifest document, for spans.
    pub(super) pointer: String,
    pub(super) kind: AxisKind,
}

#[derive(Debug, Clone)]
pub(super) enum AxisKind {
    /// Values with the pointer each came from.
    Values(Vec<(Value, String)>),
    Random(Distribution),
}

pub(super) fn located(doc: &crate::manifest::Document, pointer: &str, key_span: bool) -> Origin {
    Origin::File(if key_span {
        doc.key_span(pointer)
    } else {
        doc.value_span(pointer)
    })
}

/// What planning one manifest knows, shared by its stages: the manifest, the overrides, the
/// profiles, the axes, and the problems found so far.
pub(super) struct Planner<'a> {
    pub(super) loaded: &'a Loaded,
    pub(super) overrides: &'a [Override],
    pub(super) machine: &'a Machine,
    pub(super) profiles: Vec<HardwareProfile>,
    pub(super) diagnostics: Diagnostics,
    pub(super) axes: Vec<Axis>,
}

impl Planner<'_> {
    pub(super) fn doc(&self) -> &crate::manifest::Document {
        &self.loaded.doc
    }

    /// The sweep's search, its space in the order the manifest lists it.
    pub(super) fn search(&self) -> Option<crate::search::Search> {
        let section = self.loaded.manifest.sweep.search.as_ref()?;
        let order: Vec<String> = self
            .axes
            .iter()
            .filter(|a| a.pointer.starts_with("/sweep/search/"))
            .map(|a| a.key.clone())
            .collect();
        Some(super::searching::settings(section, &order))
    }

    /// Whether the user set `key` for this run (manifest, sweep or override), rather than a
    /// default, preset or profile.
    pub(super) fn explicit(&self, key: &str, point: &[(usize, String)]) -> bool {
        let pointer: String = key.split('.').map(|s| format!("/{}", escape(s))).collect();
        self.overrides.iter().any(|o| o.key == key)
            || point.iter().any(|(axis, _)| self.axes[*axis].key == key)
            || self.doc().has(&pointer)
    }

    /// Where the value of `key` for a run comes from, for pointing at it.
    pub(super) fn origin_of(&self, key: &str, point: &[(usize, String)]) -> Origin {
        let related = |a: &str| {
            a == key || key.starts_with(&format!("{a}.")) || a.starts_with(&format!("{key}."))
        };
        if let Some(o) = self.overrides.iter().rev().find(|o| related(&o.key)) {
            return o.origin.clone();
        }
        if let Some((_, pointer)) = point
            .iter()
            .find(|(axis, _)| related(&self.axes[*axis].key))
        {
            return located(self.doc(), pointer, false);
        }
        let pointer: String = key.split('.').map(|s| format!("/{}", escape(s))).collect();
        if self.doc().has(&pointer) {
            return located(self.doc(), &pointer, false);
        }
        // Values from a preset or profile: point at the line that chose it.
        let chooser = if key.starts_with("model.") {
            "/model/preset"
        } else {
            "/hardware/profile"
        };
        if self.doc().has(chooser) {
            return located(self.doc(), chooser, false);
        }
        Origin::File(None)
    }

    pub(super) fn problem(
        &mut self,
        origin: Origin,
        key: &str,
        message: String,
        label: String,
        help: Option<String>,
    ) {
        let mut d = Diagnostic::at(None, key, message)
            .origin(origin)
            .label(label);
        d.help = help;
        self.diagnostics.push(d);
    }
}
