//! The optimiser side of a step: AdamW with decay on matrices only, the learning-rate
//! schedule, and global gradient-norm clipping computed on the device.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use super::model::Gpt;
use crate::manifest::TrainConfig;

/// Learning rate at optimiser step `step` (0-based): linear warm-up, then cosine to `min_lr`.
pub fn learning_rate(t: &TrainConfig, step: u64) -> f64 {
    if step < t.warmup_steps {
        return t.lr * (step + 1) as f64 / (t.warmup_steps + 1) as f64;
    }
    let span = (t.steps - t.warmup_steps).max(1) as f64;
    let progress = ((step - t.warmup_steps) as f64 / span).min(1.0);
    t.min_lr + 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()) * (t.lr - t.min_lr)
}

/// The scheduled α of `alpha = "cosine"`: 1 at the start, 0 at the end.
pub fn cosine_alpha(step: u64, steps: u64) -> f64 {
    0.5 * (1.0 + (std::f64::consts::PI * step as f64 / steps.max(1) as f64).cos())
}

/// Collects the ids of parameters that get no weight decay: vectors (biases, LayerNorm, α, β).
#[derive(Default)]
struct VectorParams(Vec<ParamId>);

impl ModuleVisitor for VectorParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D < 2 {
            self.0.push(param.id);
        }
    }
}

/// AdamW with decay on matrices only, as nanoGPT does. Build it after restoring a checkpoint:
/// its no-decay group names the parameters by their (restored) ids.
pub fn optimizer(t: &TrainConfig, model: &Gpt) -> ModuleOptimizer {
    let adamw = |decay: f64| {
        AdamWConfig::new()
            .with_beta_1(t.beta1 as f32)
            .with_beta_2(t.beta2 as f32)
            .with_epsilon(1e-8)
            .with_weight_decay(decay as f32)
    };
    let mut vectors = VectorParams::default();
    model.visit(&mut vectors);
    adamw(t.weight_decay).init().with_group(
        burn::module::ParamGroup::from_ids(vectors.0),
        adamw(0.0).build(),
        None,
    )
}

/// The gradients present for a model's parameters, with each one's rank.
struct GradientIds<'a> {
    grads: &'a GradientsParams,
    ids: Vec<(ParamId, usize)>,
}

impl ModuleVisitor for GradientIds<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.grads.get::<D>(param.id).is_some() {
            self.ids.push((param.id, D));
        }
    }
}

fn squared_norm<const D: usize>(grads: &GradientsParams, id: ParamId) -> Option<Tensor<1>> {
    grads.get::<D>(id).map(|g| g.square().sum())
}

/// Multiplies a gradient by `factor`; `sanitize` first zeroes its non-finite values, so that
/// a zero factor (an overflowed step) leaves zeros rather than NaN.
fn scale<const D: usize>(
    grads: &mut GradientsParams,
    id: ParamId,
    factor: &Tensor<1>,
    sanitize: bool,
) {
    if let Some(g) = grads.remove::<D>(id) {
        let f = factor.clone().reshape([1; D]);
        let g = if sanitize {
            g.clone().mask_fill(g.is_finite().bool_not(), 0.0)
        } else {
            g
        };
        grads.register::<D>(id, g * f);
    }
}

/// Dynamic loss scaling of f16 runs, as PyTorch's GradScaler does it but without reading
/// anything back each step: the scale lives on the device. The loss is multiplied by it before
/// the backward pass, so that small gradients stay above f16's smallest normal value; a step
/// whose gradients overflowed halves it and trains on zero gradients (AdamW then only decays
/// its moments and the weights: the nearest to a skipped step that needs no host decision),
/// and every [`Self::GROWTH_INTERVAL`] clean steps double it.
pub struct LossScale {
    /// The scale S, a [1] tensor.
    pub scale: Tensor<1>,
    /// Clean steps since the last overflow or growth.
    pub clean: Tensor<1>,
    /// Steps whose gradients overflowed, in all.
    pub overflows: Tensor<1>,
}

impl LossScale {
    /// 2^10: a margin of 64 below f16's largest value for activation gradients of order one.
    pub const INITIAL: f64 = 1024.0;
    pub const GROWTH_INTERVAL: u64 = 2000;

    /// A scale (`scale`, `clean`, `overflows`), e.g. restored from a checkpoint.
    pub fn new(scale: f64, clean: u64, overflows: u64, device: &Device) -> LossScale {
        LossScale {
            scale: Tensor::full([1], scale, device),
            clean: Tensor::full([1], clean as f64, device),
            overflows: Tensor::full([1], overflows as f64, device),
        }
    }

    /// After a step: `finite` is 1 where its gradients were finite, else 0.
    fn update(&mut self, finite: Tensor<1>) {
        let next = self.clean.clone() + 1.0;
        let grow = next
            .clone()
            .greater_equal_elem(Self::GROWTH_INTERVAL as f64)
            .float();
        let lost = finite.clone().neg() + 1.0;
        let kept = self.scale.clone() * (grow.clone() + 1.0);
        self.scale = kept * finite.clone() + self.scale.clone() * lost.clone() * 0.5;
        self.clean = next * finite * (grow.neg() + 1.0);
        self.overflows = self.overflows.clone() + lost;
    }
}

/// Clips the gradients to a global norm of `clip` (0: no clipping), in place, unscaling them
/// first where a loss scale multiplied them (and zeroing them where they overflowed); returns
/// the unscaled norm before clipping as a [1] tensor, which is read only when logged: nothing
/// here waits for the device.
pub fn clip_global_norm(
    model: &Gpt,
    grads: &mut GradientsParams,
    clip: f64,
    loss_scale: Option<&mut LossScale>,
    device: &Device,
) -> Tensor<1> {
    let mut visitor = GradientIds {
        grads,
        ids: Vec::new(),
    };
    model.visit(&mut visitor);
    let ids = visitor.ids;
    let mut total = Tensor::<1>::zeros([1], device);
    for &(id, rank) in &ids {
        let part = match rank {
            1 => squared_norm::<1>(grads, id),
            2 => squared_norm::<2>(grads, id),
            3 => squared_norm::<3>(grads, id),
            _ => squared_norm::<4>(grads, id),
        };
        if let Some(p) = part {
            total = total + p;
        }
    }
    let raw = total.sqrt();
    let clipped = |norm: &Tensor<1>| {
        (norm.clone() + 1e-6)
            .recip()
            .mul_scalar(clip)
            .clamp_max(1.0)
    };
    let (norm, factor, sanitize) = match loss_scale {
        None if clip > 0.0 => (raw.clone(), clipped(&raw), false),
        // Without clipping or scaling there is nothing to do.
        None => return raw,
        Some(ls) => {
            let finite = raw.clone().is_finite();
            let norm = raw / ls.scale.clone();
            let unscale = ls.scale.clone().recip();
            let factor = if clip > 0.0 {
                clipped(&norm) * unscale
            } else {
                unscale
            };
            let factor = factor.mask_fill(finite.clone().bool_not(), 0.0);
            ls.update(finite.float());
            (norm, factor, true)
        }
    };
    for &(id, rank) in &ids {
        match rank {
            1 => scale::<1>(grads, id, &factor, sanitize),
            2 => scale::<2>(grads, id, &factor, sanitize),
            3 => scale::<3>(grads, id, &factor, sanitize),
            _ => scale::<4>(grads, id, &factor, sanitize),
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_min_lr() {
        let t = TrainConfig {
            steps: 100,
            warmup_steps: 10,
            lr: 1e-3,
            min_lr: 1e-4,
            ..TrainConfig::default()
        };
        assert!(learning_rate(&t, 0) < learning_rate(&t, 5));
        assert!((learning_rate(&t, 10) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(&t, 100) - 1e-4).abs() < 1e-12);
        assert!((cosine_alpha(0, 10) - 1.0).abs() < 1e-12 && cosine_alpha(10, 10).abs() < 1e-12);
    }

    fn read(t: &Tensor<1>) -> f64 {
        t.clone().into_scalar::<f32>() as f64
    }

    #[test]
    fn the_loss_scale_halves_on_overflow_and_grows_after_clean_steps() {
        let device = Device::flex();
        let mut ls = LossScale::new(1024.0, LossScale::GROWTH_INTERVAL - 2, 0, &device);
        let step = |ls: &mut LossScale, finite: f64| {
            ls.update(Tensor::full([1], finite, &device));
            (read(&ls.scale), read(&ls.clean), read(&ls.overflows))
        };
        let interval = LossScale::GROWTH_INTERVAL as f64;
        assert_eq!(step(&mut ls, 1.0), (1024.0, interval - 1.0, 0.0));
        // The interval's last clean step doubles the scale and starts counting again.
        assert_eq!(step(&mut ls, 1.0), (2048.0, 0.0, 0.0));
        assert_eq!(step(&mut ls, 0.0), (1024.0, 0.0, 1.0));
        assert_eq!(step(&mut ls, 0.0), (512.0, 0.0, 2.0));
        assert_eq!(step(&mut ls, 1.0), (512.0, 1.0, 2.0));
    }
}
