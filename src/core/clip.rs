//! Gradient clipping as the training settings state it, applied to a set of gradients: by value
//! (PyTorch's `clip_grad_value_`, as Mammoth's SI) or by the global L2 norm (`clip_grad_norm_`,
//! as HAT's `clipgrad`). Shared by the training loop, which clips what the optimizer applies, and
//! by the strategies that must see the same clipped gradient (SI's path integral).

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// How gradients are clipped before each optimizer step; off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GradientClip {
    /// Every entry clamped to `[-value, value]`.
    pub value: Option<f64>,
    /// The whole gradient (every parameter together) rescaled to at most this L2 norm.
    pub norm: Option<f64>,
}

impl GradientClip {
    pub fn is_off(&self) -> bool {
        self.value.is_none() && self.norm.is_none()
    }

    /// Clips `grads` in place (shallow clones write through to the tensors they share storage
    /// with): first by value, then by the global norm, with PyTorch's coefficient
    /// `max_norm / (total_norm + 1e-6)` applied only when it is below 1.
    pub fn apply(&self, grads: &mut [Tensor]) {
        let _guard = tch::no_grad_guard();
        if let Some(v) = self.value {
            for g in grads.iter_mut() {
                let _ = g.clamp_(-v, v);
            }
        }
        if let Some(max) = self.norm {
            let total: f64 = grads
                .iter()
                .map(|g| g.square().sum(tch::Kind::Double).double_value(&[]))
                .sum::<f64>()
                .sqrt();
            let coefficient = max / (total + 1e-6);
            if coefficient < 1.0 {
                for g in grads.iter_mut() {
                    let _ = g.g_mul_scalar_(coefficient);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_then_norm_as_pytorch() {
        let a = Tensor::from_slice(&[3.0f32, -0.5]);
        let b = Tensor::from_slice(&[-4.0f32]);
        GradientClip {
            value: Some(1.0),
            norm: None,
        }
        .apply(&mut [a.shallow_clone(), b.shallow_clone()]);
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![1.0, -0.5]);
        assert_eq!(Vec::<f32>::try_from(&b).unwrap(), vec![-1.0]);
        // Global norm of (3, 4) is 5: scaled by 1 / (5 + 1e-6).
        let a = Tensor::from_slice(&[3.0f32]);
        let b = Tensor::from_slice(&[4.0f32]);
        GradientClip {
            value: None,
            norm: Some(1.0),
        }
        .apply(&mut [a.shallow_clone(), b.shallow_clone()]);
        let expected = 3.0 / (5.0 + 1e-6);
        assert!((a.double_value(&[0]) - expected).abs() < 1e-6);
        // Below the norm, nothing changes.
        let c = Tensor::from_slice(&[0.3f32]);
        GradientClip {
            value: None,
            norm: Some(1.0),
        }
        .apply(&mut [c.shallow_clone()]);
        assert_eq!(c.double_value(&[0]), 0.3f32 as f64);
    }
}
