//! `xp plan`: the runs a manifest would execute, with sizes, memory and tokens, before any training.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::load::load_and_plan;
use super::output::{Format, duration, si, write_csv, write_table};
use super::{Context, Result, exit};
use crate::count::Count;
use crate::forecast::{self, Forecast, Speeds};
use crate::manifest::layers;
use crate::report::status;
use crate::sweep::{self, Plan, RunSpec};

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
    /// Forecast with N runs training at once (default: the manifest's executor.jobs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    jobs: Option<u32>,
    /// Measure the speed of each model shape this machine has not trained (a short run of
    /// each, N at once, kept in the cache) before forecasting.
    #[arg(long)]
    measure: bool,
}

/// Speeds on this machine: from the store's runs and the probes' (what is missing of a
/// shape's is measured first with `measure`).
fn speeds(plan: &Plan, ctx: &Context, jobs: u32, measure: bool) -> Result<Speeds> {
    let own = if ctx.db.exists() {
        status::own_speeds(&ctx.open_existing_store()?)?
    } else {
        Speeds::default()
    };
    let probes = status::probe_store();
    if !probes.exists() && !measure {
        return Ok(own);
    }
    if let Some(dir) = probes.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            super::Error::Usage(format!(
                "cannot create the cache folder {}: {e}",
                dir.display()
            ))
        })?;
    }
    let mut store = crate::store::Store::open(&probes)?;
    let speeds = status::with_probes(&own, &store, Some(&ctx.db))?;
    if !measure {
        return Ok(speeds);
    }
    let missing: Vec<RunSpec> = forecast::shapes(plan, 64)
        .into_iter()
        .filter(|r| !speeds.has(&forecast::shape(&r.config, r.vocab_size), jobs))
        .collect();
    if missing.is_empty() {
        return Ok(speeds);
    }
    probe(&mut store, &probes, plan, &missing, jobs)?;
    Ok(status::with_probes(&own, &store, Some(&ctx.db))?)
}

/// Trains short runs of each shape, `jobs` at once, in the probe store: one evaluation interval
/// each (at most 500 steps), so that evaluations weigh as in the sweep.
fn probe(
    store: &mut crate::store::Store,
    db: &std::path::Path,
    plan: &Plan,
    shapes: &[RunSpec],
    jobs: u32,
) -> Result<()> {
    let mut runs = Vec::new();
    // Twice `jobs` copies of each shape: the first `jobs` at once start cold (their process
    // compiles the shape's kernels), the next `jobs` show the speed a sweep's later runs have.
    for spec in shapes {
        for copy in 0..2 * jobs {
            let mut run = spec.clone();
            let t = &mut run.config.train;
            t.steps = t.steps.min(t.eval_every.max(t.log_every).clamp(10, 500));
            t.warmup_steps = t.warmup_steps.min(t.steps / 2);
            t.seed = t.seed.wrapping_add(copy as u64);
            run.early_stop = None;
            run.swept = Vec::new();
            run.index = runs.len();
            // One probe per shape, copy and number at once, whatever else the run sets: a
            // shape measured once is not measured again.
            let shape = forecast::shape(&run.config, run.vocab_size);
            run.key = blake3::hash(format!("probe {shape} {copy} of {}", 2 * jobs).as_bytes())
                .to_hex()
                .to_string();
            run.tokens = crate::sweep::spec::tokens(&run.config);
            runs.push(run);
        }
    }
    let mut probe_plan = plan.clone();
    probe_plan.experiment.name = format!("probe-x{jobs}");
    probe_plan.runs = runs;
    probe_plan.early_stop = None;
    probe_plan.search = None;
    probe_plan.excluded = Vec::new();
    let origins = vec![Default::default(); probe_plan.runs.len()];
    let provenance = crate::store::Provenance {
        host: crate::exec::provenance::host(),
        ..Default::default()
    };
    store.enqueue(&probe_plan, &provenance, &origins)?;
    eprintln!(
        "measuring {} on this machine ({} at once, {} steps each) in {}",
        Count::numbered("model shape", shapes.len()),
        jobs,
        probe_plan.runs.first().map_or(0, |r| r.config.train.steps),
        db.display()
    );
    let devices = &plan.executor().devices;
    let workers = crate::exec::Workers { jobs, devices };
    super::progress::execute_in(
        store,
        db,
        crate::exec::Queue::Experiment(&probe_plan.experiment.name),
        false,
        &workers,
    )?;
    Ok(())
}

fn gb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e9)
}

/// Header and rows of the plan table: only the swept columns that vary.
/// With a forecast, each run's expected time (trained to its end).
pub fn rows(plan: &Plan, forecast: Option<&Forecast>) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = vec!["#".into(), "key".into()];
    header.extend(plan.varying.iter().cloned());
    header.extend(["params", "memory GB", "budget GB", "tokens"].map(String::from));
    if forecast.is_some() {
        header.push("time".into());
    }
    let rows = plan
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
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
            if let Some(f) = forecast {
                row.push(
                    f.per_run
                        .get(i)
                        .copied()
                        .flatten()
                        .map_or("?".into(), duration),
                );
            }
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
    if let Some(search) = &plan.search {
        line.push_str(&format!(
            "\nsearch: {}; these {} are chosen before any trial ends, the other {} as trials end",
            search.describe(),
            Count::numbered("trial", plan.runs.len()),
            search.trials.saturating_sub(plan.runs.len() as u64)
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

/// The forecast line under a plan.
fn forecast_line(plan: &Plan, forecast: Option<&Forecast>, speeds: &Speeds, jobs: u32) -> String {
    let at_once = format!("{} at once", jobs);
    let Some(f) = forecast else {
        let missing = forecast::shapes(plan, 64)
            .iter()
            .filter(|r| {
                speeds
                    .get(&forecast::shape(&r.config, r.vocab_size), jobs)
                    .is_none()
            })
            .count();
        return format!(
            "forecast: none — {} never trained on this machine; `xp plan --measure` \
             measures them (a short run of each)",
            Count::numbered("model shape", missing)
        );
    };
    if f.simulations > 1 {
        format!(
            "forecast ({at_once}): {} (P10–P90 {} – {}; {:.0} s, {:.0}–{:.0} s), {} steps \
             (median), over {} simulated outcomes of its decisions and trials",
            duration(f.p50),
            duration(f.p10),
            duration(f.p90),
            f.p50,
            f.p10,
            f.p90,
            si(f.steps as f64),
            f.simulations
        )
    } else {
        format!("forecast ({at_once}): {} ({:.0} s)", duration(f.p50), f.p50)
    }
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let (_, _, plan) = load_and_plan(&args.manifest, &args.sets)?;
    let jobs = args.jobs.unwrap_or(plan.executor().jobs.max(1));
    let speeds = speeds(&plan, ctx, jobs, args.measure)?;
    // JSON writes the plan alone: no simulations for it.
    let forecast = if matches!(args.format, Format::Json) {
        None
    } else {
        forecast::of_plan(&plan, &speeds, jobs)
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    match args.format {
        Format::Json => {
            // Streamed from the plan itself: a 100,000-run plan is ~100 MB of JSON.
            serde_json::to_writer(&mut out, &plan).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let (header, rows) = rows(&plan, forecast.as_ref());
            write_csv(&mut out, &header, &rows)?;
        }
        Format::Table => {
            let (header, rows) = rows(&plan, forecast.as_ref());
            writeln!(
                out,
                "experiment {} ({})",
                plan.experiment.name,
                plan.manifest.display()
            )?;
            write_table(&mut out, header, rows)?;
            writeln!(out, "{}", totals(&plan))?;
            writeln!(
                out,
                "{}",
                forecast_line(&plan, forecast.as_ref(), &speeds, jobs)
            )?;
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
