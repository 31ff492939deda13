//! `xp export model`: ONNX files of tiny trained runs, for every feed-forward unit and α mode
//! (with and without biases, tied and untied heads), run by onnxruntime from PyPI and checked
//! against xp's own forward and `xp sample`; and the bad inputs that export nothing.

use std::path::{Path, PathBuf};

use xp::manifest::{DeviceChoice, HardwareConfig, Precision};
use xp::store::Store;
use xp::train::Generator;
use xp::train::model::AttentionKernel;

use crate::common::{corpus, output, repo, xp};

const UNITS: [&str; 8] = [
    "glu", "gtu", "swish", "reglu", "gelu", "mish", "silu", "mlp",
];

/// The Python with onnx and onnxruntime that `.ci/run` installs (`XP_ONNX_PYTHON`); without
/// one the test says it is skipped and why, except under `CI=true`, where it fails.
fn onnx_python(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("XP_ONNX_PYTHON").map(PathBuf::from);
    let works = python.as_ref().is_some_and(|p| {
        std::process::Command::new(p)
            .args(["-c", "import onnx, onnxruntime, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if works {
        return python;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{test}: no Python with onnx and onnxruntime at XP_ONNX_PYTHON ({python:?}), and \
         CI=true: .ci/run installs them"
    );
    eprintln!(
        "{test}: skipped: set XP_ONNX_PYTHON to a Python with onnx, onnxruntime and numpy \
         (`.ci/run` makes one: python3 -m venv DIR && DIR/bin/pip install onnxruntime onnx numpy)"
    );
    None
}

/// Trains every unit × α mode (and two runs without biases, with a tied head) for a few steps
/// on the CPU; returns the store.
fn trained(dir: &Path) -> PathBuf {
    corpus(dir);
    let db = dir.join("runs.db");
    let manifest = |name: &str, model: &str, grid: &str| {
        let text = format!(
            "[experiment]\nname = \"{name}\"\n\
             [model]\npreset = \"tiny\"\nlayers = 2\ndim = 32\nheads = 2\nblock_size = 32\n\
             dropout = 0.0\n{model}\n\
             [data]\npath = \"corpus.txt\"\n\
             [train]\nsteps = 30\nbatch_size = 8\nlr = 3e-3\nwarmup_steps = 3\n\
             eval_every = 10\neval_batches = 2\ncheckpoint_every = 10\nlog_every = 10\n\
             [hardware]\nprofile = \"cpu\"\n[sweep.grid]\n{grid}\n"
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let units = UNITS.map(|u| format!("\"{u}\"")).join(", ");
    let all = manifest(
        "units",
        "ffn = { unit = \"glu\", alpha = 0.5 }",
        &format!(
            "\"model.ffn.unit\" = [{units}]\n\"model.ffn.alpha\" = [0.7, \"learnable\", \"cosine\"]"
        ),
    );
    let tied = manifest(
        "tied",
        "bias = false\ntie_weights = true\nffn = { unit = \"glu\", alpha = \"learnable\" }",
        "\"model.ffn.unit\" = [\"swish\", \"gtu\"]",
    );
    for m in [all, tied] {
        output(xp(&db).arg("run").arg(&m)).success();
    }
    db
}

/// Runs `tests/onnx/ort_check.py` on a model with a request; its JSON answer.
fn ort_check(python: &Path, model: &Path, request: &serde_json::Value) -> serde_json::Value {
    let req = model.with_extension("request.json");
    std::fs::write(&req, request.to_string()).unwrap();
    let out = std::process::Command::new(python)
        .arg(repo().join("tests/onnx/ort_check.py"))
        .arg(model)
        .arg(&req)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ort_check.py {}: {}\n{}",
        model.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What `xp sample --temperature 0` continues `prompt` with, in 100 tokens from a run's last
/// checkpoint (with the newline it prints after them).
fn greedy(db: &Path, run: &str, prompt: &str) -> String {
    let sample = output(xp(db).args(["sample", run, "--checkpoint", "last"]).args([
        "--temperature",
        "0",
        "--tokens",
        "100",
        "--prompt",
        prompt,
    ]))
    .success();
    let continuation = sample.stdout.strip_prefix(prompt);
    continuation
        .unwrap_or_else(|| panic!("xp sample did not start with the prompt:\n{sample}"))
        .to_string()
}

#[test]
fn every_unit_and_alpha_mode_exports_and_onnxruntime_matches_xp() {
    let test = "every_unit_and_alpha_mode_exports_and_onnxruntime_matches_xp";
    let Some(python) = onnx_python(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = trained(dir.path());
    let store = Store::open_existing(&db).unwrap();
    let runs = store.runs(&Default::default()).unwrap();
    assert_eq!(runs.len(), UNITS.len() * 3 + 2);
    let cpu = HardwareConfig {
        device: DeviceChoice::Cpu,
        precision: Precision::F32,
        ..HardwareConfig::default()
    };
    let device = xp::train::device::select(&cpu, None).unwrap().device;
    // Three prompts of different lengths, the longest a whole block.
    let prompts: Vec<Vec<u32>> = vec![vec![3], (0..7).collect(), (0..32).map(|i| i % 11).collect()];
    for run in &runs {
        let name = run.name();
        let model = dir.path().join(format!("{name}.onnx"));
        let wrote = output(
            xp(&db)
                .args(["export", "model", &name, "--checkpoint", "last", "-o"])
                .arg(&model),
        )
        .success();
        assert!(wrote.stdout.contains("ONNX opset 17"), "{wrote}");
        let answer = ort_check(
            &python,
            &model,
            &serde_json::json!({
                "prompts": prompts,
                "greedy": { "prompt": "First", "tokens": 100 },
            }),
        );
        let what = format!(
            "{name} ({:?}, {:?})",
            run.spec.config.model.ffn.unit, run.spec.config.model.ffn.alpha
        );
        assert_eq!(answer["opset"], 17, "{what}");
        let batch = answer["batch_max_diff"].as_f64().unwrap();
        assert!(batch <= 1e-5, "{what}: a batch of three differs by {batch}");
        assert_eq!(answer["metadata"]["xp.run"], name.as_str(), "{what}");
        assert_eq!(answer["metadata"]["xp.tokenizer"], "char", "{what}");
        let continuation = greedy(&db, &name, "First");
        assert_eq!(
            answer["greedy"],
            continuation.strip_suffix('\n').unwrap(),
            "{what}: greedy text differs"
        );
        let checkpoints = store.checkpoints(run.id).unwrap();
        let last = store.checkpoint_path(&checkpoints.last().unwrap().path);
        let generator =
            Generator::load(&run.spec.config, &last, &device, AttentionKernel::Explicit).unwrap();
        for (p, ids) in prompts.iter().enumerate() {
            let ours = generator.logits(ids);
            let theirs = answer["logits"][p].as_array().unwrap();
            assert_eq!(theirs.len(), ids.len(), "{what}");
            let mut worst = 0f64;
            for (a, b) in ours.iter().zip(theirs) {
                for (x, y) in a.iter().zip(b.as_array().unwrap()) {
                    worst = worst.max((*x as f64 - y.as_f64().unwrap()).abs());
                }
            }
            assert!(
                worst <= 1e-4,
                "{what}: prompt {p}: logits differ by {worst}"
            );
        }
    }
    // The docs' snippet runs the last model as written there.
    let docs = std::fs::read_to_string(repo().join("docs/model.md")).unwrap();
    let section = docs
        .split("## Running an exported model")
        .nth(1)
        .expect("docs/model.md has the section");
    let snippet = section
        .split("```python\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("the section has a python snippet");
    let script = dir.path().join("snippet.py");
    std::fs::write(&script, snippet).unwrap();
    let last = runs.last().unwrap().name();
    let out = std::process::Command::new(&python)
        .arg(&script)
        .env("XP_ONNX_MODEL", dir.path().join(format!("{last}.onnx")))
        .output()
        .unwrap();
    // The snippet's prompt, "ROMEO:", without the characters the corpus lacks.
    let text = std::fs::read_to_string(dir.path().join("corpus.txt")).unwrap();
    let prompt: String = "ROMEO:".chars().filter(|c| text.contains(*c)).collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        greedy(&db, &last, &prompt),
        "the snippet: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_exports_are_refused_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let manifest = crate::common::tiny_manifest(dir.path(), "");
    let db = dir.path().join("runs.db");
    output(xp(&db).arg("run").arg(&manifest)).success();
    let out = dir.path().join("model.onnx");
    let export = |args: &[&str]| {
        output(
            xp(&db)
                .args(["export", "model"])
                .args(args)
                .arg("-o")
                .arg(&out),
        )
    };
    let refused = |args: &[&str], message: &str| {
        let o = export(args).code(2);
        assert_eq!(o.stderr, format!("error: {message}\n"), "{o}");
        assert!(!out.exists(), "{o}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("onnx"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    };
    refused(
        &["run-9"],
        "no run `run-9` in the store (runs are named run-N; `xp runs` lists them)",
    );
    refused(
        &["run-1", "--checkpoint", "7"],
        "run-1: no checkpoint `7` (steps: 20, 40)",
    );
    // A damaged checkpoint is read by nothing.
    let store = Store::open_existing(&db).unwrap();
    let checkpoints = store.checkpoints(1).unwrap();
    let folder = store.checkpoint_path(&checkpoints.last().unwrap().path);
    let weights = std::fs::read_dir(&folder)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.extension()
                .is_some_and(|e| e == "mpk" || e == "safetensors")
        })
        .expect("a weights file");
    let good = std::fs::read(&weights).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&weights, &bad).unwrap();
    let o = export(&["run-1", "--checkpoint", "last"]).code(2);
    assert!(
        o.stderr.starts_with("error: run-1 at step 40: checkpoint ")
            && o.stderr.ends_with("; nothing was exported\n"),
        "{o}"
    );
    assert!(!out.exists());
    std::fs::write(&weights, &good).unwrap();
    // An existing file stays unless --force.
    std::fs::write(&out, "mine").unwrap();
    let o = export(&["run-1"]).code(2);
    assert_eq!(
        o.stderr,
        format!("error: {} exists; --force replaces it\n", out.display()),
        "{o}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine");
    export(&["run-1", "--force"]).success();
    assert!(std::fs::metadata(&out).unwrap().len() > 10_000);
}
