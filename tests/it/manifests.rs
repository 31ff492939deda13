//! Manifests end to end: the committed schema, the valid and invalid examples, and
//! `xp validate` / `xp plan` on them as a user runs them.

use std::path::{Path, PathBuf};

use crate::common::{output, parse_json, repo, settings, xp};

fn tomls(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .expect("folder exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo())
        .expect("inside the repo")
        .display()
        .to_string()
}

fn as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("readable");
    let value: toml::Value = toml::from_str(&text).expect("parses as TOML");
    serde_json::to_value(value).expect("converts to JSON")
}

fn committed_schema() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("schemas/experiment.schema.json"))
        .expect("schema is committed");
    serde_json::from_str(&text).expect("schema is JSON")
}

#[test]
fn committed_schema_is_current() {
    let committed =
        std::fs::read_to_string(repo().join("schemas/experiment.schema.json")).unwrap_or_default();
    assert!(
        committed == xp::manifest::schema::schema_text(),
        "schemas/experiment.schema.json is stale: regenerate it with `cargo run -- schema > schemas/experiment.schema.json`"
    );
    let db = tempfile::tempdir().unwrap();
    let schema = output(xp(&db.path().join("runs.db")).arg("schema")).success();
    assert!(schema.stdout == committed, "{schema}");
}

#[test]
fn committed_schema_accepts_valid_and_rejects_marked_invalid_manifests() {
    let validator = jsonschema::draft7::new(&committed_schema()).expect("valid draft-07");
    let valid = tomls("tests/manifests/valid");
    assert!(valid.len() >= 4);
    for path in valid.iter().chain(tomls("experiments").iter()) {
        let errors: Vec<String> = validator
            .iter_errors(&as_json(path))
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{} fails the schema: {errors:?}",
            relative(path)
        );
    }
    let mut rejected = 0;
    for path in tomls("tests/manifests/invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.starts_with("# schema: reject") {
            continue;
        }
        rejected += 1;
        let accepted = toml::from_str::<toml::Value>(&text)
            .map(|v| validator.is_valid(&serde_json::to_value(v).unwrap()))
            .unwrap_or(false);
        assert!(!accepted, "{} should fail the schema", relative(&path));
    }
    assert!(rejected >= 8);
}

#[test]
fn shipped_manifests_carry_the_schema_header_and_validate() {
    let db = tempfile::tempdir().unwrap();
    for path in tomls("experiments") {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("#:schema ../schemas/experiment.schema.json\n"),
            "{} lacks the #:schema header",
            relative(&path)
        );
        output(xp(&db.path().join("runs.db")).args(["validate", &relative(&path)])).success();
        // Each plan says how long it will take here, or that it has no figure yet.
        let plan =
            output(xp(&db.path().join("runs.db")).args(["plan", &relative(&path)])).success();
        assert!(
            plan.stdout.lines().any(|l| l.starts_with("forecast")),
            "{} has no forecast\n{plan}",
            relative(&path)
        );
    }
}

#[test]
fn every_invalid_manifest_renders_all_its_problems() {
    let invalid = tomls("tests/manifests/invalid");
    assert!(invalid.len() >= 15);
    let db = tempfile::tempdir().unwrap();
    for path in invalid {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let out = output(xp(&db.path().join("runs.db")).args(["validate", &relative(&path)]));
        assert_eq!(out.status, 2, "{name}: exit code\n{out}");
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout\n{out}");
        let stderr = out.stderr;
        settings(None).bind(|| insta::assert_snapshot!(format!("invalid_{name}"), stderr));
    }
    assert!(
        !db.path().join("runs.db").exists(),
        "validate never creates a store"
    );
}

#[test]
fn valid_manifests_validate() {
    let db = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for path in tomls("tests/manifests/valid") {
        let out = output(xp(&db.path().join("runs.db")).args([
            "validate",
            &relative(&path),
            "--set",
            "hardware.profile=apple-m4-24gb",
        ]))
        .success();
        lines.push_str(&out.stdout);
    }
    insta::assert_snapshot!(lines);
}

#[test]
fn gating_sweep_plans_every_gated_unit() {
    let db = tempfile::tempdir().unwrap();
    let out = output(xp(&db.path().join("runs.db")).args([
        "plan",
        "experiments/gating_sweep.toml",
        "--format",
        "json",
    ]))
    .success();
    let plan = parse_json(&out);
    let runs = plan["runs"].as_array().unwrap();
    assert!(runs.len() >= 10);
    let mut units: Vec<&str> = runs
        .iter()
        .map(|r| r["config"]["model"]["ffn"]["unit"].as_str().unwrap())
        .collect();
    units.sort();
    units.dedup();
    assert_eq!(
        units,
        ["gelu", "glu", "gtu", "mish", "reglu", "silu", "swish"]
    );
    for run in runs {
        // Fully resolved: every section present, the profile named, no "auto" left.
        for section in ["experiment", "model", "data", "train", "hardware"] {
            assert!(run["config"][section].is_object());
        }
        assert_ne!(run["config"]["hardware"]["profile"], "auto");
        assert_eq!(run["key"].as_str().unwrap().len(), 64);
    }
}

#[test]
fn plan_table_shows_only_varying_columns_and_totals() {
    let db = tempfile::tempdir().unwrap();
    // A cache with the corpus and no measured speeds: the forecast line says so, whatever
    // this machine has measured before.
    let cache = db.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::os::unix::fs::symlink(
        crate::common::default_cache().join("datasets"),
        cache.join("datasets"),
    )
    .unwrap();
    let stdout = output(
        xp(&db.path().join("runs.db"))
            .env("XP_CACHE", &cache)
            .args([
                "plan",
                "tests/manifests/valid/sweeps.toml",
                "--set",
                "hardware.profile=apple-m4-24gb",
            ]),
    )
    .success()
    .stdout;
    insta::assert_snapshot!(stdout);
    let csv = output(xp(&db.path().join("runs.db")).args([
        "plan",
        "tests/manifests/valid/sweeps.toml",
        "--set",
        "hardware.profile=apple-m4-24gb",
        "--format",
        "csv",
    ]))
    .success();
    assert_eq!(
        csv.stdout.lines().count(),
        stdout.lines().filter(|l| l.starts_with("│")).count(),
        "{csv}"
    );
}

#[test]
fn explain_names_the_layer_of_each_value() {
    let db = tempfile::tempdir().unwrap();
    let out = output(
        xp(&db.path().join("runs.db"))
            .env("XP_TRAIN__STEPS", "70")
            .env("XP_TRAIN__SEED", "5")
            .args([
                "plan",
                "experiments/gating_sweep.toml",
                "--format",
                "csv",
                "--set",
                "train.seed=9",
            ])
            .args(["--set", "hardware.profile=apple-m4-32gb"])
            .args([
                "--explain",
                "train.seed",
                "--explain",
                "train.steps",
                "--explain",
                "model.layers",
            ])
            .args([
                "--explain",
                "hardware.loader_threads",
                "--explain",
                "model.ffn.unit",
            ]),
    )
    .success();
    let explained: String = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("train.seed"))
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!(explained);
}

#[test]
fn bad_overrides_are_reported_with_their_origin() {
    let db = tempfile::tempdir().unwrap();
    let stderr = output(
        xp(&db.path().join("runs.db"))
            .env("XP_MODEL__LAYRS", "3")
            .args([
                "plan",
                "experiments/gating_sweep.toml",
                "--set",
                "train.lr=fast",
                "--set",
                "model.ffn.unit=glu",
                "--set",
                "oops",
            ]),
    )
    .code(2)
    .stderr;
    insta::assert_snapshot!(stderr);
}

#[test]
fn content_keys_ignore_key_order_and_number_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let a = "[train]\nlr = 1e-3\nsteps = 100\n[model]\npreset = \"tiny\"\ndropout = 0.0\n";
    let b = "[model]\ndropout = 0\npreset = \"tiny\"\n\n[train]\nsteps = 1_00\nlr = 0.001\n";
    let c = "[model]\ndropout = 0\npreset = \"tiny\"\n\n[train]\nsteps = 100\nlr = 0.0011\n";
    let mut keys = Vec::new();
    for (name, text) in [("a.toml", a), ("b.toml", b), ("c.toml", c)] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = output(
            xp(&dir.path().join("runs.db"))
                .args(["plan", "--format", "json"])
                .arg(&path),
        )
        .success();
        let plan = parse_json(&out);
        keys.push(plan["runs"][0]["key"].as_str().unwrap().to_string());
    }
    assert_eq!(keys[0], keys[1]);
    assert_ne!(keys[0], keys[2]);
}

#[test]
fn unreadable_manifest_is_bad_input() {
    let db = tempfile::tempdir().unwrap();
    let missing =
        output(xp(&db.path().join("runs.db")).args(["validate", "experiments/nope.toml"])).code(2);
    assert_eq!(
        missing.stderr,
        "error: cannot read manifest experiments/nope.toml: No such file or directory (os error 2)\n",
        "{missing}"
    );
    let bytes = db.path().join("bytes.toml");
    std::fs::write(&bytes, b"[model]\nlayers = 4\n\xff\xfe = 1\n").unwrap();
    let invalid = output(xp(&db.path().join("runs.db")).arg("validate").arg(&bytes)).code(2);
    assert!(
        invalid.stderr.contains("the manifest is not valid UTF-8"),
        "{invalid}"
    );
}
