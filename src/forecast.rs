//! Wall-time forecasts: how long runs and sweeps take on this machine, from measured speed (the
//! store's own runs, or a short probe), by simulating the executor's schedule — and, for
//! early-stopped sweeps and searches, the early-stopping decisions and trial choices
//! themselves, with this crate's own code, over many random outcomes (a range, P10–P90).
//!
//! The model: a stretch of training from step a to step b costs `start_s + (b − a) · step_s`,
//! where `step_s` (evaluations, logging and checkpoints amortised) is the shape's, measured
//! with as many runs training at once as the forecast assumes (`--jobs`), and `start_s` the
//! cost of starting a run (process, corpus, model, kernels). Workers take runs in the order
//! the queue hands them out, as soon as one is free.

use std::collections::HashMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::early_stop::{self, Action, Decision, EarlyStop, Entrant};
use crate::manifest::Config;
use crate::search::{COMPLETED, Observation, Search};
use crate::sweep::{Plan, RunSpec};

/// One stretch of a recorded run's training: what the store knows of its speed.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub shape: String,
    /// Steps trained in the stretch.
    pub steps: u64,
    /// Seconds the trainer took for them (evaluations included).
    pub trainer_s: f64,
    /// Seconds from its claim to its end, for a run that completed in one stretch.
    pub wall_s: Option<f64>,
    /// When it started and ended (ms since the epoch; the end estimated if not recorded).
    pub start: i64,
    pub end: Option<i64>,
    /// The process that trained it: a process's first run of a shape compiles its kernels.
    pub process: Option<i64>,
}

/// What decides a run's speed: its model's sizes, unit and biases, whether it drops out, its
/// batch, evaluation, logging and checkpoint cadence, precision, device and vocabulary (not its
/// learning rate, α, dropout rate, seed or length).
pub fn shape(config: &Config, vocab: usize) -> String {
    let t = &config.train;
    let m = &config.model;
    let material = serde_json::json!({
        "model": [m.layers, m.heads, m.dim, m.block_size],
        "ffn": [serde_json::json!(m.ffn.unit), serde_json::json!(m.ffn.hidden_mult)],
        "flags": [m.bias, m.tie_weights, m.dropout > 0.0, m.attention_dropout.map(|d| d > 0.0)],
        "batch": [t.batch_size, t.grad_accum],
        "cadence": [t.eval_every, t.eval_batches, t.log_every, t.checkpoint_every],
        "device": config.hardware.device,
        "order": config.hardware.device_order,
        "precision": config.hardware.precision,
        "vocab": vocab,
    });
    blake3::hash(material.to_string().as_bytes()).to_hex()[..16].to_string()
}

/// A shape's measured speed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Speed {
    /// Seconds per step, with `at_once` runs training at once.
    pub step_s: f64,
    /// Seconds to start a run.
    pub start_s: f64,
    /// Seconds more for a process's first run of the shape (its kernels compiled and tuned).
    pub cold_s: f64,
    /// Runs training at once when it was measured.
    pub at_once: u32,
    /// Runs it was measured on.
    pub runs: usize,
}

/// Speeds per shape, fitted from samples.
#[derive(Debug, Clone, Default)]
pub struct Speeds {
    /// Per shape, per number of runs at once: seconds per step of each warm sample (a
    /// process's later runs of the shape), or of cold ones where the shape has no warm one.
    steps: HashMap<String, HashMap<u32, Vec<f64>>>,
    /// Start-up seconds of warm runs that completed in one stretch (any shape).
    starts: Vec<f64>,
    /// Per shape, the seconds a process's first run of it took more than a later one would.
    cold: HashMap<String, Vec<f64>>,
}

/// The median of `values` (sorted in place); `None` for none.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

impl Speeds {
    /// Fits speeds from samples: each sample's seconds per step, grouped by shape and by how
    /// many samples' stretches covered the middle of its own (runs training at once).
    pub fn fit(samples: &[Sample]) -> Speeds {
        let spans: Vec<(i64, i64)> = samples
            .iter()
            .map(|s| {
                let end = s
                    .end
                    .unwrap_or(s.start + (s.trainer_s * 1e3) as i64)
                    .max(s.start);
                (s.start, end)
            })
            .collect();
        // How many samples' stretches covered the middle of each one's.
        let at_once: Vec<u32> = spans
            .iter()
            .map(|&(a, b)| {
                let mid = a + (b - a) / 2;
                let n = spans.iter().filter(|(x, y)| *x <= mid && mid <= *y).count();
                n.max(1) as u32
            })
            .collect();
        // A process's first run of a shape is cold (samples are oldest first); a sample whose
        // process is unknown counts as warm.
        let mut seen: std::collections::HashSet<(String, Option<i64>)> = Default::default();
        let cold: Vec<bool> = samples
            .iter()
            .map(|s| s.process.is_some() && seen.insert((s.shape.clone(), s.process)))
            .collect();
        let warm_shapes: std::collections::HashSet<&str> = samples
            .iter()
            .zip(&cold)
            .filter(|(_, c)| !**c)
            .map(|(s, _)| s.shape.as_str())
            .collect();
        let mut speeds = Speeds::default();
        for ((s, &at_once), &is_cold) in samples.iter().zip(&at_once).zip(&cold) {
            let per_step = s.trainer_s / s.steps.max(1) as f64;
            if !is_cold || !warm_shapes.contains(s.shape.as_str()) {
                speeds
                    .steps
                    .entry(s.shape.clone())
                    .or_default()
                    .entry(at_once)
                    .or_default()
                    .push(per_step);
            }
            if let (Some(wall), false) = (s.wall_s, is_cold) {
                speeds.starts.push((wall - s.trainer_s).max(0.0));
            }
        }
        // What a cold run took more than the warm runs of its shape (at its number at once),
        // but for the first run of the shape on this machine: it compiled what the caches on
        // disk keep for every later process (measured on an H200: 62 s against 2 s warm for
        // a 100-step run; a later process's first run, under 1 s more).
        let mut first_here: std::collections::HashSet<&str> = Default::default();
        for ((s, &at_once), &is_cold) in samples.iter().zip(&at_once).zip(&cold) {
            let first = first_here.insert(s.shape.as_str());
            if !is_cold || first || !warm_shapes.contains(s.shape.as_str()) {
                continue;
            }
            let Some(warm) = speeds.get(&s.shape, at_once) else {
                continue;
            };
            let took = s.wall_s.unwrap_or(s.trainer_s + warm.start_s);
            let expected = warm.start_s + s.steps as f64 * warm.step_s;
            speeds
                .cold
                .entry(s.shape.clone())
                .or_default()
                .push((took - expected).max(0.0));
        }
        speeds
    }

    /// Adds another set (a probe's to the store's).
    pub fn merge(&mut self, other: Speeds) {
        for (shape, levels) in other.steps {
            let mine = self.steps.entry(shape).or_default();
            for (n, values) in levels {
                mine.entry(n).or_default().extend(values);
            }
        }
        self.starts.extend(other.starts);
        for (shape, values) in other.cold {
            self.cold.entry(shape).or_default().extend(values);
        }
    }

    /// Whether the shape has been measured with `jobs` runs at once.
    pub fn has(&self, shape: &str, jobs: u32) -> bool {
        self.steps
            .get(shape)
            .is_some_and(|levels| levels.contains_key(&jobs))
    }

    /// The shape's speed with `jobs` runs training at once: measured so, else measured with
    /// another number at once and scaled as if the device's throughput were the same.
    pub fn get(&self, shape: &str, jobs: u32) -> Option<Speed> {
        let levels = self.steps.get(shape)?;
        let at = if levels.contains_key(&jobs) {
            jobs
        } else {
            *levels.keys().min_by_key(|n| n.abs_diff(jobs))?
        };
        let mut values = levels.get(&at)?.clone();
        let runs = values.len();
        let step_s = median(&mut values)? * jobs as f64 / at as f64;
        let start_s = median(&mut self.starts.clone()).unwrap_or(0.0);
        let cold_s = self
            .cold
            .get(shape)
            .and_then(|c| median(&mut c.clone()))
            .unwrap_or(0.0);
        Some(Speed {
            step_s,
            start_s,
            cold_s,
            at_once: at,
            runs,
        })
    }
}

/// One run of a sweep as the forecast sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub shape: String,
    pub steps: u64,
    /// Its place in the queue's order (its draw in an early-stopped sweep, else its index).
    pub order: u64,
    pub bracket: u32,
    pub rungs: Vec<u64>,
    /// Where it stands: the steps trained, and whether it has ended.
    pub done: u64,
    pub ended: bool,
    /// Its swept settings (a search's trial: the values it was given).
    pub settings: Vec<(String, serde_json::Value)>,
}

/// A sweep's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Each planned run's time trained to its end, in plan order (`None`: its shape has no
    /// speed).
    pub per_run: Vec<Option<f64>>,
    /// The sweep's wall time: P10, P50, P90 (equal for a sweep without decisions).
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    /// The steps the sweep trains (P50).
    pub steps: u64,
    /// Outcomes simulated (1 for a sweep without decisions).
    pub simulations: usize,
}

/// How a sweep chooses and stops its runs, for the simulation.
pub struct Rules<'a> {
    pub early_stop: Option<&'a EarlyStop>,
    /// A search and a maker of trial k's work from what it sees (`None`: the values make no
    /// run).
    pub search: Option<(&'a Search, &'a Maker<'a>)>,
}

/// Makes trial k of a search from the trials it sees.
pub type Maker<'a> = dyn Fn(&Search, u64, &[Observation]) -> Option<Work> + 'a;

/// Simulations of an early-stopped sweep or a search.
pub const SIMULATIONS: usize = 200;

/// The forecast of `runs` (the plan's) with `jobs` workers at `speeds`; `None` if a run's
/// shape has no speed.
pub fn forecast(runs: &[Work], rules: &Rules<'_>, speeds: &Speeds, jobs: u32) -> Option<Forecast> {
    // Each shape's speed worked out once (medians of every sample), not once per simulated
    // run.
    let known: std::cell::RefCell<HashMap<String, Option<Speed>>> = Default::default();
    let speed_of = |shape: &str| -> Option<Speed> {
        *known
            .borrow_mut()
            .entry(shape.to_string())
            .or_insert_with(|| speeds.get(shape, jobs))
    };
    let per_run: Vec<Option<f64>> = runs
        .iter()
        .map(|w| speed_of(&w.shape).map(|s| s.start_s + w.steps as f64 * s.step_s))
        .collect();
    let random = rules.early_stop.is_some() || rules.search.is_some();
    let n = if random { SIMULATIONS } else { 1 };
    let mut walls = Vec::with_capacity(n);
    let mut steps = Vec::with_capacity(n);
    for i in 0..n {
        let (wall, trained) = simulate(runs, rules, &speed_of, jobs, i as u64)?;
        walls.push(wall);
        steps.push(trained as f64);
    }
    walls.sort_by(f64::total_cmp);
    let pick = |q: f64| walls[((walls.len() - 1) as f64 * q).round() as usize];
    Some(Forecast {
        per_run,
        p10: pick(0.1),
        p50: pick(0.5),
        p90: pick(0.9),
        steps: median(&mut steps).unwrap_or(0.0) as u64,
        simulations: n,
    })
}

/// A run in the simulation.
struct Sim {
    work: Work,
    speed: crate::forecast::Speed,
    /// The step it has trained to, and the step it trains to next (`None`: ended).
    at: u64,
    until: Option<u64>,
    running: bool,
    /// Its quality: lower is better; its value at a rung is this plus noise that shrinks.
    quality: f64,
    values: Vec<Option<f64>>,
    ended: bool,
}

/// One simulated execution: its wall time and the steps it trained.
fn simulate(
    plan: &[Work],
    rules: &Rules<'_>,
    speed_of: &dyn Fn(&str) -> Option<Speed>,
    jobs: u32,
    seed: u64,
) -> Option<(f64, u64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut runs: Vec<Sim> = Vec::with_capacity(plan.len());
    let mut log: Vec<Decision> = Vec::new();
    // A run enters where it stands: the rungs it passed were promotions, the rung it stopped
    // at a stop, the rung it waits at a value not yet decided (values drawn, as for any run).
    // A search learns: its trials are chosen by its own code from simulated results, of an
    // objective drawn for this simulation over its space.
    let objective = rules.search.map(|(s, _)| Objective::draw(s, &mut rng));
    let add = |runs: &mut Vec<Sim>,
               log: &mut Vec<Decision>,
               work: Work,
               rng: &mut ChaCha8Rng|
     -> Option<()> {
        let speed = speed_of(&work.shape)?;
        let quality = match &objective {
            Some(f) => f.at(&work.settings) + SEED_NOISE * normal(rng),
            None => normal(rng),
        };
        let mut values = vec![None; work.rungs.len()];
        let mut until = Some(work.steps);
        if rules.early_stop.is_some() {
            until = work
                .rungs
                .iter()
                .copied()
                .find(|&r| r > work.done)
                .or(Some(work.steps));
            for (k, &rung) in work.rungs.iter().enumerate() {
                if rung > work.done {
                    break;
                }
                values[k] = Some(quality + noise(k) * normal(rng));
                let last = work.rungs.get(k + 1).is_none_or(|&next| next > work.done);
                let action = match (last, work.ended) {
                    (false, _) => Some(Action::Promote),
                    (true, true) => Some(Action::Stop),
                    // Waiting at its rung for a decision.
                    (true, false) => {
                        until = None;
                        None
                    }
                };
                if let Some(action) = action {
                    log.push(Decision {
                        run: runs.len() as i64,
                        bracket: work.bracket,
                        rung: k as u32,
                        step: rung,
                        action,
                        value: values[k].unwrap_or(0.0),
                        rank: 0,
                        peers: 0,
                        cutoff: None,
                        reason: String::new(),
                    });
                }
            }
        }
        let ended = work.ended || work.done >= work.steps;
        runs.push(Sim {
            at: work.done,
            until: if ended { None } else { until },
            ended,
            work,
            speed,
            running: false,
            quality,
            values,
        });
        Some(())
    };
    for w in plan {
        add(&mut runs, &mut log, w.clone(), &mut rng)?;
    }
    let search = rules.search.map(|(s, make)| {
        // Each simulation draws its own trials: another seed of the same search.
        let s = Search {
            seed: s.seed.wrapping_add(seed.wrapping_mul(0x9E37_79B9)),
            ..s.clone()
        };
        (s, make)
    });
    // (time it ends, run, worker); each worker process compiles a shape's kernels once.
    let mut busy: Vec<(f64, usize, usize)> = Vec::new();
    let workers = jobs.max(1) as usize;
    let mut compiled: Vec<std::collections::HashSet<String>> = vec![Default::default(); workers];
    let mut now = 0.0;
    let mut trained = 0u64;
    loop {
        // Free workers take queued runs in the queue's order.
        while busy.len() < workers {
            let next = runs
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.running && !r.ended && r.until.is_some_and(|u| u > r.at))
                .min_by_key(|(i, r)| (r.work.order, *i))
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let worker = (0..workers)
                .find(|w| busy.iter().all(|b| b.2 != *w))
                .unwrap_or(0);
            let r = &mut runs[i];
            let until = r.until.unwrap_or(r.work.steps);
            let mut took = r.speed.start_s + (until - r.at) as f64 * r.speed.step_s;
            if compiled[worker].insert(r.work.shape.clone()) {
                took += r.speed.cold_s;
            }
            r.running = true;
            busy.push((now + took, i, worker));
        }
        if busy.is_empty() {
            break;
        }
        // The next run to stop training.
        let (k, &(end, i, _)) = busy
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.0.total_cmp(&b.1.0))?;
        busy.remove(k);
        now = end;
        let r = &mut runs[i];
        let until = r.until.unwrap_or(r.work.steps);
        trained += until - r.at;
        r.at = until;
        r.running = false;
        if until >= r.work.steps {
            r.ended = true;
            r.until = None;
        } else if let Some(rung) = r.work.rungs.iter().position(|&s| s == until) {
            r.values[rung] = Some(r.quality + noise(rung) * normal(&mut rng));
            r.until = None;
        }
        if let Some(config) = rules.early_stop {
            let entrants: Vec<Entrant> = runs
                .iter()
                .enumerate()
                .map(|(i, r)| Entrant {
                    run: i as i64,
                    draw: r.work.order,
                    bracket: r.work.bracket,
                    out: false,
                    values: r.values.clone(),
                })
                .collect();
            let steps = runs.iter().map(|r| r.work.steps).max().unwrap_or(0);
            for d in early_stop::decide(config, steps, &entrants, &log) {
                let r = &mut runs[d.run as usize];
                match d.action {
                    Action::Promote => {
                        r.until = Some(
                            r.work
                                .rungs
                                .get(d.rung as usize + 1)
                                .copied()
                                .unwrap_or(r.work.steps),
                        );
                    }
                    Action::Stop => r.ended = true,
                }
                log.push(d);
            }
        }
        if let Some((search, make)) = &search {
            loop {
                let k = runs.len() as u64;
                let ready = search.ready(k, |j| runs.get(j as usize).is_some_and(|r| r.ended));
                if !ready {
                    break;
                }
                let seen: Vec<Observation> = runs
                    .iter()
                    .enumerate()
                    .take(search.visible(k) as usize)
                    .filter(|(_, r)| r.ended)
                    .map(|(j, r)| {
                        let passed = r.values.iter().filter(|v| v.is_some()).count();
                        let (level, value) = if r.at >= r.work.steps {
                            (COMPLETED, r.quality)
                        } else {
                            let last = r.values.iter().rev().find_map(|v| *v);
                            (passed.saturating_sub(1) as u32, last.unwrap_or(r.quality))
                        };
                        Observation {
                            trial: j as u64,
                            values: r.work.settings.iter().map(|(_, v)| v.clone()).collect(),
                            level,
                            value,
                            rungs: r
                                .work
                                .rungs
                                .iter()
                                .zip(&r.values)
                                .map_while(|(&step, v)| v.map(|v| (step, v)))
                                .collect(),
                        }
                    })
                    .collect();
                match make(search, k, &seen) {
                    Some(work) => add(&mut runs, &mut log, work, &mut rng)?,
                    None => {
                        // A trial whose values make no run fails at once.
                        let mut failed = plan.first()?.clone();
                        failed.order = k;
                        failed.ended = true;
                        add(&mut runs, &mut log, failed, &mut rng)?;
                    }
                }
            }
        }
    }
    Some((now, trained))
}

/// A planned run as forecast work.
pub fn work(run: &RunSpec) -> Work {
    let place = run.early_stop.as_ref();
    Work {
        shape: shape(&run.config, run.vocab_size),
        steps: run.config.train.steps,
        order: place.map_or(run.index as u64, |p| p.draw),
        bracket: place.map_or(0, |p| p.bracket),
        rungs: place.map(|p| p.steps.clone()).unwrap_or_default(),
        done: 0,
        ended: false,
        settings: run.swept.clone(),
    }
}

/// The forecast of a plan with `jobs` workers: its runs, and for a search the trials it will
/// choose (drawn, in each simulation, from the space as a search with another seed would).
pub fn of_plan(plan: &Plan, speeds: &Speeds, jobs: u32) -> Option<Forecast> {
    let runs: Vec<Work> = plan.runs.iter().map(work).collect();
    let sweep = Sweep {
        experiment: &plan.experiment.name,
        first: plan.runs.first()?,
        early_stop: plan.early_stop.as_ref(),
        search: plan.search.as_ref(),
    };
    sweep.forecast(&runs, speeds, jobs)
}

/// What a sweep's forecast needs besides its runs: how it stops and chooses them.
pub struct Sweep<'a> {
    pub experiment: &'a str,
    /// Its first run (a search's later trials are it with other values).
    pub first: &'a RunSpec,
    pub early_stop: Option<&'a EarlyStop>,
    pub search: Option<&'a Search>,
}

impl Sweep<'_> {
    /// The forecast of `runs` (each where it stands) and of the trials still to come.
    pub fn forecast(&self, runs: &[Work], speeds: &Speeds, jobs: u32) -> Option<Forecast> {
        let make = |search: &Search, k: u64, seen: &[Observation]| -> Option<Work> {
            let values = search.choose(k, seen).values;
            crate::sweep::searching::trial_spec(
                self.first,
                &values,
                k,
                self.experiment,
                search,
                self.early_stop,
            )
            .ok()
            .map(|spec| work(&spec))
        };
        let rules = Rules {
            early_stop: self.early_stop,
            search: self.search.map(|s| (s, &make as &Maker<'_>)),
        };
        forecast(runs, &rules, speeds, jobs)
    }
}

/// Runs of each shape a plan's runs can take, one per shape: its runs', and for a search the
/// shapes its trials can draw (found by drawing many; at most `limit`).
pub fn shapes(plan: &Plan, limit: usize) -> Vec<RunSpec> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut keep = |spec: &RunSpec, out: &mut Vec<RunSpec>| {
        let s = shape(&spec.config, spec.vocab_size);
        if !seen.contains(&s) && out.len() < limit {
            seen.push(s);
            out.push(spec.clone());
        }
    };
    for run in &plan.runs {
        keep(run, &mut out);
    }
    if let (Some(search), Some(first)) = (&plan.search, plan.runs.first()) {
        for k in 0..512u64 {
            let s = Search {
                seed: search.seed.wrapping_add(k),
                ..search.clone()
            };
            let values = s.choose(0, &[]).values;
            let name = &plan.experiment.name;
            let early_stop = plan.early_stop.as_ref();
            if let Ok(spec) =
                crate::sweep::searching::trial_spec(first, &values, 0, name, &s, early_stop)
            {
                keep(&spec, &mut out);
            }
        }
    }
    out
}

/// An objective over a search's space, drawn for one simulation: a bowl around a random
/// optimum on each numeric key (in log space for a log range; half the time beyond an end of
/// the range, as a learning rate's best often is, where the objective only falls towards that
/// end) and a random offset for each value of a choice, so that some regions are better and a
/// search that learns finds them. A key that makes the model or its batch larger is a bowl
/// whose optimum lies in the top quarter of its range or beyond: at a fixed number of steps a
/// larger model or batch reaches a lower loss, so a search drifts to the slowest shapes, and a
/// forecast that ignored it ran short (docs/benchmarks.md, "Forecasts").
struct Objective {
    keys: Vec<(String, Term)>,
}

enum Term {
    Bowl {
        low: f64,
        high: f64,
        log: bool,
        best: f64,
        weight: f64,
    },
    Offsets(Vec<(serde_json::Value, f64)>),
}

impl Objective {
    fn draw(search: &Search, rng: &mut ChaCha8Rng) -> Objective {
        use crate::manifest::Distribution as D;
        let bowl = |low: f64, high: f64, log: bool, rng: &mut ChaCha8Rng| Term::Bowl {
            low,
            high,
            log,
            best: rng.random_range(-0.5..1.5),
            weight: rng.random_range(1.0..4.0),
        };
        let keys = search
            .space
            .iter()
            .map(|(key, d)| {
                let mut term = match d {
                    D::Uniform(u) => bowl(u.uniform.0, u.uniform.1, false, rng),
                    D::LogUniform(u) => bowl(u.loguniform.0, u.loguniform.1, true, rng),
                    D::IntUniform(u) => bowl(u.randint.0 as f64, u.randint.1 as f64, false, rng),
                    D::Choice(c) => {
                        let numbers: Vec<f64> =
                            c.choice.iter().filter_map(|v| v.as_f64()).collect();
                        let (low, high) = numbers
                            .iter()
                            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
                        if SIZE_KEYS.contains(&key.as_str())
                            && numbers.len() == c.choice.len()
                            && low < high
                        {
                            bowl(low, high, false, rng)
                        } else {
                            Term::Offsets(
                                c.choice.iter().map(|v| (v.clone(), normal(rng))).collect(),
                            )
                        }
                    }
                };
                if let (true, Term::Bowl { best, .. }) =
                    (SIZE_KEYS.contains(&key.as_str()), &mut term)
                {
                    *best = rng.random_range(0.75..1.5);
                }
                (key.clone(), term)
            })
            .collect();
        Objective { keys }
    }

    /// Its value for these settings (lower is better).
    fn at(&self, settings: &[(String, serde_json::Value)]) -> f64 {
        let mut total = 0.0;
        for (key, term) in &self.keys {
            let Some((_, v)) = settings.iter().find(|(k, _)| k == key) else {
                continue;
            };
            total += match term {
                Term::Bowl {
                    low,
                    high,
                    log,
                    best,
                    weight,
                } => {
                    let x = v.as_f64().unwrap_or(*low);
                    let u = if *log {
                        (x.max(f64::MIN_POSITIVE).ln() - low.ln()) / (high.ln() - low.ln())
                    } else {
                        (x - low) / (high - low)
                    };
                    weight * (u - best).powi(2)
                }
                Term::Offsets(offsets) => offsets
                    .iter()
                    .find(|(c, _)| c == v)
                    .map_or(0.0, |(_, o)| *o),
            };
        }
        total
    }
}

/// Settings whose larger values make a larger model or batch.
const SIZE_KEYS: [&str; 6] = [
    "model.layers",
    "model.dim",
    "model.ffn.hidden_mult",
    "model.block_size",
    "train.batch_size",
    "train.grad_accum",
];

/// The noise of a run's value at rung `k` around its quality: it shrinks as the run trains,
/// so that later rungs agree more with how good the run is.
fn noise(k: usize) -> f64 {
    0.1 / (1.0 + k as f64)
}

/// How much a trial's outcome varies beside its settings, against an objective whose values
/// spread over about 2 between a space's best and worst regions. A search's trials share one
/// `train.seed` (the same batches in the same order), so little: on the tiny preset even the
/// best configuration's spread over five seeds (0.023) is a twentieth of the spread between
/// configurations, and one seed removes most of that.
const SEED_NOISE: f64 = 0.02;

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(shape: &str, steps: u64, trainer_s: f64, start: i64) -> Sample {
        Sample {
            shape: shape.into(),
            steps,
            trainer_s,
            wall_s: Some(trainer_s + 1.0),
            start,
            end: Some(start + ((trainer_s + 1.0) * 1e3) as i64),
            process: None,
        }
    }

    fn work(order: u64, steps: u64) -> Work {
        Work {
            shape: "a".into(),
            steps,
            order,
            bracket: 0,
            rungs: Vec::new(),
            done: 0,
            ended: false,
            settings: Vec::new(),
        }
    }

    #[test]
    fn speeds_are_per_shape_and_per_runs_at_once() {
        // Two runs one after the other, then two at once at half the speed.
        let samples = [
            sample("a", 100, 10.0, 0),
            sample("a", 100, 10.0, 20_000),
            sample("a", 100, 20.0, 40_000),
            sample("a", 100, 20.0, 40_000),
        ];
        let speeds = Speeds::fit(&samples);
        let one = speeds.get("a", 1).unwrap();
        assert_eq!(
            (one.step_s, one.start_s, one.at_once, one.runs),
            (0.1, 1.0, 1, 2)
        );
        assert_eq!(speeds.get("a", 2).unwrap().step_s, 0.2);
        // Never measured with 4 at once: scaled from 2, the nearest.
        assert_eq!(speeds.get("a", 4).unwrap().step_s, 0.4);
        assert!(speeds.get("b", 1).is_none());
    }

    #[test]
    fn a_process_first_run_of_a_shape_is_cold_and_paid_once_per_worker() {
        // The machine's first run of shape a (process 1) compiled everything the disk caches
        // keep; process 2's first run of it still took 5 s more than its later runs.
        let mut samples = vec![
            sample("a", 100, 60.0, 0),
            sample("a", 100, 10.0, 70_000),
            sample("a", 100, 15.0, 90_000),
            sample("a", 100, 10.0, 110_000),
            sample("a", 100, 10.0, 130_000),
        ];
        for (i, s) in samples.iter_mut().enumerate() {
            s.process = Some(if i < 2 { 1 } else { 2 });
        }
        let speeds = Speeds::fit(&samples);
        let a = speeds.get("a", 1).unwrap();
        assert_eq!((a.step_s, a.start_s, a.cold_s), (0.1, 1.0, 5.0));
        let runs: Vec<Work> = (0..4).map(|i| work(i, 100)).collect();
        let rules = Rules {
            early_stop: None,
            search: None,
        };
        // One worker pays it once; two workers (each its own process) twice.
        assert_eq!(
            forecast(&runs, &rules, &speeds, 1).unwrap().p50,
            4.0 * 11.0 + 5.0
        );
        assert_eq!(
            forecast(&runs, &rules, &speeds, 2).unwrap().p50,
            2.0 * 21.0 + 5.0
        );
    }

    #[test]
    fn a_plain_sweep_is_scheduled_over_the_workers() {
        let speeds = Speeds::fit(&[sample("a", 100, 10.0, 0)]);
        let runs: Vec<Work> = (0..3).map(|i| work(i, 100)).collect();
        let rules = Rules {
            early_stop: None,
            search: None,
        };
        let one = forecast(&runs, &rules, &speeds, 1).unwrap();
        assert_eq!(one.per_run, vec![Some(11.0); 3]);
        assert_eq!(
            (one.p10, one.p50, one.p90, one.steps),
            (33.0, 33.0, 33.0, 300)
        );
        // Two workers, each at the speed measured with one at once times two (no sample with
        // two at once): the same throughput, so no faster, and one run alone at the end.
        let two = forecast(&runs, &rules, &speeds, 2).unwrap();
        assert_eq!(two.p50, 21.0 + 21.0);
    }

    #[test]
    fn early_stopping_forecasts_a_range_below_the_full_sweep() {
        let speeds = Speeds::fit(&[sample("a", 100, 10.0, 0)]);
        let config = EarlyStop::for_tests(crate::early_stop::StopMethod::Asha);
        let runs: Vec<Work> = (0..27)
            .map(|i| Work {
                rungs: config.rungs(0, 270),
                ..work(i, 270)
            })
            .collect();
        let rules = Rules {
            early_stop: Some(&config),
            search: None,
        };
        let f = forecast(&runs, &rules, &speeds, 1).unwrap();
        let full = 27.0 * (1.0 + 27.0);
        assert!(f.p10 <= f.p50 && f.p50 <= f.p90, "{f:?}");
        assert!(f.p90 < full / 2.0, "{f:?} against {full}");
        // At least every run to the first rung, and the best to the end.
        assert!(f.steps >= 27 * 10 + 260, "{f:?}");
    }

    #[test]
    fn drawn_objectives_favour_larger_models_and_leave_other_choices_to_chance() {
        use crate::manifest::{Choice, Distribution};
        let choice =
            |values: Vec<serde_json::Value>| Distribution::Choice(Choice { choice: values });
        let search = Search::for_tests(vec![
            (
                "model.dim".into(),
                choice(vec![32.into(), 48.into(), 64.into()]),
            ),
            (
                "model.ffn.unit".into(),
                choice(vec!["glu".into(), "gelu".into()]),
            ),
        ]);
        let at = |f: &Objective, dim: u64, unit: &str| {
            f.at(&[
                ("model.dim".into(), dim.into()),
                ("model.ffn.unit".into(), unit.into()),
            ])
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut wider, mut glu) = (0, 0);
        for _ in 0..200 {
            let f = Objective::draw(&search, &mut rng);
            wider += usize::from(at(&f, 64, "glu") < at(&f, 32, "glu"));
            glu += usize::from(at(&f, 64, "glu") < at(&f, 64, "gelu"));
        }
        assert_eq!(wider, 200, "the widest model is better than the narrowest");
        assert!((60..140).contains(&glu), "glu better in {glu} of 200 draws");
    }
}
