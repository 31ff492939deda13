//! Searches that choose their trials (TPE, random): trial k's settings are a pure function of
//! the search's settings, k and the results of the trials a fixed rule lets it see, drawn from
//! a generator seeded by (seed, k), so that any number of workers, and any crash, gives the
//! same trials in the same order.
//!
//! The rule: trial k sees every trial before k − lag, and is chosen only once all of those
//! have ended (completed, stopped or failed), so that what it sees can no longer change. The
//! first `startup` trials see nothing and are drawn at random at once.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::manifest::{Distribution, ObjectiveMode, SearchMethod};
use crate::tpe::{self, Dim, Val};

/// Validated settings of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub method: SearchMethod,
    pub trials: u64,
    pub startup: u64,
    pub seed: u64,
    pub lag: u64,
    pub metric: String,
    pub mode: ObjectiveMode,
    pub candidates: u32,
    pub gamma: f64,
    pub multivariate: bool,
    /// The keys searched, in the manifest's order, and their distributions.
    pub space: Vec<(String, Distribution)>,
}

/// What a trial that ended showed, as the next trials see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub trial: u64,
    /// Its value of each key of the space, in the space's order.
    pub values: Vec<Value>,
    /// How far it got: the rungs it passed, or [`COMPLETED`].
    pub level: u32,
    /// Its objective where it ended (its last value, or its value at the rung it stopped at).
    pub value: f64,
    /// Its objective at each rung it reached, in rung order: (the rung's step, the value).
    pub rungs: Vec<(u64, f64)>,
}

/// The level of a trial that trained to its last step.
pub const COMPLETED: u32 = u32::MAX;

/// A trial's settings, and how they were chosen (for the log).
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    pub values: Vec<(String, Value)>,
    /// How many results it saw.
    pub seen: u64,
    pub how: String,
}

impl Search {
    /// The generator of trial `k`: one stream per trial, so that trial k's draw does not
    /// depend on how many draws the trials before it took.
    pub fn rng(&self, k: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(k);
        rng
    }

    /// How many trials trial `k` sees: those before k − lag (none for startup trials).
    pub fn visible(&self, k: u64) -> u64 {
        if k < self.startup || self.method == SearchMethod::Random {
            0
        } else {
            k.saturating_sub(self.lag)
        }
    }

    /// The trials chosen before any has ended: those that see none.
    pub fn first(&self) -> u64 {
        (0..self.trials)
            .take_while(|&k| self.visible(k) == 0)
            .count() as u64
    }

    /// Whether trial `k` can be chosen now, given which trials have ended.
    pub fn ready(&self, k: u64, ended: impl Fn(u64) -> bool) -> bool {
        k < self.trials && (0..self.visible(k)).all(ended)
    }

    fn dims(&self) -> Vec<Dim> {
        self.space.iter().map(|(_, d)| dim(d)).collect()
    }

    /// Trial `k`'s settings, from the trials it sees (`seen`: exactly the trials before
    /// [`Search::visible`]`(k)`, failed ones left out).
    pub fn choose(&self, k: u64, seen: &[Observation]) -> Chosen {
        let mut rng = self.rng(k);
        let dims = self.dims();
        let visible = self.visible(k);
        let usable: Vec<&Observation> = seen
            .iter()
            .filter(|o| o.trial < visible && o.value.is_finite())
            .collect();
        let (vals, how) = if visible == 0 {
            let how = match self.method {
                SearchMethod::Random => "drawn at random".to_string(),
                SearchMethod::Tpe if k < self.startup => format!(
                    "drawn at random (startup trial {} of {})",
                    k + 1,
                    self.startup
                ),
                SearchMethod::Tpe => {
                    format!("drawn at random (it sees no trial: lag {})", self.lag)
                }
            };
            (tpe::sample_prior(&dims, &mut rng), how)
        } else {
            let (observed, on) = self.model_data(&usable);
            let settings = tpe::Settings {
                candidates: self.candidates as usize,
                multivariate: self.multivariate,
                gamma: self.gamma,
                ..tpe::Settings::default()
            };
            // `suggest` draws from the prior below 2 results: the log says so.
            let below = tpe::n_below(self.gamma, observed.len());
            let how = if observed.len() < 2 {
                format!("drawn at random (TPE on {on}: fewer than 2 to model)")
            } else {
                format!(
                    "TPE on {on}: the best {below} against the other {}",
                    observed.len() - below
                )
            };
            (tpe::suggest(&dims, &observed, &settings, &mut rng), how)
        };
        let values = self
            .space
            .iter()
            .zip(vals)
            .map(|((key, d), v)| (key.clone(), value(d, v)))
            .collect();
        Chosen {
            values,
            seen: usable.len() as u64,
            how,
        }
    }

    /// What TPE is fitted on, in trial order, and a phrase for the log: each trial with its
    /// rank as the score. As BOHB (Falkner et al., 2018), the model is of the highest budget
    /// that at least d + 1 trials reached (d: the keys searched) — the final result, else the
    /// search's metric at a rung's step — and those trials rank first, by their value there.
    /// Unlike BOHB, the trials that stopped before that budget are kept, ranked after them by
    /// how far they got and then by their value (as Optuna ranks pruned trials): dropping them
    /// loses what the scheduler learnt (docs/benchmarks.md, "Search": TPE with ASHA found worse
    /// configurations on 3 of 5 seeds without them). Without such a budget, every trial ranks
    /// so.
    fn model_data(&self, usable: &[&Observation]) -> (Vec<(Vec<Val>, f64)>, String) {
        // A budget: `None` for the final result, else a rung's step (by its step, as in
        // Hyperband brackets have their rungs at other steps).
        let value_at = |o: &Observation, budget: Option<u64>| -> Option<f64> {
            match budget {
                None => (o.level == COMPLETED).then_some(o.value),
                Some(step) => o.rungs.iter().find(|r| r.0 == step).map(|r| r.1),
            }
            .filter(|v| v.is_finite())
        };
        let need = self.space.len() + 1;
        let mut steps: Vec<u64> = usable
            .iter()
            .flat_map(|o| o.rungs.iter().map(|&(step, _)| step))
            .collect();
        steps.sort_unstable_by(|a, b| b.cmp(a));
        steps.dedup();
        let budget = std::iter::once(None)
            .chain(steps.into_iter().map(Some))
            .find(|&b| usable.iter().filter(|o| value_at(o, b).is_some()).count() >= need);
        let at = |o: &Observation| budget.and_then(|b| value_at(o, b));
        let mut ranked: Vec<&Observation> = usable.to_vec();
        ranked.sort_by(|a, b| {
            match (at(a), at(b)) {
                (Some(x), Some(y)) => self.key(x).total_cmp(&self.key(y)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => b
                    .level
                    .cmp(&a.level)
                    .then(self.key(a.value).total_cmp(&self.key(b.value))),
            }
            .then(a.trial.cmp(&b.trial))
        });
        let first = ranked.iter().filter(|o| at(o).is_some()).count();
        let of_space = |o: &Observation| -> Option<Vec<Val>> {
            self.space
                .iter()
                .zip(&o.values)
                .map(|((_, d), v)| val(d, v))
                .collect()
        };
        let mut observed: Vec<(u64, Vec<Val>, f64)> = ranked
            .iter()
            .enumerate()
            .filter_map(|(rank, o)| Some((o.trial, of_space(o)?, rank as f64)))
            .collect();
        observed.sort_by_key(|o| o.0);
        let n = observed.len();
        let what = match budget {
            Some(None) => "that completed".to_string(),
            Some(Some(step)) => format!("that reached step {step} (a rung)"),
            None => String::new(),
        };
        let on = match budget {
            Some(_) if first == n => format!("the {n} trials {what}"),
            Some(_) => format!("{n} trials, the {first} {what} first"),
            None => format!(
                "{n} trials that ended, ranked by how far they got (none reached by {need})"
            ),
        };
        (observed.into_iter().map(|(_, v, s)| (v, s)).collect(), on)
    }

    /// Orders values best first.
    pub fn key(&self, value: f64) -> f64 {
        self.mode.key(value)
    }

    /// One line for reports: `TPE over train.lr, model.dim: 40 trials (10 at random), lag 3`.
    pub fn describe(&self) -> String {
        let keys: Vec<&str> = self.space.iter().map(|(k, _)| k.as_str()).collect();
        let mode = match self.mode {
            ObjectiveMode::Min => "min",
            ObjectiveMode::Max => "max",
        };
        match self.method {
            SearchMethod::Tpe => format!(
                "TPE over {}: {} trials ({} at random first), lag {}, {} ({mode})",
                keys.join(", "),
                self.trials,
                self.startup.min(self.trials),
                self.lag,
                self.metric
            ),
            SearchMethod::Random => format!(
                "random search over {}: {} trials, {} ({mode})",
                keys.join(", "),
                self.trials,
                self.metric
            ),
        }
    }
}

fn dim(d: &Distribution) -> Dim {
    match d {
        Distribution::Uniform(u) => Dim::Float {
            low: u.uniform.0,
            high: u.uniform.1,
            log: false,
        },
        Distribution::LogUniform(u) => Dim::Float {
            low: u.loguniform.0,
            high: u.loguniform.1,
            log: true,
        },
        Distribution::IntUniform(u) => Dim::Int {
            low: u.randint.0,
            high: u.randint.1,
            log: false,
        },
        Distribution::Choice(c) => Dim::Categorical { n: c.choice.len() },
    }
}

/// A drawn value in the manifest's terms.
fn value(d: &Distribution, v: Val) -> Value {
    match (d, v) {
        (Distribution::Choice(c), Val::Cat(i)) => c.choice.get(i).cloned().unwrap_or(Value::Null),
        (_, Val::Int(i)) => Value::from(i),
        (_, Val::Float(f)) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        (_, Val::Cat(i)) => Value::from(i as u64),
    }
}

/// A recorded value in the sampler's terms; `None` if it is not of the space (a trial of
/// another xp).
fn val(d: &Distribution, v: &Value) -> Option<Val> {
    match d {
        Distribution::Choice(c) => c.choice.iter().position(|x| x == v).map(Val::Cat),
        Distribution::IntUniform(_) => v.as_i64().map(Val::Int),
        Distribution::Uniform(_) | Distribution::LogUniform(_) => v.as_f64().map(Val::Float),
    }
}

#[cfg(test)]
impl Search {
    /// A TPE search over `space` with Optuna's defaults, 20 trials (4 at random), lag 2, for
    /// tests.
    pub(crate) fn for_tests(space: Vec<(String, Distribution)>) -> Search {
        Search {
            method: SearchMethod::Tpe,
            trials: 20,
            startup: 4,
            seed: 7,
            lag: 2,
            metric: "val_loss".into(),
            mode: ObjectiveMode::Min,
            candidates: 24,
            gamma: 0.1,
            multivariate: true,
            space,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Choice, LogUniform};

    fn search(method: SearchMethod) -> Search {
        Search {
            method,
            ..Search::for_tests(vec![
                (
                    "train.lr".into(),
                    Distribution::LogUniform(LogUniform {
                        loguniform: (1e-4, 1e-2),
                    }),
                ),
                (
                    "model.ffn.unit".into(),
                    Distribution::Choice(Choice {
                        choice: vec!["glu".into(), "swish".into(), "gelu".into()],
                    }),
                ),
            ])
        }
    }

    fn observe(s: &Search, k: u64) -> Observation {
        let chosen = s.choose(k, &[]);
        let lr = chosen.values[0].1.as_f64().unwrap();
        Observation {
            trial: k,
            values: chosen.values.into_iter().map(|(_, v)| v).collect(),
            level: COMPLETED,
            value: (lr.ln() - 1e-3f64.ln()).abs(),
            rungs: Vec::new(),
        }
    }

    #[test]
    fn a_trial_sees_the_trials_before_k_minus_lag_and_waits_for_them_to_end() {
        let s = search(SearchMethod::Tpe);
        assert_eq!(
            (s.visible(0), s.visible(3), s.visible(4), s.visible(9)),
            (0, 0, 2, 7)
        );
        assert!(s.ready(3, |_| false), "startup trials wait for nothing");
        assert!(!s.ready(5, |j| j < 2));
        assert!(s.ready(5, |j| j < 3));
        assert!(!s.ready(20, |_| true), "no trial past `trials`");
        assert_eq!(search(SearchMethod::Random).visible(9), 0);
    }

    #[test]
    fn a_trial_is_a_function_of_the_seed_k_and_what_it_sees() {
        let s = search(SearchMethod::Tpe);
        let seen: Vec<Observation> = (0..6).map(|k| observe(&s, k)).collect();
        let a = s.choose(8, &seen);
        assert_eq!(a, s.choose(8, &seen));
        // Results it may not see (trial 6 and later) change nothing.
        let mut more = seen.clone();
        more.push(Observation {
            trial: 6,
            ..seen[0].clone()
        });
        assert_eq!(a, s.choose(8, &more));
        assert_eq!(a.seen, 6);
        assert_eq!(
            a.how,
            "TPE on the 6 trials that completed: the best 1 against the other 5"
        );
        // Another seed, another trial; the startup draw is the seed's and k's alone.
        let other = Search {
            seed: 8,
            ..s.clone()
        };
        assert_ne!(a.values, other.choose(8, &seen).values);
        assert_eq!(s.choose(2, &[]), s.choose(2, &seen));
        assert_ne!(s.choose(2, &[]).values, s.choose(3, &[]).values);
    }

    #[test]
    fn values_are_of_the_space() {
        let s = search(SearchMethod::Tpe);
        let seen: Vec<Observation> = (0..10).map(|k| observe(&s, k)).collect();
        for k in 0..20 {
            let c = s.choose(k, &seen);
            let lr = c.values[0].1.as_f64().unwrap();
            assert!((1e-4..=1e-2).contains(&lr), "{lr}");
            assert!(["glu", "swish", "gelu"].contains(&c.values[1].1.as_str().unwrap()));
        }
    }

    #[test]
    fn a_trial_that_went_further_ranks_above_a_better_value_that_stopped() {
        // Trial 0 stopped at the first rung with the best value; trial 1 completed. TPE's
        // good group (the best one of two) is trial 1, so its draws lean to trial 1's unit.
        let s = Search {
            startup: 2,
            lag: 0,
            gamma: 0.5,
            ..search(SearchMethod::Tpe)
        };
        let at = |trial, unit: &str, level, value| Observation {
            trial,
            values: vec![Value::from(1e-3), Value::from(unit)],
            level,
            value,
            rungs: vec![(9, value)],
        };
        // Fewer than d + 1 = 3 trials at any budget: the ranking decides.
        let seen = [at(0, "glu", 0, 0.1), at(1, "gelu", COMPLETED, 2.0)];
        let gelu = (2..40)
            .filter(|&k| s.choose(k, &seen).values[1].1 == "gelu")
            .count();
        assert!(gelu > 25, "gelu chosen {gelu} of 38 times");
    }

    #[test]
    fn tpe_is_fitted_on_the_highest_budget_that_d_plus_one_trials_reached() {
        // Two keys, so a budget needs 3 trials. One trial (swish) completed; three reached
        // step 27, where gelu was best; the glu ones were best at step 9 and stopped there.
        // TPE models step 27: gelu is the good unit (ranking by how far trials got alone
        // would make it the completed swish trial).
        let s = Search {
            startup: 2,
            lag: 0,
            ..search(SearchMethod::Tpe)
        };
        let at = |trial, unit: &str, rungs: &[f64], completed: Option<f64>| Observation {
            trial,
            values: vec![Value::from(1e-3), Value::from(unit)],
            level: completed.map_or(rungs.len() as u32 - 1, |_| COMPLETED),
            value: completed.unwrap_or(*rungs.last().unwrap()),
            rungs: rungs.iter().zip([9, 27]).map(|(&v, s)| (s, v)).collect(),
        };
        let seen = vec![
            at(0, "glu", &[1.0], None),
            at(1, "gelu", &[1.6, 1.2], None),
            at(2, "glu", &[1.1], None),
            at(3, "swish", &[1.7, 1.5], Some(1.4)),
            at(4, "glu", &[1.2], None),
            at(5, "gelu", &[1.65, 1.25], None),
        ];
        assert_eq!(
            s.choose(8, &seen).how,
            "TPE on 6 trials, the 3 that reached step 27 (a rung) first: the best 1 against \
             the other 5"
        );
        let units = |seen: &[Observation]| {
            (6..46)
                .map(|k| s.choose(k, seen).values[1].1.clone())
                .collect::<Vec<_>>()
        };
        let gelu = units(&seen).iter().filter(|u| *u == "gelu").count();
        assert!(gelu > 20, "gelu chosen {gelu} of 40 times");
        // Once three have completed, the final result is the budget.
        let mut more = seen.clone();
        more.push(at(6, "swish", &[1.9, 1.7], Some(1.1)));
        more.push(at(7, "gelu", &[1.9, 1.6], Some(1.3)));
        assert_eq!(
            s.choose(9, &more).how,
            "TPE on 8 trials, the 3 that completed first: the best 1 against the other 7"
        );
        let swish = units(&more).iter().filter(|u| *u == "swish").count();
        assert!(swish > 20, "swish chosen {swish} of 40 times");
    }
}
