//! `xp plan`: the runs a manifest would execute, with sizes, memory and tokens, before any training.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::load::load_and_plan;
use super::output::{Format, si, write_csv, write_table};
use super::{Context, Result, exit};
use crate::count::Count;
use crate::manifest::layers;
use crate::sweep::{self, Plan};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest to plan.
    manifest: PathBuf,
    /// Override a setting, e.g. --set train.lr=3e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Say which layer each value of KEY came from (repeatable).
    #[arg(long, value_name = "KEY")]
    explain: Vec<String>,
}

fn gb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e9)
}

/// Header and rows of the plan table: only the swept columns that vary.
pub fn rows(plan: &Plan) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = vec!["#".into(), "key".into()];
    header.extend(plan.varying.iter().cloned());
    header.extend(["params", "memory GB", "budget GB", "tokens"].map(String::from));
    let rows = plan
        .runs
        .iter()
        .map(|r| {
            let mut row = vec![r.index.to_string(), r.key[..10].to_string()];
            for key in &plan.varying {
                let v = r
                    .swept
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| sweep::short(v))
                    .unwrap_or_default();
                row.push(v);
            }
            row.push(si(r.params as f64));
            row.push(gb(r.memory.total));
            row.push(format!("{}", r.config.hardware.memory_budget_gb));
            row.push(si(r.tokens as f64));
            row
        })
        .collect();
    (header, rows)
}

/// The totals line under a plan.
pub fn totals(plan: &Plan) -> String {
    let tokens: u64 = plan.runs.iter().map(|r| r.tokens).sum();
    let peak = plan.runs.iter().map(|r| r.memory.total).max().unwrap_or(0);
    let mut line = format!(
        "{}, {} tokens in all, peak estimated memory {} GB",
        Count::numbered("run", plan.runs.len()),
        si(tokens as f64),
        gb(peak)
    );
    if !plan.excluded.is_empty() {
        line.push_str(&format!("; {} removed by sweep.where", plan.excluded.len()));
    }
    if plan.merged > 0 {
        line.push_str(&format!(
            "; {} identical to an earlier run, merged",
            plan.merged
        ));
    }
    if let (Some(settings), Some(first)) = (&plan.early_stop, plan.runs.first()) {
        let steps = first.config.train.steps;
        let brackets: Vec<String> = (0..settings.brackets)
            .map(|b| {
                let rungs: Vec<String> = settings
                    .rungs(b, steps)
                    .iter()
                    .map(u64::to_string)
                    .collect();
                if rungs.is_empty() {
                    "none".to_string()
                } else {
                    rungs.join(", ")
                }
            })
            .collect();
        line.push_str(&format!(
            "\nearly stopping: {}; rungs at steps {} of {steps}",
            settings.describe(),
            brackets.join(" | ")
        ));
    }
    line
}

fn explain(out: &mut impl Write, plan: &Plan, key: &str) -> std::io::Result<()> {
    if let Some(axis) = plan
        .axes
        .iter()
        .find(|a| *a == key || key.starts_with(&format!("{a}.")))
    {
        let mut values: Vec<String> = Vec::new();
        for r in &plan.runs {
            let v = sweep::get(&r.config, key)
                .map(|v| sweep::short(&v))
                .unwrap_or_default();
            if !values.contains(&v) {
                values.push(v);
            }
        }
        return writeln!(
            out,
            "{key}: swept by the manifest (axis `{axis}`): {}",
            values.join(", ")
        );
    }
    let resolved = plan.runs.first().and_then(|r| sweep::get(&r.config, key));
    let (winner, chain) = layers::explain(&plan.layers, key);
    match resolved {
        None => writeln!(out, "{key}: not a setting"),
        Some(value) => {
            let source = winner.unwrap_or_else(|| "built-in defaults".into());
            writeln!(out, "{key} = {}  (from {source})", sweep::short(&value))?;
            for (layer, v) in chain {
                let mark = if layer == source {
                    "  ← in force"
                } else {
                    ""
                };
                writeln!(out, "  {layer:<40} {}{mark}", sweep::short(&v))?;
            }
            Ok(())
        }
    }
}

pub fn run(args: Args, _ctx: &Context) -> Result<u8> {
    let (_, _, plan) = load_and_plan(&args.manifest, &args.sets)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    match args.format {
        Format::Json => {
            // Streamed from the plan itself: a 100,000-run plan is ~100 MB of JSON.
            serde_json::to_writer(&mut out, &plan).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let (header, rows) = rows(&plan);
            write_csv(&mut out, &header, &rows)?;
        }
        Format::Table => {
            let (header, rows) = rows(&plan);
            writeln!(
                out,
                "experiment {} ({})",
                plan.experiment.name,
                plan.manifest.display()
            )?;
            write_table(&mut out, header, rows)?;
            writeln!(out, "{}", totals(&plan))?;
        }
    }
    for key in &args.explain {
        explain(&mut out, &plan, key)?;
    }
    out.flush()?;
    // The process ends here: freeing a 100,000-run plan piece by piece would cost a tenth of
    // the command's time for nothing.
    std::mem::forget(plan);
    Ok(exit::OK)
}
