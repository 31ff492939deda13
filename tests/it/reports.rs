//! Reading a filled store: `runs --where/--sort`, `compare` (tables, charts, plot files),
//! `export`, `status` and `show`, on the deterministic store `xp bench store` writes.

use std::path::{Path, PathBuf};

use crate::common::{output, parse_json, parse_json_lines, settings, xp};

/// A store with runs 1–3 completed (50 steps each) and run-4 left running at step 25 by a
/// process that has exited.
fn bench_store(dir: &Path) -> PathBuf {
    let db = dir.join("bench.db");
    let bench = output(
        xp(&dir.join("unused.db"))
            .args(["bench", "store", "--runs", "4", "--steps", "50", "--out"])
            .arg(&db),
    )
    .success();
    assert!(bench.stdout.contains("ingest: 525 rows in"), "{bench}");
    assert!(
        bench.stdout.contains("bytes/row for the whole file"),
        "{bench}"
    );
    db
}

fn filtered(dir: &Path) -> insta::Settings {
    let mut s = settings(Some(dir));
    if let Some(host) = xp::exec::host() {
        s.add_filter(&crate::common::regex_escape(&host), "[HOST]");
    }
    s.add_filter(r"process \d+", "process [PID]");
    s
}

#[test]
fn runs_filters_with_where_and_sorts() {
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path());
    let out = output(xp(&db).args([
        "runs",
        "--where",
        "(model.ffn.unit = 'glu' or model.ffn.unit = \"gtu\") and (best_val_loss < 1.5 or train.seed >= 2) and not status = 'failed'",
        "--sort",
        "train.seed:desc",
    ]))
    .success()
    .stdout;
    filtered(dir.path()).bind(|| insta::assert_snapshot!(out));

    let none = output(xp(&db).args(["runs", "--where", "best_val_loss > 100"])).success();
    assert_eq!(none.stdout, "no runs match\n", "{none}");

    // Quotes are data, not SQL.
    let none = output(xp(&db).args([
        "runs",
        "--where",
        "experiment = \"x'; DROP TABLE runs; --\"",
    ]))
    .success();
    assert_eq!(none.stdout, "no runs match\n", "{none}");
    let all = output(xp(&db).args(["runs", "--format", "csv"])).success();
    assert_eq!(all.stdout.lines().count(), 5, "{all}");
}

#[test]
fn bad_queries_name_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path());
    let cases = [
        (
            vec!["runs", "--where", "train.lr > 0 and model.ffn.unti = 'glu'"],
            "error: --where: column 18: unknown key `model.ffn.unti`; did you mean `model.ffn.unit`?\n  train.lr > 0 and model.ffn.unti = 'glu'\n                   ^\n",
        ),
        (
            vec!["runs", "--where", "best_val_loss < (1.6"],
            "error: --where: column 21: expected `)`, found the end of the expression\n  best_val_loss < (1.6\n                      ^\n",
        ),
        (vec!["runs", "--where", "model.ffn.unit = 'gluu'"], ""),
        (
            vec!["runs", "--sort", "best_val_loss:down"],
            "error: --sort: column 15: unknown direction `down`: use `:asc` or `:desc`\n  best_val_loss:down\n                ^\n",
        ),
    ];
    for (args, expected) in cases {
        let refused = output(xp(&db).args(&args)).code(2);
        assert_eq!(refused.stdout, "", "{refused}");
        if expected.is_empty() {
            let stderr = refused.stderr;
            filtered(dir.path()).bind(|| insta::assert_snapshot!("bad_unit_value", stderr));
        } else {
            assert_eq!(refused.stderr, expected, "{refused}");
        }
    }
}

#[test]
fn compare_reports_settings_summary_charts_and_aligned_steps() {
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path());
    let out = output(xp(&db).args(["compare", "run-1", "run-2", "--points", "5"]))
        .success()
        .stdout;
    filtered(dir.path()).bind(|| insta::assert_snapshot!(out));

    let json = output(xp(&db).args(["compare", "run-1", "run-4", "--format", "json"])).success();
    let v = parse_json(&json);
    assert_eq!(v["settings"][1]["setting"], "train.seed");
    // run-4 has no summary: nothing is marked better.
    assert!(
        v["summary"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["best"].is_null())
    );
    // Aligned steps are those both runs recorded: run-4 stopped at step 25.
    let steps: Vec<i64> = v["aligned"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["metric"] == "val_loss")
        .map(|a| a["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps.last(), Some(&25));

    for (name, magic) in [
        ("curves.svg", &b"<svg"[..]),
        ("curves.png", &b"\x89PNG"[..]),
    ] {
        let file = dir.path().join(name);
        let out = output(
            xp(&db)
                .args([
                    "compare",
                    "run-1",
                    "run-2",
                    "run-3",
                    "--no-charts",
                    "--plot",
                ])
                .arg(&file),
        )
        .success();
        assert!(out.stdout.contains("plot written to"), "{out}");
        let bytes = std::fs::read(&file).unwrap();
        assert!(bytes.starts_with(magic), "{name}");
        assert!(bytes.len() > 5_000, "{name} is only {} bytes", bytes.len());
    }
    let svg = std::fs::read_to_string(dir.path().join("curves.svg")).unwrap();
    assert!(svg.contains("run-3 val") && svg.contains("run-1 train"));

    let stderr = output(
        xp(&db)
            .args(["compare", "run-1", "run-2", "--plot"])
            .arg(dir.path().join("c.jpg")),
    )
    .code(2)
    .stderr;
    filtered(dir.path()).bind(|| insta::assert_snapshot!("plot_bad_extension", stderr));
}

#[test]
fn export_writes_metrics_and_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path());
    let metrics = output(xp(&db).args(["export", "metrics"])).success();
    let lines: Vec<&str> = metrics.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 525, "{metrics}");
    assert_eq!(lines[0], "run,experiment,metric,step,value,t_ms");
    assert!(
        lines[1].starts_with("run-1,bench-store,train_loss,1,"),
        "{}",
        lines[1]
    );

    let file = dir.path().join("m.jsonl");
    output(
        xp(&db)
            .args(["export", "metrics", "run-4", "--format", "jsonl", "-o"])
            .arg(&file),
    )
    .success();
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 75);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["run"].as_str(), first["step"].as_i64()),
        (Some("run-4"), Some(1))
    );

    let csv = output(xp(&db).args(["export", "summaries", "--where", "status = 'completed'"]))
        .success()
        .stdout;
    filtered(dir.path()).bind(|| insta::assert_snapshot!(csv));
    let jsonl = output(xp(&db).args(["export", "summaries", "--format", "jsonl"])).success();
    let rows = parse_json_lines(&jsonl);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[3]["best_val_loss"], serde_json::Value::Null);
    assert_eq!(rows[0]["config"]["model"]["ffn"]["unit"], "glu");
}

#[test]
fn status_and_show_report_an_orphaned_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path());
    let out = output(xp(&db).arg("status")).success().stdout;
    filtered(dir.path()).bind(|| insta::assert_snapshot!(out));
    let json = output(xp(&db).args(["status", "--format", "json"])).success();
    let v = parse_json(&json);
    assert_eq!(v["running"][0]["run"], "run-4");
    assert_eq!(v["running"][0]["step"], 25);
    assert!(
        v["running"][0]["stale"]
            .as_str()
            .unwrap()
            .contains("is gone")
    );

    let show = output(xp(&db).args(["show", "run-4"])).success();
    assert!(show.stdout.contains("orphaned: its process"), "{show}");
    assert!(
        show.stdout.contains("train_loss 1.") && show.stdout.contains("@25"),
        "{show}"
    );
}

#[test]
fn every_format_works_or_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path());
    // A format a command cannot print is refused before anything runs.
    for args in [
        vec!["status", "--format", "csv"],
        vec!["show", "run-1", "--format", "csv"],
        vec!["export", "metrics", "--format", "json"],
        vec!["runs", "--format", "yaml"],
    ] {
        let refused = output(xp(&db).args(&args)).code(2);
        assert_eq!(refused.stdout, "", "{refused}");
        let value = args[args.len() - 1];
        assert!(
            refused.stderr.starts_with(&format!(
                "error: invalid value '{value}' for '--format <FORMAT>'"
            )),
            "{refused}"
        );
    }
    // `runs`: JSON is one array; JSON Lines one run per line; CSV real CSV.
    let json = output(xp(&db).args(["runs", "--format", "json"])).success();
    let all = parse_json(&json);
    assert_eq!(all.as_array().map(Vec::len), Some(4));
    assert_eq!(all[3]["status"], "running");
    assert_eq!(all[0]["summary"]["params"], 100_000);
    let jsonl = output(xp(&db).args(["runs", "--format", "jsonl"])).success();
    let lines = parse_json_lines(&jsonl);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["id"], 2);
    let csv = output(xp(&db).args(["runs", "--format", "csv"])).success();
    let mut reader = csv::Reader::from_reader(csv.stdout.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "run",
            "experiment",
            "status",
            "step",
            "best val",
            "tok/s",
            "key",
            "swept"
        ]
    );
    assert_eq!(reader.records().count(), 4);
    // `show --format json` carries everything the table shows.
    let json = output(xp(&db).args(["show", "run-1", "--format", "json"])).success();
    let v = parse_json(&json);
    assert_eq!(v["status"], "completed");
    assert!(v["summary"]["best_val_loss"].as_f64().unwrap() > 1.0);
    let latest: Vec<&str> = v["latest_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(latest, ["lr", "train_loss", "val_loss"]);
    assert_eq!(v["latest_metrics"][1]["step"], 50);
    assert_eq!(v["spec"]["config"]["model"]["ffn"]["unit"], "glu");
    assert_eq!(v["provenance"]["xp_version"], env!("CARGO_PKG_VERSION"));
    assert!(v["checkpoints"].as_array().unwrap().is_empty());
    let json = output(xp(&db).args(["show", "run-4", "--format", "json"])).success();
    let v = parse_json(&json);
    assert!(
        v["process"]
            .as_str()
            .unwrap()
            .starts_with("orphaned: its process")
    );
    assert_eq!(v["step"], 25);
}
