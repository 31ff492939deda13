//! `xp profiles`: the hardware profiles, with their values, and which one `auto` picks here.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use super::output::{Format, write_csv, write_json, write_table};
use super::{Context, Result, exit};
use crate::manifest::{self, profiles};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Include the `[profiles]` of this manifest.
    manifest: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(args: Args, _ctx: &Context) -> Result<u8> {
    let defs = match &args.manifest {
        Some(path) => manifest::load(path)?.manifest.profiles,
        None => BTreeMap::new(),
    };
    let machine = super::load::machine();
    let all = match profiles::all(&defs, &machine) {
        Ok(all) => all,
        Err(e) => return Err(super::Error::Usage(e.to_string())),
    };
    let (auto, why) = profiles::auto(&machine);
    let mut out = std::io::stdout().lock();
    let header: Vec<String> = [
        "profile",
        "devices",
        "memory GB",
        "budget GB",
        "batch",
        "accum",
        "precision",
        "loaders",
        "description",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|p| {
            let devices: Vec<String> = p
                .device_order
                .iter()
                .map(|d| {
                    serde_json::to_value(d)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                })
                .collect();
            vec![
                if p.name == auto {
                    format!("{} (auto)", p.name)
                } else {
                    p.name.clone()
                },
                devices.join(" > "),
                format!("{}", p.memory_gb),
                format!("{}", p.memory_budget_gb),
                p.batch_size.to_string(),
                p.grad_accum.to_string(),
                serde_json::to_value(p.precision)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                p.loader_threads.to_string(),
                p.description.clone(),
            ]
        })
        .collect();
    match args.format {
        Format::Json => {
            let value = serde_json::json!({ "auto": auto, "auto_reason": why, "machine": machine, "profiles": all });
            write_json(&mut out, &value)?;
        }
        Format::Csv => write_csv(&mut out, &header, &rows)?,
        Format::Table => {
            write_table(&mut out, header, rows)?;
            if !machine.gpus.is_empty() {
                writeln!(out, "GPUs found:")?;
            }
            for (i, g) in machine.gpus.iter().enumerate() {
                let memory = match g.memory_gb {
                    Some(gb) => format!("{gb} GB ({})", g.memory_source),
                    None => g.memory_source.clone(),
                };
                writeln!(
                    out,
                    "  {i}: {} [{:?}, {}, {:?}, driver {} {}] f16 {}, cooperative matrices {}, memory {memory}",
                    g.name,
                    g.vendor,
                    g.api,
                    g.kind,
                    g.driver,
                    g.driver_info,
                    if g.shader_f16 { "yes" } else { "no" },
                    if g.cooperative_matrix { "yes" } else { "no" },
                )?;
            }
            writeln!(out, "auto → {auto}: {why}")?;
        }
    }
    Ok(exit::OK)
}
