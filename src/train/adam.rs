//! Adam with its state in the open (for checkpoints), in one pass over memory per parameter on
//! the CPU, with a quadratic penalty's gradient folded in.
//!
//! libtorch's Adam makes about eight passes per parameter (moments, square root, division,
//! update, two temporaries), and on a CPU the step of a small MLP is bound by that memory
//! traffic: a third of a training step of the 784-400-400 MLP at batch 128. Here one loop reads
//! the gradient, both moments and the parameter once and writes them once. A quadratic penalty
//! (`W theta - C`, see `strategy::penalty`) is added to the gradient inside the same loop, so the
//! EWC family costs two more streams instead of two more passes.
//!
//! The arithmetic is PyTorch's (Kingma & Ba 2015 with PyTorch's bias corrections and eps
//! placement): `m = b1 m + (1-b1) g`, `v = b2 v + (1-b2) g^2`,
//! `p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)`. Results equal libtorch's Adam up to
//! float rounding. The one-pass loop needs contiguous f32 CPU tensors ([`Adam::fuses`]);
//! elsewhere (a GPU) the same arithmetic runs as tensor operations, as libtorch's Adam does.

use rayon::prelude::*;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use anyhow::Result;

use crate::strategy::{ParamMap, QuadraticPenalty, SavedState};

/// Elements per parallel chunk: large enough that scheduling costs nothing next to the work.
const CHUNK: usize = 1 << 15;

/// Adam's state for the parameters of one model.
pub struct Adam {
    /// Whether steps run the one-pass CPU loop.
    fused: bool,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    step: i32,
    /// (name, parameter, first moment, second moment).
    state: Vec<(String, Tensor, Tensor, Tensor)>,
    /// libtorch's `zero_grad` frees the gradients (set to none), so backward writes fresh ones
    /// instead of adding into zeroed buffers; this optimizer is only used for that.
    zeroer: nn::Optimizer,
}

impl Adam {
    /// Whether every parameter is a contiguous f32 CPU tensor (the one-pass loop's condition).
    pub fn fuses(params: &ParamMap) -> bool {
        params
            .values()
            .all(|p| p.device() == Device::Cpu && p.kind() == Kind::Float && p.is_contiguous())
    }

    pub fn new(
        vs: &nn::VarStore,
        params: &ParamMap,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
    ) -> Result<Adam> {
        let state = params
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    p.shallow_clone(),
                    p.zeros_like(),
                    p.zeros_like(),
                )
            })
            .collect();
        let zeroer = nn::Sgd::default().build(vs, 0.0)?;
        Ok(Adam {
            fused: Adam::fuses(params),
            lr,
            betas,
            eps,
            step: 0,
            state,
            zeroer,
        })
    }

    /// Frees the parameters' gradients before the next backward pass.
    pub fn zero_grad(&mut self) {
        self.zeroer.zero_grad();
    }

    /// One Adam step from the parameters' gradients, plus `penalty`'s gradient when given.
    /// A parameter without a gradient is left alone unless there is a penalty (whose gradient
    /// it then follows alone), as PyTorch skips parameters whose gradient is `None`.
    pub fn step(&mut self, penalty: Option<&QuadraticPenalty>) {
        self.step_skipping(penalty, &[]);
    }

    /// [`step`](Self::step), leaving the parameters named in `skip` (and their moments) alone,
    /// as PyTorch's Adam leaves a parameter whose gradient was dropped.
    pub fn step_skipping(&mut self, penalty: Option<&QuadraticPenalty>, skip: &[String]) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let bias1 = 1.0 - b1.powi(self.step);
        let bias2_sqrt = (1.0 - b2.powi(self.step)).sqrt();
        // 1 - b in f64: in f32, 1 - 0.999 is off by 1e-5 relative.
        let k = Coefficients {
            b1: b1 as f32,
            b2: b2 as f32,
            one_minus_b1: (1.0 - b1) as f32,
            one_minus_b2: (1.0 - b2) as f32,
            step_size: (self.lr / bias1) as f32,
            inv_bias2_sqrt: (1.0 / bias2_sqrt) as f32,
            eps: self.eps as f32,
        };
        let _guard = tch::no_grad_guard();
        for (name, p, m, v) in &mut self.state {
            if skip.contains(name) {
                continue;
            }
            let g = p.grad();
            let terms = penalty.and_then(|q| q.gradient_terms(name));
            if !g.defined() && terms.is_none() {
                continue;
            }
            if !self.fused {
                tensor_update(p, m, v, &g, terms, &k);
                continue;
            }
            let n = p.numel();
            // SAFETY: `p`, `m`, `v` (and `g`, `W`, `C` when present) are contiguous f32 CPU
            // tensors of `n` elements (checked by `fuses` for the parameters; moments were
            // made with `zeros_like`; the gradient and the penalty's tensors have the
            // parameter's shape, asserted below). `p`, `m` and `v` are separate storages, and
            // the ones only read (`g`, `W`, `C`) are separate from them.
            unsafe {
                let p = slice_mut(p, n);
                let m = slice_mut(m, n);
                let v = slice_mut(v, n);
                let g = g.defined().then(|| slice(&g, n));
                let wc = terms.map(|(w, c)| (slice(w, n), slice(c, n)));
                update(p, m, v, g, wc, &k);
            }
        }
    }

    /// Changes the learning rate from the next step on (the learning-rate schedule).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The step count and both moments, for a checkpoint.
    pub fn state(&self) -> SavedState {
        let mut state = SavedState::new();
        state.put_count("step", self.step as usize);
        for (name, _, m, v) in &self.state {
            state.put(format!("m/{name}"), m);
            state.put(format!("v/{name}"), v);
        }
        state
    }

    /// Restores [`state`](Self::state)'s output into an optimizer built for the same model.
    pub fn load_state(&mut self, mut saved: SavedState) -> Result<()> {
        self.step = i32::try_from(saved.take_count("step")?)?;
        let _guard = tch::no_grad_guard();
        for (name, p, m, v) in &mut self.state {
            m.copy_(&saved.take(&format!("m/{name}"), p.device())?);
            v.copy_(&saved.take(&format!("v/{name}"), p.device())?);
        }
        saved.finish("the Adam optimizer")
    }
}

/// One step of one parameter in tensor operations, in the order of libtorch's Adam.
fn tensor_update(
    p: &mut Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    g: &Tensor,
    terms: Option<(&Tensor, &Tensor)>,
    k: &Coefficients,
) {
    let Some(grad) = super::total_gradient(p, g, terms) else {
        return;
    };
    let _ = m.g_mul_scalar_(k.b1 as f64);
    let _ = m.g_add_(&(&grad * k.one_minus_b1 as f64));
    let _ = v.g_mul_scalar_(k.b2 as f64);
    let _ = v.g_add_(&(&grad * &grad * k.one_minus_b2 as f64));
    let denom = v.sqrt() * k.inv_bias2_sqrt as f64 + k.eps as f64;
    let _ = p.g_sub_(&(&*m / denom * k.step_size as f64));
}

struct Coefficients {
    b1: f32,
    b2: f32,
    one_minus_b1: f32,
    one_minus_b2: f32,
    step_size: f32,
    inv_bias2_sqrt: f32,
    eps: f32,
}

fn update(
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: Option<&[f32]>,
    wc: Option<(&[f32], &[f32])>,
    k: &Coefficients,
) {
    p.par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(chunk, ((p, m), v))| {
            let start = chunk * CHUNK;
            let range = start..start + p.len();
            let g = g.map(|g| &g[range.clone()]);
            let wc = wc.map(|(w, c)| (&w[range.clone()], &c[range]));
            for i in 0..p.len() {
                let mut grad = g.map_or(0.0, |g| g[i]);
                if let Some((w, c)) = wc {
                    grad += w[i] * p[i] - c[i];
                }
                m[i] = k.b1 * m[i] + k.one_minus_b1 * grad;
                v[i] = k.b2 * v[i] + k.one_minus_b2 * grad * grad;
                let denom = v[i].sqrt() * k.inv_bias2_sqrt + k.eps;
                p[i] -= k.step_size * m[i] / denom;
            }
        });
}

/// # Safety
/// `t` must be a contiguous f32 CPU tensor of `n` elements not aliased while the slice lives.
unsafe fn slice_mut(t: &mut Tensor, n: usize) -> &mut [f32] {
    assert!(
        t.numel() == n && t.kind() == Kind::Float && t.is_contiguous() && t.device() == Device::Cpu
    );
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n)
}

/// # Safety
/// `t` must be a contiguous f32 CPU tensor of `n` elements not written while the slice lives.
unsafe fn slice(t: &Tensor, n: usize) -> &[f32] {
    assert!(
        t.numel() == n && t.kind() == Kind::Float && t.is_contiguous() && t.device() == Device::Cpu
    );
    std::slice::from_raw_parts(t.data_ptr() as *const f32, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MlpSpec, Net};
    use crate::strategy::params::snapshot;

    fn model() -> Net {
        let spec = MlpSpec {
            inputs: 5,
            hidden: vec![70_000 / 5 / 7, 7],
            outputs: 3,
        };
        Net::mlp(&spec, Device::Cpu, 4)
    }

    fn loss(m: &Net, step: i64) -> Tensor {
        let x = Tensor::arange(5 * 6, (Kind::Float, Device::Cpu))
            .view([6, 5])
            .sin()
            * (step + 1) as f64;
        m.forward(&x).square().mean(Kind::Float)
    }

    fn max_rel_diff(a: &ParamMap, b: &ParamMap) -> f64 {
        a.iter()
            .map(|(k, x)| {
                let d = (x - &b[k]).abs().max().double_value(&[]);
                d / b[k].abs().max().double_value(&[]).max(1e-12)
            })
            .fold(0.0, f64::max)
    }

    /// Fused Adam against libtorch's, without and with a quadratic penalty (a first layer of
    /// 14 000 weights, so the parallel chunks are exercised too): equal up to float rounding
    /// after one step, and close after 30. Adam divides each update by the gradient's own scale,
    /// so where the gradient is rounding noise (a dead unit's weights near their anchor, whose
    /// penalty gradient `W theta - C` is a few ulps) differences of an ulp become differences of
    /// a step: hence the looser bound with a penalty.
    #[test]
    fn fused_adam_follows_libtorchs_adam() {
        follows_libtorchs_adam(true);
    }

    /// The tensor-operation path (what a GPU runs), checked on the CPU.
    #[test]
    fn unfused_adam_follows_libtorchs_adam() {
        follows_libtorchs_adam(false);
    }

    fn follows_libtorchs_adam(fused_loop: bool) {
        for (with_penalty, steps, tolerance) in [
            (false, 1, 1e-6),
            (true, 1, 1e-6),
            (false, 30, 1e-4),
            (true, 30, 2e-3),
        ] {
            let (a, b) = (model(), model());
            let anchor = snapshot(&a.params());
            let weights: ParamMap = a
                .params()
                .iter()
                .map(|(k, p)| (k.clone(), p.ones_like() * 3.0))
                .collect();
            let penalty = QuadraticPenalty::new(0.5, vec![(Some(weights), anchor)]);
            let mut torch = nn::Adam::default().build(&a.vs, 1e-2).unwrap();
            let mut fused = Adam::new(&b.vs, &b.params(), 1e-2, (0.9, 0.999), 1e-8).unwrap();
            assert!(fused.fused);
            fused.fused = fused_loop;
            for step in 0..steps {
                torch.zero_grad();
                loss(&a, step).backward();
                if with_penalty {
                    assert!(penalty.add_gradient(&a.params()));
                }
                torch.step();
                fused.zero_grad();
                loss(&b, step).backward();
                fused.step(with_penalty.then_some(&penalty));
            }
            let diff = max_rel_diff(&b.params(), &a.params());
            assert!(
                diff < tolerance,
                "fused {fused_loop}, penalty {with_penalty}, {steps} steps: relative difference {diff}"
            );
        }
    }
}
