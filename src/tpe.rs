//! Tree-structured Parzen Estimator (Bergstra et al. 2011): proposes a search's next
//! configuration from the scores of those tried so far, with Optuna's `TPESampler` defaults
//! (Optuna 4.x, `optuna/samplers/_tpe/`), so that what is known about tuning Optuna carries over.
//!
//! The observations are split into the best few ("below", l(x)) and the rest ("above", g(x)).
//! Each group becomes a mixture of one kernel per observation plus one wide prior kernel;
//! candidates drawn from l(x) are scored by l(x)/g(x) and the best is taken. A pure function
//! of its inputs and the random state.
//!
//! Where the brief and Optuna's code differ, this follows the code (`parzen_estimator.py`):
//! the smallest bandwidth is `range / min(100, n + 2)` (the prior counts as a kernel), and a
//! categorical kernel spreads `prior_weight / (n + 1)` over the choices before adding 1 at the
//! observed one. Int axes use Optuna's discrete kernels: the probability mass of the integer's
//! cell [v − ½, v + ½] (in log space for log axes), never a density.

use std::cmp::Ordering;
use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI, LN_2, PI};

use rand::{Rng, RngExt};

/// One axis of a search space, in the units the user wrote.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    /// A real number in [low, high]; `log`: uniform in log space (low > 0).
    Float { low: f64, high: f64, log: bool },
    /// An integer in [low, high] inclusive; `log`: log-scaled (low > 0).
    Int { low: i64, high: i64, log: bool },
    /// One of `n` choices (index 0..n).
    Categorical { n: usize },
}

/// A value of one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    Float(f64),
    Int(i64),
    Cat(usize),
}

/// TPE's settings (Optuna's defaults in `Default`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Candidates drawn from l(x); the one maximising l(x)/g(x) is taken. Default 24.
    pub candidates: usize,
    /// Weight of the prior component. Default 1.0.
    pub prior_weight: f64,
    /// Joint sampling across axes (one kernel per observation for all axes). Default true.
    pub multivariate: bool,
    /// Fraction of observations in the "good" group: n_below = min(ceil(gamma * n), 25).
    /// Default 0.1.
    pub gamma: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            candidates: 24,
            prior_weight: 1.0,
            multivariate: true,
            gamma: 0.1,
        }
    }
}

/// Optuna's `default_gamma` caps the good group, so that l(x) stays sharp in long searches.
const MAX_BELOW: usize = 25;

/// How many of `n` results count as good: Optuna's `ceil(gamma · n)`, at least 1, at most 25.
pub fn n_below(gamma: f64, n: usize) -> usize {
    ((gamma * n as f64).ceil() as usize)
        .clamp(1, MAX_BELOW)
        .min(n)
}
/// Optuna's `default_weights`: the newest 25 observations of a group weigh fully.
const FLAT_WEIGHTS: usize = 25;
/// Optuna's `SIGMA0_MAGNITUDE` of the multivariate bandwidth.
const SIGMA0: f64 = 0.2;
/// Keeps a kernel proper even for a degenerate axis (Optuna's `EPS`).
const MIN_SIGMA: f64 = 1e-12;
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// A uniform draw from the space (startup trials, and a space with too few observations).
pub fn sample_prior(space: &[Dim], rng: &mut impl Rng) -> Vec<Val> {
    space
        .iter()
        .map(|dim| match *dim {
            Dim::Float { low, high, log } => Val::Float(clamp(
                if log {
                    uniform(rng, low.ln(), high.ln()).exp()
                } else {
                    uniform(rng, low, high)
                },
                low,
                high,
            )),
            // Optuna's RandomSampler: a log axis is uniform over its cells' log extent, so
            // each integer gets the log-width of [v − ½, v + ½], the measure the kernels use.
            Dim::Int { low, high, log } => Val::Int(if log {
                let (a, b) = ((low as f64 - 0.5).ln(), (high as f64 + 0.5).ln());
                round_int(uniform(rng, a, b).exp(), low, high)
            } else if low < high {
                rng.random_range(low..=high)
            } else {
                low
            }),
            Dim::Categorical { n } => Val::Cat(if n > 1 { rng.random_range(0..n) } else { 0 }),
        })
        .collect()
}

/// The next configuration: `observed` holds (configuration, score) pairs where a LOWER score is
/// better (the caller has already ranked/mapped its objective to this); configurations are in
/// the order the trials were numbered (that order matters for Optuna's weights). Deterministic:
/// the same inputs and rng state give the same output. With fewer than 2 usable observations it
/// returns `sample_prior`.
///
/// An observation is unusable when its score is not finite, or its configuration does not fit
/// the space (wrong length, a value of the wrong kind, a choice out of range, a non-finite
/// float); numbers outside an axis's bounds are clamped into them.
pub fn suggest(
    space: &[Dim],
    observed: &[(Vec<Val>, f64)],
    settings: &Settings,
    rng: &mut impl Rng,
) -> Vec<Val> {
    let usable: Vec<(Vec<f64>, f64)> = observed
        .iter()
        .filter(|(config, score)| score.is_finite() && config.len() == space.len())
        .filter_map(|(config, score)| {
            let row = space.iter().zip(config).map(|(d, v)| internal(d, v));
            Some((row.collect::<Option<Vec<f64>>>()?, *score))
        })
        .collect();
    let n = usable.len();
    if n < 2 || space.is_empty() {
        return sample_prior(space, rng);
    }

    // Optuna's `_split_complete_trials_single_objective`: a stable sort by score, then each
    // group back in trial order, which `default_weights` relies on.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| {
        let (a, b) = (usable[i].1, usable[j].1);
        a.partial_cmp(&b).unwrap_or(Ordering::Equal)
    });
    let n_below = n_below(settings.gamma, n);
    let group = |indices: &[usize]| {
        let mut indices = indices.to_vec();
        indices.sort_unstable();
        indices
            .into_iter()
            .map(|i| usable[i].0.as_slice())
            .collect::<Vec<&[f64]>>()
    };
    let below = group(&order[..n_below]);
    let above = group(&order[n_below..]);

    let axes: Vec<Axis> = space.iter().map(axis_of).collect();
    let x: Vec<f64> = if settings.multivariate {
        best_candidate(&axes, &below, &above, settings, axes.len(), rng)
    } else {
        // Univariate TPE (Optuna's `sample_independent`): every axis is its own one-axis
        // search, with its own candidates and its own l/g.
        (0..axes.len())
            .flat_map(|j| {
                let (b, a) = (column(&below, j), column(&above, j));
                best_candidate(&axes[j..=j], &b, &a, settings, 1, rng)
            })
            .collect()
    };
    space.iter().zip(&x).map(|(d, &x)| external(d, x)).collect()
}

fn column<'a>(rows: &[&'a [f64]], j: usize) -> Vec<&'a [f64]> {
    rows.iter().map(|row| &row[j..=j]).collect()
}

/// Optuna's `TPESampler._sample`: candidates from l, the first maximiser of log l − log g.
fn best_candidate<R: Rng + ?Sized>(
    axes: &[Axis],
    below: &[&[f64]],
    above: &[&[f64]],
    settings: &Settings,
    n_dims: usize,
    rng: &mut R,
) -> Vec<f64> {
    let l = Parzen::new(axes, below, settings, n_dims);
    let g = Parzen::new(axes, above, settings, n_dims);
    let candidates = l.sample(rng, settings.candidates.max(1));
    let mut best = (0, f64::NEG_INFINITY);
    for (i, c) in candidates.iter().enumerate() {
        let acquisition = l.log_pdf(c) - g.log_pdf(c);
        if acquisition > best.1 {
            best = (i, acquisition);
        }
    }
    candidates.into_iter().nth(best.0).unwrap_or_default()
}

/// A numerical axis in the space the kernels live in: [lo, hi] is the kernels' support,
/// in log space for a log axis, widened by half a step each side for an int axis.
#[derive(Debug, Clone, Copy)]
struct Num {
    lo: f64,
    hi: f64,
    log: bool,
    /// The user's bounds of an int axis, whose values stay in user units (as Optuna's do) so
    /// that their cells can be measured.
    int: Option<(i64, i64)>,
}

impl Num {
    fn transform(&self, v: f64) -> f64 {
        if self.log { v.ln() } else { v }
    }

    fn centre(&self, x: f64) -> f64 {
        if self.int.is_some() {
            self.transform(x)
        } else {
            x
        }
    }

    /// Optuna's `_MixtureOfProductDistribution.sample`: a draw from the support, back to user
    /// units and rounded for an int axis.
    fn snap(&self, y: f64) -> f64 {
        let y = clamp(y, self.lo, self.hi);
        match self.int {
            Some((low, high)) => round_int(if self.log { y.exp() } else { y }, low, high) as f64,
            None => y,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Axis {
    Num(Num),
    Cat(usize),
}

fn axis_of(dim: &Dim) -> Axis {
    let log_if = |log: bool, v: f64| if log { v.ln() } else { v };
    match *dim {
        Dim::Float { low, high, log } => Axis::Num(Num {
            lo: log_if(log, low),
            hi: log_if(log, high),
            log,
            int: None,
        }),
        Dim::Int { low, high, log } => Axis::Num(Num {
            lo: log_if(log, low as f64 - 0.5),
            hi: log_if(log, high as f64 + 0.5),
            log,
            int: Some((low, high)),
        }),
        Dim::Categorical { n } => Axis::Cat(n),
    }
}

/// A value in the kernels' coordinates (see [`Num`]), or `None` if it does not fit the axis.
fn internal(dim: &Dim, val: &Val) -> Option<f64> {
    let x = match (dim, *val) {
        (&Dim::Float { low, high, log }, Val::Float(v)) if v.is_finite() => {
            let v = clamp(v, low, high);
            if log { v.ln() } else { v }
        }
        (&Dim::Int { low, high, .. }, Val::Int(v)) => v.max(low).min(high) as f64,
        (&Dim::Categorical { n }, Val::Cat(c)) if c < n => c as f64,
        _ => return None,
    };
    x.is_finite().then_some(x)
}

fn external(dim: &Dim, x: f64) -> Val {
    match *dim {
        Dim::Float { low, high, log } => {
            Val::Float(clamp(if log { x.exp() } else { x }, low, high))
        }
        Dim::Int { low, high, .. } => Val::Int(round_int(x, low, high)),
        Dim::Categorical { n } => Val::Cat((x as usize).min(n.saturating_sub(1))),
    }
}

/// One group's mixture (Optuna's `_ParzenEstimator`): component k < n is observation k, the
/// last one the prior.
struct Parzen {
    weights: Vec<f64>,
    ln_weights: Vec<f64>,
    axes: Vec<Kernels>,
}

/// The components' kernels on one axis.
enum Kernels {
    /// Truncated normals on the support: (mu, sigma, log of the mass inside the support).
    Num(Num, Vec<(f64, f64, f64)>),
    /// Each component's probabilities of the choices.
    Cat(Vec<Vec<f64>>),
}

impl Parzen {
    fn new(axes: &[Axis], rows: &[&[f64]], settings: &Settings, n_dims: usize) -> Parzen {
        let n = rows.len();
        // Optuna refuses a negative prior weight; here it only means "no prior".
        let prior = Some(settings.prior_weight.max(0.0)).filter(|w| w.is_finite());
        let prior = prior.unwrap_or(0.0);
        let mut weights = if n == 0 {
            vec![1.0]
        } else {
            let mut w = default_weights(n);
            w.push(prior);
            w
        };
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        let ln_weights = weights.iter().map(|w| w.ln()).collect();
        let axes = axes
            .iter()
            .enumerate()
            .map(|(j, axis)| match *axis {
                Axis::Num(num) => {
                    let mut mu: Vec<f64> = rows.iter().map(|row| num.centre(row[j])).collect();
                    let mut sigma = bandwidths(&mu, num.lo, num.hi, settings.multivariate, n_dims);
                    mu.push(0.5 * (num.lo + num.hi));
                    sigma.push(num.hi - num.lo);
                    let kernel = |(m, s): (f64, f64)| {
                        let s = s.max(MIN_SIGMA);
                        (m, s, log_mass((num.lo - m) / s, (num.hi - m) / s))
                    };
                    Kernels::Num(num, mu.into_iter().zip(sigma).map(kernel).collect())
                }
                Axis::Cat(choices) => Kernels::Cat(categorical(rows, j, choices, prior)),
            })
            .collect();
        Parzen {
            weights,
            ln_weights,
            axes,
        }
    }

    /// Optuna's `_MixtureOfProductDistribution.sample`: one component per draw, every axis from
    /// that component.
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R, count: usize) -> Vec<Vec<f64>> {
        (0..count)
            .map(|_| {
                let k = pick(&self.weights, rng.random());
                self.axes
                    .iter()
                    .map(|kernels| match kernels {
                        Kernels::Num(num, parts) => {
                            let (m, s, _) = parts[k];
                            let u = rng.random();
                            num.snap(
                                m + s * trunc_std_normal((num.lo - m) / s, (num.hi - m) / s, u),
                            )
                        }
                        Kernels::Cat(p) => pick(&p[k], rng.random()) as f64,
                    })
                    .collect()
            })
            .collect()
    }

    /// Optuna's `_MixtureOfProductDistribution.log_pdf`.
    fn log_pdf(&self, x: &[f64]) -> f64 {
        let mut acc = self.ln_weights.clone();
        for (kernels, &xj) in self.axes.iter().zip(x) {
            for (k, a) in acc.iter_mut().enumerate() {
                *a += kernels.ln_pdf(k, xj);
            }
        }
        log_sum_exp(&acc)
    }
}

impl Kernels {
    fn ln_pdf(&self, k: usize, x: f64) -> f64 {
        match self {
            Kernels::Num(num, parts) => {
                let (m, s, ln_z) = parts[k];
                let ln = if num.int.is_some() {
                    let (left, right) = (num.transform(x - 0.5), num.transform(x + 0.5));
                    log_mass((left - m) / s, (right - m) / s)
                } else {
                    let z = (x - m) / s;
                    -0.5 * z * z - s.ln() - LN_SQRT_2PI
                };
                ln - ln_z
            }
            Kernels::Cat(p) => p[k].get(x as usize).map_or(f64::NEG_INFINITY, |q| q.ln()),
        }
    }
}

/// Optuna's `default_weights`: a linear ramp from 1/n for all but the newest 25.
fn default_weights(n: usize) -> Vec<f64> {
    if n < FLAT_WEIGHTS {
        return vec![1.0; n];
    }
    let ramp = n - FLAT_WEIGHTS;
    let start = 1.0 / n as f64;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| match ramp {
            1 => start,
            _ => start + (1.0 - start) * i as f64 / (ramp - 1) as f64,
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, FLAT_WEIGHTS));
    w
}

/// Optuna's `_calculate_numerical_distributions` (`consider_magic_clip=True`,
/// `consider_endpoints=False`): the observations' bandwidths, the prior's left out.
fn bandwidths(mus: &[f64], lo: f64, hi: f64, multivariate: bool, n_dims: usize) -> Vec<f64> {
    let range = hi - lo;
    let sigmas = if multivariate {
        // Scott's rule on the unit-scaled axis.
        let n = mus.len().max(1) as f64;
        vec![SIGMA0 * n.powf(-1.0 / (n_dims as f64 + 4.0)) * range; mus.len()]
    } else {
        // The farther of the two neighbours, the prior's centre counted among them; the
        // outermost kernels ignore their gap to the bound, which is no observation.
        let mut sorted: Vec<(f64, usize)> = mus
            .iter()
            .copied()
            .chain(std::iter::once(0.5 * (lo + hi)))
            .enumerate()
            .map(|(i, m)| (m, i))
            .collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let points: Vec<f64> = std::iter::once(lo)
            .chain(sorted.iter().map(|p| p.0))
            .chain(std::iter::once(hi))
            .collect();
        let last = sorted.len() - 1;
        let mut sigmas = vec![0.0; sorted.len()];
        for (k, &(_, i)) in sorted.iter().enumerate() {
            let (left, right) = (points[k + 1] - points[k], points[k + 2] - points[k + 1]);
            sigmas[i] = match k {
                0 if last > 0 => right,
                _ if k == last && last > 0 => left,
                _ => left.max(right),
            };
        }
        sigmas.truncate(mus.len());
        sigmas
    };
    // The magic clip: no kernel narrower than the range over the kernels' count (prior
    // included), so early groups do not collapse onto single points.
    let min = range / (mus.len() as f64 + 2.0).min(100.0);
    sigmas.into_iter().map(|s| s.max(min).min(range)).collect()
}

/// Optuna's `_calculate_categorical_distributions` without a distance function.
fn categorical(rows: &[&[f64]], j: usize, choices: usize, prior: f64) -> Vec<Vec<f64>> {
    if rows.is_empty() {
        return vec![vec![1.0 / choices as f64; choices]];
    }
    let fill = prior / (rows.len() + 1) as f64;
    let observed = rows.iter().map(|row| Some(row[j] as usize));
    observed
        .chain(std::iter::once(None))
        .map(|c| {
            let mut p = vec![fill; choices];
            if let Some(slot) = c.and_then(|c| p.get_mut(c)) {
                *slot += 1.0;
            }
            let total: f64 = p.iter().sum();
            if total > 0.0 {
                p.iter_mut().for_each(|q| *q /= total);
            }
            p
        })
        .collect()
}

/// The first index whose cumulative weight reaches `u` (numpy's `rng.choice` and Optuna's
/// categorical draw), the last one if rounding leaves `u` beyond the total.
fn pick(weights: &[f64], u: f64) -> usize {
    let mut cum = 0.0;
    for (i, w) in weights.iter().enumerate() {
        cum += w;
        if u <= cum {
            return i;
        }
    }
    weights.len().saturating_sub(1)
}

/// `f64::clamp` panics on NaN or crossed bounds; a suggestion must not.
fn clamp(x: f64, lo: f64, hi: f64) -> f64 {
    x.max(lo).min(hi)
}

fn uniform<R: Rng + ?Sized>(rng: &mut R, a: f64, b: f64) -> f64 {
    a + (b - a) * rng.random::<f64>()
}

/// numpy's `round` (ties to even), as Optuna's discrete axes use it.
fn round_int(x: f64, low: i64, high: i64) -> i64 {
    (x.round_ties_even() as i64).max(low).min(high)
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + v.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// ln erfc(x), to about 1e-15 relative; finite far into the upper tail, where erfc itself
/// underflows and the kernels of a far-away cell still have to be compared.
fn ln_erfc(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x == f64::INFINITY {
        f64::NEG_INFINITY
    } else if x >= 2.5 {
        // Laplace's continued fraction, erfc(x) = e^(−x²) / (√π (x + ½/(x + 1/(x + 3/2/…)))),
        // by Lentz's method: converges quickly from 2.5 up.
        // Every term is positive, so Lentz's guards against zero denominators are not needed.
        let (mut f, mut c, mut d) = (x, x, 0.0);
        for n in 1..1000 {
            let a = n as f64 * 0.5;
            d = 1.0 / (x + a * d);
            c = x + a / c;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        -x * x - 0.5 * PI.ln() - f.ln()
    } else if x > -2.5 {
        // 1 − erf(x) ≥ erfc(2.5) ≈ 4e-4 here: at most three digits lost.
        (1.0 - erf_series(x)).ln()
    } else {
        (2.0 - ln_erfc(-x).exp()).ln()
    }
}

/// erf for |x| < 2.5 from the series e^(−x²) Σ 2ⁿ x^(2n+1) / (2n+1)!!, whose terms are all of
/// one sign: no cancellation, unlike erf's Taylor series.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= 2.0 * x2 / (2 * n + 1) as f64;
        sum += term;
        if term.abs() <= sum.abs() * 1e-17 {
            break;
        }
    }
    FRAC_2_SQRT_PI * (-x2).exp() * sum
}

fn erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        erf_series(x)
    } else {
        x.signum() * (1.0 - ln_erfc(x.abs()).exp())
    }
}

/// ln Q(z), the standard normal's upper tail.
fn ln_q(z: f64) -> f64 {
    -LN_2 + ln_erfc(z * FRAC_1_SQRT_2)
}

/// ln (Φ(b) − Φ(a)) for a ≤ b (Optuna's `_log_gauss_mass`): from the tail the interval lies
/// in, so that a cell far from a kernel keeps a finite, comparable log mass.
fn log_mass(a: f64, b: f64) -> f64 {
    if a >= 0.0 {
        let (la, lb) = (ln_q(a), ln_q(b));
        if la == f64::NEG_INFINITY {
            return la;
        }
        la + ln_1m_exp(lb - la)
    } else if b <= 0.0 {
        log_mass(-b, -a)
    } else {
        (0.5 * (erf(b * FRAC_1_SQRT_2) + erf(-a * FRAC_1_SQRT_2))).ln()
    }
}

/// ln(1 − eᵈ) for d ≤ 0, accurate at both ends (Mächler 2012).
fn ln_1m_exp(d: f64) -> f64 {
    if d > -LN_2 {
        (-d.exp_m1()).ln()
    } else {
        (-d.exp()).ln_1p()
    }
}

/// A draw from N(0, 1) truncated to [a, b], by inverting the CDF at `u` ∈ [0, 1) (Optuna's
/// `_truncnorm.rvs`). Works from the tail nearer the point so that Φ never rounds to 1.
fn trunc_std_normal(a: f64, b: f64, u: f64) -> f64 {
    let mass = log_mass(a, b).exp();
    let p = ln_q(-a).exp() + u * mass;
    let x = if p <= 0.5 {
        ndtri(p)
    } else {
        -ndtri(ln_q(b).exp() + (1.0 - u) * mass)
    };
    clamp(x, a, b)
}

/// Φ⁻¹(p) by Newton's method on ln Φ, which is concave: started at −√(−2 ln p), left of the
/// root (the Chernoff bound), the steps climb onto it without overshooting, in every tail.
fn ndtri(p: f64) -> f64 {
    if p.is_nan() || p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let target = p.ln();
    let mut x = -(-2.0 * target).sqrt();
    for _ in 0..100 {
        let ln_cdf = ln_q(-x);
        let step = (target - ln_cdf) / (-0.5 * x * x - LN_SQRT_2PI - ln_cdf).exp();
        if !step.is_finite() {
            break;
        }
        x += step;
        if step.abs() <= 1e-15 * x.abs().max(1.0) {
            break;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    type Observed = Vec<(Vec<Val>, f64)>;

    fn float(low: f64, high: f64, log: bool) -> Dim {
        Dim::Float { low, high, log }
    }

    fn int(low: i64, high: i64, log: bool) -> Dim {
        Dim::Int { low, high, log }
    }

    fn seeded(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    fn mixed_space() -> Vec<Dim> {
        let cat = Dim::Categorical { n: 4 };
        vec![
            float(1e-4, 1.0, true),
            float(-2.0, 3.0, false),
            int(1, 1000, true),
            int(-5, 5, false),
            cat,
        ]
    }

    fn random_observations(space: &[Dim], n: usize, rng: &mut ChaCha8Rng) -> Observed {
        (0..n)
            .map(|_| (sample_prior(space, rng), rng.random::<f64>()))
            .collect()
    }

    fn in_bounds(space: &[Dim], config: &[Val]) -> bool {
        config.len() == space.len()
            && space.iter().zip(config).all(|(d, v)| match (d, *v) {
                (Dim::Float { low, high, .. }, Val::Float(x)) => *low <= x && x <= *high,
                (Dim::Int { low, high, .. }, Val::Int(x)) => *low <= x && x <= *high,
                (Dim::Categorical { n }, Val::Cat(c)) => c < *n,
                _ => false,
            })
    }

    /// 30 trials, the first 10 from the prior, then TPE (or the prior throughout), each
    /// seeing all the trials before it.
    fn search(space: &[Dim], f: impl Fn(&[Val]) -> f64, seed: u64, tpe: bool) -> Observed {
        let mut rng = seeded(seed);
        let mut observed = Observed::new();
        for t in 0..30 {
            let config = match tpe && t >= 10 {
                true => suggest(space, &observed, &Settings::default(), &mut rng),
                false => sample_prior(space, &mut rng),
            };
            let score = f(&config);
            observed.push((config, score));
        }
        observed
    }

    #[test]
    fn the_normal_functions_are_precise() {
        let erfc = [
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
        ];
        let tails = [
            (3.0, 2.209_049_699_858_544e-5),
            (5.0, 1.537_459_794_428_035e-12),
        ];
        for (x, want) in erfc
            .into_iter()
            .chain(tails)
            .chain([(-1.0, 1.842_700_792_949_715)])
        {
            let got = ln_erfc(x).exp();
            assert!(
                (got / want - 1.0).abs() < 1e-13,
                "erfc({x}) = {got}, want {want}"
            );
        }
        assert!((ndtri(0.025) + 1.959_963_984_540_054).abs() < 1e-13);
        for x in [-30.0, -8.0, -1.0, 0.3, 2.0] {
            assert!(
                (ndtri(ln_q(-x).exp()) - x).abs() < 1e-9 * x.abs().max(1.0),
                "Φ⁻¹(Φ({x}))"
            );
        }
        // Draws are monotone in u, inside [a, b], and have the truncated normal's mean.
        let draws =
            |a, b| (0..1000).map(move |i| trunc_std_normal(a, b, (f64::from(i) + 0.5) / 1e3));
        for (a, b) in [(-1.0, 2.0), (3.0, 50.0), (-50.0, -3.0), (-0.01, 0.01)] {
            let x: Vec<f64> = draws(a, b).collect();
            assert!(x.windows(2).all(|w| a <= w[0] && w[0] <= w[1] && w[1] <= b));
        }
        let density = |x: f64| (-0.5 * x * x - LN_SQRT_2PI).exp();
        let want = (density(-1.0) - density(2.0)) / log_mass(-1.0, 2.0).exp();
        assert!((draws(-1.0, 2.0).sum::<f64>() / 1e3 - want).abs() < 1e-4);
        // A cell 40 standard deviations out still has a finite log mass.
        assert!(log_mass(40.0, 40.5).is_finite() && log_mass(-40.5, -40.0).is_finite());
    }

    #[test]
    fn the_same_seed_gives_the_same_suggestion() {
        let space = mixed_space();
        let observed = random_observations(&space, 15, &mut seeded(1));
        let run = |seed| suggest(&space, &observed, &Settings::default(), &mut seeded(seed));
        assert_eq!(run(7), run(7));
        assert!((8..12).any(|seed| run(seed) != run(7)));
    }

    #[test]
    fn suggestions_stay_in_bounds() {
        let space = mixed_space();
        let mut rng = seeded(2);
        let edges = vec![
            Val::Float(1e-4),
            Val::Float(3.0),
            Val::Int(1000),
            Val::Int(-5),
            Val::Cat(3),
        ];
        for round in 0..2000 {
            let mut observed = random_observations(&space, 2 + round % 40, &mut rng);
            observed.push((edges.clone(), -1.0));
            let settings = Settings {
                multivariate: round % 2 == 0,
                ..Settings::default()
            };
            let config = suggest(&space, &observed, &settings, &mut rng);
            assert!(in_bounds(&space, &config), "{config:?}");
        }
    }

    #[test]
    fn it_learns_faster_than_random_search() {
        let space = [float(1e-5, 1e-1, true), float(0.0, 1.0, false)];
        let f = |c: &[Val]| match (c[0], c[1]) {
            (Val::Float(x), Val::Float(y)) => (x.ln() - 1e-3f64.ln()).powi(2) + (y - 0.7).powi(2),
            _ => f64::INFINITY,
        };
        let best = |seed, tpe| {
            search(&space, f, seed, tpe)
                .iter()
                .map(|o| o.1)
                .fold(f64::INFINITY, f64::min)
        };
        let pairs: Vec<(f64, f64)> = (0..20)
            .map(|seed| (best(seed, true), best(seed, false)))
            .collect();
        let tpe = pairs.iter().map(|p| p.0).sum::<f64>() / 20.0;
        let random = pairs.iter().map(|p| p.1).sum::<f64>() / 20.0;
        let wins = pairs.iter().filter(|p| p.0 < p.1).count();
        println!("mean best of 20 seeds: TPE {tpe:.5}, random {random:.5}; TPE better on {wins}");
        assert!(
            tpe < random && wins > 10,
            "TPE {tpe}, random {random}, wins {wins}"
        );
    }

    #[test]
    fn it_finds_the_good_choice() {
        let space = [Dim::Categorical { n: 5 }, float(0.0, 1.0, false)];
        let f = |c: &[Val]| match (c[0], c[1]) {
            (Val::Cat(k), Val::Float(y)) => f64::from(u8::from(k != 2)) + 0.01 * y,
            _ => f64::INFINITY,
        };
        let good = (0..5)
            .map(|seed| {
                search(&space, f, seed, true)[10..]
                    .iter()
                    .filter(|o| o.0[0] == Val::Cat(2))
                    .count()
            })
            .sum::<usize>();
        println!("choice 2 in {good} of 100 TPE suggestions");
        assert!(good > 50, "{good} of 100");
    }

    #[test]
    fn too_few_observations_give_the_prior() {
        let space = mixed_space();
        let one = random_observations(&space, 1, &mut seeded(3));
        let mut with_nan = one.clone();
        with_nan.push((one[0].0.clone(), f64::NAN));
        for observed in [vec![], one, with_nan] {
            let prior = sample_prior(&space, &mut seeded(4));
            assert_eq!(
                suggest(&space, &observed, &Settings::default(), &mut seeded(4)),
                prior
            );
        }
    }

    #[test]
    fn non_finite_scores_are_ignored() {
        let space = mixed_space();
        let mut rng = seeded(5);
        let clean = random_observations(&space, 12, &mut rng);
        let mut dirty = Observed::new();
        for (i, o) in clean.iter().enumerate() {
            dirty.push(o.clone());
            let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][i % 3];
            dirty.push((sample_prior(&space, &mut rng), bad));
        }
        // A configuration that does not fit the space is dropped too.
        dirty.push((vec![Val::Cat(9)], 0.0));
        let run =
            |observed: &Observed| suggest(&space, observed, &Settings::default(), &mut seeded(6));
        let config = run(&dirty);
        assert!(in_bounds(&space, &config));
        assert_eq!(config, run(&clean));
    }
}
