//! Early stopping of a sweep's runs (ASHA, Hyperband, the median rule): where runs pause
//! (rungs), and the decisions taken there, a pure function of the settings and the results
//! recorded so far, so that any number of workers, and any crash, gives the same decisions.
//!
//! The order is fixed: a bracket's runs enter its first rung in their draw order (a seeded
//! shuffle of the plan), and a later rung in the order they were promoted into it. At a rung,
//! results are read in that order and only up to the first run that has not reported yet: a
//! late run holds the decisions after it and never changes one taken before it. The decisions
//! already logged are never taken again; [`decide`] returns only the new ones.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use crate::manifest::{ObjectiveMode, StopMethod};

/// The metrics a rung may compare: those recorded at every evaluation, and the training loss
/// (recorded at log steps).
pub const OBJECTIVES: [&str; 3] = ["val_loss", "val_ppl", "train_loss"];

/// Validated early-stopping settings of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStop {
    pub method: StopMethod,
    pub metric: String,
    pub mode: ObjectiveMode,
    pub min_steps: u64,
    pub eta: u64,
    pub brackets: u32,
    pub smooth: u32,
    pub min_peers: u32,
    pub seed: u64,
    /// Decide each result as it arrives, never waiting for later runs (a search's trials:
    /// a trial that waited for trials chosen after it ends would wait forever). ASHA then
    /// stops a run outside the top 1/eta of the results so far, as Ray Tune's ASHA does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_arrival: bool,
}

impl EarlyStop {
    /// The order `runs` runs enter the search in: `order[i]` is the draw of the run at plan
    /// index `i`, a seeded shuffle of 0..runs.
    pub fn draws(&self, runs: usize) -> Vec<u64> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut entry: Vec<usize> = (0..runs).collect();
        entry.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(self.seed));
        let mut draws = vec![0; runs];
        for (draw, index) in entry.into_iter().enumerate() {
            draws[index] = draw as u64;
        }
        draws
    }

    /// The bracket of the run with this draw: round robin over Hyperband's brackets.
    pub fn bracket_of(&self, draw: u64) -> u32 {
        (draw % self.brackets.max(1) as u64) as u32
    }

    /// The steps a run of `steps` steps in `bracket` pauses at: `min_steps · eta^(bracket + k)`
    /// below `steps`, in integer arithmetic (a float logarithm can lose a rung).
    pub fn rungs(&self, bracket: u32, steps: u64) -> Vec<u64> {
        let mut rung = Some(self.min_steps);
        for _ in 0..bracket {
            rung = rung.and_then(|r| r.checked_mul(self.eta));
        }
        let mut out = Vec::new();
        while let Some(r) = rung.filter(|&r| r < steps) {
            out.push(r);
            rung = r.checked_mul(self.eta);
        }
        out
    }

    /// Orders values best first.
    fn key(&self, value: f64) -> f64 {
        self.mode.key(value)
    }

    /// A one-line description, for reports: `asha on val_loss (min), eta 3, rungs from 50`.
    pub fn describe(&self) -> String {
        let method = match self.method {
            StopMethod::Asha => "ASHA".to_string(),
            StopMethod::Hyperband => format!("Hyperband ({} brackets)", self.brackets),
            StopMethod::Median => "median rule".to_string(),
        };
        let mode = self.mode.better();
        format!(
            "{method} on {} ({mode}), eta {}, first rung at step {}, min_peers {}",
            self.metric, self.eta, self.min_steps, self.min_peers
        )
    }
}

/// What a decision does to a paused run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// On to the next rung (or the last step) from the rung's checkpoint.
    Promote,
    /// Stopped for good.
    Stop,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Stop => "stop",
        }
    }

    /// What the decision did to the run: `promoted` or `stopped`.
    pub fn done(self) -> &'static str {
        match self {
            Action::Promote => "promoted",
            Action::Stop => "stopped",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        [Action::Promote, Action::Stop]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// One decision, with what it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub run: i64,
    pub bracket: u32,
    /// The rung's number in its bracket, from 0.
    pub rung: u32,
    /// The rung's step.
    pub step: u64,
    pub action: Action,
    /// The run's value at the rung.
    pub value: f64,
    /// Its rank among the results compared (1 is the best).
    pub rank: u32,
    /// How many results were compared, its own included.
    pub peers: u32,
    /// The value a run had to match: ASHA's worst promoted value, the median rule's median.
    pub cutoff: Option<f64>,
    pub reason: String,
}

impl Decision {
    /// "promoted at step 9: rank 1 of 3: …", as reports say it.
    pub fn describe(&self) -> String {
        format!(
            "{} at step {}: {}",
            self.action.done(),
            self.step,
            self.reason
        )
    }
}

/// One run of the search, as the decisions see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entrant {
    pub run: i64,
    /// Its place in the order runs enter the search (their first rung) in.
    pub draw: u64,
    pub bracket: u32,
    /// It can report nothing more (failed or cancelled): it holds no decision.
    pub out: bool,
    /// Its value at each rung (by rung number) where it has paused, or has been decided: a
    /// value that can no longer change.
    pub values: Vec<Option<f64>>,
}

/// The decisions the results allow that `log` does not hold yet, in the order they are taken.
/// `entrants` are the search's runs (in any order: they enter by draw); `steps` is
/// `train.steps`.
pub fn decide(
    config: &EarlyStop,
    steps: u64,
    entrants: &[Entrant],
    log: &[Decision],
) -> Vec<Decision> {
    let by_run: HashMap<i64, &Entrant> = entrants.iter().map(|e| (e.run, e)).collect();
    let mut new: Vec<Decision> = Vec::new();
    for bracket in 0..config.brackets.max(1) {
        let rungs = config.rungs(bracket, steps);
        let mut members: Vec<&Entrant> = entrants.iter().filter(|e| e.bracket == bracket).collect();
        members.sort_by_key(|e| (e.draw, e.run));
        let mut entering: Vec<i64> = members.iter().map(|e| e.run).collect();
        // Whether every run that will ever enter this rung has entered it.
        let mut settled = true;
        for (k, &step) in rungs.iter().enumerate() {
            let rung = Rung {
                config,
                bracket,
                index: k as u32,
                step,
            };
            let mut results: Vec<(i64, f64)> = Vec::new();
            let mut held = false;
            for run in &entering {
                let Some(e) = by_run.get(run) else { continue };
                match e.values.get(k).copied().flatten() {
                    Some(v) => results.push((*run, v)),
                    None if e.out => {}
                    None => {
                        held = true;
                        break;
                    }
                }
            }
            let complete = settled && !held;
            let decided: HashMap<i64, Action> = log
                .iter()
                .chain(new.iter())
                .filter(|d| d.bracket == bracket && d.rung == k as u32)
                .map(|d| (d.run, d.action))
                .collect();
            let taken = match config.method {
                StopMethod::Asha | StopMethod::Hyperband if config.on_arrival => {
                    rung.asha_on_arrival(&results, decided)
                }
                StopMethod::Asha | StopMethod::Hyperband => rung.asha(&results, complete, decided),
                StopMethod::Median => rung.median(&results, decided),
            };
            new.extend(taken);
            entering = log
                .iter()
                .chain(new.iter())
                .filter(|d| {
                    d.bracket == bracket && d.rung == k as u32 && d.action == Action::Promote
                })
                .map(|d| d.run)
                .collect();
            settled = complete;
        }
    }
    new
}

/// One rung of one bracket, deciding.
struct Rung<'a> {
    config: &'a EarlyStop,
    bracket: u32,
    index: u32,
    step: u64,
}

impl Rung<'_> {
    fn decision(
        &self,
        (run, value): (i64, f64),
        action: Action,
        rank: usize,
        peers: usize,
        cutoff: Option<f64>,
        reason: String,
    ) -> Decision {
        Decision {
            run,
            bracket: self.bracket,
            rung: self.index,
            step: self.step,
            action,
            value,
            rank: rank as u32,
            peers: peers as u32,
            cutoff,
            reason,
        }
    }

    /// `results` ranked best first (ties: the earlier run first), with their positions.
    fn ranked(&self, results: &[(i64, f64)]) -> Vec<(i64, f64)> {
        let mut ranked = results.to_vec();
        ranked.sort_by(|a, b| self.config.key(a.1).total_cmp(&self.config.key(b.1)));
        ranked
    }

    /// ASHA: as each result arrives (in order), the top 1/eta of the results so far that were
    /// not promoted yet are promoted; once the rung is complete, the rest stop (the best goes
    /// on if 1/eta rounds to none, and every run if there are fewer than `min_peers`).
    fn asha(
        &self,
        results: &[(i64, f64)],
        complete: bool,
        mut decided: HashMap<i64, Action>,
    ) -> Vec<Decision> {
        let (eta, min_peers) = (self.config.eta, self.config.min_peers as usize);
        let mut out = Vec::new();
        for p in min_peers.max(1)..=results.len() {
            let top = p / eta as usize;
            if top == 0 {
                continue;
            }
            let ranked = self.ranked(&results[..p]);
            let cutoff = ranked[top - 1].1;
            for (rank, &result) in ranked.iter().enumerate().take(top) {
                if decided.contains_key(&result.0) {
                    continue;
                }
                decided.insert(result.0, Action::Promote);
                let reason = format!("rank {} of {p}: in the top {top} (1/{eta})", rank + 1);
                out.push(self.decision(result, Action::Promote, rank + 1, p, Some(cutoff), reason));
            }
        }
        if !complete || results.is_empty() {
            return out;
        }
        let n = results.len();
        let ranked = self.ranked(results);
        if n < min_peers {
            for (rank, &result) in ranked.iter().enumerate() {
                if decided.insert(result.0, Action::Promote).is_none() {
                    let reason = format!(
                        "{n} results, fewer than min_peers = {min_peers}: \
                         no run is stopped"
                    );
                    out.push(self.decision(result, Action::Promote, rank + 1, n, None, reason));
                }
            }
            return out;
        }
        if !decided.values().any(|a| *a == Action::Promote) {
            let best = ranked[0];
            if decided.insert(best.0, Action::Promote).is_none() {
                let reason = format!("the best of {n} (the top 1/{eta} of {n} rounds to none)");
                out.push(self.decision(best, Action::Promote, 1, n, Some(best.1), reason));
            }
        }
        let top = (n / eta as usize).max(1);
        let cutoff = ranked[top - 1].1;
        for (rank, &result) in ranked.iter().enumerate() {
            if decided.contains_key(&result.0) {
                continue;
            }
            decided.insert(result.0, Action::Stop);
            let reason = format!(
                "rank {} of {n}: outside the top {top} (1/{eta}) once all \
                 {n} had reported",
                rank + 1
            );
            out.push(self.decision(result, Action::Stop, rank + 1, n, Some(cutoff), reason));
        }
        out
    }

    /// ASHA deciding on arrival: each result, in order, goes on if it is in the top 1/eta
    /// (at least the best) of itself and the results before it; with fewer than `min_peers`
    /// results before it, it goes on.
    fn asha_on_arrival(
        &self,
        results: &[(i64, f64)],
        decided: HashMap<i64, Action>,
    ) -> Vec<Decision> {
        let (eta, min_peers) = (self.config.eta as usize, self.config.min_peers as usize);
        let mut out = Vec::new();
        for (q, &result) in results.iter().enumerate() {
            if decided.contains_key(&result.0) {
                continue;
            }
            let p = q + 1;
            let ranked = self.ranked(&results[..p]);
            let rank = 1 + ranked.iter().position(|r| r.0 == result.0).unwrap_or(q);
            if q < min_peers {
                let reason = format!("{q} earlier results, fewer than min_peers = {min_peers}");
                out.push(self.decision(result, Action::Promote, rank, p, None, reason));
                continue;
            }
            let top = (p / eta).max(1);
            let cutoff = ranked[top - 1].1;
            let (action, verdict) = if rank <= top {
                (Action::Promote, "in")
            } else {
                (Action::Stop, "outside")
            };
            let reason = format!("rank {rank} of {p}: {verdict} the top {top} (1/{eta}) so far");
            out.push(self.decision(result, action, rank, p, Some(cutoff), reason));
        }
        out
    }

    /// The median rule: each result, in order, goes on if it is no worse than the median of
    /// the results before it (with fewer than `min_peers` of those, it goes on).
    fn median(&self, results: &[(i64, f64)], decided: HashMap<i64, Action>) -> Vec<Decision> {
        let min_peers = self.config.min_peers as usize;
        let mut out = Vec::new();
        for (q, &result) in results.iter().enumerate() {
            if decided.contains_key(&result.0) {
                continue;
            }
            let before = &results[..q];
            let rank = 1 + before
                .iter()
                .filter(|b| self.config.key(b.1) < self.config.key(result.1))
                .count();
            if q < min_peers {
                let reason = format!("{q} earlier results, fewer than min_peers = {min_peers}");
                out.push(self.decision(result, Action::Promote, rank, q + 1, None, reason));
                continue;
            }
            let ranked = self.ranked(before);
            let median = if q % 2 == 1 {
                ranked[q / 2].1
            } else {
                (ranked[q / 2 - 1].1 + ranked[q / 2].1) / 2.0
            };
            let (action, verdict) = if self.config.key(result.1) <= self.config.key(median) {
                (Action::Promote, "no worse than")
            } else {
                (Action::Stop, "worse than")
            };
            let reason = format!(
                "{:.4} is {verdict} the median {median:.4} of the {q} runs \
                 before it",
                result.1
            );
            out.push(self.decision(result, action, rank, q + 1, Some(median), reason));
        }
        out
    }
}

#[cfg(test)]
impl EarlyStop {
    /// `method` on val_loss (min) from step 10, eta 3, one bracket, no smoothing, for tests.
    pub(crate) fn for_tests(method: StopMethod) -> EarlyStop {
        EarlyStop {
            method,
            metric: "val_loss".into(),
            mode: ObjectiveMode::Min,
            min_steps: 10,
            eta: 3,
            brackets: 1,
            smooth: 1,
            min_peers: 1,
            seed: 0,
            on_arrival: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entrant(run: i64, values: &[Option<f64>]) -> Entrant {
        Entrant {
            run,
            draw: run as u64,
            bracket: 0,
            out: false,
            values: values.to_vec(),
        }
    }

    fn actions(decisions: &[Decision]) -> Vec<(i64, u32, Action)> {
        decisions
            .iter()
            .map(|d| (d.run, d.rung, d.action))
            .collect()
    }

    #[test]
    fn rungs_are_integer_powers_below_the_last_step() {
        let c = EarlyStop::for_tests(StopMethod::Asha);
        assert_eq!(c.rungs(0, 270), [10, 30, 90]);
        assert_eq!(c.rungs(0, 271), [10, 30, 90, 270]);
        assert_eq!(c.rungs(1, 270), [30, 90]);
        assert_eq!(c.rungs(3, 270), Vec::<u64>::new());
        // log(243, 3) is 4.999… in floats; the integer rungs keep 81 below 243.
        let c = EarlyStop {
            min_steps: 1,
            ..EarlyStop::for_tests(StopMethod::Asha)
        };
        assert_eq!(c.rungs(0, 243), [1, 3, 9, 27, 81]);
        let huge = EarlyStop {
            min_steps: u64::MAX / 2,
            ..EarlyStop::for_tests(StopMethod::Asha)
        };
        assert_eq!(huge.rungs(0, u64::MAX), [u64::MAX / 2]);
    }

    #[test]
    fn asha_on_arrival_decides_each_result_against_those_before_it_and_never_waits() {
        // A search's trials: results arrive in trial order and nothing waits for a later one.
        let c = EarlyStop {
            on_arrival: true,
            min_peers: 2,
            ..EarlyStop::for_tests(StopMethod::Asha)
        };
        let values = [3.0, 2.0, 2.5, 1.0, 4.0, 1.5];
        let entrants: Vec<Entrant> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| entrant(i as i64 + 1, &[Some(v), None]))
            .collect();
        let taken = decide(&c, 100, &entrants, &[]);
        // Two on min_peers; 2.5 is 2nd of 3 (top 1 goes on), 1.0 1st of 4, 4.0 5th of 5,
        // 1.5 2nd of 6 (top 2).
        assert_eq!(
            actions(&taken),
            [
                (1, 0, Action::Promote),
                (2, 0, Action::Promote),
                (3, 0, Action::Stop),
                (4, 0, Action::Promote),
                (5, 0, Action::Stop),
                (6, 0, Action::Promote),
            ]
        );
        assert_eq!(
            taken[2].reason,
            "rank 2 of 3: outside the top 1 (1/3) so far"
        );
        assert_eq!(taken[2].cutoff, Some(2.0));
        // A late result holds those after it, as ever, but the rung need not be complete.
        let mut late = entrants.clone();
        late[2].values[0] = None;
        assert_eq!(actions(&decide(&c, 100, &late, &[])).len(), 2);
    }

    #[test]
    fn asha_promotes_the_top_third_of_each_prefix_and_stops_the_rest_once_complete() {
        let c = EarlyStop::for_tests(StopMethod::Asha);
        let values = [3.0, 2.0, 1.0, 4.0, 5.0, 0.5];
        let mut entrants: Vec<Entrant> = (0..6)
            .map(|i| entrant(i as i64 + 1, &[None, None]))
            .collect();
        // Runs 1, 2 and 4 have reported; run 3 is late: only the prefix 1, 2 counts, and
        // 2 results promote none.
        for i in [0, 1, 3] {
            entrants[i].values[0] = Some(values[i]);
        }
        assert!(decide(&c, 100, &entrants, &[]).is_empty());
        // Run 3 reports: prefix 1..4, top 1 of 3 is run 3, top 1 of 4 still run 3.
        entrants[2].values[0] = Some(values[2]);
        let first = decide(&c, 100, &entrants, &[]);
        assert_eq!(actions(&first), [(3, 0, Action::Promote)]);
        assert_eq!(first[0].rank, 1);
        assert_eq!(first[0].peers, 3);
        // Nothing new on a second pass.
        assert!(decide(&c, 100, &entrants, &first).is_empty());
        // The rest report: prefix 6 promotes its top 2 (runs 6 and 3): run 6 is new; the rung
        // is complete, so 1, 2, 4, 5 stop.
        entrants[4].values[0] = Some(values[4]);
        entrants[5].values[0] = Some(values[5]);
        let second = decide(&c, 100, &entrants, &first);
        assert_eq!(
            actions(&second),
            [
                (6, 0, Action::Promote),
                (2, 0, Action::Stop),
                (1, 0, Action::Stop),
                (4, 0, Action::Stop),
                (5, 0, Action::Stop),
            ]
        );
        // The same decisions taken in one pass at the end, in the same order.
        let all: Vec<Decision> = first.iter().chain(second.iter()).cloned().collect();
        assert_eq!(decide(&c, 100, &entrants, &[]), all);
    }

    #[test]
    fn a_failed_run_holds_nothing_and_the_best_goes_on_when_a_third_rounds_to_none() {
        let c = EarlyStop::for_tests(StopMethod::Asha);
        let mut entrants = vec![
            entrant(1, &[Some(2.0)]),
            entrant(2, &[None]),
            entrant(3, &[Some(1.0)]),
        ];
        assert!(decide(&c, 20, &entrants, &[]).is_empty(), "run 2 holds");
        entrants[1].out = true;
        let d = decide(&c, 20, &entrants, &[]);
        assert_eq!(actions(&d), [(3, 0, Action::Promote), (1, 0, Action::Stop)]);
    }

    #[test]
    fn the_next_rung_takes_runs_in_the_order_they_were_promoted() {
        let c = EarlyStop::for_tests(StopMethod::Asha);
        // Nine runs; rung 0 promotes 3 (in prefix order 2, then 5, then 9), rung 1 keeps 1.
        let v0 = [5.0, 1.0, 6.0, 7.0, 0.5, 8.0, 9.0, 9.5, 0.1];
        let mut entrants: Vec<Entrant> = (0..9)
            .map(|i| entrant(i as i64 + 1, &[Some(v0[i]), None]))
            .collect();
        let d0 = decide(&c, 100, &entrants, &[]);
        let promoted: Vec<i64> = d0
            .iter()
            .filter(|d| d.action == Action::Promote)
            .map(|d| d.run)
            .collect();
        assert_eq!(promoted, [2, 5, 9]);
        // At rung 1, run 9 reports first, but runs 2 and 5 were promoted before it: it waits.
        entrants[8].values[1] = Some(0.1);
        assert!(decide(&c, 100, &entrants, &d0).is_empty());
        entrants[1].values[1] = Some(3.0);
        entrants[4].values[1] = Some(2.0);
        let d1 = decide(&c, 100, &entrants, &d0);
        assert_eq!(
            actions(&d1),
            [
                (9, 1, Action::Promote),
                (5, 1, Action::Stop),
                (2, 1, Action::Stop)
            ]
        );
    }

    #[test]
    fn the_median_rule_compares_each_run_with_those_before_it() {
        let c = EarlyStop {
            min_peers: 2,
            ..EarlyStop::for_tests(StopMethod::Median)
        };
        let entrants: Vec<Entrant> = [3.0, 1.0, 2.5, 2.0, 4.0]
            .iter()
            .enumerate()
            .map(|(i, v)| entrant(i as i64 + 1, &[Some(*v)]))
            .collect();
        let d = decide(&c, 100, &entrants, &[]);
        // 1 and 2: too few before them; 3: median of (3, 1) is 2, 2.5 is worse; 4: median of
        // (3, 1, 2.5) is 2.5, 2 goes on; 5: median of (3, 1, 2.5, 2) is 2.25, 4 stops.
        assert_eq!(
            actions(&d),
            [
                (1, 0, Action::Promote),
                (2, 0, Action::Promote),
                (3, 0, Action::Stop),
                (4, 0, Action::Promote),
                (5, 0, Action::Stop),
            ]
        );
        assert_eq!(d[2].cutoff, Some(2.0));
        assert_eq!(d[4].cutoff, Some(2.25));
    }

    #[test]
    fn hyperband_brackets_start_at_later_rungs_and_maximising_flips_the_order() {
        let c = EarlyStop {
            brackets: 2,
            mode: ObjectiveMode::Max,
            ..EarlyStop::for_tests(StopMethod::Hyperband)
        };
        assert_eq!(
            (c.bracket_of(0), c.bracket_of(1), c.bracket_of(2)),
            (0, 1, 0)
        );
        // Draws are a seeded shuffle: every run once, the same for the same seed.
        let draws = c.draws(9);
        let mut sorted = draws.clone();
        sorted.sort();
        assert_eq!(sorted, (0..9).collect::<Vec<u64>>());
        assert_eq!(c.draws(9), draws);
        assert_ne!(
            EarlyStop {
                seed: 1,
                ..c.clone()
            }
            .draws(9),
            draws
        );
        let entrants = vec![
            Entrant {
                bracket: 0,
                ..entrant(1, &[Some(1.0), None])
            },
            Entrant {
                bracket: 1,
                ..entrant(2, &[Some(1.0)])
            },
            Entrant {
                bracket: 0,
                ..entrant(3, &[Some(2.0), None])
            },
        ];
        let d = decide(&c, 100, &entrants, &[]);
        // Bracket 0 (rungs 10, 30): the higher value goes on. Bracket 1 (rung 30): alone.
        assert_eq!(
            actions(&d),
            [
                (3, 0, Action::Promote),
                (1, 0, Action::Stop),
                (2, 0, Action::Promote)
            ]
        );
        assert_eq!(d[2].step, 30);
    }
}
