//! `xp bench ui`: the dashboard's speed on a large store — how long the runs table and a long
//! curve take to answer, and how soon the first page is interactive in headless Chromium.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::super::output::si;
use super::super::{Error, Result, exit};
use crate::store::Store;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs of the table (each a curve of --steps steps).
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Steps per run.
    #[arg(long, default_value_t = 10_000)]
    steps: u64,
    /// Steps of the one long run whose curve is timed.
    #[arg(long, default_value_t = 100_000)]
    long_steps: u64,
    /// The store: filled if it does not exist, else reused as it is (filling takes a while).
    #[arg(long, value_name = "FILE", default_value = "bench-ui.db")]
    out: PathBuf,
    /// Times each request this many times.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Loads of the first page in the browser.
    #[arg(long, default_value_t = 5)]
    loads: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn worst(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

pub fn run(a: Args) -> Result<u8> {
    if a.runs == 0 || a.steps == 0 || a.long_steps == 0 || a.repeat == 0 {
        return Err(Error::Usage(
            "--runs, --steps, --long-steps and --repeat must be at least 1".into(),
        ));
    }
    let mut out = std::io::stdout().lock();
    if !a.out.exists() {
        writeln!(
            out,
            "filling {} with {} runs × {} steps and one run of {} steps (3 metrics each)",
            a.out.display(),
            a.runs,
            a.steps,
            a.long_steps
        )?;
        let mut store = Store::open(&a.out)?;
        super::store::fill(&mut store, "bench-ui", a.runs, a.steps, false)?;
        super::store::fill(&mut store, "bench-ui-long", 1, a.long_steps, false)?;
    } else {
        writeln!(out, "reusing {}", a.out.display())?;
    }
    let (long, runs) = {
        let store = Store::open_existing(&a.out)?;
        let conn = store.connection();
        let pick = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
        (
            pick("SELECT run_id FROM metrics GROUP BY run_id ORDER BY count(*) DESC LIMIT 1")
                .map_err(crate::store::Error::from)?,
            pick("SELECT count(*) FROM runs").map_err(crate::store::Error::from)?,
        )
    };
    let bound = ui::bind(ui::Options {
        db: a.out.clone(),
        host: std::net::Ipv4Addr::LOCALHOST.into(),
        port: 0,
        token: None,
    })?;
    let base = format!("http://{}", bound.addr());
    std::thread::spawn(move || bound.serve());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let time = |path: &str| -> Result<(Vec<f64>, serde_json::Value)> {
        let mut times = Vec::with_capacity(a.repeat);
        let mut last = serde_json::Value::Null;
        for _ in 0..a.repeat {
            let started = Instant::now();
            let mut r = agent
                .get(&format!("{base}{path}"))
                .call()
                .map_err(|e| Error::Failed(format!("GET {path}: {e}")))?;
            let text = r
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_string()
                .map_err(|e| Error::Failed(format!("GET {path}: {e}")))?;
            let body: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::Failed(format!("GET {path}: {e}")))?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if !r.status().is_success() {
                return Err(Error::Failed(format!("GET {path}: {body}")));
            }
            last = body;
        }
        Ok((times, last))
    };
    let report = |out: &mut dyn Write, what: &str, times: &[f64], extra: String| {
        writeln!(
            out,
            "{what}: median {:.1} ms, slowest {:.1} ms of {}{extra}",
            median(times.to_vec()),
            worst(times),
            times.len()
        )
    };
    let (t, body) = time("/api/runs")?;
    let rows = body["rows"].as_array().map_or(0, Vec::len);
    report(&mut out, "runs table", &t, format!("; {rows} rows"))?;
    for (name, query) in [
        ("long curve, raw", "metric=val_loss"),
        (
            "long curve, EMA 0.9",
            "metric=val_loss&smooth=ema&param=0.9",
        ),
    ] {
        let (t, body) = time(&format!("/api/curves?runs={long}&{query}"))?;
        let series = &body["series"][0];
        let sent = series["raw"]["x"].as_array().map_or(0, Vec::len);
        let smooth = series["smooth"]["x"].as_array().map_or(0, Vec::len);
        report(
            &mut out,
            name,
            &t,
            format!(
                "; run-{long}: {} recorded points, {sent} raw{} sent",
                si(series["points"].as_f64().unwrap_or(0.0)),
                if smooth > 0 {
                    format!(" + {smooth} smoothed")
                } else {
                    String::new()
                }
            ),
        )?;
    }
    let grouped = format!(
        "/api/curves?runs={}&metric=val_loss&smooth=ema&param=0.9&group=model.ffn.unit",
        (1..=runs.min(100))
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let (t, _) = time(&grouped)?;
    report(&mut out, "grouped band of 100 runs", &t, String::new())?;
    match ui::webdriver::Browser::start(1400, 900) {
        Err(e) => writeln!(out, "first page: not measured: {e}")?,
        Ok(browser) => {
            let mut ready = Vec::new();
            let mut chart = Vec::new();
            for _ in 0..a.loads.max(1) {
                let fail = |e: ui::webdriver::Error| Error::Failed(e.to_string());
                browser.goto(&format!("{base}/")).map_err(fail)?;
                let t = browser
                    .wait_for(
                        "window.xpTimings && window.xpTimings.chart && window.xpTimings",
                        Duration::from_secs(60),
                    )
                    .map_err(fail)?;
                ready.push(t["ready"].as_f64().unwrap_or(f64::NAN));
                chart.push(t["chart"].as_f64().unwrap_or(f64::NAN));
            }
            report(
                &mut out,
                "first page interactive (table of every run, in headless Chromium)",
                &ready,
                " (ms from navigation start)".into(),
            )?;
            report(
                &mut out,
                "first chart drawn",
                &chart,
                " (ms from navigation start)".into(),
            )?;
        }
    }
    Ok(exit::OK)
}
