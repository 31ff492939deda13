//! What the benchmarks train: a manifest planned through the same checks as a user's, and a
//! job whose checkpoints go to a scratch folder.

use std::path::Path;

use super::super::{Error, Result, load};
use crate::manifest;
use crate::sweep;

/// A run of a benchmark's plan, with its checkpoints in a scratch folder of this process
/// (the caller removes it).
pub(super) fn scratch_job<'a>(
    name: &str,
    spec: &'a sweep::RunSpec,
    device: Option<u32>,
) -> crate::train::Job<'a> {
    crate::train::Job {
        spec,
        base_dir: std::path::PathBuf::from("."),
        checkpoint_dir: std::env::temp_dir().join(format!("{name}-{}", std::process::id())),
        resume: None,
        device,
        until: None,
    }
}

/// Plans a benchmark's manifest, given as a typed value: it is written out as TOML by the toml
/// crate and read back through the same checks as a user's manifest, so every value is quoted
/// and escaped as TOML wants.
pub(super) fn plan(
    name: &str,
    manifest: &impl serde::Serialize,
    sets: &[String],
) -> Result<sweep::Plan> {
    let text = toml::to_string(manifest)
        .map_err(|e| Error::Failed(format!("cannot write the benchmark's manifest: {e}")))?;
    let loaded = manifest::parse(name.into(), text, Path::new(name))?;
    let (overrides, problems) = manifest::overrides(std::iter::empty::<(String, String)>(), sets);
    if !problems.is_empty() {
        let mut d = loaded.diagnostics();
        d.extend(problems);
        return Err(manifest::Error::Invalid(d).into());
    }
    Ok(sweep::plan(&loaded, &overrides, &load::machine()).map_err(manifest::Error::Invalid)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_written_as_toml_with_any_characters() {
        // A name a `{:?}` format would escape as Rust does, not as TOML does.
        let m = serde_json::json!({
            "experiment": { "name": "bench", "description": "tab\there, quote \" and é \u{7f}" },
            "model": { "preset": "tiny" },
            "hardware": { "profile": "cpu" },
        });
        let plan = plan("bench.toml", &m, &[]).unwrap();
        assert_eq!(
            plan.runs[0].config.experiment.description,
            "tab\there, quote \" and é \u{7f}"
        );
    }
}
