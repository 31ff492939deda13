//! Property test: whatever the bytes, validation and planning return a result, never panic.
//! 100,000 manifests: mutations of the example manifests and manifests generated from pieces.
//! Each run draws a fresh seed and prints it; `XP_FUZZ_SEED=<seed>` replays that run exactly
//! (`XP_FUZZ_CASES` sets how many manifests).

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use xp::manifest::profiles::Machine;

const FRAGMENTS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    "=",
    "\"",
    "'",
    "\n",
    ",",
    ".",
    "#",
    "\t",
    " ",
    "é",
    "\u{feff}",
    "\\",
    "[[",
    "]]",
    "[sweep.grid]\n",
    "[sweep.zip]\n",
    "[sweep.random]\n",
    "[sweep]\n",
    "[model]\n",
    "[train]\n",
    "[data]\n",
    "[hardware]\n",
    "[profiles.box]\n",
    "[experiment]\n",
    "\"model.ffn.unit\" = ",
    "\"train.lr\" = ",
    "\"model.dim\" = ",
    "\"model.heads\" = ",
    "\"hardware.profile\" = ",
    "\"model.preset\" = ",
    "where = ",
    "samples = ",
    "seed = ",
    "extends = ",
    "memory_gb = ",
    "preset = ",
    "heads = ",
    "dim = ",
    "layers = ",
    "steps = ",
    "lr = ",
    "alpha = ",
    "unit = ",
    "path = ",
    "source = ",
    "profile = ",
    "batch_size = ",
    "{ linspace = [0, 1, 3] }",
    "{ logspace = [-4, -2, 3] }",
    "{ range = [1, 9, 2] }",
    "{ uniform = [0, 1] }",
    "{ loguniform = [1e-4, 1e-2] }",
    "{ randint = [1, 8] }",
    "{ choice = [\"glu\", 0.5] }",
    "[\"glu\", \"gtu\"]",
    "[1, 2, 3]",
    "[0.5, \"learnable\"]",
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1",
    "3.5",
    "1e308",
    "1e-400",
    "9999999999999999999",
    "true",
    "false",
    "1979-05-27",
    "\"learnable\"",
    "\"cosine\"",
    "\"tiny\"",
    "\"large\"",
    "\"auto\"",
    "\"cpu\"",
    "\"nope\"",
    "\"model.dim / model.heads >= 32\"",
    "\"train.lr <\"",
    "\"(((\"",
    "\"corpus/*.txt\"",
    "\"[\"",
    "\"tinyshakespeare\"",
    "{}",
    "[]",
];

const KEYS: &[&str] = &[
    "layers",
    "heads",
    "dim",
    "block_size",
    "dropout",
    "bias",
    "preset",
    "ffn",
    "unit",
    "alpha",
    "hidden_mult",
    "steps",
    "lr",
    "min_lr",
    "warmup_steps",
    "batch_size",
    "grad_accum",
    "eval_every",
    "profile",
    "device",
    "precision",
    "memory_budget_gb",
    "tokenizer",
    "val_fraction",
    "path",
    "source",
    "name",
    "samples",
    "seed",
    "where",
    "\"train.lr\"",
    "\"model.ffn.unit\"",
    "\"model.layers\"",
    "extends",
    "memory_gb",
    "bogus",
];

const SECTIONS: &[&str] = &[
    "experiment",
    "model",
    "model.ffn",
    "data",
    "train",
    "hardware",
    "profiles.p",
    "sweep",
    "sweep.grid",
    "sweep.zip",
    "sweep.random",
    "nothing",
];

const VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "4",
    "6",
    "64",
    "128",
    "-3",
    "0.5",
    "1.0",
    "1e-3",
    "1e9",
    "\"glu\"",
    "\"mlp\"",
    "\"tiny\"",
    "\"learnable\"",
    "\"x\"",
    "true",
    "[1, 2]",
    "[\"glu\", \"silu\"]",
    "{ linspace = [0, 1, 2] }",
    "{ loguniform = [1e-4, 1e-3] }",
    "{ choice = [1, 2] }",
    "\"train.lr > 1e-4\"",
    "\"a b c\"",
    "[]",
    "{}",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, usize),
    Delete(usize, usize),
    Byte(usize, u8),
    DuplicateLine(usize),
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in [
        "experiments",
        "tests/manifests/valid",
        "tests/manifests/invalid",
    ] {
        let mut paths: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        out.extend(paths.into_iter().map(|p| std::fs::read(p).unwrap()));
    }
    out
}

fn apply(mut text: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = text.len().max(1);
        match *edit {
            Edit::Insert(at, f) => {
                let at = at % (text.len() + 1);
                let fragment = FRAGMENTS[f % FRAGMENTS.len()].as_bytes();
                text.splice(at..at, fragment.iter().copied());
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n % 24).min(text.len());
                if at < end {
                    text.drain(at..end);
                }
            }
            Edit::Byte(at, b) => {
                if !text.is_empty() {
                    let at = at % text.len();
                    text[at] = b;
                }
            }
            Edit::DuplicateLine(at) => {
                let at = at % len;
                let start = text[..at.min(text.len())]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |i| i + 1);
                let end = text[start..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(text.len(), |i| start + i + 1);
                let line = text[start..end].to_vec();
                text.splice(end..end, line);
            }
        }
    }
    text
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, f)| Edit::Insert(a, f)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Byte(a, b)),
        any::<usize>().prop_map(Edit::DuplicateLine),
    ]
}

fn generated() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        (0..SECTIONS.len()).prop_map(|s| format!("[{}]", SECTIONS[s])),
        (0..KEYS.len(), 0..VALUES.len()).prop_map(|(k, v)| format!("{} = {}", KEYS[k], VALUES[v])),
    ];
    proptest::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n").into_bytes())
}

/// Validates and plans one manifest; says how far it got (0 rejected, 1 checked, 2 planned).
fn check(bytes: Vec<u8>, machine: &Machine) -> usize {
    let path = Path::new("fuzz/no_such_dir/manifest.toml");
    match xp::manifest::parse_bytes("manifest.toml".into(), bytes, path) {
        Err(_) => 0,
        Ok(loaded) => match xp::sweep::plan(&loaded, &[], machine) {
            Err(_) => 1,
            Ok(_) => 2,
        },
    }
}

#[test]
fn no_manifest_makes_validation_panic() {
    let seeds = seeds();
    let machine = Machine {
        os: "linux".into(),
        arch: "x86_64".into(),
        cpu: "test".into(),
        cores: 2,
        ram_gb: 24.0,
        gpus: Vec::new(),
    };
    let mutated = (0..seeds.len(), proptest::collection::vec(edit(), 1..8))
        .prop_map(move |(s, edits)| apply(seeds[s].clone(), &edits));
    let strategy = prop_oneof![3 => mutated, 1 => generated()];
    let cases: u32 = std::env::var("XP_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = match std::env::var("XP_FUZZ_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("XP_FUZZ_SEED must be a number, not {s:?}")),
        Err(_) => rand::random(),
    };
    // Printed before anything runs, so that a crash (even a stack overflow) leaves it behind.
    eprintln!("no_manifest_makes_validation_panic: seed {seed} (replay: XP_FUZZ_SEED={seed})");
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    let reached = std::cell::RefCell::new([0usize; 3]);
    runner
        .run(&strategy, |bytes| {
            reached.borrow_mut()[check(bytes, &machine)] += 1;
            Ok(())
        })
        .unwrap();
    let [rejected, checked, planned] = reached.into_inner();
    eprintln!(
        "{cases} manifests: {rejected} rejected, {checked} failed planning, {planned} planned"
    );
    assert_eq!(rejected + checked + planned, cases as usize);
    // The mutations must reach every stage, or the test would prove little.
    assert!(rejected > 0 && checked > 0 && planned > 0);
}
