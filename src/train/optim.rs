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

fn scale<const D: usize>(grads: &mut GradientsParams, id: ParamId, factor: &Tensor<1>) {
    if let Some(g) = grads.remove::<D>(id) {
        let f = factor.clone().reshape([1; D]);
        grads.register::<D>(id, g * f);
    }
}

/// Divides the gradients by `loss_scale` and clips them to a global norm of `clip` (0: no
/// clipping), in place; returns the (unscaled) norm before clipping as a [1] tensor, which is
/// read only when logged: nothing here waits for the device.
pub fn clip_global_norm(
    model: &Gpt,
    grads: &mut GradientsParams,
    clip: f64,
    loss_scale: f64,
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
    let norm = total.sqrt() / loss_scale;
    if clip > 0.0 || loss_scale != 1.0 {
        // min(1, clip / norm) / scale, on the device.
        let clipped = if clip > 0.0 {
            (norm.clone() + 1e-6)
                .recip()
                .mul_scalar(clip)
                .clamp_max(1.0)
        } else {
            Tensor::ones([1], device)
        };
        let factor = clipped / loss_scale;
        for &(id, rank) in &ids {
            match rank {
                1 => scale::<1>(grads, id, &factor),
                2 => scale::<2>(grads, id, &factor),
                3 => scale::<3>(grads, id, &factor),
                _ => scale::<4>(grads, id, &factor),
            }
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
}
