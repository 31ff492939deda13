//! `xp bench`: measurements of xp itself — the run store's ingest and size (`store`), training
//! speed of one configuration (`train`) and the dashboard's speed (`ui`).

mod conformance;
mod store;
mod train;
mod ui;

use std::path::Path;

use super::{Context, Result};
use crate::manifest;
use crate::sweep;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Fill a fresh store with R runs × S steps × 3 metrics and report rows/s and bytes/row.
    Store(store::Args),
    /// Train a model preset for a few steps and report its speed: tokens/s, step time,
    /// first-step time, peak memory, backend and adapter.
    Train(train::Args),
    /// Check the GPU against the CPU: logits, loss and gradients of xp's model at every
    /// sequence length and at odd shapes, the attention's kernels one by one, and greedy text
    /// from a trained checkpoint. Exit 1 if any case is outside its tolerance.
    Conformance(conformance::Args),
    /// Time the dashboard on a large store: the runs table, a 100,000-step curve, and the
    /// first page in headless Chromium (when chromium and chromedriver are installed).
    Ui(ui::Args),
}

pub fn run(args: Args, _ctx: &Context) -> Result<u8> {
    match args.what {
        What::Store(a) => store::run(a),
        What::Train(a) => train::run(a),
        What::Ui(a) => ui::run(a),
        What::Conformance(a) => conformance::run(a),
    }
}

/// A run of a benchmark's plan, with its checkpoints in a scratch folder of this process
/// (the caller removes it).
fn scratch_job<'a>(
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
    }
}

/// Plans a benchmark's manifest, given as a typed value: it is written out as TOML by the toml
/// crate and read back through the same checks as a user's manifest, so every value is quoted
/// and escaped as TOML wants.
fn plan(name: &str, manifest: &impl serde::Serialize, sets: &[String]) -> Result<sweep::Plan> {
    let text = toml::to_string(manifest)
        .map_err(|e| super::Error::Failed(format!("cannot write the benchmark's manifest: {e}")))?;
    let loaded = manifest::parse(name.into(), text, Path::new(name))?;
    let (overrides, problems) = manifest::overrides(std::iter::empty::<(String, String)>(), sets);
    if !problems.is_empty() {
        let mut d = loaded.diagnostics();
        d.extend(problems);
        return Err(manifest::Error::Invalid(d).into());
    }
    Ok(sweep::plan(&loaded, &overrides, &super::load::machine())
        .map_err(manifest::Error::Invalid)?)
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
