//! Curves for the dashboard: x axes, smoothing over the full recorded series, grouped mean
//! with its min–max band, and downsampling that keeps minima and spikes.
//!
//! Smoothing runs on every recorded point before anything is dropped, so a curve looks the
//! same however many points the browser is sent; downsampling keeps each bucket's lowest and
//! highest point, so a minimum or a loss spike never disappears from the chart.

use std::collections::BTreeMap;

use serde::Serialize;

/// What the x axis shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    Step,
    /// Tokens trained on: step × tokens per step.
    Tokens,
    /// Seconds of training, summed over a run's attempts.
    Time,
}

impl XAxis {
    pub fn parse(s: &str) -> Option<XAxis> {
        match s {
            "step" => Some(XAxis::Step),
            "tokens" => Some(XAxis::Tokens),
            "time" => Some(XAxis::Time),
            _ => None,
        }
    }
}

/// How a curve is smoothed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    None,
    /// s₀ = x₀, sₜ = w·sₜ₋₁ + (1−w)·xₜ (TensorBoard's classic slider).
    Ema {
        weight: f64,
    },
    /// mₜ = w·mₜ₋₁ + (1−w)·xₜ from m = 0, divided by 1 − wᵗ⁺¹ so that the start is not pulled
    /// towards zero (Adam's bias correction; TensorBoard's current slider).
    Debiased {
        weight: f64,
    },
    /// The mean of the last `window` points.
    Mean {
        window: usize,
    },
}

impl Smoothing {
    /// From the query's `smooth` name and its parameter (a weight in [0, 1) for the EMAs, a
    /// window of points for the mean).
    pub fn parse(name: &str, param: Option<f64>) -> Result<Smoothing, String> {
        let weight = |default: f64| {
            let w = param.unwrap_or(default);
            if (0.0..1.0).contains(&w) {
                Ok(w)
            } else {
                Err(format!("smoothing weight {w} is outside [0, 1)"))
            }
        };
        match name {
            "none" => Ok(Smoothing::None),
            "ema" => Ok(Smoothing::Ema {
                weight: weight(0.6)?,
            }),
            "debiased" => Ok(Smoothing::Debiased {
                weight: weight(0.6)?,
            }),
            "mean" => {
                let w = param.unwrap_or(10.0);
                if (1.0..=1e6).contains(&w) && w.fract() == 0.0 {
                    Ok(Smoothing::Mean { window: w as usize })
                } else {
                    Err(format!(
                        "a moving-average window is a whole number of points from 1 to 1000000, not {w}"
                    ))
                }
            }
            other => Err(format!(
                "unknown smoothing `{other}`: use none, ema, debiased or mean"
            )),
        }
    }
}

/// Smooths values one at a time; the live stream keeps one per curve, so that points appended
/// later continue the same smoothed line. Non-finite values pass through unsmoothed and do not
/// disturb the state (a NaN loss stays visible as a gap, not as a poisoned line).
#[derive(Debug, Clone)]
pub struct Smoother {
    how: Smoothing,
    last: Option<f64>,
    biased: f64,
    seen: i32,
    window: std::collections::VecDeque<f64>,
    sum: f64,
}

impl Smoother {
    pub fn new(how: Smoothing) -> Smoother {
        Smoother {
            how,
            last: None,
            biased: 0.0,
            seen: 0,
            window: Default::default(),
            sum: 0.0,
        }
    }

    pub fn push(&mut self, v: f64) -> f64 {
        if !v.is_finite() {
            return v;
        }
        match self.how {
            Smoothing::None => v,
            Smoothing::Ema { weight } => {
                let s = match self.last {
                    Some(prev) => weight * prev + (1.0 - weight) * v,
                    None => v,
                };
                self.last = Some(s);
                s
            }
            Smoothing::Debiased { weight } => {
                self.biased = weight * self.biased + (1.0 - weight) * v;
                self.seen = self.seen.saturating_add(1);
                let correction = 1.0 - weight.powi(self.seen);
                if correction > 0.0 {
                    self.biased / correction
                } else {
                    v
                }
            }
            Smoothing::Mean { window } => {
                self.window.push_back(v);
                self.sum += v;
                if self.window.len() > window {
                    self.sum -= self.window.pop_front().unwrap_or(0.0);
                }
                // Re-summed now and then so that rounding cannot drift over a long series.
                if self.window.len() == window && self.seen % 4096 == 0 {
                    self.sum = self.window.iter().sum();
                }
                self.seen = self.seen.wrapping_add(1);
                self.sum / self.window.len() as f64
            }
        }
    }
}

/// Maps a run's recorded (step, t_ms) to the chosen x. `t_ms` restarts at zero when a run is
/// resumed, so time keeps an offset: the last time seen before each restart.
#[derive(Debug, Clone)]
pub struct XMap {
    axis: XAxis,
    tokens_per_step: f64,
    offset_ms: i64,
    last_ms: i64,
}

impl XMap {
    pub fn new(axis: XAxis, tokens_per_step: f64) -> XMap {
        XMap {
            axis,
            tokens_per_step,
            offset_ms: 0,
            last_ms: 0,
        }
    }

    pub fn x(&mut self, step: i64, t_ms: i64) -> f64 {
        match self.axis {
            XAxis::Step => step as f64,
            XAxis::Tokens => step as f64 * self.tokens_per_step,
            XAxis::Time => {
                if t_ms < self.last_ms {
                    self.offset_ms += self.last_ms;
                }
                self.last_ms = t_ms;
                (self.offset_ms + t_ms) as f64 / 1000.0
            }
        }
    }
}

/// One recorded point: step, value, milliseconds into its attempt.
pub type Row = (i64, f64, i64);

/// x and y arrays, as the chart library takes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Line {
    pub x: Vec<f64>,
    /// Non-finite values are sent as null: a gap in the line.
    pub y: Vec<f64>,
}

/// A run's curve, raw and smoothed, with the state to continue it from its last point.
#[derive(Debug, Clone)]
pub struct Curve {
    pub steps: Vec<i64>,
    pub raw: Line,
    pub smooth: Line,
    pub map: XMap,
    pub smoother: Smoother,
}

impl Curve {
    pub fn new(map: XMap, smoothing: Smoothing) -> Curve {
        Curve {
            steps: Vec::new(),
            raw: Line::default(),
            smooth: Line::default(),
            map,
            smoother: Smoother::new(smoothing),
        }
    }

    /// Appends rows (by step); returns how many were new.
    pub fn extend(&mut self, rows: impl IntoIterator<Item = Row>) -> usize {
        let before = self.steps.len();
        for (step, value, t_ms) in rows {
            if self.steps.last().is_some_and(|&last| step <= last) {
                continue;
            }
            let x = self.map.x(step, t_ms);
            self.steps.push(step);
            self.raw.x.push(x);
            self.raw.y.push(value);
            self.smooth.x.push(x);
            self.smooth.y.push(self.smoother.push(value));
        }
        self.steps.len() - before
    }

    pub fn last_step(&self) -> Option<i64> {
        self.steps.last().copied()
    }
}

/// At most `budget` points of a line (at least 4), keeping the first and last point and, in
/// each of (budget − 2) / 2 equal runs of points, the lowest and the highest, in x order.
pub fn downsample(line: &Line, budget: usize) -> Line {
    let n = line.x.len();
    let budget = budget.max(4);
    if n <= budget {
        return line.clone();
    }
    let buckets = (budget - 2) / 2;
    let mut out = Line::default();
    let mut push = |i: usize| {
        out.x.push(line.x[i]);
        out.y.push(line.y[i]);
    };
    push(0);
    let inner = n - 2;
    for b in 0..buckets {
        let lo = 1 + b * inner / buckets;
        let hi = 1 + (b + 1) * inner / buckets;
        let (mut min, mut max) = (None::<usize>, None::<usize>);
        for i in lo..hi {
            let v = line.y[i];
            if !v.is_finite() {
                continue;
            }
            if min.is_none_or(|m| v < line.y[m]) {
                min = Some(i);
            }
            if max.is_none_or(|m| v > line.y[m]) {
                max = Some(i);
            }
        }
        match (min, max) {
            (Some(a), Some(b)) if a == b => push(a),
            (Some(a), Some(b)) => {
                push(a.min(b));
                push(a.max(b));
            }
            // A bucket of only non-finite values stays a gap.
            _ if hi > lo => push(lo),
            _ => {}
        }
    }
    push(n - 1);
    out
}

/// Several runs' curves summarised: at each step some run recorded, the mean over the runs
/// that recorded it, and the lowest and highest of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Band {
    pub x: Vec<f64>,
    pub mean: Vec<f64>,
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// How many runs each point averages.
    pub n: Vec<u32>,
}

/// The band of the given curves' smoothed lines (their raw lines where smoothing is off), by
/// step. The x of a step is the mean of the runs' x there (equal for steps and tokens when
/// the runs share a batch shape).
pub fn band(curves: &[&Curve]) -> Band {
    let mut by_step: BTreeMap<i64, (f64, f64, f64, f64, u32)> = BTreeMap::new();
    for c in curves {
        for (i, &step) in c.steps.iter().enumerate() {
            let (x, v) = (c.smooth.x[i], c.smooth.y[i]);
            if !v.is_finite() {
                continue;
            }
            let e = by_step
                .entry(step)
                .or_insert((0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY, 0));
            e.0 += x;
            e.1 += v;
            e.2 = e.2.min(v);
            e.3 = e.3.max(v);
            e.4 += 1;
        }
    }
    let mut out = Band::default();
    for (_, (xs, sum, lo, hi, n)) in by_step {
        out.x.push(xs / n as f64);
        out.mean.push(sum / n as f64);
        out.lo.push(lo);
        out.hi.push(hi);
        out.n.push(n);
    }
    out
}

/// At most `budget` points of a band: per bucket the points where the mean is lowest and
/// highest, with the bucket's lowest `lo` and highest `hi`, so that the band never narrows.
pub fn downsample_band(b: &Band, budget: usize) -> Band {
    let n = b.x.len();
    let budget = budget.max(4);
    if n <= budget {
        return b.clone();
    }
    let buckets = budget / 2;
    let mut out = Band::default();
    for k in 0..buckets {
        let (lo_i, hi_i) = (k * n / buckets, (k + 1) * n / buckets);
        if lo_i == hi_i {
            continue;
        }
        let range = lo_i..hi_i;
        let min_at = range
            .clone()
            .min_by(|&i, &j| b.mean[i].total_cmp(&b.mean[j]))
            .unwrap_or(lo_i);
        let max_at = range
            .clone()
            .max_by(|&i, &j| b.mean[i].total_cmp(&b.mean[j]))
            .unwrap_or(lo_i);
        let lo = range.clone().map(|i| b.lo[i]).fold(f64::INFINITY, f64::min);
        let hi = range
            .clone()
            .map(|i| b.hi[i])
            .fold(f64::NEG_INFINITY, f64::max);
        let n_min = range.map(|i| b.n[i]).min().unwrap_or(0);
        let mut picks = vec![min_at.min(max_at), min_at.max(max_at)];
        picks.dedup();
        for i in picks {
            out.x.push(b.x[i]);
            out.mean.push(b.mean[i]);
            out.lo.push(lo);
            out.hi.push(hi);
            out.n.push(n_min);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(values: &[f64], how: Smoothing) -> Curve {
        let mut c = Curve::new(XMap::new(XAxis::Step, 1.0), how);
        c.extend(
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as i64 + 1, v, i as i64 * 10)),
        );
        c
    }

    /// A noisy loss curve with a spike and a dip, long enough to be downsampled.
    fn noisy(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let t = i as f64 / n as f64;
                let base = 1.5 + 2.5 * (-5.0 * t).exp() + 0.05 * ((i as f64) * 1.7).sin();
                match i {
                    _ if i == n / 3 => 40.0,
                    _ if i == 2 * n / 3 => -3.0,
                    _ => base,
                }
            })
            .collect()
    }

    #[test]
    fn ema_equals_a_reference_over_the_full_series() {
        let values = noisy(100_000);
        let w = 0.9;
        let mut reference = Vec::with_capacity(values.len());
        let mut s = values[0];
        for &v in &values {
            s = w * s + (1.0 - w) * v;
            reference.push(s);
        }
        let c = curve(&values, Smoothing::Ema { weight: w });
        assert_eq!(c.smooth.y.len(), values.len());
        for (got, want) in c.smooth.y.iter().zip(&reference) {
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{got} {want}"
            );
        }
        // Downsampling only picks from the smoothed series: every point sent is a point of
        // the full smoothed series at its own x.
        let sent = downsample(&c.smooth, 2000);
        assert!(sent.x.len() <= 2000);
        for (x, y) in sent.x.iter().zip(&sent.y) {
            assert_eq!(*y, reference[*x as usize - 1]);
        }
    }

    #[test]
    fn debiased_ema_starts_at_the_first_value_and_matches_the_formula() {
        let values = [4.0, 2.0, 3.0, 1.0];
        let w = 0.5;
        let c = curve(&values, Smoothing::Debiased { weight: w });
        let mut m = 0.0;
        for (t, &v) in values.iter().enumerate() {
            m = w * m + (1.0 - w) * v;
            let want = m / (1.0 - w.powi(t as i32 + 1));
            assert!((c.smooth.y[t] - want).abs() < 1e-12);
        }
        assert_eq!(c.smooth.y[0], 4.0);
    }

    #[test]
    fn moving_average_is_over_the_last_window() {
        let c = curve(&[1.0, 2.0, 3.0, 4.0, 5.0], Smoothing::Mean { window: 2 });
        assert_eq!(c.smooth.y, vec![1.0, 1.5, 2.5, 3.5, 4.5]);
        let long = noisy(20_000);
        let c = curve(&long, Smoothing::Mean { window: 50 });
        let want: f64 = long[long.len() - 50..].iter().sum::<f64>() / 50.0;
        assert!((c.smooth.y[long.len() - 1] - want).abs() < 1e-9);
    }

    #[test]
    fn smoothing_continues_where_it_stopped() {
        let values = noisy(5000);
        let whole = curve(&values, Smoothing::Debiased { weight: 0.95 });
        let mut parts = curve(&values[..3000], Smoothing::Debiased { weight: 0.95 });
        parts.extend(
            values[3000..]
                .iter()
                .enumerate()
                .map(|(i, &v)| (3001 + i as i64, v, 0)),
        );
        assert_eq!(parts.smooth.y, whole.smooth.y);
    }

    #[test]
    fn non_finite_values_are_gaps_that_do_not_poison_the_smoothing() {
        let c = curve(&[1.0, f64::NAN, 3.0], Smoothing::Ema { weight: 0.5 });
        assert!(c.smooth.y[1].is_nan());
        assert_eq!(c.smooth.y[2], 2.0);
    }

    #[test]
    fn downsampling_keeps_extremes_ends_and_order() {
        let values = noisy(100_000);
        let line = curve(&values, Smoothing::None).raw;
        let d = downsample(&line, 2000);
        assert!(d.x.len() <= 2000 && d.x.len() > 1900, "{}", d.x.len());
        assert_eq!(d.x[0], 1.0);
        assert_eq!(*d.x.last().unwrap(), 100_000.0);
        assert!(d.x.windows(2).all(|w| w[0] < w[1]));
        assert!(d.y.contains(&40.0) && d.y.contains(&-3.0));
        let short = downsample(
            &Line {
                x: vec![1.0],
                y: vec![2.0],
            },
            2000,
        );
        assert_eq!(short.x, vec![1.0]);
    }

    #[test]
    fn time_keeps_counting_across_resumed_attempts() {
        let mut m = XMap::new(XAxis::Time, 1.0);
        let xs: Vec<f64> = [(1, 1000), (2, 2000), (3, 500), (4, 1500)]
            .iter()
            .map(|&(s, t)| m.x(s, t))
            .collect();
        assert_eq!(xs, vec![1.0, 2.0, 2.5, 3.5]);
        let mut m = XMap::new(XAxis::Tokens, 4096.0);
        assert_eq!(m.x(3, 0), 12288.0);
    }

    #[test]
    fn band_is_mean_min_and_max_per_step() {
        let a = curve(&[1.0, 2.0, 3.0], Smoothing::None);
        let b = curve(&[3.0, 4.0], Smoothing::None);
        let band = band(&[&a, &b]);
        assert_eq!(band.x, vec![1.0, 2.0, 3.0]);
        assert_eq!(band.mean, vec![2.0, 3.0, 3.0]);
        assert_eq!(band.lo, vec![1.0, 2.0, 3.0]);
        assert_eq!(band.hi, vec![3.0, 4.0, 3.0]);
        assert_eq!(band.n, vec![2, 2, 1]);
        let long: Vec<Curve> = (0..3)
            .map(|k| {
                curve(
                    &noisy(50_000)
                        .iter()
                        .map(|v| v + k as f64)
                        .collect::<Vec<_>>(),
                    Smoothing::None,
                )
            })
            .collect();
        let full = super::band(&long.iter().collect::<Vec<_>>());
        let d = downsample_band(&full, 2000);
        assert!(d.x.len() <= 2000);
        let max_hi = full.hi.iter().copied().fold(f64::MIN, f64::max);
        let min_lo = full.lo.iter().copied().fold(f64::MAX, f64::min);
        assert_eq!(d.hi.iter().copied().fold(f64::MIN, f64::max), max_hi);
        assert_eq!(d.lo.iter().copied().fold(f64::MAX, f64::min), min_lo);
    }

    #[test]
    fn smoothing_parameters_are_checked() {
        assert_eq!(
            Smoothing::parse("ema", Some(1.0)).unwrap_err(),
            "smoothing weight 1 is outside [0, 1)"
        );
        assert!(Smoothing::parse("mean", Some(2.5)).is_err());
        assert!(Smoothing::parse("gauss", None).is_err());
        assert_eq!(
            Smoothing::parse("mean", None).unwrap(),
            Smoothing::Mean { window: 10 }
        );
    }
}
