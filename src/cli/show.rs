//! `xp show`: everything recorded about one run.

use std::io::Write;

use serde::Serialize;

use super::output::{ReportFormat, fixed4, or_dash, si, table, write_json};
use super::{Context, Result, exit};
use crate::report::trials::Trials;
use crate::store::decisions::Logged;
use crate::store::{Checkpoint, Liveness, RunRecord, RunState, Status};
use crate::summary::Summary;
use crate::sweep;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: run-N, N, or a prefix of its content key.
    run: String,
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
}

/// The latest value of one metric.
#[derive(Debug, Serialize)]
struct Latest {
    name: String,
    step: i64,
    value: f64,
}

/// Everything `show` reports, in either format.
#[derive(Debug, Serialize)]
struct Shown {
    #[serde(flatten)]
    run: RunRecord,
    /// For a running run: "alive", or why its process is believed dead.
    process: Option<String>,
    summary: Option<Summary>,
    latest_metrics: Vec<Latest>,
    checkpoints: Vec<Checkpoint>,
    /// Its early-stopping decisions, in the order taken.
    decisions: Vec<Logged>,
    /// The trial it is of a search, and the search's trials so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    trial: Option<crate::report::trials::TrialRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search: Option<Trials>,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_synced_store()?;
    let run = store.run(&args.run)?;
    let process = match &run.state {
        RunState::Running(lease) => Some(match lease.liveness_here() {
            Liveness::Alive => "alive".to_string(),
            Liveness::Dead(why) => format!("orphaned: {why}"),
        }),
        _ => None,
    };
    let mut latest_metrics = Vec::new();
    for name in store.metric_names(run.id)? {
        if let Some((step, value)) = store.latest_metric(run.id, &name)? {
            latest_metrics.push(Latest { name, step, value });
        }
    }
    let search = crate::report::trials::trials(&store, &run.experiment)?;
    let shown = Shown {
        process,
        summary: store.summary(run.id)?,
        latest_metrics,
        checkpoints: store.checkpoints(run.id)?,
        decisions: store.decisions_of_run(run.id)?,
        trial: search
            .as_ref()
            .and_then(|s| s.rows.iter().find(|t| t.run == run.name()).cloned()),
        search,
        run,
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => write_json(&mut out, &shown)?,
        ReportFormat::Table => render(&shown, &mut out)?,
    }
    Ok(exit::OK)
}

fn render(s: &Shown, out: &mut impl Write) -> std::io::Result<()> {
    let r = &s.run;
    writeln!(out, "{}  {}  ({})", r.name(), r.status(), r.experiment)?;
    let p = &r.provenance;
    let executed = p.executed.as_ref();
    let lease = r.state.lease();
    let dirty = match p.git_dirty {
        Some(true) => " (dirty)",
        _ => "",
    };
    // Where it runs (or last ran): the lease while running, else the latest attempt's host.
    let host = lease
        .and_then(|l| l.host.clone().map(|h| (h, l.pid)))
        .or_else(|| executed.and_then(|e| e.host.clone().map(|h| (h, Some(e.pid as i64)))))
        .or_else(|| p.host.clone().map(|h| (h, None)))
        .map(|(h, pid)| match pid {
            Some(pid) => format!("{h} (pid {pid})"),
            None => h,
        })
        .map(|h| match executed {
            Some(e) => format!("{h}, {}/{}", e.os, e.arch),
            None => h,
        });
    let facts = [
        ("key", Some(r.key.clone())),
        ("step", Some(format!("{}/{}", r.step, r.steps_total))),
        (
            "manifest",
            Some(format!(
                "{} (blake3 {})",
                r.manifest_path,
                &r.manifest_digest[..12.min(r.manifest_digest.len())]
            )),
        ),
        ("created", Some(r.created_at.clone())),
        ("started", r.started_at.clone()),
        ("finished", r.finished_at.clone()),
        ("heartbeat", lease.and_then(|l| l.heartbeat_at.clone())),
        ("process", s.process.clone()),
        ("attempts", (r.attempts > 0).then(|| r.attempts.to_string())),
        ("host", host),
        ("git", p.git_commit.as_ref().map(|c| format!("{c}{dirty}"))),
        (
            "xp",
            Some(
                executed
                    .map(|e| e.xp_version.clone())
                    .unwrap_or_else(|| p.xp_version.clone()),
            ),
        ),
        ("burn", executed.map(|e| e.burn_version.clone())),
        ("backend", r.backend.clone()),
        ("adapter", r.adapter.clone()),
        (
            "attention",
            executed
                .map(|e| e.attention.clone())
                .filter(|a| !a.is_empty()),
        ),
        ("params", Some(si(r.spec.params as f64))),
        ("error", r.state.reason().map(String::from)),
    ];
    for (name, value) in facts {
        if let Some(v) = value {
            writeln!(out, "  {name:<9} {v}")?;
        }
    }
    if let Some(summary) = &s.summary {
        writeln!(
            out,
            "  summary   best val {}  final val {}  final train {}  {} tok/s  {} s",
            fixed4(summary.best_val_loss),
            fixed4(summary.final_val_loss),
            fixed4(summary.final_train_loss),
            or_dash(summary.median_tokens_per_s, |v| si(v.round())),
            or_dash(summary.wall_s, |v| format!("{v:.1}")),
        )?;
    }
    if !s.latest_metrics.is_empty() {
        let latest: Vec<String> = s
            .latest_metrics
            .iter()
            .map(|m| {
                format!(
                    "{} {} @{}",
                    m.name,
                    sweep::short(&serde_json::json!(m.value)),
                    m.step
                )
            })
            .collect();
        writeln!(out, "  metrics   {}", latest.join(", "))?;
    }
    if let Some(place) = &r.spec.early_stop {
        let rungs: Vec<String> = place.steps.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "  early stopping: bracket {}, rungs at steps {}{}",
            place.bracket,
            rungs.join(", "),
            match (r.status(), r.until_step) {
                (Status::Paused, _) => format!("; paused at step {}, waiting", r.step),
                (s, Some(until)) if s.is_unfinished() => format!("; training to step {until}"),
                _ => String::new(),
            }
        )?;
    }
    for l in &s.decisions {
        let d = &l.decision;
        writeln!(
            out,
            "  {} at step {} (rung {}): value {:.4}; {}{}",
            d.action.done(),
            d.step,
            d.rung,
            d.value,
            d.reason,
            d.cutoff
                .map(|c| format!("; cut-off {c:.4}"))
                .unwrap_or_default(),
        )?;
    }
    if let (Some(t), Some(search)) = (&s.trial, &s.search) {
        writeln!(
            out,
            "trial {} of {}: {} (it saw {} ended trials)",
            t.trial, search.planned, t.how, t.seen
        )?;
        super::status::render_trials(search, out)?;
    }
    for c in &s.checkpoints {
        let val = c
            .val_loss
            .map(|v| format!("  val {v:.4}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  checkpoint step {} {} ({}B, blake3 {}){val}",
            c.step,
            c.path,
            si(c.bytes as f64),
            &c.blake3[..12.min(c.blake3.len())]
        )?;
    }
    let config = r.spec.settings();
    let mut t = table(vec!["setting".into(), "value".into(), "from".into()]);
    for (key, value) in config {
        let from = p.origins.get(&key).cloned().unwrap_or_default();
        t.add_row(vec![key, sweep::short(&value), from]);
    }
    writeln!(out, "{t}")
}
