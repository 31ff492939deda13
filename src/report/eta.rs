//! The pace model of remaining time: steps left × seconds per step ÷ runs training at once.
//! Its paces come from finished runs' wall time, running runs' last step time, or progress
//! watched as it arrives; `xp run`'s progress lines use it, and `xp status` where the
//! forecast's model (`crate::forecast`) has no speed for an experiment's shapes.

use std::time::Instant;

/// Seconds per training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace(pub f64);

impl Pace {
    /// A finished run's pace: its wall time over its steps.
    pub fn of_finished(wall_s: f64, steps: u64) -> Option<Pace> {
        (steps > 0 && wall_s.is_finite()).then(|| Pace(wall_s / steps as f64))
    }

    /// A running run's pace, from its last recorded step time.
    pub fn of_step_ms(step_ms: f64) -> Pace {
        Pace(step_ms / 1e3)
    }

    /// The mean of several paces; `None` for none.
    pub fn mean(paces: &[Pace]) -> Option<Pace> {
        (!paces.is_empty())
            .then(|| Pace(paces.iter().map(|p| p.0).sum::<f64>() / paces.len() as f64))
    }

    /// Seconds until `steps_left` steps are trained by `at_once` runs in parallel (at least one).
    pub fn eta(self, steps_left: u64, at_once: usize) -> f64 {
        steps_left as f64 * self.0 / at_once.max(1) as f64
    }
}

/// A pace measured as a run's progress arrives, from the first report seen (so that a first
/// step spent compiling kernels does not count).
#[derive(Debug, Default)]
pub struct Stopwatch {
    since: Option<(Instant, u64)>,
}

impl Stopwatch {
    /// The pace so far, given the step now reached; `None` until a step has passed.
    pub fn pace(&mut self, step: u64) -> Option<Pace> {
        let (t0, s0) = *self.since.get_or_insert((Instant::now(), step));
        let done = step.checked_sub(s0).filter(|d| *d > 0)?;
        Some(Pace(t0.elapsed().as_secs_f64() / done as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_is_steps_times_pace_over_runs_at_once() {
        let pace = Pace::of_finished(100.0, 200).unwrap();
        assert_eq!(pace, Pace(0.5));
        assert_eq!(pace.eta(600, 1), 300.0);
        assert_eq!(pace.eta(600, 3), 100.0);
        assert_eq!(pace.eta(600, 0), 300.0);
        assert_eq!(Pace::of_finished(1.0, 0), None);
        assert_eq!(Pace::mean(&[Pace(1.0), Pace(3.0)]), Some(Pace(2.0)));
        assert_eq!(Pace::mean(&[]), None);
        assert_eq!(Pace::of_step_ms(250.0), Pace(0.25));
    }

    #[test]
    fn a_stopwatch_has_no_pace_until_a_step_passes() {
        let mut w = Stopwatch::default();
        assert_eq!(w.pace(10), None);
        assert_eq!(w.pace(10), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let pace = w.pace(12).unwrap();
        assert!(pace.0 >= 0.01, "{pace:?}");
    }
}
