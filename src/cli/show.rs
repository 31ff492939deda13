//! `xp show`: everything recorded about one run.

use std::io::Write;

use super::{Context, Format, Result, exit, table};
use crate::manifest::layers::flatten;
use crate::sweep;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: run-N, N, or a prefix of its content key.
    run: String,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_existing_store()?;
    let r = store.run(&args.run)?;
    let mut out = std::io::stdout().lock();
    if args.format != Format::Table {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&r).expect("serializes")
        )?;
        return Ok(exit::OK);
    }
    writeln!(out, "{}  {}  ({})", r.name(), r.status, r.experiment)?;
    let executed = &r.provenance["executed"];
    let text = |v: &serde_json::Value| v.as_str().map(String::from);
    let liveness = (r.status == "running").then(|| {
        match crate::exec::liveness(&r, crate::exec::host().as_deref()) {
            crate::exec::Liveness::Alive => "alive".to_string(),
            crate::exec::Liveness::Dead(why) => format!("orphaned: {why}"),
        }
    });
    let dirty = match r.git_dirty {
        Some(true) => " (dirty)",
        _ => "",
    };
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
        ("heartbeat", r.heartbeat_at.clone()),
        ("process", liveness),
        ("attempts", (r.attempts > 0).then(|| r.attempts.to_string())),
        (
            "host",
            r.host
                .clone()
                .map(|h| match r.pid {
                    Some(pid) => format!("{h} (pid {pid})"),
                    None => h,
                })
                .map(|h| match text(&executed["os"]) {
                    Some(os) => {
                        format!("{h}, {os}/{}", text(&executed["arch"]).unwrap_or_default())
                    }
                    None => h,
                }),
        ),
        ("git", r.git_commit.as_ref().map(|c| format!("{c}{dirty}"))),
        (
            "xp",
            text(&executed["xp_version"]).or_else(|| text(&r.provenance["xp_version"])),
        ),
        ("burn", text(&executed["burn_version"])),
        ("backend", r.backend.clone()),
        ("adapter", r.adapter.clone()),
        (
            "params",
            r.spec["params"].as_u64().map(|p| super::si(p as f64)),
        ),
        ("error", r.error.clone()),
    ];
    for (name, value) in facts {
        if let Some(v) = value {
            writeln!(out, "  {name:<9} {v}")?;
        }
    }
    if let Some(summary) = store.summary(r.id)? {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "—".into());
        writeln!(
            out,
            "  summary   best val {}  final val {}  final train {}  {} tok/s  {} s",
            f(summary.best_val_loss),
            f(summary.final_val_loss),
            f(summary.final_train_loss),
            summary
                .median_tokens_per_s
                .map(|v| super::si(v.round()))
                .unwrap_or_else(|| "—".into()),
            summary
                .wall_s
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "—".into()),
        )?;
    }
    let names = store.metric_names(r.id)?;
    if !names.is_empty() {
        let mut latest = Vec::new();
        for name in &names {
            if let Some((step, v)) = store.latest_metric(r.id, name)? {
                latest.push(format!(
                    "{name} {} @{step}",
                    sweep::short(&serde_json::json!(v))
                ));
            }
        }
        writeln!(out, "  metrics   {}", latest.join(", "))?;
    }
    for c in store.checkpoints(r.id)? {
        let val = c
            .val_loss
            .map(|v| format!("  val {v:.4}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  checkpoint step {} {} ({}B, blake3 {}){val}",
            c.step,
            c.path,
            super::si(c.bytes as f64),
            &c.blake3[..12]
        )?;
    }
    let config = flatten(&r.spec["config"]);
    let origins = &r.provenance["origins"];
    let mut t = table(vec!["setting".into(), "value".into(), "from".into()]);
    for (key, value) in config {
        let from = origins
            .get(&key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        t.add_row(vec![key, sweep::short(&value), from]);
    }
    writeln!(out, "{t}")?;
    Ok(exit::OK)
}
