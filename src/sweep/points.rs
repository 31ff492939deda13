//! Sweep points: the runs an experiment's axes describe, grid (first axis slowest) × zip ×
//! random samples, before any of them is resolved.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::MAX_RUNS;
use super::axes::number;
use super::planner::AxisKind;
use super::planner::{Planner, located};
use crate::manifest::Distribution;

/// What a point of the sweep sets: (axis index, pointer of the value) and the values.
pub(super) struct Point {
    pub(super) refs: Vec<(usize, String)>,
    pub(super) values: Vec<(String, Value)>,
}

fn draw(dist: &Distribution, rng: &mut ChaCha8Rng) -> Value {
    match dist {
        Distribution::Uniform(u) => number(if u.uniform.0 == u.uniform.1 {
            u.uniform.0
        } else {
            rng.random_range(u.uniform.0..u.uniform.1)
        }),
        Distribution::LogUniform(u) => {
            let (a, b) = (u.loguniform.0.ln(), u.loguniform.1.ln());
            number(if a == b {
                u.loguniform.0
            } else {
                rng.random_range(a..b).exp()
            })
        }
        Distribution::IntUniform(u) => Value::from(rng.random_range(u.randint.0..=u.randint.1)),
        Distribution::Choice(c) => c.choice[rng.random_range(0..c.choice.len())].clone(),
    }
}

impl Planner<'_> {
    /// Every point of the sweep, or `None` (with a problem recorded) when there would be more
    /// than [`MAX_RUNS`].
    pub(super) fn points(&mut self) -> Option<Vec<Point>> {
        let p = self;
        if let Some(search) = p.search() {
            // A search's runs are its trials; the plan holds those chosen before any ends.
            let refs: Vec<(usize, String)> = (0..p.axes.len())
                .map(|i| (i, p.axes[i].pointer.clone()))
                .collect();
            return Some(
                (0..search.first())
                    .map(|k| Point {
                        refs: refs.clone(),
                        values: search.choose(k, &[]).values,
                    })
                    .collect(),
            );
        }
        let loaded = p.loaded;
        // The points: grid (first axis slowest) × zip × random samples.
        let grid: Vec<usize> = (0..p.axes.len())
            .filter(|&i| p.axes[i].pointer.starts_with("/sweep/grid/"))
            .collect();
        let zip: Vec<usize> = (0..p.axes.len())
            .filter(|&i| p.axes[i].pointer.starts_with("/sweep/zip/"))
            .collect();
        let random: Vec<usize> = (0..p.axes.len())
            .filter(|&i| matches!(p.axes[i].kind, AxisKind::Random(_)))
            .collect();
        let len = |i: usize| match &p.axes[i].kind {
            AxisKind::Values(v) => v.len() as u64,
            AxisKind::Random(_) => 1,
        };
        let grid_count: u64 = grid
            .iter()
            .map(|&i| len(i))
            .try_fold(1u64, |acc, n| acc.checked_mul(n))
            .unwrap_or(u64::MAX);
        let zip_count = zip.first().map(|&i| len(i)).unwrap_or(1);
        let samples = if random.is_empty() {
            1
        } else {
            loaded.manifest.sweep.random.samples.unwrap_or(1)
        };
        let total = grid_count.saturating_mul(zip_count).saturating_mul(samples);
        if total > MAX_RUNS {
            let origin = located(&loaded.doc, "/sweep", true);
            p.problem(
                origin,
                "sweep",
                format!("the sweep expands to {total} runs; at most {MAX_RUNS} are allowed"),
                "too many runs".into(),
                Some("narrow an axis, or use [sweep.random] with fewer samples".into()),
            );
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(loaded.manifest.sweep.random.seed);
        let drawn: Vec<Vec<Value>> = (0..samples)
            .map(|_| {
                random
                    .iter()
                    .map(|&i| match &p.axes[i].kind {
                        AxisKind::Random(d) => draw(d, &mut rng),
                        AxisKind::Values(_) => Value::Null,
                    })
                    .collect()
            })
            .collect();

        let axis_keys: Vec<String> = p.axes.iter().map(|a| a.key.clone()).collect();
        let mut points: Vec<Point> = Vec::with_capacity(total as usize);
        let mut counter = vec![0usize; grid.len()];
        for _ in 0..grid_count {
            for z in 0..zip_count as usize {
                for sample in &drawn {
                    let mut refs = Vec::with_capacity(p.axes.len());
                    let mut values = Vec::with_capacity(p.axes.len());
                    for (slot, &axis) in grid.iter().enumerate() {
                        if let AxisKind::Values(v) = &p.axes[axis].kind {
                            let (value, pointer) = &v[counter[slot]];
                            refs.push((axis, pointer.clone()));
                            values.push((axis_keys[axis].clone(), value.clone()));
                        }
                    }
                    for &axis in &zip {
                        if let AxisKind::Values(v) = &p.axes[axis].kind {
                            let (value, pointer) = &v[z];
                            refs.push((axis, pointer.clone()));
                            values.push((axis_keys[axis].clone(), value.clone()));
                        }
                    }
                    for (slot, &axis) in random.iter().enumerate() {
                        refs.push((axis, p.axes[axis].pointer.clone()));
                        values.push((axis_keys[axis].clone(), sample[slot].clone()));
                    }
                    points.push(Point { refs, values });
                }
            }
            for slot in (0..grid.len()).rev() {
                counter[slot] += 1;
                if (counter[slot] as u64) < len(grid[slot]) {
                    break;
                }
                counter[slot] = 0;
            }
        }
        Some(points)
    }
}
